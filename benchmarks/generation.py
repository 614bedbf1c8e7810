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
import json
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

# keras-hub's Gemma 3 returns its `images` input with the outputs, and cannot
# join batches of None: a text-only run gives it an empty stack of images.
HUB_EXTRA_INPUTS = {
    "gemma3": lambda batch: {"images": np.zeros((batch, 0, 16, 16, 3))},
}


def _generate_once(causal_lm, prompt):
    """Wall and process CPU seconds of one greedy generation."""
    wall, cpu = time.perf_counter(), time.process_time()
    causal_lm.generate(prompt, stop_token_ids=None)
    return time.perf_counter() - wall, time.process_time() - cpu


def _time_both(rmt, reference, prompts, warmups, repeats):
    """Per-call (wall, cpu) seconds of both models, runs alternated.

    Both are compiled and warmed first; then RMT and keras-hub take turns,
    so a burst of load from other jobs hits both alike.
    """
    for causal_lm in (rmt, reference):
        causal_lm.compile(sampler="greedy")
    pairs = ((rmt, prompts[0]), (reference, prompts[1]))
    compile_seconds = [_generate_once(*pair)[0] for pair in pairs]
    for _ in range(warmups):
        for pair in pairs:
            _generate_once(*pair)
    times = {"rmt": [], "keras_hub": []}
    for _ in range(repeats):
        times["rmt"].append(_generate_once(*pairs[0]))
        times["keras_hub"].append(_generate_once(*pairs[1]))
    return compile_seconds, times


def _prompt(args):
    length = args.prompt + args.new_tokens
    rng = np.random.default_rng(0)
    token_ids = rng.integers(1, args.vocabulary, (args.batch, length))
    padding_mask = np.zeros((args.batch, length), "int32")
    padding_mask[:, : args.prompt] = 1
    return {
        "token_ids": token_ids.astype("int32") * padding_mask,
        "padding_mask": padding_mask,
    }


def run(family, args):
    """One row: both models' speeds on one backbone, or why there is none."""
    row = {"family": family, "backend": keras.backend.backend()}
    keras.utils.set_random_seed(0)
    try:
        backbone = FAMILIES[family](args)
    except AttributeError as error:
        row["missing"] = f"not in keras-hub {keras_hub.__version__}: {error}"
        return row
    task = find_cached_causal_lm(backbone)
    if task is None:
        row["missing"] = f"keras-hub has no cached CausalLM for {family}"
        return row
    rmt = keras_rmt.models.RMTCausalLM(
        keras_rmt.models.RMTBackbone(
            backbone,
            num_memory_tokens=args.memory_tokens,
            segment_length=args.segment_length,
        )
    )
    row["kv_cache"] = rmt._segment_cache() is not None
    reference = task(backbone=backbone, preprocessor=None)
    prompt = _prompt(args)
    extra = HUB_EXTRA_INPUTS.get(family, lambda batch: {})(args.batch)
    compile_seconds, times = _time_both(
        rmt,
        reference,
        (prompt, {**prompt, **extra}),
        args.warmups,
        args.repeats,
    )
    new_tokens = args.batch * args.new_tokens
    for name, first in zip(("rmt", "keras_hub"), compile_seconds):
        wall = float(np.median([t[0] for t in times[name]]))
        cpu = float(np.median([t[1] for t in times[name]]))
        row[f"{name}_first_s"] = round(first, 2)
        row[f"{name}_ms"] = round(1000 * wall, 2)
        row[f"{name}_cpu_ms"] = round(1000 * cpu, 2)
        row[f"{name}_tok_s"] = round(new_tokens / wall, 1)
        row[f"{name}_all_ms"] = [round(1000 * t[0], 2) for t in times[name]]
    row["ratio"] = round(row["rmt_tok_s"] / row["keras_hub_tok_s"], 3)
    row["cpu_ratio"] = round(row["keras_hub_cpu_ms"] / row["rmt_cpu_ms"], 3)
    return row


def _table_row(row):
    if "missing" in row:
        return f"| {row['family']} | {row['missing']} | | | | | |"
    return (
        f"| {row['family']} | {'yes' if row['kv_cache'] else 'no'} "
        f"| {row['keras_hub_tok_s']:,.0f} | {row['rmt_tok_s']:,.0f} "
        f"| {row['ratio']:.2f} | {row['cpu_ratio']:.2f} "
        f"| {row['rmt_first_s']:.1f} / {row['keras_hub_first_s']:.1f} |"
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--families", nargs="*", default=list(FAMILIES))
    parser.add_argument("--segment-length", type=int, default=16)
    parser.add_argument("--memory-tokens", type=int, default=4)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--prompt", type=int, default=24)
    parser.add_argument("--new-tokens", type=int, default=40)
    parser.add_argument("--warmups", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--vocabulary", type=int, default=1000)
    parser.add_argument(
        "--positions", type=int, default=128, help="learned position tables"
    )
    parser.add_argument("--mixed-precision", action="store_true")
    parser.add_argument(
        "--jsonl", help="also append each row, raw times included, here"
    )
    args = parser.parse_args()
    if args.mixed_precision:
        keras.mixed_precision.set_global_policy("mixed_bfloat16")
    print(
        f"backend {keras.backend.backend()}, {args.layers} layers, width "
        f"{args.width}, vocabulary {args.vocabulary}, segment "
        f"{args.segment_length}, {args.memory_tokens} memory tokens, batch "
        f"{args.batch}, prompt {args.prompt}, {args.new_tokens} new tokens, "
        f"greedy; {args.warmups} warm-up calls each, then median of "
        f"{args.repeats} alternated calls; load average "
        f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores\n"
    )
    print(
        "| family | KV cache | keras-hub tok/s | RMT tok/s | ratio "
        "| CPU-time ratio | first call s (RMT / keras-hub) |"
    )
    print("|---|---|---:|---:|---:|---:|---:|")
    for family in args.families:
        try:
            row = run(family, args)
        except Exception as error:  # One family's failure ends no table.
            row = {"family": family, "missing": f"error: {error!r}"[:200]}
        row["load_average"] = round(os.getloadavg()[0], 1)
        print(_table_row(row), flush=True)
        if args.jsonl:
            with open(args.jsonl, "a") as file:
                file.write(json.dumps({**row, **_settings(args)}) + "\n")


def _settings(args):
    names = ("segment_length", "memory_tokens", "batch", "prompt")
    names += ("new_tokens", "layers", "width", "heads", "vocabulary")
    return {name: getattr(args, name) for name in names}


if __name__ == "__main__":
    main()
