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


def _sizes(heads_key="num_heads", width=64, **extra):
    return {
        "vocabulary_size": 1000,
        "num_layers": 2,
        heads_key: 4,
        "hidden_dim": width,
        "intermediate_dim": 2 * width,
        **extra,
    }


def _grouped(**extra):
    return _sizes("num_query_heads", num_key_value_heads=2, **extra)


FAMILIES = {
    "gpt2": lambda: keras_hub.models.GPT2Backbone(
        **_sizes(), max_sequence_length=128
    ),
    "opt": lambda: keras_hub.models.OPTBackbone(
        **_sizes(), max_sequence_length=128
    ),
    "llama": lambda: keras_hub.models.LlamaBackbone(**_grouped()),
    "llama3": lambda: keras_hub.models.Llama3Backbone(**_grouped()),
    "mistral": lambda: keras_hub.models.MistralBackbone(**_grouped()),
    "gemma": lambda: keras_hub.models.GemmaBackbone(**_grouped(head_dim=16)),
    "gemma3": lambda: keras_hub.models.Gemma3Backbone(
        image_size=16, vision_encoder=None, **_grouped(head_dim=16)
    ),
    "qwen": lambda: keras_hub.models.QwenBackbone(**_grouped()),
    "qwen3": lambda: keras_hub.models.Qwen3Backbone(**_grouped(head_dim=16)),
    "phi3": lambda: keras_hub.models.Phi3Backbone(**_grouped()),
    "falcon": lambda: keras_hub.models.FalconBackbone(
        **_sizes("num_attention_heads")
    ),
    "bloom": lambda: keras_hub.models.BloomBackbone(**_sizes()),
    "gpt_neox": lambda: keras_hub.models.GPTNeoXBackbone(
        **_sizes(), max_sequence_length=128
    ),
    "mixtral": lambda: keras_hub.models.MixtralBackbone(
        **_grouped(num_experts=2)
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
    backbone = FAMILIES[family]()
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
    token_ids = rng.integers(1, 1000, (args.batch, length)).astype("int32")
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
    args = parser.parse_args()
    print(
        f"backend {keras.backend.backend()}, 2 layers, width 64, segment "
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
