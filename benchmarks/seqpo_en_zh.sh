#!/usr/bin/env bash
# SeqPO (multi-step GRPO) from the shipped en-zh SFT adapter on the training lines (generaltest2022 en-zh
# and generaltest2023 en-zh without its last 200 lines, the dev split), with dev
# evaluation every 25 steps, then the dev evaluation of the result on the first 100 dev lines.
# Resumable: re-run the script after a kill (the run continues at its last checkpoint).
# The shipped en-zh SeqPO adapter and its README figures come from this script (STEPS=50); extra
# arguments go to `seqpo train`. The first, smaller run of docs/results.md is this script as of commit d138759.
set -euo pipefail
cd "$(dirname "$0")/.."
# WMT general test sets 2022-2024, generaltest20YY.PAIR.LANG (docs/data.md: e.g. sacrebleu -t wmt22 -l en-zh --echo src)
DATA=${SEQPO_DATA:-../shared/data}/wmt
OUT=${OUT:-runs/rl/seqpo-en-zh}
STEPS=${STEPS:-150}
DEV=runs/dev
mkdir -p "$DEV" runs/data
tail -n 200 $DATA/generaltest2023.en-zh.en > $DEV/dev200.en-zh.en
tail -n 200 $DATA/generaltest2023.en-zh.zh > $DEV/dev200.en-zh.zh
for lang in en zh; do
  { cat $DATA/generaltest2022.en-zh.$lang; head -n -200 $DATA/generaltest2023.en-zh.$lang; } > runs/data/train.en-zh.$lang
done
.venv/bin/seqpo train --pair en-zh --src runs/data/train.en-zh.en --ref runs/data/train.en-zh.zh \
  --out "$OUT" --steps "$STEPS" --sources 4 --group 5 --temperature 0.7 --order truncate-first --lr 1e-4 \
  --max-source-units 15 --save-every 5 --eval-every 25 --dev-src $DEV/dev200.en-zh.en --dev-ref $DEV/dev200.en-zh.zh \
  --dev-limit 20 "$@"
.venv/bin/seqpo plot "$OUT"
.venv/bin/seqpo eval --pair en-zh --policy llm --adapter "$OUT" --decoding cached --src $DEV/dev200.en-zh.en \
  --ref $DEV/dev200.en-zh.zh --limit 100 --out "$OUT/dev-eval" --quiet
