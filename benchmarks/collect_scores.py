"""Collect `scores.json` files under a folder into one Markdown table.

Usage: python benchmarks/collect_scores.py runs/base [--with-ca]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

COLUMNS = ["BLEU", "chrF", "AL", "LAAL", "DAL", "AP", "AL_CA", "wait_fraction", "wall_seconds_per_sentence"]
HEADER = ["BLEU", "chrF", "AL", "LAAL", "DAL", "AP", "AL (CA)", "wait frac.", "s/sent. (wall)"]


def policy_label(sig: dict) -> str:
    return f"wait-k k={sig['k']}" if sig["policy"] == "wait-k" else sig["policy"]


def main(root: str) -> None:
    rows = []
    for path in sorted(Path(root).rglob("scores.json")):
        s = json.loads(path.read_text())
        sig = s["signature"]
        rows.append((sig["pair"], sig["policy"] != "offline", sig.get("k", 0) if sig["policy"] == "wait-k" else 99,
                     [sig["pair"], policy_label(sig), str(s["sentences"])]
                     + ["-" if s.get(c) is None else f"{s[c]:.2f}" for c in COLUMNS]))
    rows.sort(key=lambda r: r[:3])
    print("| pair | policy | lines | " + " | ".join(HEADER) + " |")
    print("|" + "---|" * (3 + len(HEADER)))
    for *_, cells in rows:
        print("| " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "runs/base")
