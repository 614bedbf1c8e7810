#!/usr/bin/env bash
# keras-rmt against the reference RMT on one GPU (benchmarks/README.md),
# in one device call.
# Usage (on the GPU machine, wheels installed, PYTHONPATH set, the reference
# file in benchmarks/reference_rmt/):
#   [PART=2] bash benchmarks/gpu_against_reference.sh OUT_DIR
# Each point gets a time limit; optional points run only while the call has
# time left.
source benchmarks/gpu_budget.sh "$@"
if [[ ${PART:-1} == 1 ]]; then
# Inference with dropout 0.1 in the config (every preset's), default options.
one 60 --kinds rmt_infer --infer-segments 8,32 --dropout 0.1
# The reference, same card, same run.
timeout 90 python benchmarks/reference.py --segments 8 --dropout 0.1 \
  --kinds reference_train --log "$log"
timeout 60 python benchmarks/reference.py --segments 8,32 --dropout 0.1 \
  --kinds reference_infer --log "$log"
timeout 60 python benchmarks/reference.py --segments 8 --dropout 0 \
  --kinds reference_train --log "$log"
# Training, default options (on JAX: a scan recomputing each segment).
one 100 --kinds rmt_train --train-segments 8 --dropout 0.1
one 80 --kinds rmt_train --train-segments 8 --dropout 0
# The scan storing every segment's activations (remat=False), for contrast.
one 80 --kinds rmt_train --train-segments 8 --dropout 0.1 --no-remat
one 80 --kinds rmt_train --train-segments 8 --dropout 0 --no-remat
fi
if [[ ${PART:-1} == 2 ]]; then
  # Second call: where training with dropout 0.1 loses its time, and
  # inference before attention read its dropout rate as 0.
  one 60 --kinds rmt_infer --infer-segments 8,32 --dropout 0.1 --unfused-inference
  one 60 --kinds rmt_infer --infer-segments 8,32 --dropout 0
  one 100 --kinds rmt_train --train-segments 8 --dropout 0.1 --no-attention-dropout
  one 100 --kinds rmt_train --train-segments 8 --dropout 0 --segment-loop scan --scan-unroll 4
  one 150 --kinds rmt_train --train-segments 1,32 --dropout 0.1 --remat
fi
echo "done at ${SECONDS}s"
