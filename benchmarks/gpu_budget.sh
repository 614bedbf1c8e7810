# Sourced by the device-call scripts, with their OUT_DIR as first argument:
# sets up the call (JAX on one GPU, rows logged to OUT_DIR/rows.jsonl) and
# defines `one LIMIT ARGS...`, which runs
# `benchmarks/run.py --gpu ARGS...` within LIMIT seconds, logging its rows to
# "$log", and skips the point when the call's budget (BUDGET_S, 560 s by
# default: the device tool stops a command at 600 s) would be passed.
set -u
out=${1:-.}
export KERAS_BACKEND=jax CUDA_VISIBLE_DEVICES=0
log="$out/rows.jsonl"

one() {
  local limit=$1; shift
  if (( SECONDS + limit > ${BUDGET_S:-560} )); then
    echo "skipped (no time left): $*"; return
  fi
  timeout "$limit" python benchmarks/run.py --gpu --log "$log" --out /dev/null \
    --seconds 1.5 "$@" 2>&1 | grep -v "^I0000\|^W0000\|^WARNING: All log"
}
