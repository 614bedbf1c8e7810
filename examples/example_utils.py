"""What the paper's examples share: models, training, results and plots.

Every example trains a small GPT-2-style model read segment by segment by
`keras_rmt.layers.RecurrentSegments` ("RMT"), the same model with memory
that is not carried between segments ("no memory", `carry_memory=False`)
and, where it fits, the same backbone attending over the whole input at
once ("full attention"). Models predict a token at every position; only
positions with `sample_weight` 1 count towards loss and accuracy.
"""

import argparse
import json
import math
import os
import time

import keras
import keras_hub
import numpy as np

import keras_rmt

MODEL_KINDS = ("RMT", "no memory", "full attention")


def parser(description):
    """The arguments every example takes; add the example's own to it."""
    parser = argparse.ArgumentParser(
        description=description,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="a small setting that finishes in minutes on a CPU",
    )
    parser.add_argument("--output-dir", default="paper_output")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--epochs", type=int, default=None, help="overrides the mode's value"
    )
    parser.add_argument(
        "--steps-per-epoch",
        type=int,
        default=None,
        help="overrides the mode's value",
    )
    parser.add_argument(
        "--time-budget",
        type=float,
        default=None,
        help="stop training a model after this many seconds",
    )
    parser.add_argument("--verbose", type=int, default=1)
    parser.add_argument(
        "--smoke-test",
        action="store_true",
        help="a few steps of a tiny model: checks that the script runs",
    )
    return parser


SMOKE_TEST = {
    "hidden_dim": 8, "num_layers": 1, "num_heads": 1, "batch_size": 4,
    "epochs": 1, "steps_per_epoch": 2, "test_samples": 8,
    "validation_samples": 4, "num_memory_tokens": 2,
}  # fmt: skip


def setting(args, quick, full):
    """The mode's settings (dicts), overridden by explicit arguments."""
    if args.smoke_test:
        args.quick = True
    chosen = dict(quick if args.quick else full)
    if args.smoke_test:
        chosen.update(SMOKE_TEST)
    for name in ("epochs", "steps_per_epoch", "time_budget"):
        if getattr(args, name) is not None:
            chosen[name] = getattr(args, name)
    return chosen


def mode(args):
    if args.smoke_test:
        return "smoke test"
    return "quick" if args.quick else "full"


def build_model(
    kind,
    vocabulary_size,
    segment_length,
    num_memory_tokens,
    hidden_dim=64,
    num_layers=2,
    num_heads=4,
    learning_rate=1e-3,
    max_length=None,
    memory_attention="bidirectional",
    seed=0,
):
    """A compiled model giving next-token logits at every position.

    `kind` is one of `MODEL_KINDS`; "full attention" needs `max_length`,
    the longest input, and ignores the segment settings.
    """
    if kind not in MODEL_KINDS:
        raise ValueError(f"`kind` must be one of {MODEL_KINDS}. Got {kind!r}")
    keras.utils.set_random_seed(seed)
    positions = (
        max_length
        if kind == "full attention"
        else segment_length + 2 * num_memory_tokens
    )
    backbone = keras_hub.models.GPT2Backbone(
        vocabulary_size=vocabulary_size,
        num_layers=num_layers,
        num_heads=num_heads,
        hidden_dim=hidden_dim,
        intermediate_dim=4 * hidden_dim,
        dropout=0.0,
        max_sequence_length=positions,
    )
    inputs = {
        "token_ids": keras.Input((None,), dtype="int32", name="token_ids"),
        "padding_mask": keras.Input(
            (None,), dtype="int32", name="padding_mask"
        ),
    }
    if kind == "full attention":
        hidden = backbone(inputs)
    else:
        rmt = keras_rmt.layers.RecurrentSegments(
            backbone,
            memory=keras_rmt.layers.MemoryTokens(num_memory_tokens),
            segment_length=segment_length,
            memory_attention=memory_attention,
            carry_memory=kind == "RMT",
        )
        hidden = rmt(inputs)["sequence_output"]
    logits = keras.layers.Dense(vocabulary_size, name="head")(hidden)
    model = keras.Model(inputs, logits, name=kind.replace(" ", "_"))
    model.compile(
        optimizer=keras.optimizers.AdamW(
            learning_rate, weight_decay=0.01, clipnorm=1.0
        ),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        weighted_metrics=[
            keras.metrics.SparseCategoricalAccuracy(name="accuracy")
        ],
    )
    return model


