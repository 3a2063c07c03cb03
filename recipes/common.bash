# Sourced by the recipes and benchmarks/gpu_check.sh: `run CMD...` runs a command, or with DRY_RUN=1
# prints it (shell-quoted, one line) so its flags can be checked without a GPU (tests/test_recipes.py).
run() {
  if [ "${DRY_RUN:-0}" = 1 ]; then printf '%q ' "$@"; echo; else "$@"; fi
}
# seqpo itself: the package's console script, or `accelerate launch -m seqpo.cli` over GPUS processes
SEQPO=${SEQPO:-seqpo}
launch() {
  if [ "${GPUS:-1}" -gt 1 ]; then run accelerate launch --num_processes "$GPUS" -m seqpo.cli "$@"; else run $SEQPO "$@"; fi
}
