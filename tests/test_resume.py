"""resume.py: what a kill leaves is repaired, anything else is a one-line error naming the file."""

import json
import subprocess
import sys

import pytest

from seqpo.cli import main
from seqpo.errors import InputFileError
from seqpo.resume import check_run_settings, read_complete_jsonl


def test_only_a_cut_off_last_line_is_dropped(tmp_path):
    path = tmp_path / "log.jsonl"
    path.write_bytes(b'{"a": 1}\n{"a": 2}\n{"a": 3, "b": "\xe4\xbd')  # killed mid-way through a character
    assert read_complete_jsonl(path) == [{"a": 1}, {"a": 2}]
    assert path.read_bytes() == b'{"a": 1}\n{"a": 2}\n'  # truncated, so appending goes on cleanly
    assert read_complete_jsonl(tmp_path / "missing.jsonl") == []


@pytest.mark.parametrize("bad,message", [(b'{"a": 2\n', "log.jsonl:2: not a JSON line"),
                                         (b'{"a": "\xff"}\n', "log.jsonl:2: not UTF-8"),
                                         (b'[1, 2]\n', "log.jsonl:2: not a JSON object")])
def test_a_bad_line_before_good_ones_is_an_error_and_nothing_is_dropped(tmp_path, bad, message):
    path = tmp_path / "log.jsonl"
    content = b'{"a": 1}\n' + bad + b'{"a": 3}\n'
    path.write_bytes(content)
    with pytest.raises(InputFileError, match=message) as err:
        read_complete_jsonl(path)
    assert len(str(err.value).splitlines()) == 1
    assert path.read_bytes() == content  # the good line after the bad one is still there


def test_an_unfinished_last_unit_is_dropped_whole(tmp_path):
    path = tmp_path / "pairs.jsonl"
    rows = [{"i": 0, "end": False}, {"i": 0, "end": True}, {"i": 1, "end": False}, {"i": 1, "end": False}]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows) + '{"i": 1, "e')
    assert read_complete_jsonl(path, unit_end=lambda r: r["end"]) == rows[:2]
    assert path.read_text().splitlines() == [json.dumps(r) for r in rows[:2]]


def test_a_live_reader_does_not_truncate(tmp_path):
    path = tmp_path / "log.jsonl"
    path.write_text('{"step": 1}\n{"step": 2, "rew')  # a trainer in the middle of a write
    assert read_complete_jsonl(path, truncate=False) == [{"step": 1}]
    assert path.read_text().endswith('"rew')


def test_corrupt_settings_json_is_a_one_line_cli_error(tmp_path, capsys):
    src, ref, out = tmp_path / "s.en", tmp_path / "r.zh", tmp_path / "pairs.jsonl"
    src.write_text("Hello\n")
    ref.write_text("你好\n")
    (tmp_path / "pairs.settings.json").write_bytes(b'{"pair": "en-zh", "chu')
    code = main(["data", "partial", "--src", str(src), "--ref", str(ref), "--out", str(out), "--quiet"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1
    assert "pairs.settings.json is corrupt" in err
    (tmp_path / "pairs.settings.json").write_bytes(b'{"pair": "\xff"}')
    with pytest.raises(InputFileError, match="is corrupt"):
        check_run_settings(tmp_path / "pairs.settings.json", {"pair": "en-zh"}, out)


CRASH_MID_WRITE = """
import json, resource, signal, sys
from pathlib import Path
from seqpo.resume import check_run_settings
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails instead of killing
resource.setrlimit(resource.RLIMIT_FSIZE, (1000, 1000))  # the disk fills up after 1000 bytes
path = Path(sys.argv[1])
check_run_settings(path, json.loads(path.read_text()), path.parent)
"""


def test_settings_json_is_written_atomically(tmp_path):
    """A write that fails half way (disk full) leaves the settings as they were, and no temp file."""
    path = tmp_path / "settings.json"
    settings = {"pair": "en-zh", "src": "x" * 5000}
    path.write_text(json.dumps(settings, indent=2))
    before = path.read_bytes()
    done = subprocess.run([sys.executable, "-c", CRASH_MID_WRITE, str(path)], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode != 0 and "File too large" in done.stderr
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["settings.json"]