class StopAt(keras.callbacks.Callback):
    """Stops training once `monitor` reaches `target` or time runs out."""

    def __init__(self, monitor="val_accuracy", target=None, seconds=None):
        super().__init__()
        self.monitor = monitor
        self.target = target
        self.seconds = seconds
        self.reason = "epochs"

    def on_train_begin(self, logs=None):
        self.start = time.time()

    def on_epoch_end(self, epoch, logs=None):
        value = (logs or {}).get(self.monitor)
        if self.target is not None and value is not None:
            if value >= self.target:
                self.reason = f"{self.monitor} reached {self.target}"
                self.model.stop_training = True
        if self.seconds is not None and time.time() - self.start > self.seconds:
            self.reason = f"time budget of {self.seconds:.0f} s"
            self.model.stop_training = True


def train(
    model,
    data,
    validation,
    epochs,
    target=None,
    seconds=None,
    callbacks=(),
    verbose=1,
):
    """Fits with Keras' progress bars; returns the history and timings."""
    stop = StopAt("val_accuracy", target, seconds)
    start = time.time()
    history = model.fit(
        data,
        validation_data=validation,
        epochs=epochs,
        callbacks=[stop, *callbacks],
        verbose=verbose,
    )
    return {
        "history": {
            k: [float(v) for v in vs] for k, vs in history.history.items()
        },
        "epochs_run": len(history.history["loss"]),
        "stopped_because": stop.reason,
        "train_seconds": time.time() - start,
    }


def accuracy(model, data, batch_size=128):
    """Weighted token accuracy of `model` on `(inputs, labels, weight)`."""
    inputs, labels, weight = data
    logits = model.predict(inputs, batch_size=batch_size, verbose=0)
    right = np.argmax(logits, axis=-1) == labels
    return float(np.sum(right * weight) / np.sum(weight))


def environment():
    """Where the numbers were measured."""
    import platform

    devices = []
    if keras.backend.backend() == "jax":
        import jax

        devices = [str(device) for device in jax.devices()]
    return {
        "backend": keras.backend.backend(),
        "keras": keras.__version__,
        "machine": platform.machine(),
        "processor": platform.processor() or platform.machine(),
        "devices": devices,
    }


def write_json(results, output_dir, name):
    os.makedirs(output_dir, exist_ok=True)
    path = os.path.join(output_dir, f"{name}.json")
    with open(path, "w") as file:
        json.dump(results, file, indent=2)
    return path


def plot(curves, path, xlabel, ylabel, title, chance=None, log_y=False):
    """One line per model: `curves` maps a name to `(xs, ys)`.

    Without matplotlib (the offline GPU machine) prints so and draws
    nothing: `python examples/example_utils.py DIR` draws every plot later
    from the JSON files in DIR.
    """
    try:
        import matplotlib
    except ImportError:
        print(f"  matplotlib is not installed: {path} not drawn")
        return None

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(6, 4))
    for name, (xs, ys) in curves.items():
        axis.plot(xs, ys, marker="o", label=name)
    if chance is not None:
        axis.axhline(chance, color="gray", linestyle=":", label="chance")
    axis.set_xlabel(xlabel)
    axis.set_ylabel(ylabel)
    if log_y:
        axis.set_yscale("log")
    elif chance is not None:
        axis.set_ylim(0, 1.05)
    axis.set_title(title)
    axis.legend()
    figure.tight_layout()
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    figure.savefig(path)
    plt.close(figure)
    return path


