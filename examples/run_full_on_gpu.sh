#!/usr/bin/env bash
# Runs the full (paper-sized) mode of every memory-task example on one GPU
# with the JAX backend, writing each example's JSON and PNG under $OUT
# (default paper_output/) and the console log to $OUT/run.log.
#
# Sized for about 8 minutes on one H100: each model trains until it reaches
# its target accuracy or its own time budget, the memory-less baselines get
# a short budget (they cannot learn the tasks), and the whole run stops at
# DEADLINE seconds (570), cutting short or skipping the stages left. Set
# FULL_EXTRA=1 (and a larger DEADLINE) to add the long copy (120/240) and
# language modelling, which need several more minutes.
#
# On a machine without keras (the project's GPU machine), first run
# ../shared/gpu/wheels.sh in the repository root to fill .whl/; this script
# installs those wheels into /tmp/site.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! python3 -c "import keras, keras_hub" 2>/dev/null; then
  python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl
  export PYTHONPATH="/tmp/site${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" KERAS_BACKEND=jax
export XLA_PYTHON_CLIENT_PREALLOCATE=false
OUT=${OUT:-paper_output}
mkdir -p "$OUT"
DEADLINE=${DEADLINE:-570}  # seconds: stages past it are cut short or skipped
start=$(date +%s)
run() {
  local left=$(( DEADLINE - ($(date +%s) - start) ))
  if [ "$left" -lt 30 ]; then echo "### skipped (deadline): $*"; return 0; fi
  echo "### $* (at most ${left} s)"
  timeout "$left" python3 "$@" --output-dir "$OUT" --verbose 2 \
    || echo "### stopped or failed (status $?): $*"
}
{
  python3 -c "import jax, keras; print(jax.devices(), keras.__version__)"
  run examples/facts_in_noise.py
  run examples/copy_reverse.py --task copy --segments 6
  run examples/copy_reverse.py --task reverse --segments 4
  run examples/associative_retrieval.py --segments 5
  if [ "${FULL_EXTRA:-0}" = 1 ]; then
    run examples/copy_reverse.py --task long-copy
    run examples/language_modelling.py
  fi
  echo "### total $(( $(date +%s) - start )) s"
} 2>&1 | tee "$OUT/run.log"
