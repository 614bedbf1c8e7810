#!/usr/bin/env bash
# Cost of a segment with associative memory (ARMT, keys of 64) against the
# RMT's memory tokens on GPT-2-small (benchmarks/README.md): training and
# inference tokens/s at 8 segments of 512, 10 memory tokens, dropout 0.1.
# Usage (on the GPU machine, wheels installed, PYTHONPATH set):
#   bash benchmarks/gpu_associative.sh OUT_DIR
set -u
out=${1:-.}
export KERAS_BACKEND=jax CUDA_VISIBLE_DEVICES=0
one() {
  timeout "$1" python benchmarks/run.py --gpu --log "$out/associative.jsonl" \
    --out /dev/null --seconds 1.5 --kinds rmt_infer,rmt_train \
    --infer-segments 8 --train-segments 8 "${@:2}" 2>&1 \
    | grep -v "^I0000\|^W0000\|^WARNING: All log"
}
one 150
one 200 --associative-key-dim 64
