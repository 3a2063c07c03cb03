"""SeqPO training throughput: the original loop next to the fast one, same sentences and seeds.

Usage: python benchmarks/train_throughput.py [--steps 2] [--sources 2] [--group 5] [--all] [-- extra train args]

Each variant is a `seqpo train` run (own process, the shipped en-zh SFT adapter, train split
generaltest2022 en-zh, seed 0, so every variant trains on the same sentences) for --steps steps;
the figures come from its log.jsonl (rollout and update seconds of each step, tokens through the
model), so model loading and checkpoints are not timed. Variants run one after another in one
invocation, since this machine is noisy. Sampled episodes differ between variants (the two
rollout paths draw from the same distribution with different random streams), so token counts
are per episode.

  original  --rollouts generate --update rows   every step's whole prompt through `generate`;
                                                every step sample a padded row in the update
  fast      --rollouts cached --update tree     (the default) prefix-cached rollouts, one prefix
                                                tree per group in the update
  --all adds the two mixed variants, to see what each half brings.
  --levers runs the real workload instead (the shipped en-zh SeqPO run's sentence filter, temperature
  and batch: --max-source-units 15 --temperature 0.7 --sources 4) and adds one variant per lever on the
  fast loop, then all of them together:
    reads of 3 words      --chunk 3 (the paper's reads are a few words; ours default to 1)
    top-4-layer LoRA      --lora-layers 4 (the backward pass stops below the top 4 of 18 layers)
    8 sources per step    --sources 8 (longer packed rollouts and larger trees per pass)
  --formats compares the training formats instead (issue 30), each with its own rollouts and update:
    reencode   the default loop above (cached rollouts, prefix-tree update)
    append     --format append: rollouts on the append engine, the update over each episode's transcript
    slots      --format slots: the same on the slots engine (ExPosST reserved positions)
  e.g. on a tiny random model: ... --formats -- --model DIR --adapter none --few-shot no
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# the folder holding wmt/, the WMT general test sets 2022-2024 (docs/data.md: e.g. sacrebleu -t wmt22 -l en-zh
# --echo src); ../shared/data beside the clone on the development machine
DATA = Path(os.environ.get("SEQPO_DATA", ROOT.parent / "shared" / "data"))
VARIANTS = {
    "original (generate + rows)": ["--rollouts", "generate", "--update", "rows"],
    "cached rollouts + rows": ["--rollouts", "cached", "--update", "rows"],
    "generate + tree update": ["--rollouts", "generate", "--update", "tree"],
    "fast (cached + tree)": ["--rollouts", "cached", "--update", "tree"],
}
FORMATS = {
    "reencode (cached + tree)": VARIANTS["fast (cached + tree)"],
    "append (transcripts)": ["--format", "append"],
    "slots (transcripts)": ["--format", "slots"],
}
REAL_WORKLOAD = ["--max-source-units", "15", "--temperature", "0.7", "--order", "truncate-first", "--lr", "1e-4"]
LEVERS = {
    "original (generate + rows)": VARIANTS["original (generate + rows)"],
    "fast (cached + tree)": VARIANTS["fast (cached + tree)"],
    "fast + reads of 3 words": [*VARIANTS["fast (cached + tree)"], "--chunk", "3"],
    "fast + top-4-layer LoRA": [*VARIANTS["fast (cached + tree)"], "--lora-layers", "4"],
    "fast + 8 sources per step": [*VARIANTS["fast (cached + tree)"], "--sources", "8"],
    "fast + all three": [*VARIANTS["fast (cached + tree)"], "--chunk", "3", "--lora-layers", "4", "--sources", "8"],
}


def run(name: str, flags: list[str], args, extra: list[str], work: Path) -> dict:
    out = work / name.replace(" ", "_").replace("(", "").replace(")", "")
    cmd = [sys.executable, "-m", "seqpo.cli", "train", "--pair", "en-zh",
           "--src", str(args.data / "wmt" / "generaltest2022.en-zh.en"),
           "--ref", str(args.data / "wmt" / "generaltest2022.en-zh.zh"),
           "--out", str(out), "--steps", str(args.steps), "--sources", str(args.sources), "--group", str(args.group),
           "--save-every", "1000", "--seed", "0", "--quiet", *flags, *extra]
    print(f"# {name}: {' '.join(cmd[3:])}", file=sys.stderr, flush=True)
    subprocess.run(cmd, check=True)
    steps = [json.loads(x) for x in (out / "log.jsonl").read_text().splitlines() if '"eval"' not in x]
    eps = sum(s["episodes"] for s in steps)
    roll, upd = sum(s["rollout_s"] for s in steps), sum(s["update_s"] for s in steps)
    return {"variant": name, "episodes": eps, "rollout_s": roll, "update_s": upd,
            "episodes_per_min": 60 * eps / (roll + upd),
            "rollout_tokens_per_ep": sum(s.get("rollout_tokens") or 0 for s in steps) / eps,
            "update_tokens_per_ep": sum(s["update_tokens"] for s in steps) / eps,
            "sampled_tokens_per_ep": sum(s["tokens"] for s in steps) / eps,
            "logp_gap": max(s["logp_gap"] for s in steps)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=2)
    ap.add_argument("--sources", type=int, default=2)
    ap.add_argument("--group", type=int, default=5)
    ap.add_argument("--all", action="store_true", help="also the two mixed variants")
    ap.add_argument("--levers", action="store_true", help="the real workload, one variant per lever (see above)")
    ap.add_argument("--formats", action="store_true", help="the training formats side by side (see above)")
    ap.add_argument("--work", default=None, help="folder for the runs (default: a temporary one)")
    ap.add_argument("--data", type=Path, default=DATA, help="the folder holding wmt/ (default: $SEQPO_DATA, else "
                    "../shared/data)")
    args, extra = ap.parse_known_args()
    extra = [x for x in extra if x != "--"]
    variants = LEVERS if args.levers else FORMATS if args.formats else VARIANTS
    names = list(variants) if args.all or args.levers or args.formats else \
        [n for n in VARIANTS if n.startswith(("original", "fast"))]
    if args.levers:
        extra = [*REAL_WORKLOAD, *extra]
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(args.work or tmp)
        rows = [run(n, variants[n], args, extra, work) for n in names]
    base = rows[0]["episodes_per_min"]
    print(f"\n{args.steps} steps x {args.sources} sources x group {args.group}, train split generaltest2022 en-zh, "
          f"shipped en-zh SFT adapter{', ' + ' '.join(REAL_WORKLOAD) if args.levers else ''}"
          f"{'; train args: ' + ' '.join(extra) if extra else ''}\n")
    print(f"| {'format' if args.formats else 'loop'} | episodes | rollout s/episode | update s/episode | episodes/min | x {rows[0]['variant'].split()[0]} | "
          "rollout tokens/episode | update tokens/episode | sampled tokens/episode | max logp gap |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['variant']} | {r['episodes']} | {r['rollout_s'] / r['episodes']:.2f} | "
              f"{r['update_s'] / r['episodes']:.2f} | {r['episodes_per_min']:.2f} | {r['episodes_per_min'] / base:.2f} | "
              f"{r['rollout_tokens_per_ep']:.0f} | {r['update_tokens_per_ep']:.0f} | {r['sampled_tokens_per_ep']:.1f} | "
              f"{r['logp_gap']:.5f} |")


if __name__ == "__main__":
    main()
