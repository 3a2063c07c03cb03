"""Collect evaluation runs under a folder into one Markdown table.

Usage: python benchmarks/collect_scores.py runs/base [--limit N]

With --limit, every run is rescored on its first N sentences from its instances.jsonl (the same
scoring code as `seqpo eval`), so runs of different lengths compare on the same lines. Wall time
per sentence comes from the run's own scores.json (its last invocation).
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from seqpo.eval_sentences import TextSentences
from seqpo.eval_source import EvalRun
from seqpo.evaluate import EvalSettings, read_finished, score
from seqpo.languages import parse_pair

COLUMNS = ["BLEU", "chrF", "AL", "LAAL", "DAL", "AP", "AL_CA", "wait_fraction"]
HEADER = ["BLEU", "chrF", "AL", "LAAL", "DAL", "AP", "AL (CA)", "wait frac.", "s/sent. (wall)"]


def rescore(run: Path, limit: int | None) -> dict | None:
    settings = json.loads((run / "settings.json").read_text())
    done = read_finished(run / "instances.jsonl")
    n = limit or len(done)
    if any(i not in done for i in range(n)):
        return None  # the run has not reached N sentences yet
    pair = parse_pair(settings["pair"])
    es = EvalSettings(pair=settings["pair"], chunk=settings["chunk"], model=settings.get("model"),
                      adapter=settings.get("adapter") or "none", decoding=settings.get("decoding") or "reencode",
                      slot=settings.get("slot") or 16, **{k: settings[k] for k in ("policy", "k") if k in settings})
    eval_run = EvalRun(es, pair, es.build_policy())
    with tempfile.TemporaryDirectory() as tmp:  # the OmniSTEval log of a rescoring to N lines is not the run's
        scores = score(TextSentences(es, pair, ([], [])), [done[i] for i in range(n)], eval_run, Path(tmp))
    old = run / "scores.json"
    scores["wall_seconds_per_sentence"] = json.loads(old.read_text()).get("wall_seconds_per_sentence") if old.exists() else None
    return scores


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("root", nargs="?", default="runs/base")
    ap.add_argument("--limit", type=int, default=None)
    args = ap.parse_args()
    rows = []
    runs = [s for f in sorted(Path(args.root).rglob("settings.json")) if (s := rescore(f.parent, args.limit))]
    # normalized erasure only when a re-translation run is in the table (appending policies erase nothing)
    ne = any("NE" in s for s in runs)
    for s in runs:
        sig = s["signature"]
        label = f"wait-k k={sig['k']}" if sig["policy"] == "wait-k" else sig["policy"]
        if sig.get("adapter"):
            label += f" + adapter {Path(sig['adapter']).name}"
        if sig.get("decoding", "reencode") != "reencode":
            label += f", {sig['decoding']} decoding"
        order = 0 if sig["policy"] == "offline" else sig.get("k", 99) if sig["policy"] == "wait-k" else 100
        wall = s.get("wall_seconds_per_sentence")
        cells = [sig["pair"], label, str(s["sentences"])] + ["-" if s.get(c) is None else f"{s[c]:.2f}" for c in COLUMNS]
        cells.append("-" if wall is None else f"{wall:.2f}")
        if ne:
            cells.append(f"{s['NE']:.3f}" if s.get("NE") is not None else "0" if sig["policy"] != "retranslate" else "-")
        rows.append(((sig["pair"], order, label), cells))
    rows.sort(key=lambda r: r[0])
    header = HEADER + ["NE"] * ne
    print("| pair | policy | lines | " + " | ".join(header) + " |")
    print("|" + "---|" * (3 + len(header)))
    for _, cells in rows:
        print("| " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
