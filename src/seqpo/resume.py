"""What long jobs resume from: append-only JSONL logs and the settings they were made with.

Shared by `seqpo eval` (instances.jsonl + settings.json), `seqpo data partial` (pairs.jsonl +
pairs.settings.json), `seqpo train` (log.jsonl + settings.json) and `seqpo sft` (settings.json):
only a last line cut short by a kill is truncated away (a bad line before it is damage, not a kill,
and is an error), and a log is never extended with work made under other settings.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

from .errors import InputFileError


def write_atomic(path: Path, text: str) -> None:
    """Replace `path` with `text` in one step: a kill leaves the old file or the new one, never half."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _parse_line(raw: bytes, path: Path, number: int) -> dict:
    try:
        record = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise InputFileError(f"{path}:{number}: not UTF-8 (byte {exc.start}); fix or remove that line") from exc
    except json.JSONDecodeError as exc:
        raise InputFileError(f"{path}:{number}: not a JSON line ({exc.msg}); fix or remove that line") from exc
    if not isinstance(record, dict):
        raise InputFileError(f"{path}:{number}: not a JSON object; fix or remove that line")
    return record


def read_complete_jsonl(path: Path, unit_end: Callable[[dict], bool] | None = None,
                        truncate: bool = True) -> list[dict]:
    """Every record of the JSONL file `path` (none if it is missing).

    A last line without its newline is what a kill mid-write leaves: it is truncated away. Any
    other bad line (not JSON, not UTF-8) raises `InputFileError` naming the file and line. With
    `unit_end`, records are written in units of several lines (all the lines of one sentence) and
    a unit is complete at a record where `unit_end` holds: the records of an unfinished last unit
    are truncated away too, so redoing that unit never duplicates them. `truncate=False` only
    reads (a reader of a run still writing, such as `seqpo plot`, must not cut its last line)."""
    records: list[dict] = []
    path = Path(path)
    if not path.exists():
        return records
    good_bytes = unit_bytes = unit_records = 0
    with path.open("rb") as fh:
        for number, raw in enumerate(fh, 1):
            if not raw.endswith(b"\n"):
                break  # only the last line can lack its newline
            records.append(_parse_line(raw, path, number))
            good_bytes += len(raw)
            if unit_end is None or unit_end(records[-1]):
                unit_bytes, unit_records = good_bytes, len(records)
    if truncate and unit_bytes != path.stat().st_size:
        with path.open("r+b") as fh:
            fh.truncate(unit_bytes)
    return records[:unit_records]


def read_settings(path: Path) -> dict:
    """A settings.json file as a dict; an unreadable one is a one-line `InputFileError`."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputFileError(f"{path} is corrupt ({str(exc).splitlines()[0]}); remove it only if the run "
                             "beside it was made with the settings you are using now") from exc
    if not isinstance(data, dict):
        raise InputFileError(f"{path} is corrupt (not a JSON object)")
    return data


def check_run_settings(path: Path, settings: dict, owner: Path, legacy: dict | None = None) -> None:
    """Refuse to extend `owner` when `path` records other settings; then record these.

    `legacy` gives the value that runs of older versions used for keys they did not record."""
    path = Path(path)
    if path.exists():
        before = {**(legacy or {}), **read_settings(path)}
        changed = [k for k in settings if before.get(k) != settings[k]]
        if changed:
            raise InputFileError(f"{owner} holds a run with other settings ({', '.join(changed)}); use another --out")
    write_atomic(path, json.dumps(settings, indent=2))
