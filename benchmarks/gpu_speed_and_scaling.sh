#!/usr/bin/env bash
# The GPU measurements of benchmarks/README.md, in the order they were run.
# Usage (on the GPU machine, wheels installed, PYTHONPATH set): 
#   bash benchmarks/gpu_speed_and_scaling.sh OUT_DIR PART
set -u
out=${1:-.}; part=${2:-all}
export KERAS_BACKEND=jax
run() { CUDA_VISIBLE_DEVICES=0 python benchmarks/run.py --gpu --log "$out/rows.jsonl" "$@"; }
if [[ $part == infer || $part == all ]]; then
  run --kinds rmt_infer,backbone_infer,full_infer --seconds 1 --out "$out/infer.json"
  run --kinds rmt_infer --dropout 0 --infer-segments 1,8,64 --seconds 1 --out "$out/infer_d0.json"
  run --kinds rmt_infer --dropout 0 --flash --infer-segments 1,8,64 --seconds 1 --out "$out/infer_flash.json"
fi
if [[ $part == train || $part == all ]]; then
  run --kinds rmt_train,backbone_train --train-segments 1,2,4,8,16 --out "$out/train.json"
fi
if [[ $part == call2 ]]; then
  # Issue 8: DataParallel, same per-device batch (8), 8 segments, dropout 0.
  CUDA_VISIBLE_DEVICES=0 timeout 80 python benchmarks/run.py --gpu --log "$out/rows.jsonl" \
    --loss-curve 6 --dropout 0 --out "$out/dp1.json"
  CUDA_VISIBLE_DEVICES=0,1 timeout 100 python benchmarks/run.py --gpu --log "$out/rows.jsonl" \
    --loss-curve 6 --dropout 0 --data-parallel 2 --out "$out/dp2.json"
  # The single-GPU curve on the same global batch (16), remat to fit.
  CUDA_VISIBLE_DEVICES=0 timeout 90 python benchmarks/run.py --gpu --log "$out/rows.jsonl" \
    --loss-curve 6 --dropout 0 --batch-size 16 --remat --out "$out/dp1_b16.json"
  # Issue 6: what each change buys, 8 segments of training.
  for variant in "" "--remat" "--no-lm-head" "--flash"; do
    timeout 70 bash -c "python benchmarks/run.py --gpu --log $out/rows.jsonl --kinds rmt_train --train-segments 8 --dropout 0 --seconds 1.5 $variant --out /dev/null"
  done
  timeout 70 python benchmarks/run.py --gpu --log "$out/rows.jsonl" --kinds backbone_train \
    --train-segments 8 --dropout 0 --seconds 1.5 --out /dev/null
  timeout 60 python benchmarks/run.py --gpu --log "$out/rows.jsonl" --kinds full_train \
    --full-segments 8 --dropout 0 --seconds 1.5 --out /dev/null
fi
if [[ $part == loops ]]; then
  # Issue 6, targets 4 and 5 (results/h100_loops.jsonl): scan against
  # unrolled training, and the bare backbone one segment at a time.
  one() { timeout 120 python benchmarks/run.py --gpu --log "$out/rows.jsonl" \
    --dropout 0 --seconds 1.5 --out /dev/null "$@"; }
  one --kinds rmt_train --train-segments 8 --segment-loop unrolled
  one --kinds rmt_train --train-segments 8 --segment-loop unrolled --flash
  one --kinds rmt_train --train-segments 8
  one --kinds rmt_train --train-segments 8 --remat
  one --kinds backbone_train --train-segments 8
  one --kinds backbone_train --train-segments 8 --flash
  one --kinds segment_train
  one --kinds segment_infer,rmt_infer --infer-segments 8,64
  one --kinds backbone_infer --infer-segments 8,64
fi
