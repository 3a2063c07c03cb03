#!/usr/bin/env bash
# SeqPO-SiMT (Xu et al., 2025, "SeqPO-SiMT: Sequential Policy Optimization for Simultaneous Machine
# Translation", Findings of ACL 2025, arXiv 2505.20622) end to end, with the paper's settings: warm-up
# SFT data -> LoRA SFT -> multi-step GRPO -> evaluation.
#
#   PAIR=en-zh MODEL=Qwen/Qwen2.5-7B-Instruct GPUS=8 recipes/seqpo_simt.sh        # the paper's direction 1
#   PAIR=zh-en ... recipes/seqpo_simt.sh                                          # direction 2 (beta 0.1)
#   DRY_RUN=1 recipes/seqpo_simt.sh     # print the commands only (tests/test_recipes.py parses them)
#
# Every setting is an environment variable with the paper's value as its default; extra arguments go to
# `seqpo train`. Resumable: every stage resumes from what its --out already holds.
set -euo pipefail
cd "$(dirname "$0")/.."
. recipes/common.bash

PAIR=${PAIR:-en-zh}
SRC_LANG=${PAIR%-*}; TGT_LANG=${PAIR#*-}
# Model: the paper trains 7B LLMs; any Hugging Face causal LM works here
# (local path or hub id already in the HF cache). The bundled Gemma-3-270M is the default of seqpo itself.
MODEL=${MODEL:-bundled}
GPUS=${GPUS:-1}                      # accelerate processes for SFT and RL (one model copy per GPU)
# WMT general test sets 2022-2024, generaltest20YY.PAIR.LANG (docs/data.md: e.g. sacrebleu -t wmt22 -l en-zh --echo src)
DATA=${DATA:-${SEQPO_DATA:-../shared/data}/wmt}
TRAIN_SRC=${TRAIN_SRC:-$DATA/generaltest2022.$PAIR.$SRC_LANG}
TRAIN_REF=${TRAIN_REF:-$DATA/generaltest2022.$PAIR.$TGT_LANG}
TEST_SRC=${TEST_SRC:-$DATA/generaltest2023.$PAIR.$SRC_LANG}  # paper: NEWSTEST2021, REALSI, MuST-C / CoVoST
TEST_REF=${TEST_REF:-$DATA/generaltest2023.$PAIR.$TGT_LANG}
OUT=${OUT:-runs/recipes/seqpo-$PAIR}
# Warm-up SFT data (sec. 3.2): the paper prompts a strong LLM to split ~40k source/reference pairs into
# aligned chunks. TEACHER_URL (an OpenAI-compatible endpoint) does that; without it the offline
# agreement builder uses MODEL itself.
SFT_SENTENCES=${SFT_SENTENCES:-40000}
TEACHER_URL=${TEACHER_URL:-}
TEACHER_NAME=${TEACHER_NAME:-}              # the endpoint's model name, if it needs one
SFT_EPOCHS=${SFT_EPOCHS:-1}
SFT_LR=${SFT_LR:-2e-4}               # LoRA warm-up; the paper does not state its SFT learning rate
# RL: the paper's optimisation and reward settings
GROUP=${GROUP:-5}                    # B = 5 rollouts per source
TEMPERATURE=${TEMPERATURE:-1.0}      # rollout temperature 1.0
STEP_TOKENS=${STEP_TOKENS:-60}       # at most 60 new tokens per step
LAMBDA=${LAMBDA:-2}                  # r = lambda*q - L', lambda = 2
CHUNK=${CHUNK:-1}                    # m: source units per read, also the latency truncation L' = max(m, L)
if [ "$PAIR" = zh-en ]; then BETA=${BETA:-0.1}; else BETA=${BETA:-0.02}; fi  # KL to the SFT reference
LR=${LR:-1e-6}                       # AdamW lr 1e-6: the paper's full fine-tuning; seqpo trains a LoRA
                                     # (its default 2e-5 moves it; 1e-6 keeps the paper's value)
SOURCES=${SOURCES:-32}               # batch 32 sources per update (the paper's grad-accum 8 splits the same
MICRO_BATCH=${MICRO_BATCH:-16}       # update; --micro-batch does that here)
STEPS=${STEPS:-1000}                 # not given in the paper: set to the data and budget
QUALITY=${QUALITY:-chrf}             # paper: COMET; COMET=PATH (a local checkpoint) switches to it
COMET=${COMET:-}
QUALITY_ARGS=(--quality "$QUALITY"); [ -n "$COMET" ] && QUALITY_ARGS=(--quality comet --comet "$COMET")
LIMIT_ARGS=(); [ -n "${TEST_LIMIT:-}" ] && LIMIT_ARGS=(--limit "$TEST_LIMIT")

if [ -n "$TEACHER_URL" ]; then
  BUILDER=(--builder teacher --teacher-url "$TEACHER_URL")
  [ -n "$TEACHER_NAME" ] && BUILDER+=(--teacher-name "$TEACHER_NAME")
else
  BUILDER=(--builder agreement --model "$MODEL")
fi
run $SEQPO data partial --pair "$PAIR" --src "$TRAIN_SRC" --ref "$TRAIN_REF" --out "$OUT/pairs.jsonl" \
  --chunk "$CHUNK" --limit "$SFT_SENTENCES" "${BUILDER[@]}" --quiet
launch sft --pairs "$OUT/pairs.jsonl" --pair "$PAIR" --model "$MODEL" --out "$OUT/sft" \
  --epochs "$SFT_EPOCHS" --lr "$SFT_LR" --bf16 auto --quiet
launch train --pair "$PAIR" --model "$MODEL" --adapter "$OUT/sft" --src "$TRAIN_SRC" --ref "$TRAIN_REF" \
  --out "$OUT/rl" --steps "$STEPS" --sources "$SOURCES" --micro-batch "$MICRO_BATCH" --group "$GROUP" \
  --temperature "$TEMPERATURE" --max-step-tokens "$STEP_TOKENS" --lam "$LAMBDA" --chunk "$CHUNK" \
  --beta "$BETA" --lr "$LR" --bf16 yes "${QUALITY_ARGS[@]}" --quiet "$@"
# Evaluation, the paper's comparison: SeqPO, its SFT start, wait-k and offline baselines
for name in seqpo:"--policy llm --adapter $OUT/rl" sft:"--policy llm --adapter $OUT/sft" \
            wait-5:"--policy wait-k --k 5 --adapter none" offline:"--policy offline --adapter none"; do
  # shellcheck disable=SC2086  # the policy flags are words on purpose
  run $SEQPO eval --pair "$PAIR" --model "$MODEL" --chunk "$CHUNK" --src "$TEST_SRC" --ref "$TEST_REF" \
    --decoding cached ${name#*:} "${LIMIT_ARGS[@]}" --out "$OUT/eval/${name%%:*}" --quiet
done
