"""Behaviour check for refactors: `seqpo eval` on N dev lines for offline / wait-k / llm in every
decoding mode (plus look-ahead and write-ahead), reduced to one digest per run.

    python benchmarks/identical_outputs.py OUT                 # run, write OUT/digest.json
    python benchmarks/identical_outputs.py OUT --compare REF   # ... and compare with REF/digest.json

A digest holds each sentence's prediction and delays, so two digests are equal exactly when the
outputs (text and timing in source units) are identical. Elapsed times are left out: they are
wall-clock. Runs are resumable (`seqpo eval --out`), so a re-run only adds what is missing.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

DEV = "wmt/generaltest2023.en-zh"  # the en-zh dev split is the last 200 lines of this test set

RUNS = [(policy, mode, []) for policy in ("offline", "wait-k", "llm")
        for mode in ("reencode", "cached", "append", "slots")]
RUNS += [("llm", mode, ["--lookahead", "4", "--write-ahead"]) for mode in ("append", "slots")]


def dev_lines(path: Path, n: int, out: Path, name: str) -> Path:
    lines = Path(path).read_text(encoding="utf-8").splitlines()[-200:][:n]
    target = out / name
    target.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return target


def run_name(policy: str, mode: str, extra: list[str]) -> str:
    return f"{policy}-{mode}" + ("-ahead" if extra else "")


def digest(run_dir: Path) -> list[dict]:
    rows = [json.loads(line) for line in (run_dir / "instances.jsonl").read_text(encoding="utf-8").splitlines()]
    rows.sort(key=lambda r: r["index"])
    return [{"index": r["index"], "prediction": r["prediction"], "delays": r["delays"]} for r in rows]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--lines", type=int, default=10)
    ap.add_argument("--data", type=Path, default=Path(os.environ.get("SEQPO_DATA", "../shared/data")),
                    help="the folder holding wmt/, the WMT general test sets (docs/data.md; default: $SEQPO_DATA, "
                    "else ../shared/data)")
    ap.add_argument("--compare", type=Path, help="a folder holding the digest.json to compare with")
    ap.add_argument("--seqpo", default=str(Path(sys.executable).with_name("seqpo")))
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    src = dev_lines(args.data / f"{DEV}.en", args.lines, args.out, "dev.en")
    ref = dev_lines(args.data / f"{DEV}.zh", args.lines, args.out, "dev.zh")
    digests = {}
    for policy, mode, extra in RUNS:
        name = run_name(policy, mode, extra)
        cmd = [args.seqpo, "eval", "--pair", "en-zh", "--policy", policy, "--decoding", mode, "--src", str(src),
               "--ref", str(ref), "--out", str(args.out / name), "--quiet", *extra]
        print("$", " ".join(cmd), flush=True)
        subprocess.run(cmd, check=True)
        digests[name] = digest(args.out / name)
    (args.out / "digest.json").write_text(json.dumps(digests, ensure_ascii=False, indent=1), encoding="utf-8")
    if args.compare is None:
        return 0
    ref_digests = json.loads((args.compare / "digest.json").read_text(encoding="utf-8"))
    print("\n| run | sentences | identical |\n|---|---|---|")
    same = True
    for name, rows in digests.items():
        equal = ref_digests.get(name) == rows
        same &= equal
        print(f"| {name} | {len(rows)} | {'yes' if equal else 'NO'} |")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
