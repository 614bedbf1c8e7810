#!/usr/bin/env bash
# Training with attention dropout through cuDNN's fused attention (JAX's
# private entry point, `run.py --cudnn-attention-dropout`) against Keras'
# unfused attention with dropout, on one GPU, 8 segments, dropout 0.1,
# default options. Usage (GPU machine, wheels installed, PYTHONPATH set):
#   PART=1 bash benchmarks/gpu_attention_dropout_route.sh OUT_DIR  # speed
#   PART=2 bash benchmarks/gpu_attention_dropout_route.sh OUT_DIR  # losses
source benchmarks/gpu_budget.sh "$@"
if [[ ${PART:-1} == 1 ]]; then
  # The fused route's mask is causal only where rows fill every segment:
  # check the mask it replaces, on the device, for two steps.
  CHECK_CAUSAL_MASK=1 one 100 --dropout 0.1 --cudnn-attention-dropout --loss-curve 2
  one 100 --dropout 0.1 --kinds rmt_train --train-segments 8
  one 100 --dropout 0.1 --kinds rmt_train --train-segments 8 --cudnn-attention-dropout
  one 100 --dropout 0.1 --kinds rmt_train --train-segments 8 --cudnn-attention-dropout --no-remat
fi
if [[ ${PART:-1} == 2 ]]; then
  # Loss curves on the same batches: Keras' dropout with two seeds (the
  # spread of its own masks and initialisations) and the fused route.
  one 150 --dropout 0.1 --loss-curve 120
  one 150 --dropout 0.1 --loss-curve 120 --seed 1
  one 150 --dropout 0.1 --loss-curve 120 --cudnn-attention-dropout
fi
