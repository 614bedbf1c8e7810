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

Usage: `python examples/associative_capacity.py --quick` (on a CPU),
or without `--quick` for the GPU setting (`--dtype-policy mixed_bfloat16`).
Prints a table of accuracy by number of pairs (chance is one in
`num_values`) and writes `associative_capacity.json` and, where matplotlib
is installed, `.png` to `--output-dir`; `--plot FILE.json` draws the plot
of an earlier run.
"""

import argparse
import json
import os
import time

import example_common
import keras
import keras_hub
import numpy as np
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
    """An `RMTCausalLM` on a small GPT-2, compiled."""
    keras.utils.set_random_seed(seed)
    hidden_dim, tokens = config["hidden_dim"], config["num_memory_tokens"]
    gpt2 = keras_hub.models.GPT2Backbone(
        vocabulary_size=2 + 2 * num_pairs + config["num_values"],
        num_layers=config["num_layers"],
        num_heads=config["num_heads"],
        hidden_dim=hidden_dim,
        intermediate_dim=4 * hidden_dim,
        max_sequence_length=SEGMENT_LENGTH + 2 * tokens,
        dropout=0.0,
    )
    # keras-hub draws GPT-2's weights at 0.02, made for 768-wide models; at
    # this width a lookup is learnt far sooner from kernels at
    # `hidden_dim ** -0.5` and embeddings at 1.
    rng = np.random.default_rng(seed)
    stddevs = {"kernel": hidden_dim**-0.5, "embeddings": 1.0}
    for variable in gpt2.weights:
        if variable.name in stddevs:
            scale = stddevs[variable.name]
            variable.assign(rng.normal(0.0, scale, variable.shape))
    backbone = keras_rmt.models.RMTBackbone(
        gpt2,
        num_memory_tokens=tokens,
        segment_length=SEGMENT_LENGTH,
        associative_key_dim=config["key_dim"] if kind == "ARMT" else None,
    )
    model = keras_rmt.models.RMTCausalLM(backbone)
    model.compile(
        optimizer=keras.optimizers.AdamW(
            config["learning_rate"], weight_decay=0.01, clipnorm=1.0
        ),
        weighted_metrics=[keras.metrics.SparseCategoricalAccuracy("accuracy")],
        segment_metrics=None,
    )
    return model


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


def plot(summary, path):
    try:
        import matplotlib
    except ImportError:
        print(f"matplotlib is not installed: {path} not drawn")
        return
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    config = summary["config"]
    figure, axes = plt.subplots(figsize=(6, 4))
    for kind, by_pairs in summary["accuracy"].items():
        pairs = [int(count) for count in by_pairs]
        axes.plot(pairs, list(by_pairs.values()), marker="o", label=kind)
    axes.axhline(summary["chance"], color="grey", ls=":", label="chance")
    axes.set_xscale("log", base=2)
    axes.set_ylim(0, 1.05)
    axes.set_xlabel("key-value pairs (one a segment)")
    axes.set_ylabel("accuracy")
    axes.set_title(
        f"Associative retrieval, {config['num_memory_tokens']} memory tokens"
    )
    axes.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output-dir", default="paper_output")
    parser.add_argument("--dtype-policy", default=None)
    parser.add_argument(
        "--set", nargs="*", default=[], metavar="KEY=VALUE",
        help="override a setting, e.g. --set seconds=60 pairs=4,8",
    )  # fmt: skip
    parser.add_argument("--plot", metavar="JSON", default=None)
    args = parser.parse_args(argv)
    if args.plot:
        with open(args.plot) as file:
            plot(json.load(file), args.plot[: -len(".json")] + ".png")
        return None
    config = dict(QUICK if args.quick else FULL)
    for item in args.set:
        key, value = item.split("=")
        config[key] = json.loads(f"[{value}]" if key == "pairs" else value)
    if args.dtype_policy:
        keras.config.set_dtype_policy(args.dtype_policy)
    start, runs, table = time.time(), {}, {kind: {} for kind in MODELS}
    summary = {
        "name": NAME,
        "mode": "quick" if args.quick else "full",
        "config": config,
        "accuracy": table,
        "chance": 1 / config["num_values"],
        "runs": runs,
        "backend": keras.backend.backend(),
        "dtype_policy": keras.config.dtype_policy().name,
    }
    os.makedirs(args.output_dir, exist_ok=True)
    path = os.path.join(args.output_dir, NAME)
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
            # Written after every model, so a run cut short keeps its rows.
            summary["seconds"] = time.time() - start
            with open(path + ".json", "w") as file:
                json.dump(summary, file, indent=1)
    plot(summary, path + ".png")
    print(f"\n{config['num_memory_tokens']} memory tokens, chance "
          f"{summary['chance']:.3f}")  # fmt: skip
    print("| pairs | " + " | ".join(MODELS) + " |")
    print("| --- |" + " --- |" * len(MODELS))
    for num_pairs in config["pairs"]:
        cells = " | ".join(f"{table[k][str(num_pairs)]:.3f}" for k in MODELS)
        print(f"| {num_pairs} | {cells} |")
    return summary


if __name__ == "__main__":
    main()
