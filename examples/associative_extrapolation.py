"""Facts in noise read far past the training length: ARMT, RMT, no memory.

The length-generalization experiment of the ARMT paper (Rodkin et al.,
2024) on a small scale: a row is noise words with a few facts put anywhere
in it ("mary went to the kitchen .") and the question at the end ("where
is mary ?"); the answer is where that person went last (BABILong qa1).
Three models of the same size train on rows of at most `train_segments`
segments, growing from one segment with
`keras_rmt.callbacks.SegmentCurriculum`, and are then read on rows of 1x,
4x, 16x and 64x that length with `RMTCausalLM.score`, one compiled segment
at a time:

- "ARMT": `keras_rmt.models.RMTBackbone(..., associative_key_dim=...)`,
  every layer's associative matrix carried from segment to segment;
- "RMT": the same backbone with the RMT's memory tokens carried;
- "no memory": the RMT with `carry_memory=False`: each segment sees only
  its own words and the learned initial memory, a one-segment window.

Usage:
`python examples/associative_extrapolation.py --quick` (on a CPU), or
without `--quick` for the GPU setting (`--dtype-policy mixed_bfloat16`).
Prints a table of accuracy by length and writes
`associative_extrapolation.json` and, where matplotlib is installed, `.png`
to `--output-dir`; `--plot FILE.json` draws the plot of an earlier run.
"""

import argparse
import json
import os
import time

import example_common
import keras
import keras_hub
import numpy as np
from tasks.facts_in_noise import VOCABULARY, facts_in_noise

import keras_rmt

QUICK = {
    "segment_length": 24, "train_segments": 2, "lengths": [1, 4, 16, 64],
    "num_facts": 3, "num_people": 1, "num_places": 6,
    "num_memory_tokens": 2, "key_dim": 16, "hidden_dim": 64,
    "num_layers": 2, "num_heads": 4, "batch_size": 32, "epochs": 1000,
    "steps_per_epoch": 25, "steps": 800, "seconds": None,
    "learning_rate": 2e-3,
    "test_samples": 256, "eval_batch": 64,
}  # fmt: skip
FULL = {
    "segment_length": 32, "train_segments": 4, "lengths": [1, 4, 16, 64],
    "num_facts": 4, "num_people": 1, "num_places": 6,
    "num_memory_tokens": 8, "key_dim": 32, "hidden_dim": 128,
    "num_layers": 4, "num_heads": 4, "batch_size": 128, "epochs": 1000,
    "steps_per_epoch": 100, "steps": None, "seconds": 100,
    "learning_rate": 1e-3,
    "test_samples": 512, "eval_batch": 256,
}  # fmt: skip
MODELS = ("ARMT", "RMT", "no memory")
NAME = "associative_extrapolation"


def generate(config, num_samples, num_segments, seed, num_facts=None):
    return facts_in_noise(
        num_samples,
        num_segments,
        segment_length=config["segment_length"],
        num_facts=num_facts or config["num_facts"],
        num_people=config["num_people"],
        num_places=config["num_places"],
        seed=seed,
    )


