#!/usr/bin/env bash
# GPU smoke check: on a CUDA machine, time eval, a few training steps (plain, and with
# --rollout-backend vllm when vLLM imports), one serve request and `seqpo bench`, and print a Markdown
# table (command, seconds, result), also written to $OUT/gpu_check.md.
#
#   benchmarks/gpu_check.sh                      # the bundled model
#   MODEL=Qwen/Qwen2.5-0.5B-Instruct benchmarks/gpu_check.sh
#   DRY_RUN=1 benchmarks/gpu_check.sh            # print the commands only (tests/test_recipes.py parses them)
set -uo pipefail
cd "$(dirname "$0")/.."
. recipes/common.bash

MODEL=${MODEL:-bundled}
PAIR=${PAIR:-en-zh}
# WMT general test sets 2022-2024, generaltest20YY.PAIR.LANG (docs/data.md: e.g. sacrebleu -t wmt22 -l en-zh --echo src)
DATA=${DATA:-${SEQPO_DATA:-../shared/data}/wmt}
SRC=${SRC:-$DATA/generaltest2022.$PAIR.${PAIR%-*}}
REF=${REF:-$DATA/generaltest2022.$PAIR.${PAIR#*-}}
OUT=${OUT:-runs/gpu_check}
# the training start: the shipped SFT adapter on the bundled model, a fresh LoRA on any other model
if [ "$MODEL" = bundled ]; then TRAIN_ADAPTER=${TRAIN_ADAPTER:-sft}; else TRAIN_ADAPTER=${TRAIN_ADAPTER:-none}; fi
PORT=${PORT:-8765}
PYTHON=${PYTHON:-python}
DEVICE=(--device "${DEVICE:-cuda}" --dtype "${DTYPE:-auto}")

if [ "${DRY_RUN:-0}" != 1 ]; then
  if ! "$PYTHON" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null; then
    echo "gpu_check.sh: no CUDA GPU visible to torch here; run it on a CUDA machine (DRY_RUN=1 prints the commands)" >&2
    exit 2
  fi
  mkdir -p "$OUT"
fi
ROWS=()
# check NAME CMD...: run (or print) a command, record its wall time and whether it succeeded
check() {
  local name=$1; shift
  if [ "${DRY_RUN:-0}" = 1 ]; then run "$@"; return; fi
  local t0 t1 status
  t0=$(date +%s.%N)
  if "$@" > "$OUT/$name.log" 2>&1; then status=ok; else status="failed ($?; see $OUT/$name.log)"; fi
  t1=$(date +%s.%N)
  ROWS+=("| $name | $(awk "BEGIN { printf \"%.1f\", $t1 - $t0 }") | $status |")
}

check eval $SEQPO eval --pair "$PAIR" --model "$MODEL" "${DEVICE[@]}" --src "$SRC" --ref "$REF" --limit 20 \
  --decoding cached --out "$OUT/eval" --quiet
check train $SEQPO train --pair "$PAIR" --model "$MODEL" --adapter "$TRAIN_ADAPTER" "${DEVICE[@]}" --src "$SRC" \
  --ref "$REF" --out "$OUT/train" --steps 3 --sources 4 --group 5 --max-source-units 15 --quiet
if [ "${DRY_RUN:-0}" = 1 ] || "$PYTHON" -c "import vllm" 2>/dev/null; then
  check train-vllm $SEQPO train --pair "$PAIR" --model "$MODEL" --adapter "$TRAIN_ADAPTER" "${DEVICE[@]}" \
    --src "$SRC" --ref "$REF" --out "$OUT/train-vllm" --steps 3 --sources 4 --group 5 --max-source-units 15 --rollout-backend vllm --quiet
else
  ROWS+=("| train-vllm | - | skipped (vllm does not import) |")
fi
serve_once() {  # start the server, wait for /health, translate one sentence over POST /translate, stop it
  $SEQPO serve --model "$MODEL" "${DEVICE[@]}" --pair "$PAIR" --port "$PORT" & local pid=$!
  for _ in $(seq 180); do curl -sf "http://127.0.0.1:$PORT/health" > /dev/null && break; sleep 1; done
  curl -sf -X POST "http://127.0.0.1:$PORT/translate" -H 'content-type: application/json' \
    -d "{\"text\": \"The weather is nice today.\", \"pair\": \"$PAIR\"}"; local rc=$?
  kill "$pid"; wait "$pid" 2>/dev/null
  return $rc
}
if [ "${DRY_RUN:-0}" = 1 ]; then
  run $SEQPO serve --model "$MODEL" "${DEVICE[@]}" --pair "$PAIR" --port "$PORT"
else
  check serve serve_once
fi
check bench $SEQPO bench --pair "$PAIR" --model "$MODEL" "${DEVICE[@]}" --src "$SRC" --limit 8 --group 5

if [ "${DRY_RUN:-0}" != 1 ]; then
  { echo "| command | seconds | result |"; echo "|---|---:|---|"; printf '%s\n' "${ROWS[@]}"; } | tee "$OUT/gpu_check.md"
  [ -f "$OUT/bench.log" ] && { echo; grep '^|' "$OUT/bench.log"; }
fi