def sweep(name, generate, vocabulary_size, segments, config, args, **report):
    """Accuracy against the number of segments: RMT, no memory, full.

    `generate(num_samples, seed, share=1.0)` gives `(inputs, labels,
    sample_weight)` of the whole task for `share=1.0`, and of a smaller
    instance of it (`share` of the symbols or pairs) otherwise. For each
    count in `segments` the whole row is cut into that many segments
    (`ceil(length / count)` tokens each), and the RMT and the memory-less
    model train with the paper's curriculum (`curriculum_data`): 1 segment's
    share of the task first, one more whenever training accuracy reaches
    `config["grow_at"]` or stops improving. Full attention trains once, on
    the whole task. `config` holds the model and training sizes; `report`
    (`title`, `chance`, `paper`) goes into the JSON and plot.
    """
    test = generate(config["test_samples"], args.seed + 1)
    validation = generate(config.get("validation_samples", 256), args.seed + 2)
    length = test[0]["token_ids"].shape[1]
    runs = [(kind, n) for n in segments for kind in MODEL_KINDS[:2]]
    if config.get("full_attention", True):
        runs.append(("full attention", 1))
    start, results = time.time(), {}
    for kind, count in runs:
        backend = keras.backend.backend()
        print(f"== {name}: {kind}, {count} segment(s) ({backend}) ==")
        segment_length = math.ceil(length / count)
        model = build_model(
            kind,
            vocabulary_size,
            segment_length,
            config["num_memory_tokens"],
            hidden_dim=config["hidden_dim"],
            num_layers=config["num_layers"],
            num_heads=config["num_heads"],
            learning_rate=config["learning_rate"],
            max_length=length,
            seed=args.seed,
        )
        data, callbacks = curriculum_data(
            generate, 1 if kind == "full attention" else count, length,
            config, args.seed,
        )  # fmt: skip
        run = train(
            model,
            data,
            validation,
            epochs=config["epochs"],
            target=config.get("target"),
            seconds=_time_budget(config, kind),
            callbacks=callbacks,
            verbose=args.verbose,
        )
        if callbacks:
            run["segments_by_epoch"] = callbacks[0].history
        run.update(
            segments=count,
            segment_length=segment_length,
            test_accuracy=accuracy(model, test),
        )
        print(f"   test accuracy {run['test_accuracy']:.3f}")
        results.setdefault(kind, []).append(run)
    summary = {
        "name": name,
        "mode": mode(args),
        "input_length": length,
        "config": config,
        "test_accuracy": {
            kind: {str(run["segments"]): run["test_accuracy"] for run in runs}
            for kind, runs in results.items()
        },
        **report,
        "runs": results,
        "seconds": time.time() - start,
        "environment": environment(),
    }
    _report_sweep(summary, segments, args.output_dir)
    return summary


def curriculum_data(generate, num_segments, length, config, seed):
    """Training data growing from 1 segment's share of the task to all.

    Returns `(data, callbacks)`: a `keras_rmt.datasets.SegmentedDataset`
    whose batch for `k` segments holds `generate(..., share=k /
    num_segments)` rows, each batch drawing `k` from 1 to the current stage
    (`vary_n_segments`), left-padded to `length` so that every batch has one
    shape and the task ends in the last segment; and the
    `keras_rmt.callbacks.SegmentCurriculum` that grows the stage (none for
    one segment).
    """

    def make_batch(size, stage, rng):
        seed = int(rng.integers(2**31))
        rows = generate(size, seed, share=stage / num_segments)
        return left_pad(rows, length)

    data = keras_rmt.datasets.SegmentedDataset(
        make_batch,
        batch_size=config["batch_size"],
        num_batches=config["steps_per_epoch"],
        segment_length=1,
        vary_n_segments=True,
        seed=seed,
    )
    if num_segments == 1:
        return data, []
    grow = keras_rmt.callbacks.SegmentCurriculum(
        data,
        max_segments=num_segments,
        monitor="accuracy",
        target=config.get("grow_at", 0.95),
        patience=config.get("patience", 5),
        verbose=1,
    )
    return data, [grow]


def left_pad(rows, length):
    """`(inputs, labels, sample_weight)` with padding put before each row."""
    inputs, *targets = rows
    width = length - inputs["token_ids"].shape[1]

    def pad(x):
        return np.pad(x, [(0, 0), (width, 0)])

    return ({k: pad(v) for k, v in inputs.items()}, *map(pad, targets))


