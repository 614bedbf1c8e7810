"""Associative retrieval through memory: the paper's 10/1 task.

A row lists key-value pairs, then a query marker and one of the keys; the
model must answer the key's value at the last position (`k1 v1 ... k4 v4 ?
k3` -> `v3`: 10 tokens in, 1 out). The row is cut into N segments; the last
holds only the query, so the pairs must come from memory. For each N we
train a `keras_rmt.models.RMTCausalLM` ("RMT") and the same model without
carried memory ("no memory", `carry_memory=False`), and once the same
backbone reading the whole row as one segment ("full attention"); accuracy
is `evaluate()`'s weighted accuracy on the answer; chance is 1 / values.

The recipe: the backbone's weights redrawn at the model's scale (kernels
`hidden_dim ** -0.5`, embeddings 1, where keras-hub's GPT-2 draws 0.02 for
768-wide models), memory read through the backbone's own causal mask
(`memory_attention="backbone"`), and the whole task from the first step (a
curriculum's smaller rows can be answered without a lookup). In full mode,
as many memory tokens as keys and batches of 256. Fresh rows every step
(`keras_rmt.datasets.SegmentedDataset`).

Quick mode counts steps, not seconds (the RMT and full attention up to 24
epochs of 50 steps, stopping once validation accuracy reaches 0.99; the
memory-less model 10 epochs), so its figures do not depend on the machine's
load; full mode trains each model for a time budget on a GPU.

Usage: `python examples/associative_retrieval.py --quick` on a CPU (a few
minutes a model), or without `--quick` on a GPU for the paper's 10/1 task
over 5 segments (`--segments 5`; `examples/run_full_on_gpu.sh` runs all the
full modes). Prints test accuracy by number of segments and writes
`associative_retrieval.json` and `.png` to `--output-dir`; `--help` lists
the options. The results are in docs/results.md.
"""

import math

import example_common
from tasks.associative_retrieval import associative_retrieval

import keras_rmt

QUICK = {
    "num_pairs": 2, "num_keys": 8, "num_values": 8, "segments": [3],
    "num_memory_tokens": 4, "hidden_dim": 64, "num_layers": 3,
    "num_heads": 4, "batch_size": 32, "epochs": 24, "baseline_epochs": 10,
    "steps_per_epoch": 50, "test_samples": 512, "validation_samples": 256,
    "learning_rate": 2e-3, "time_budget": None, "baseline_time_budget": None,
    "target": 0.99,
}  # fmt: skip
FULL = {
    "num_pairs": 4, "num_keys": 16, "num_values": 10, "segments": [5],
    "num_memory_tokens": 16, "hidden_dim": 128, "num_layers": 4,
    "num_heads": 4, "batch_size": 256, "epochs": 1000, "steps_per_epoch": 100,
    "test_samples": 1024, "validation_samples": 1024,
    "learning_rate": 1e-3, "time_budget": 300, "baseline_time_budget": 45,
    "full_attention_time_budget": 45, "target": 0.99,
    "segment_loop": "unrolled",
}  # fmt: skip


def build_causal_lm(config, segment_length, carry_memory=True, seed=0):
    """A compiled `RMTCausalLM` over a small GPT-2, weights redrawn."""
    num_memory_tokens = config["num_memory_tokens"]
    gpt2 = example_common.small_gpt2(
        config,
        vocabulary_size=2 + config["num_keys"] + config["num_values"],
        max_sequence_length=segment_length + 2 * num_memory_tokens,
        seed=seed,
    )
    example_common.redraw_weights(gpt2, seed)
    backbone = keras_rmt.models.RMTBackbone(
        gpt2,
        num_memory_tokens=num_memory_tokens,
        segment_length=segment_length,
        memory_attention="backbone",
        carry_memory=carry_memory,
        segment_loop=config.get("segment_loop", "auto"),
    )
    causal_lm = keras_rmt.models.RMTCausalLM(backbone)
    return example_common.compile_causal_lm(causal_lm, config["learning_rate"])


def task_rows(config, num_samples, seed):
    """`(inputs, labels, sample_weight)`, the weight on the answer alone."""
    return associative_retrieval(
        num_samples,
        num_pairs=config["num_pairs"],
        num_keys=config["num_keys"],
        num_values=config["num_values"],
        seed=seed,
    )


def train_and_test(config, kind, num_segments, args):
    """Trains one model; returns its run (test accuracy, history...)."""
    test = task_rows(config, config["test_samples"], args.seed + 1)
    validation = task_rows(config, config["validation_samples"], args.seed + 2)
    segment_length = math.ceil(test[0]["token_ids"].shape[1] / num_segments)
    causal_lm = build_causal_lm(
        config, segment_length, carry_memory=kind == "RMT", seed=args.seed
    )
    data = keras_rmt.datasets.SegmentedDataset(
        lambda size, _, rng: task_rows(config, size, int(rng.integers(2**31))),
        batch_size=config["batch_size"],
        num_batches=config["steps_per_epoch"],
        segment_length=segment_length,
        seed=args.seed,
    )
    history, run = example_common.fit(
        causal_lm,
        data,
        example_common.time_budget(config, kind),
        target=config["target"],
        validation_data=validation,
        epochs=example_common.epochs(config, kind),
        verbose=args.verbose,
    )
    accuracy = example_common.weighted_accuracy(causal_lm, test)
    print(f"   {kind}, {num_segments} segments: {accuracy:.3f}")
    return {
        "segments": num_segments,
        "segment_length": segment_length,
        "test_accuracy": accuracy,
        "steps": len(history["loss"]) * config["steps_per_epoch"],
        **run,
    }


def main(argv=None):
    parser = example_common.parser(__doc__.splitlines()[0])
    parser.add_argument("--segments", type=int, nargs="+")
    args = parser.parse_args(argv)
    config = example_common.settings(args, QUICK, FULL)
    runs = []
    for count in args.segments or config["segments"]:
        runs += [("RMT", count), ("no memory", count)]
    runs.append(("full attention", 1))
    results = {}
    for kind, count in runs:
        print(f"== associative retrieval: {kind}, {count} segment(s) ==")
        run = train_and_test(config, kind, count, args)
        results.setdefault(kind, []).append(run)
    accuracy, curves = example_common.by_segments(results)
    pairs = config["num_pairs"]
    summary = {
        "name": "associative_retrieval",
        "title": f"associative retrieval, {pairs} pairs "
        f"({2 * pairs + 2}/1 tokens)",
        "input_length": 2 * pairs + 2,
        "config": config,
        "test_accuracy": accuracy,
        "chance": 1 / config["num_values"],
        "runs": results,
        "xlabel": "number of segments",
        "ylabel": "answer accuracy",
        "curves": curves,
    }
    example_common.print_by_count(
        f"{summary['title']}: test accuracy by number of segments", accuracy
    )
    example_common.write(summary, args.output_dir)
    return summary


if __name__ == "__main__":
    main()
