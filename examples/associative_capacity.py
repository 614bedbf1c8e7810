"""Associative retrieval with more pairs than memory tokens: ARMT vs RMT.

The capacity experiment of the ARMT paper (Rodkin et al., 2024) on a small
scale: a row lists key-value pairs, one pair per segment, then a segment
holding a query marker and one of the keys; the model answers that key's
value. The number of pairs grows, the memory does not: both models have the
same few memory tokens on the same small GPT-2.

- "RMT": `keras_rmt.models.RMTBackbone`, whose memory tokens are all that
  passes from segment to segment: every pair must fit in them.
- "ARMT": the same with `associative_key_dim=...`: every layer writes its
  memory tokens into an associative matrix that holds far more pairs than
  there are memory tokens.

Usage: `python examples/associative_capacity.py --quick` on a CPU (300
steps a model), or without `--quick` on a GPU for the full sizes, with
`--dtype-policy mixed_bfloat16` (`benchmarks/gpu_associative_examples.sh`).
Prints a table of accuracy by number of pairs (chance is one in
`num_values`) and writes `associative_capacity.json` (after every model,
so a run cut short keeps its rows) and, where matplotlib is installed,
`.png` to `--output-dir`; `--set KEY=VALUE` changes a setting,
`--plot FILE.json` draws the plot of an earlier run. The results are in
docs/results.md.
"""

import time

import example_common
import keras
from tasks.associative_retrieval import associative_retrieval

import keras_rmt

QUICK = {
    "pairs": [2, 4, 8], "num_values": 8, "num_memory_tokens": 2,
    "key_dim": 16, "hidden_dim": 64, "num_layers": 2, "num_heads": 4,
    "batch_size": 32, "epochs": 1000, "steps_per_epoch": 50, "steps": 300,
    "seconds": None, "learning_rate": 2e-3, "test_samples": 512,
}  # fmt: skip
FULL = {
    "pairs": [8, 16, 32, 64], "num_values": 16, "num_memory_tokens": 4,
    "key_dim": 32, "hidden_dim": 128, "num_layers": 4, "num_heads": 4,
    "batch_size": 128, "epochs": 1000, "steps_per_epoch": 100,
    "steps": None, "seconds": 30, "learning_rate": 1e-3,
    "test_samples": 1024,
}  # fmt: skip
MODELS = ("RMT", "ARMT")
NAME = "associative_capacity"
SEGMENT_LENGTH = 2  # one key-value pair per segment


def generate(config, num_samples, num_pairs, seed):
    # Twice as many keys as pairs, so the keys of a row differ from row to
    # row; the same values at every number of pairs, so chance stays put.
    return associative_retrieval(
        num_samples,
        num_pairs=num_pairs,
        num_keys=2 * num_pairs,
        num_values=config["num_values"],
        seed=seed,
    )


def build(kind, config, num_pairs, seed):
    """An `RMTCausalLM` ("RMT" or "ARMT") on a small GPT-2, compiled."""
    gpt2 = example_common.small_gpt2(
        config,
        vocabulary_size=2 + 2 * num_pairs + config["num_values"],
        max_sequence_length=SEGMENT_LENGTH + 2 * config["num_memory_tokens"],
        seed=seed,
    )
    example_common.redraw_weights(gpt2, seed)
    backbone = keras_rmt.models.RMTBackbone(
        gpt2,
        num_memory_tokens=config["num_memory_tokens"],
        segment_length=SEGMENT_LENGTH,
        associative_key_dim=config["key_dim"] if kind == "ARMT" else None,
    )
    causal_lm = keras_rmt.models.RMTCausalLM(backbone)
    return example_common.compile_causal_lm(causal_lm, config["learning_rate"])


def train(model, config, num_pairs, seed):
    """Fresh rows at every step, for `seconds` of training."""

    def make_batch(size, num_segments, rng):
        return generate(config, size, num_pairs, int(rng.integers(2**31)))

    data = keras_rmt.datasets.SegmentedDataset(
        make_batch,
        batch_size=config["batch_size"],
        num_batches=config["steps_per_epoch"],
        segment_length=SEGMENT_LENGTH,
        num_segments=num_pairs + 1,
        seed=seed,
    )
    stop = example_common.StopAfter(config["steps"], config["seconds"])
    history = model.fit(
        data, epochs=config["epochs"], callbacks=[stop], verbose=0
    )
    return {"steps": stop.steps, "accuracy": history.history["accuracy"][-1]}


def accuracy(model, config, num_pairs, seed):
    """Accuracy at the query of fresh rows."""
    inputs, labels, _ = generate(
        config, config["test_samples"], num_pairs, seed
    )
    logits = model.score(inputs["token_ids"], inputs["padding_mask"])
    predicted = keras.ops.convert_to_numpy(logits[:, -1]).argmax(-1)
    return float((predicted == labels[:, -1]).mean())


def main(argv=None):
    parser = example_common.parser(__doc__.splitlines()[0])
    args = parser.parse_args(argv)
    config = example_common.settings(args, QUICK, FULL)
    start, runs, table = time.time(), {}, {kind: {} for kind in MODELS}
    summary = {
        "name": NAME,
        "mode": config["mode"],
        "config": config,
        "accuracy": table,
        "chance": 1 / config["num_values"],
        "runs": runs,
        "backend": keras.backend.backend(),
        "dtype_policy": keras.config.dtype_policy().name,
        "title": f"Associative retrieval, {config['num_memory_tokens']} "
        "memory tokens",
        "xlabel": "key-value pairs (one a segment)",
        "ylabel": "accuracy",
        "curves": table,
        "log_x": True,
    }
    for num_pairs in config["pairs"]:
        for kind in MODELS:
            model = build(kind, config, num_pairs, args.seed)
            began = time.time()
            run = train(model, config, num_pairs, args.seed)
            run["seconds"] = time.time() - began
            runs[f"{kind} {num_pairs}"] = run
            table[kind][str(num_pairs)] = accuracy(
                model, config, num_pairs, args.seed + 1
            )
            print(f"{kind} {num_pairs} pairs: {run}", flush=True)
            summary["seconds"] = time.time() - start
            example_common.save_json(summary, args.output_dir)
    example_common.write(summary, args.output_dir)
    print(f"\n{config['num_memory_tokens']} memory tokens, chance "
          f"{summary['chance']:.3f}")  # fmt: skip
    example_common.print_markdown("pairs", table)
    return summary


if __name__ == "__main__":
    main()
