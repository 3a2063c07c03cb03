#!/usr/bin/env bash
# Quality/latency table of the base model: offline, wait-k k=1,3,5,7 and llm on the first N lines
# of generaltest2023. Usage: benchmarks/base_model_table.sh PAIR N [OUTROOT]. Resumable.
set -euo pipefail
pair=$1; n=$2; root=${3:-runs/base}
# WMT general test sets 2022-2024, generaltest20YY.PAIR.LANG (docs/data.md: e.g. sacrebleu -t wmt22 -l en-zh --echo src)
D=${SEQPO_DATA:-../shared/data}/wmt
src=${pair%-*}; tgt=${pair#*-}
run() { name=$1; shift; seqpo eval --pair "$pair" --src "$D/generaltest2023.$pair.$src" \
  --ref "$D/generaltest2023.$pair.$tgt" --limit "$n" --out "$root/$pair/$name" --adapter none --quiet "$@"; }
run offline --policy offline
for k in 1 3 5 7; do run wait-$k --policy wait-k --k $k; done
run llm --policy llm
