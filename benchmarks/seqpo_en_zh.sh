#!/usr/bin/env bash
# SeqPO (GRPO) from the shipped en-zh SFT adapter on generaltest2022 en-zh sentences, then the dev
# evaluation (first 50 of the last 200 lines of generaltest2023 en-zh, which no training touched).
# Resumable: re-run the script after a kill. CPU figures in README come from this script.
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=../shared/data/wmt
OUT=${OUT:-runs/rl/seqpo-en-zh}
STEPS=${STEPS:-24}
DEV=runs/dev
mkdir -p "$DEV"
tail -n 200 $DATA/generaltest2023.en-zh.en > $DEV/dev200.en-zh.en
tail -n 200 $DATA/generaltest2023.en-zh.zh > $DEV/dev200.en-zh.zh
.venv/bin/seqpo train --pair en-zh --src $DATA/generaltest2022.en-zh.en --ref $DATA/generaltest2022.en-zh.zh \
  --limit 600 --out "$OUT" --steps "$STEPS" --sources 2 --group 5 --lr 5e-5 --save-every 2 "$@"
.venv/bin/seqpo plot "$OUT"
.venv/bin/seqpo eval --pair en-zh --policy llm --adapter "$OUT" --src $DEV/dev200.en-zh.en --ref $DEV/dev200.en-zh.zh \
  --limit 50 --out "$OUT/dev-eval" --quiet
