#!/usr/bin/env bash
# Generation speed on one GPU: RMTCausalLM.generate over keras-hub's own
# CausalLM.generate on the same backbone (benchmarks/README.md), at
# GPT-2-small size (12 layers, width 768, 12 heads, GPT-2's vocabulary),
# segment 512 with 10 memory tokens, prompt 2,048 tokens, 256 new tokens,
# batch 8, bfloat16 mixed precision, greedy.
# Usage (on the GPU machine, wheels installed, PYTHONPATH set):
#   bash benchmarks/gpu_generation.sh OUT_DIR
set -u
out=${1:-.}
export KERAS_BACKEND=jax CUDA_VISIBLE_DEVICES=0
export XLA_FLAGS=--xla_gpu_enable_triton_gemm=false
timeout 330 python benchmarks/generation.py --families gpt2 llama \
  --layers 12 --width 768 --heads 12 --vocabulary 50257 --positions 2560 \
  --segment-length 512 --memory-tokens 10 --batch 8 --prompt 2048 \
  --new-tokens 256 --repeats 2 --mixed-precision 2>&1 \
  | grep -v "^I0000\|^W0000\|^WARNING: All log" | tee "$out/generation.md"
