"""Paired bootstrap confidence intervals for the BLEU and chrF difference between two `seqpo eval` runs.

    python benchmarks/bootstrap_ci.py runs/ql-en-zh/sft runs/ql-en-zh/SeqPO --ref runs/dev/dev200.en-zh.zh --limit 100

Each run folder holds `instances.jsonl` (one line per sentence, `index`, `prediction`). Lines are
matched by index; the reference is read from --ref (and must equal each instance's `reference`).
Significance is sacrebleu's paired bootstrap resampling (`sacrebleu.significance.PairedTest`,
test_type "bs", Koehn 2004), which also gives each system's 95% interval. The interval on the
*difference* (system minus baseline) uses the same resampled line sets (same seed, 12345, as
sacrebleu). The per-sentence AL difference gets the same kind of interval. Prints Markdown.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from sacrebleu.metrics import BLEU, CHRF
from sacrebleu.significance import PairedTest

SEED = 12345  # sacrebleu's default SACREBLEU_SEED


def instances(run: Path, limit: int) -> list[dict]:
    rows = {}
    for line in (run / "instances.jsonl").read_text(encoding="utf-8").splitlines():
        if line.strip():
            row = json.loads(line)
            rows[row["index"]] = row
    wanted = range(limit)
    missing = [i for i in wanted if i not in rows]
    if missing:
        raise SystemExit(f"{run}: no instance for lines {missing[:5]}")
    return [rows[i] for i in wanted]


def al_difference_ci(base: list[dict], system: list[dict], n: int) -> tuple[float, float, float, int]:
    """Mean per-sentence AL of system minus baseline, with a 95% paired bootstrap interval, over the
    lines both policies wrote something for (an empty prediction has no latency, as in scores.json)."""
    pairs = [(b["metric"]["AL"], s["metric"]["AL"]) for b, s in zip(base, system)
             if (b.get("metric") or {}).get("AL") is not None and (s.get("metric") or {}).get("AL") is not None]
    gaps = np.array([s - b for b, s in pairs])
    rng = np.random.default_rng(SEED)
    means = gaps[rng.choice(len(gaps), size=(n, len(gaps)), replace=True)].mean(axis=1)
    lo, hi = np.percentile(means, [2.5, 97.5])
    return float(gaps.mean()), float(lo), float(hi), len(gaps)


def difference_ci(metric, base: list[str], system: list[str], refs: list[str], n: int) -> tuple[float, float, float]:
    """95% percentile interval of score(system) - score(base) over n paired resamples of the lines."""
    rng = np.random.default_rng(SEED)
    idxs = rng.choice(len(refs), size=(n, len(refs)), replace=True)  # the draw _paired_bs_test makes
    stats = [np.array(metric._extract_corpus_statistics(h, [refs]), dtype="float32") for h in (base, system)]
    diffs = np.array([metric._compute_score_from_stats(stats[1][i].sum(0)).score
                      - metric._compute_score_from_stats(stats[0][i].sum(0)).score for i in idxs])
    lo, hi = np.percentile(diffs, [2.5, 97.5])
    return float(diffs.mean()), float(lo), float(hi)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("baseline", type=Path)
    ap.add_argument("system", type=Path)
    ap.add_argument("--ref", type=Path, required=True, help="reference file, one line per sentence")
    ap.add_argument("--limit", type=int, default=100, help="first N lines (default 100)")
    ap.add_argument("--tokenize", default="zh", help="BLEU tokenizer (zh for Chinese targets, 13a otherwise)")
    ap.add_argument("--samples", type=int, default=1000)
    args = ap.parse_args()

    refs = args.ref.read_text(encoding="utf-8").splitlines()[: args.limit]
    base_rows, sys_rows = instances(args.baseline, args.limit), instances(args.system, args.limit)
    base, base_refs = [r["prediction"] for r in base_rows], [r["reference"] for r in base_rows]
    system, sys_refs = [r["prediction"] for r in sys_rows], [r["reference"] for r in sys_rows]
    if base_refs != refs or sys_refs != refs:
        raise SystemExit("the instances' references differ from --ref")

    def make() -> dict:
        return {"BLEU": BLEU(tokenize=args.tokenize), "chrF": CHRF()}

    test = PairedTest([("baseline", base), ("system", system)], make(), [refs], test_type="bs",
                      n_samples=args.samples)
    _signatures, results = test()
    print(f"baseline: {args.baseline}; system: {args.system}; {args.limit} lines; "
          f"{args.samples} paired bootstrap resamples, seed {SEED}\n")
    print("| metric | baseline (95% CI) | system (95% CI) | difference | 95% CI of difference | p-value |")
    print("|---|---|---|---|---|---|")
    # PairedTest renames metrics by their score's name (chrF -> chrF2), in the order given
    names = [key for key in results if key != "System"]
    for (name, metric), key in zip(make().items(), names):
        b, s = results[key]
        _mean, lo, hi = difference_ci(metric, base, system, refs, args.samples)
        print(f"| {name} | {b.score:.2f} ({b.mean:.2f} ± {b.ci:.2f}) | {s.score:.2f} ({s.mean:.2f} ± {s.ci:.2f}) "
              f"| {s.score - b.score:+.2f} | [{lo:+.2f}, {hi:+.2f}] | {s.p_value:.4f} |")
    gap, lo, hi, lines = al_difference_ci(base_rows, sys_rows, args.samples)
    print(f"\nAL (source units), mean over the {lines} lines both policies wrote for: system minus baseline "
          f"{gap:+.2f}, 95% CI [{lo:+.2f}, {hi:+.2f}] (paired bootstrap of the per-sentence differences)")


if __name__ == "__main__":
    main()
