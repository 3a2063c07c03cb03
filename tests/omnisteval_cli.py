"""The `omnisteval` command line run as a subprocess on a log seqpo wrote, for tests that compare
seqpo's YAAL / LongYAAL with what OmniSTEval itself prints."""

from __future__ import annotations

import csv
import math
import shlex
import subprocess
import sys
from pathlib import Path


def omnisteval_cli(command: str) -> dict[str, float | None]:
    """Run an `omnisteval` command as `YaalScores.command` gives it; its scores.tsv as a dict (nan
    as None, as seqpo reports a mean over nothing)."""
    args = shlex.split(command)
    assert args[0] == "omnisteval"
    out = str(Path(args[args.index("--hypothesis_file") + 1]).parent / "cli")
    subprocess.run([sys.executable, "-m", "omnisteval.cli", *args[1:], "--output_folder", out],
                   check=True, capture_output=True, text=True)
    with open(f"{out}/scores.tsv", encoding="utf-8") as fh:
        rows = csv.DictReader(fh, delimiter="\t")
        values = {row["metric"]: float(row["value"]) for row in rows if row["value"] not in ("YES", "NO")}
    return {k: None if math.isnan(v) else v for k, v in values.items()}