def _time_budget(config, kind):
    """Seconds of training for a model: baselines may get less."""
    budget = config.get("time_budget")
    if kind == "no memory":
        return config.get("baseline_time_budget", budget)
    if kind == "full attention":
        return config.get("full_attention_time_budget", budget)
    return budget


def _report_sweep(summary, segments, output_dir):
    name, chance = summary["name"], summary.get("chance")
    summary["segments"] = segments
    write_json(summary, output_dir, name)
    plot_summary(summary, output_dir)
    print(f"\n{summary.get('title', name)}: test accuracy")
    for kind, by_count in summary["test_accuracy"].items():
        row = "  ".join(f"{n} seg: {v:.3f}" for n, v in by_count.items())
        print(f"  {kind:<15} {row}")
    if chance is not None:
        print(f"  chance {chance:.3f}")
    print(f"  wrote {output_dir}/{name}.json and {name}.png")


def plot_summary(summary, output_dir):
    """Draws an example's plot from its results (the JSON it wrote)."""
    name = summary["name"]
    path = os.path.join(output_dir, f"{name}.png")
    if "perplexity_by_segment" in summary:
        config = summary["config"]
        by_segment = summary["perplexity_by_segment"]
        return plot(
            {
                kind: (list(range(1, len(values) + 1)), values)
                for kind, values in by_segment.items()
            },
            path,
            xlabel=f"segment index ({config['segment_length']} bytes each)",
            ylabel="perplexity per byte (held out)",
            title=summary["title"],
        )
    curves = {}
    for kind, by_count in summary["test_accuracy"].items():
        if kind == "full attention":
            xs = summary.get("segments") or [
                int(n) for n in summary["test_accuracy"]["RMT"]
            ]
            curves[kind] = (xs, [by_count["1"]] * len(xs))
        else:
            curves[kind] = ([int(n) for n in by_count], list(by_count.values()))
    return plot(
        curves,
        path,
        xlabel=summary.get("xlabel", "number of segments"),
        ylabel="answer token accuracy",
        title=summary.get("title", name),
        chance=summary.get("chance"),
    )


def last_token_reader(model):
    """Reads one segment per call: `(segment, memory) -> (logits, memory)`.

    Compiles one segment step, whatever the input's length: the way to run
    an RMT over many more segments than it was trained on. The logits are
    those of the segment's last position.
    """
    rmt = next(
        layer
        for layer in model.layers
        if isinstance(layer, keras_rmt.layers.RecurrentSegments)
    )
    length = rmt.segment_length
    inputs = {
        "token_ids": keras.Input((length,), dtype="int32", name="token_ids"),
        "padding_mask": keras.Input(
            (length,), dtype="int32", name="padding_mask"
        ),
        "memory": keras.Input(
            (rmt.num_memory_tokens, rmt.hidden_dim), name="memory"
        ),
    }
    outputs = rmt(inputs)
    logits = model.get_layer("head")(outputs["sequence_output"][:, -1])
    step = keras.Model(inputs, [logits, outputs["memory"]])
    initial = keras.ops.convert_to_numpy(
        rmt.memory(keras.ops.zeros((1, 1, rmt.hidden_dim)))
    )

    def read(inputs, batch_size=128):
        """Last-position logits of rows whose length is whole segments."""
        token_ids, mask = inputs["token_ids"], inputs["padding_mask"]
        count = token_ids.shape[1] // length
        results = []
        for start in range(0, len(token_ids), batch_size):
            rows = slice(start, start + batch_size)
            batch = len(token_ids[rows])
            memory = np.repeat(initial, batch, axis=0)
            for index in range(count):
                cut = slice(index * length, (index + 1) * length)
                logits, written = step.predict_on_batch(
                    {
                        "token_ids": token_ids[rows, cut],
                        "padding_mask": mask[rows, cut],
                        "memory": memory,
                    }
                )
                if rmt.carry_memory:
                    memory = np.asarray(written)
            results.append(np.asarray(logits))
        return np.concatenate(results)

    return read


if __name__ == "__main__":
    import glob
    import sys

    for folder in sys.argv[1:]:
        for path in sorted(glob.glob(os.path.join(folder, "*.json"))):
            with open(path) as file:
                print(plot_summary(json.load(file), folder))
