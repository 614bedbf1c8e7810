#!/usr/bin/env bash
# Runs the full (paper-sized) mode of the memory-task examples on one GPU
# with the JAX backend, side by side: each model is small, so one process
# leaves an H100 mostly idle. Writes each example's JSON (and PNG, where
# matplotlib is installed) under $OUT (default paper_output/) and each
# console log to $OUT/<name>.log.
#
# Each model trains until it reaches its target accuracy or its own time
# budget (the examples' FULL settings: 240-320 s for an RMT, 45 s for a
# baseline), about 9 minutes in all; a process still running at DEADLINE
# seconds (570) is stopped. Extra arguments go to every example. Where
# NVIDIA's MPS daemon can start, the processes share the GPU through it
# (without it they take turns: five side by side took 38-46 ms a step
# each on an H100; four, once this script tried to start it, 10-19 ms).
#
# On a machine without keras (the project's GPU machine), first run
# ../shared/gpu/wheels.sh in the repository root to fill .whl/; this script
# installs those wheels into /tmp/site. Draw the plots afterwards with
# `python examples/example_results.py $OUT`.
set -uo pipefail
cd "$(dirname "$0")/.."
if ! python3 -c "import keras, keras_hub" 2>/dev/null; then
  python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl
  export PYTHONPATH="/tmp/site${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" KERAS_BACKEND=jax
export XLA_PYTHON_CLIENT_PREALLOCATE=false PYTHONUNBUFFERED=1
OUT=${OUT:-paper_output}
DEADLINE=${DEADLINE:-570}
mkdir -p "$OUT"
export CUDA_MPS_PIPE_DIRECTORY=/tmp/mps-pipe CUDA_MPS_LOG_DIRECTORY=/tmp/mps-log
mkdir -p /tmp/mps-pipe /tmp/mps-log
if nvidia-cuda-mps-control -d 2>/dev/null; then
  trap 'echo quit | nvidia-cuda-mps-control' EXIT
  echo "MPS daemon started"
fi
python3 -c "import jax, keras; print(jax.devices(), keras.__version__)"
launch() {
  local name=$1; shift
  timeout "$DEADLINE" python3 "$@" --output-dir "$OUT" --verbose 2 \
    > "$OUT/$name.log" 2>&1 &
}
launch copy examples/copy_reverse.py --task copy --segments 6 "$@"
launch reverse examples/copy_reverse.py --task reverse --segments 4 "$@"
launch associative_retrieval examples/associative_retrieval.py --segments 5 "$@"
launch facts_in_noise examples/facts_in_noise.py "$@"
wait
for log in "$OUT"/*.log; do
  echo "### $log"; grep -E "accuracy [0-9]|segments: [0-9]|^  [A-Za-z]" "$log"
done
