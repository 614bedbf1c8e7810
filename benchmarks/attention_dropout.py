"""Attention with dropout, fused or not, at GPT-2-small's segment shapes.

Run on a GPU with JAX, XLA's command buffers off (with them, XLA 0.11's
cuDNN dropout fails a check while initialising the buffer):
`XLA_FLAGS="--xla_gpu_enable_command_buffer=" python
benchmarks/attention_dropout.py`. It times the
forward and backward pass of one causal attention (batch 8, 522 positions,
12 heads of 64, bfloat16) three ways: unfused with attention-probability
dropout (what Keras' `MultiHeadAttention` does while training), cuDNN's
fused attention with dropout (JAX's private cuDNN entry point), and fused
without dropout. It also checks whether the fused dropout draws a new mask
at each call of a compiled function. One RMT training step of the
benchmarks' model runs 96 of these (12 layers, 8 segments).
"""

import json
import time

import jax
import jax.numpy as jnp
from jax._src.cudnn import fused_attention_stablehlo as cudnn

B, T, N, H, RATE = 8, 522, 12, 64, 0.1
CAUSAL = jnp.tril(jnp.ones((T, T), bool))


def unfused(q, k, v, key):
    scores = jnp.einsum("btnh,bsnh->bnts", q, k) / jnp.sqrt(H)
    scores = jnp.where(CAUSAL, scores.astype("float32"), -1e9)
    probs = jax.nn.softmax(scores, axis=-1)
    keep = jax.random.bernoulli(key, 1 - RATE, probs.shape)
    probs = jnp.where(keep, probs / (1 - RATE), 0).astype(q.dtype)
    return jnp.einsum("bnts,bsnh->btnh", probs, v)


def fused(q, k, v, key, rate):
    del key
    return cudnn.dot_product_attention(
        q,
        k,
        v,
        scale=1 / H**0.5,
        mask_type=cudnn.MaskType.CAUSAL,
        dropout_rate=rate,
    )


def step(attention):
    def loss(q, k, v, key):
        return attention(q, k, v, key).astype("float32").sum()

    return jax.jit(jax.value_and_grad(loss, argnums=(0, 1, 2)))


def median_ms(function, *args, repeats=50):
    jax.block_until_ready(function(*args))
    times = []
    for _ in range(repeats):
        begin = time.perf_counter()
        jax.block_until_ready(function(*args))
        times.append(time.perf_counter() - begin)
    return 1000 * sorted(times)[len(times) // 2]


def main():
    keys = jax.random.split(jax.random.key(0), 4)
    q, k, v = (
        jax.random.normal(key, (B, T, N, H), "bfloat16") for key in keys[:3]
    )
    rows = {}
    variants = {
        "unfused, dropout 0.1": unfused,
        "cuDNN fused, dropout 0.1": lambda *a: fused(*a, RATE),
        "cuDNN fused, dropout 0": lambda *a: fused(*a, 0.0),
    }
    for name, attention in variants.items():
        ms = median_ms(step(attention), q, k, v, keys[3])
        rows[name] = {"fwd_bwd_ms": ms, "per_training_step_ms": 96 * ms}
    forward = jax.jit(lambda q, k, v: fused(q, k, v, None, RATE))
    first, second = forward(q, k, v), forward(q, k, v)
    rows["cuDNN dropout mask changes between calls"] = bool(
        jnp.any(first != second)
    )
    print(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