def build(kind, config, seed):
    """An `RMTCausalLM` on a small GPT-2, compiled."""
    keras.utils.set_random_seed(seed)
    hidden_dim, tokens = config["hidden_dim"], config["num_memory_tokens"]
    gpt2 = keras_hub.models.GPT2Backbone(
        vocabulary_size=len(VOCABULARY),
        num_layers=config["num_layers"],
        num_heads=config["num_heads"],
        hidden_dim=hidden_dim,
        intermediate_dim=4 * hidden_dim,
        max_sequence_length=config["segment_length"] + 2 * tokens,
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
        segment_length=config["segment_length"],
        carry_memory=kind != "no memory",
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


def train(model, config, seed):
    """Curriculum 1 -> `train_segments`, 1 to `num_facts` facts a batch."""

    def make_batch(size, num_segments, rng):
        facts = int(rng.integers(1, config["num_facts"] + 1))
        seed = int(rng.integers(2**31))
        return generate(config, size, num_segments, seed, facts)

    data = keras_rmt.datasets.SegmentedDataset(
        make_batch,
        batch_size=config["batch_size"],
        num_batches=config["steps_per_epoch"],
        segment_length=config["segment_length"],
        vary_n_segments=True,
        pad_to=config["train_segments"],
        seed=seed,
    )
    curriculum = keras_rmt.callbacks.SegmentCurriculum(
        data,
        max_segments=config["train_segments"],
        monitor="accuracy",
        target=0.95,
        patience=3,
    )
    stop = example_common.StopAfter(config["steps"], config["seconds"])
    history = model.fit(
        data, epochs=config["epochs"], callbacks=[curriculum, stop], verbose=0
    )
    return {
        "steps": stop.steps,
        "epochs": len(history.history["loss"]),
        "segments_by_epoch": curriculum.history,
        "last_accuracy": history.history["accuracy"][-1],
    }


def accuracy(model, config, num_segments, seed):
    """Accuracy at the question of fresh rows of `num_segments` segments."""
    inputs, labels, _ = generate(
        config, config["test_samples"], num_segments, seed
    )
    correct, batch = 0, config["eval_batch"]
    for start in range(0, config["test_samples"], batch):
        rows = slice(start, start + batch)
        logits = model.score(
            inputs["token_ids"][rows], inputs["padding_mask"][rows]
        )
        predicted = keras.ops.convert_to_numpy(logits[:, -1]).argmax(-1)
        correct += int((predicted == labels[rows, -1]).sum())
    return correct / config["test_samples"]


def plot(summary, path):
    try:
        import matplotlib
    except ImportError:
        print(f"matplotlib is not installed: {path} not drawn")
        return
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    trained = summary["config"]["train_segments"]
    figure, axes = plt.subplots(figsize=(6, 4))
    for kind, by_length in summary["accuracy"].items():
        lengths = [int(times) * trained for times in by_length]
        axes.plot(lengths, list(by_length.values()), marker="o", label=kind)
    axes.axhline(summary["chance"], color="grey", ls=":", label="chance")
    axes.axvline(trained, color="grey", ls="--", label="trained length")
    axes.set_xscale("log", base=2)
    axes.set_ylim(0, 1.05)
    axes.set_xlabel(
        f"segments at evaluation ({summary['config']['segment_length']} "
        "words each)"
    )
    axes.set_ylabel("accuracy")
    axes.set_title(f"Facts in noise, trained on {trained} segments")
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
        help="override a setting, e.g. --set seconds=60 lengths=1,4",
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
        config[key] = json.loads(f"[{value}]" if key == "lengths" else value)
    if args.dtype_policy:
        keras.config.set_dtype_policy(args.dtype_policy)
    start, runs, table = time.time(), {}, {}
    summary = {
        "name": NAME,
        "mode": "quick" if args.quick else "full",
        "config": config,
        "accuracy": table,
        "chance": 1 / config["num_places"],
        "runs": runs,
        "backend": keras.backend.backend(),
        "dtype_policy": keras.config.dtype_policy().name,
    }
    os.makedirs(args.output_dir, exist_ok=True)
    path = os.path.join(args.output_dir, NAME)
    for kind in MODELS:
        model = build(kind, config, args.seed)
        began = time.time()
        runs[kind] = train(model, config, args.seed)
        runs[kind]["train_seconds"] = time.time() - began
        table[kind] = {}
        for times in config["lengths"]:
            count = times * config["train_segments"]
            seed = args.seed + 100 + times
            table[kind][str(times)] = accuracy(model, config, count, seed)
            # Written after every reading, so a run cut short keeps them.
            summary["seconds"] = time.time() - start
            with open(path + ".json", "w") as file:
                json.dump(summary, file, indent=1)
        print(f"{kind}: {runs[kind]}", flush=True)
    plot(summary, path + ".png")
    words = config["train_segments"] * config["segment_length"]
    print(f"\ntrained on {config['train_segments']} segments ({words} words)")
    print("| length | " + " | ".join(MODELS) + " |")
    print("| --- |" + " --- |" * len(MODELS))
    for times in config["lengths"]:
        cells = " | ".join(f"{table[k][str(times)]:.3f}" for k in MODELS)
        print(f"| {times}x ({times * words} words) | {cells} |")
    return summary


if __name__ == "__main__":
    main()
