"""Quality-latency chart and table of `seqpo eval` runs on the same first N dev lines.

Usage: python benchmarks/quality_latency.py --limit 50 --out docs/figures/ql.png LABEL=RUN_DIR ...
(BLEU vs AL in OUT, chrF vs AL next to it in OUT's name + "_chrf")

Every run is rescored on its first N sentences (benchmarks/collect_scores.py), so runs that went
further than others still compare on the same lines. Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from collect_scores import rescore  # noqa: E402

from seqpo.plot import draw_quality_latency  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", help="LABEL=RUN_DIR")
    ap.add_argument("--limit", type=int, required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--title", default=None)
    args = ap.parse_args()
    points = []
    print("| policy | lines | BLEU | chrF | AL | LAAL | wait frac. |")
    print("|---|---|---|---|---|---|---|")
    for item in args.runs:
        label, _, folder = item.rpartition("=")
        s = rescore(Path(folder), args.limit)
        if s is None:
            sys.exit(f"{folder} has fewer than {args.limit} finished sentences")
        points.append((label, s))
        print(f"| {label} | {s['sentences']} | {s['BLEU']:.2f} | {s['chrF']:.2f} | {s['AL']:.2f} | {s['LAAL']:.2f} "
              f"| {s['wait_fraction']:.3f} |")
    out = Path(args.out)
    draw_quality_latency(points, out, metric="BLEU", title=args.title)
    draw_quality_latency(points, out.with_name(out.stem + "_chrf" + out.suffix), metric="chrF", title=args.title)


if __name__ == "__main__":
    main()
