#!/usr/bin/env bash
# The README's decoding-mode tables, on the bundled model and this machine (run it on a quiet
# machine: every table compares rows timed in one run; --repeats takes medians over rounds).
set -euo pipefail
# WMT general test sets 2022-2024, generaltest20YY.PAIR.LANG (docs/data.md: e.g. sacrebleu -t wmt22 -l en-zh --echo src)
D=${SEQPO_DATA:-../shared/data}/wmt
S=$D/generaltest2022.en-de.en
echo "## sentences, 4 together, fp32 (+ rollouts)"
seqpo bench --pair en-de --src $S --limit 4 --repeats 3 --group 5
echo "## sentences, one at a time, fp32"
seqpo bench --pair en-de --src $S --limit 4 --repeats 3 --group 0 --batch-size 1
echo "## sentences, 4 together, bf16 weights"
seqpo bench --pair en-de --src $S --limit 4 --repeats 3 --group 0 --dtype bfloat16
echo "## paragraphs (generaltest2023), 2 together, chunk 2, fp32"
seqpo bench --pair en-de --src $D/generaltest2023.en-de.en --limit 2 --chunk 2 --group 0
