#!/usr/bin/env bash
# Real warm-up run on this machine (sized for a 2-core CPU): agreement pairs from the first N lines
# of generaltest2022 en-zh, LoRA SFT, then eval on the first M lines of the dev split (the last 200
# lines of generaltest2023, never trained on): SFT llm vs base llm vs base wait-3, wait-7, offline. Resumable.
set -euo pipefail
N=${N:-60}; M=${M:-50}; EPOCHS=${EPOCHS:-3}  # 3 epochs = the shipped adapter (1 epoch: README)
# WMT general test sets 2022-2024, generaltest20YY.PAIR.LANG (docs/data.md: e.g. sacrebleu -t wmt22 -l en-zh --echo src)
D=${SEQPO_DATA:-../shared/data}/wmt
R=runs/sft
mkdir -p $R runs/dev
tail -n 200 $D/generaltest2023.en-zh.en > runs/dev/dev200.en-zh.en
tail -n 200 $D/generaltest2023.en-zh.zh > runs/dev/dev200.en-zh.zh
seqpo data partial --pair en-zh --src $D/generaltest2022.en-zh.en --ref $D/generaltest2022.en-zh.zh \
  --out $R/en-zh.pairs.jsonl --limit $N --quiet
seqpo sft --pairs $R/en-zh.pairs.jsonl --pair en-zh --out $R/adapter-en-zh --epochs $EPOCHS --lr 5e-4 --quiet
ev() { name=$1; shift; seqpo eval --pair en-zh --src runs/dev/dev200.en-zh.en --ref runs/dev/dev200.en-zh.zh \
  --limit $M --out $R/eval/$name --quiet "$@"; }
ev sft-llm --policy llm --adapter $R/adapter-en-zh
ev base-llm --policy llm --adapter none
ev base-wait-3 --policy wait-k --k 3 --adapter none
ev base-wait-7 --policy wait-k --k 7 --adapter none
ev base-offline --policy offline --adapter none
