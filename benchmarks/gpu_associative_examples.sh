#!/usr/bin/env bash
# Full (GPU) mode of the two ARMT examples, JAX backend, mixed_bfloat16:
#   capacity       examples/associative_capacity.py: 8, 16, 32, 64 pairs,
#                  RMT and ARMT, 30 s of training a model (about 7 minutes)
#   extrapolation  examples/associative_extrapolation.py: trained on 4
#                  segments, read at 4, 16, 64, 256; ARMT, RMT, no memory,
#                  100 s of training a model (about 7 minutes)
# Usage, in the repository root on the GPU machine:
#   bash benchmarks/gpu_associative_examples.sh OUT capacity
#   bash benchmarks/gpu_associative_examples.sh OUT extrapolation
# One experiment a call fits the ~8 minute call; `both` runs the two side
# by side on one GPU (each then gets fewer steps in its time budget).
# Writes OUT/<example>.json and OUT/<example>.log; the GPU machine has no
# matplotlib: draw the plots afterwards where it is installed, with
#   python examples/associative_capacity.py --plot OUT/associative_capacity.json
#   python examples/associative_extrapolation.py \
#     --plot OUT/associative_extrapolation.json
# Without keras installed, first run ../shared/gpu/wheels.sh in the
# repository root (fills .whl/); the wheels are installed into /tmp/site.
# Extra arguments go to every example (e.g. --set seconds=20 --seed 1).
# The minutes above are estimates (compile times on the GPU not measured);
# each JSON is written after every model, so a run cut at DEADLINE keeps
# its rows: the missing ones can follow in another call, e.g.
#   bash benchmarks/gpu_associative_examples.sh OUT2 capacity --set pairs=64
set -uo pipefail
cd "$(dirname "$0")/.."
out=${1:-paper_output}
which=${2:-both}
shift $(( $# < 2 ? $# : 2 ))
if ! python3 -c "import keras, keras_hub" 2>/dev/null; then
  python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl
  export PYTHONPATH="/tmp/site${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" KERAS_BACKEND=jax
export XLA_PYTHON_CLIENT_PREALLOCATE=false PYTHONUNBUFFERED=1
DEADLINE=${DEADLINE:-570}
mkdir -p "$out"
python3 -c "import jax, keras; print(jax.devices(), keras.__version__)"
run() {
  local name=$1; shift
  echo "$name: started $(date -u +%T)"
  timeout "$DEADLINE" python3 "examples/$name.py" --output-dir "$out" \
    --dtype-policy mixed_bfloat16 "$@" > "$out/$name.log" 2>&1
  echo "$name: exit $? at $(date -u +%T)"
}
case $which in
  capacity) run associative_capacity "$@" ;;
  extrapolation) run associative_extrapolation "$@" ;;
  both)
    run associative_capacity "$@" &
    run associative_extrapolation "$@" &
    wait ;;
  *) echo "second argument: capacity, extrapolation or both"; exit 2 ;;
esac
for log in "$out"/associative_*.log; do
  echo "### $log"; grep -E "^\||pairs:|^(ARMT|RMT|no memory)|memory tokens|trained on|Error" "$log"
done
