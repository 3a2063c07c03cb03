"""One check shared by the tests of inference settings that change the output (`--quantize`,
`--vocab`): `seqpo eval` records the setting in its signature, and resuming the same folder
without it is refused as other settings."""

import json

from seqpo.cli import main


def assert_recorded_and_resume_refused(args: list[str], flag: str, value: str, out, capsys) -> dict:
    """`seqpo eval ARGS --out OUT FLAG VALUE` runs both lines and records the setting; the same
    folder without it exits 2 naming the setting. Returns the first run's scores."""
    setting = flag.removeprefix("--").replace("-", "_")
    assert main([*args, "--out", str(out), flag, value]) == 0
    scores = json.loads((out / "scores.json").read_text())
    assert scores["signature"][setting] == value and scores["sentences"] == 2
    capsys.readouterr()
    assert main([*args, "--out", str(out)]) == 2  # the same folder without it: other settings
    assert setting in capsys.readouterr().err
    return scores
