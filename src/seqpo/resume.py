"""What long jobs resume from: append-only JSONL logs and the settings they were made with.

Shared by `seqpo eval` (instances.jsonl + settings.json) and `seqpo data partial` (pairs.jsonl +
pairs.settings.json): a line cut short by a kill is truncated away, and a log is never extended
with work made under other settings.
"""

from __future__ import annotations

import json
from pathlib import Path

from .errors import InputFileError


def read_complete_jsonl(path: Path) -> list[dict]:
    """Every complete JSON line of `path` (none if it is missing); a cut-off tail is truncated."""
    records: list[dict] = []
    if not path.exists():
        return records
    good_bytes = 0
    with path.open("rb") as fh:
        for raw in fh:
            if not raw.endswith(b"\n"):
                break
            try:
                records.append(json.loads(raw))
            except json.JSONDecodeError:
                break
            good_bytes += len(raw)
    if good_bytes != path.stat().st_size:
        with path.open("r+b") as fh:
            fh.truncate(good_bytes)
    return records


def check_run_settings(path: Path, settings: dict, owner: Path, legacy: dict | None = None) -> None:
    """Refuse to extend `owner` when `path` records other settings; then record these.

    `legacy` gives the value that runs of older versions used for keys they did not record."""
    if path.exists():
        before = {**(legacy or {}), **json.loads(path.read_text())}
        changed = [k for k in settings if before.get(k) != settings[k]]
        if changed:
            raise InputFileError(f"{owner} holds a run with other settings ({', '.join(changed)}); use another --out")
    path.write_text(json.dumps(settings, indent=2))
