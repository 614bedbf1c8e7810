"""Generation speed: `RMTCausalLM.generate` against keras-hub's own CausalLM.

For each decoder family, builds one small random backbone, wraps it in an
`RMTBackbone`, and times greedy generation of the same prompts to the same
length with `keras_rmt.models.RMTCausalLM` and with the family's keras-hub
`CausalLM` on that very backbone (whose cache spans the whole sequence).
Prints a Markdown table of tokens per second and their ratio.

Run from the repository root, one backend at a time:

    KERAS_BACKEND=jax python benchmarks/generation.py
    KERAS_BACKEND=jax python benchmarks/generation.py --families gpt2 llama
"""

import argparse
import os
import sys
import time

import keras
import keras_hub
import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

import keras_rmt  # noqa: E402
from keras_rmt.models.segment_cache import find_cached_causal_lm  # noqa: E402


def _sizes(size, heads_key="num_heads", **extra):
    return {
        "vocabulary_size": size.vocabulary,
        "num_layers": size.layers,
        heads_key: size.heads,
        "hidden_dim": size.width,
        "intermediate_dim": 4 * size.width if size.width > 64 else 128,
        **extra,
    }


def _grouped(size, **extra):
    kv_heads = max(1, size.heads // 2)
    return _sizes(
        size, "num_query_heads", num_key_value_heads=kv_heads, **extra
    )


def _positions(size):
    return {"max_sequence_length": size.positions}


FAMILIES = {
    "gpt2": lambda s: keras_hub.models.GPT2Backbone(
        **_sizes(s), **_positions(s)
    ),
    "opt": lambda s: keras_hub.models.OPTBackbone(**_sizes(s), **_positions(s)),
    "llama": lambda s: keras_hub.models.LlamaBackbone(**_grouped(s)),
    "llama3": lambda s: keras_hub.models.Llama3Backbone(**_grouped(s)),
    "mistral": lambda s: keras_hub.models.MistralBackbone(**_grouped(s)),
    "gemma": lambda s: keras_hub.models.GemmaBackbone(
        **_grouped(s, head_dim=s.width // s.heads)
    ),
    "gemma3": lambda s: keras_hub.models.Gemma3Backbone(
        image_size=16,
        vision_encoder=None,
        **_grouped(s, head_dim=s.width // s.heads),
    ),
    "qwen": lambda s: keras_hub.models.QwenBackbone(**_grouped(s)),
    "qwen3": lambda s: keras_hub.models.Qwen3Backbone(
        **_grouped(s, head_dim=s.width // s.heads)
    ),
    "phi3": lambda s: keras_hub.models.Phi3Backbone(**_grouped(s)),
    "falcon": lambda s: keras_hub.models.FalconBackbone(
        **_sizes(s, "num_attention_heads")
    ),
    "bloom": lambda s: keras_hub.models.BloomBackbone(**_sizes(s)),
    "gpt_neox": lambda s: keras_hub.models.GPTNeoXBackbone(
        **_sizes(s), **_positions(s)
    ),
    "mixtral": lambda s: keras_hub.models.MixtralBackbone(
        **_grouped(s, num_experts=2)
    ),
}


def _seconds(causal_lm, prompt, repeats):
    """Best of `repeats` greedy generations, after one to compile."""
    causal_lm.compile(sampler="greedy")
    causal_lm.generate(prompt, stop_token_ids=None)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        causal_lm.generate(prompt, stop_token_ids=None)
        times.append(time.perf_counter() - start)
    return min(times)


def run(family, args):
    keras.utils.set_random_seed(0)
    backbone = FAMILIES[family](args)
    rmt = keras_rmt.models.RMTCausalLM(
        keras_rmt.models.RMTBackbone(
            backbone,
            num_memory_tokens=args.memory_tokens,
            segment_length=args.segment_length,
        )
    )
    cached = rmt._segment_cache() is not None
    reference = find_cached_causal_lm(backbone)(backbone, preprocessor=None)
    length = args.prompt + args.new_tokens
    rng = np.random.default_rng(0)
    shape = (args.batch, length)
    token_ids = rng.integers(1, args.vocabulary, shape).astype("int32")
    padding_mask = np.zeros((args.batch, length), "int32")
    padding_mask[:, : args.prompt] = 1
    prompt = {
        "token_ids": token_ids * padding_mask,
        "padding_mask": padding_mask,
    }
    new_tokens = args.batch * args.new_tokens
    rmt_speed = new_tokens / _seconds(rmt, prompt, args.repeats)
    hub_speed = new_tokens / _seconds(reference, prompt, args.repeats)
    return cached, rmt_speed, hub_speed


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--families", nargs="*", default=list(FAMILIES))
    parser.add_argument("--segment-length", type=int, default=16)
    parser.add_argument("--memory-tokens", type=int, default=4)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--prompt", type=int, default=24)
    parser.add_argument("--new-tokens", type=int, default=40)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--vocabulary", type=int, default=1000)
    parser.add_argument(
        "--positions", type=int, default=128, help="learned position tables"
    )
    parser.add_argument("--mixed-precision", action="store_true")
    args = parser.parse_args()
    if args.mixed_precision:
        keras.mixed_precision.set_global_policy("mixed_bfloat16")
    print(
        f"backend {keras.backend.backend()}, {args.layers} layers, width "
        f"{args.width}, vocabulary {args.vocabulary}, segment "
        f"{args.segment_length}, {args.memory_tokens} memory tokens, batch "
        f"{args.batch}, prompt {args.prompt}, {args.new_tokens} new tokens, "
        f"greedy, best of {args.repeats}\n"
    )
    print("| family | KV cache | RMT tok/s | keras-hub tok/s | ratio |")
    print("|---|---|---:|---:|---:|")
    for family in args.families:
        cached, rmt_speed, hub_speed = run(family, args)
        print(
            f"| {family} | {'yes' if cached else 'no'} | {rmt_speed:,.0f} "
            f"| {hub_speed:,.0f} | {rmt_speed / hub_speed:.2f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
