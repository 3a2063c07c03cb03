#!/usr/bin/env bash
# The en-zh quality-latency picture on the first N dev lines (last 200 lines of generaltest2023 en-zh,
# never trained on): wait-k (k = 1 3 5 7 9, on the SFT adapter), the base model's llm policy (few-shot),
# SFT (shipped) and SeqPO runs given as LABEL=ADAPTER arguments. Every eval uses --decoding cached
# (re-encoding with prefix caching: the same output as reencode, faster). Resumable (each eval is).
# Usage: benchmarks/quality_latency_en_zh.sh [seqpo=runs/rl/seqpo-en-zh ...]; ONLY_BASELINES=1 skips the chart.
set -euo pipefail
cd "$(dirname "$0")/.."
# WMT general test sets 2022-2024, generaltest20YY.PAIR.LANG (docs/data.md: e.g. sacrebleu -t wmt22 -l en-zh --echo src)
DATA=${SEQPO_DATA:-../shared/data}/wmt
N=${N:-100}
R=${R:-runs/ql-en-zh}
DEV=runs/dev
mkdir -p "$DEV" "$R" docs/figures
tail -n 200 $DATA/generaltest2023.en-zh.en > $DEV/dev200.en-zh.en
tail -n 200 $DATA/generaltest2023.en-zh.zh > $DEV/dev200.en-zh.zh
ev() { name=$1; shift; .venv/bin/seqpo eval --pair en-zh --src $DEV/dev200.en-zh.en --ref $DEV/dev200.en-zh.zh \
  --limit "$N" --decoding cached --out "$R/$name" --quiet "$@" >/dev/null; echo "done $name" >&2; }
runs=()
for k in 1 3 5 7 9; do ev wait-$k --policy wait-k --k $k --adapter sft; runs+=("wait-$k=$R/wait-$k"); done
ev base-llm --policy llm --adapter none; runs+=("llm (base, few-shot)=$R/base-llm")
ev sft --policy llm --adapter sft; runs+=("SFT=$R/sft")
[ -n "${ONLY_BASELINES:-}" ] && exit 0
for item in "$@"; do
  label=${item%%=*}; adapter=${item#*=}
  ev "$label" --policy llm --adapter "$adapter"; runs+=("$label=$R/$label")
done
.venv/bin/python benchmarks/quality_latency.py --limit "$N" --out docs/figures/quality_latency_en_zh_seqpo.png \
  --title "en-zh dev (first $N lines)" "${runs[@]}"
