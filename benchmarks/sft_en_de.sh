#!/usr/bin/env bash
# Real en-de warm-up run on this machine (sized for a 2-core CPU), same recipe as the shipped en-zh
# adapter: agreement pairs from the FIRST N lines of generaltest2022 en-de, LoRA SFT (3 epochs,
# lr 5e-4, waits capped at 50%), then eval on the first M lines of the dev split: the LAST 200 lines
# of generaltest2022 en-de (never trained or tuned on). generaltest2023 en-de is not used: its lines
# are paragraphs (~80 words), too slow to build or evaluate on this CPU; the generaltest2022 lines are
# sentences (~17 words). Train (customer-service chat) and dev (news) come from different documents.
# SFT llm vs base llm vs base wait-3 / wait-7. Every step resumes if re-run with the same folders.
set -euo pipefail
N=${N:-60}; M=${M:-50}; EPOCHS=${EPOCHS:-3}
export SEQPO_THREADS=${SEQPO_THREADS:-1}
# WMT general test sets 2022-2024, generaltest20YY.PAIR.LANG (docs/data.md: e.g. sacrebleu -t wmt22 -l en-zh --echo src)
D=${SEQPO_DATA:-../shared/data}/wmt
R=runs/sft
mkdir -p $R runs/dev
tail -n 200 $D/generaltest2022.en-de.en > runs/dev/dev200.en-de.en
tail -n 200 $D/generaltest2022.en-de.de > runs/dev/dev200.en-de.de
# the agreement builder always uses the bare model (no shipped adapter)
seqpo data partial --pair en-de --builder agreement --src $D/generaltest2022.en-de.en \
  --ref $D/generaltest2022.en-de.de --out $R/en-de.pairs.jsonl --limit $N --quiet
seqpo sft --pairs $R/en-de.pairs.jsonl --pair en-de --out $R/adapter-en-de --epochs $EPOCHS --lr 5e-4 \
  --max-wait-share 0.5 --quiet
ev() { name=$1; shift; seqpo eval --pair en-de --src runs/dev/dev200.en-de.en --ref runs/dev/dev200.en-de.de \
  --limit $M --out $R/eval-en-de/$name --quiet "$@"; }
ev sft-llm --policy llm --adapter $R/adapter-en-de   # --few-shot auto = zero-shot with an adapter
ev base-llm --policy llm --adapter none              # few-shot bare model
ev base-wait-3 --policy wait-k --k 3 --adapter none
ev base-wait-7 --policy wait-k --k 7 --adapter none
python benchmarks/collect_scores.py $R/eval-en-de --limit $M
