"""What the paper examples share: the plumbing around each experiment.

Flags and settings, a small GPT-2 built from its config, the optimizer,
`fit` under a time budget, tables, JSON and plots. Not part of the library,
and nothing here is needed to use it: the library calls an example makes
(`keras_rmt.models.RMTBackbone`, `RMTCausalLM`, `SegmentedDataset`,
`SegmentCurriculum`...) stay in the example.
`python examples/example_common.py DIR...` draws the plot of every results
JSON in each DIR (for runs on a machine without matplotlib).
"""

import argparse
import json
import os
import platform
import time

import keras
import keras_hub
import numpy as np

# `--smoke-test`: a few steps of a tiny model, to check that a script runs.
SMOKE_TEST = {
    "hidden_dim": 8, "num_layers": 1, "num_heads": 1, "batch_size": 4,
    "epochs": 1, "steps_per_epoch": 2, "test_samples": 8,
    "validation_samples": 4, "num_memory_tokens": 2,
}  # fmt: skip


class _PlotAndExit(argparse.Action):
    """`--plot FILE.json`: draws an earlier run's plot, then exits."""

    def __call__(self, parser, namespace, path, option_string=None):
        with open(path) as file:
            plot(json.load(file), os.path.dirname(path) or ".")
        parser.exit()


def parser(description):
    """The flags every paper example takes; add the example's own to it."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--quick", action="store_true", help="CPU sizes")
    parser.add_argument("--smoke-test", action="store_true")
    parser.add_argument("--output-dir", default="paper_output")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int)
    parser.add_argument("--steps-per-epoch", type=int)
    parser.add_argument("--time-budget", type=float, help="seconds a model")
    parser.add_argument("--verbose", type=int, default=1)
    parser.add_argument(
        "--set", nargs="*", default=[], metavar="KEY=VALUE",
        help="override a setting, e.g. --set learning_rate=1e-3 pairs=4,8",
    )  # fmt: skip
    parser.add_argument("--dtype-policy", help="e.g. mixed_bfloat16 on a GPU")
    parser.add_argument(
        "--plot", metavar="JSON", action=_PlotAndExit,
        help="draw the plot of an earlier run's JSON and exit",
    )  # fmt: skip
    return parser


def settings(args, quick, full):
    """The mode's settings, overridden by the flags given.

    `--set KEY=VALUE` reads VALUE as JSON (`null`, `2e-3`, `true`); a
    setting that is a list takes comma-separated values (`pairs=4,8`).
    `--dtype-policy` is set here, before any model is built.
    """
    args.quick = args.quick or args.smoke_test
    chosen = dict(quick if args.quick else full)
    if args.smoke_test:
        chosen.update(SMOKE_TEST)
    for name in ("epochs", "steps_per_epoch", "time_budget"):
        value = getattr(args, name)
        if value is not None and name not in chosen:
            raise SystemExit(
                f"This example has no `{name}` setting. "
                f"Received: --{name.replace('_', '-')}={value}"
            )
        if value is not None:
            chosen[name] = value
    if args.smoke_test or args.epochs is not None:
        # The smoke test's epochs, or `--epochs`, count for every model.
        for name in ("baseline_epochs", "full_attention_epochs"):
            if name in chosen:
                chosen[name] = chosen["epochs"]
    for item in args.set:
        key, value = item.split("=", 1)
        if key not in chosen:
            raise SystemExit(
                f"`--set` names a setting this example does not have. "
                f"Received: {item}; settings: {sorted(chosen)}"
            )
        listed = isinstance(chosen[key], list)
        chosen[key] = json.loads(f"[{value}]" if listed else value)
    if args.dtype_policy:
        keras.config.set_dtype_policy(args.dtype_policy)
    chosen["mode"] = (
        "smoke test" if args.smoke_test else "quick" if args.quick else "full"
    )
    return chosen


def small_gpt2(config, vocabulary_size, max_sequence_length, seed=0):
    """A GPT-2 backbone of `config`'s size, built from its config.

    No download and no pretrained weights: `hidden_dim`, `num_layers` and
    `num_heads` come from `config`, the feed-forward is 4x wide, dropout 0.
    `seed` seeds Keras first, so the same call gives the same weights (and
    the layers built after it, the same weights too).
    """
    keras.utils.set_random_seed(seed)
    return keras_hub.models.GPT2Backbone(
        vocabulary_size=vocabulary_size,
        num_layers=config["num_layers"],
        num_heads=config["num_heads"],
        hidden_dim=config["hidden_dim"],
        intermediate_dim=4 * config["hidden_dim"],
        dropout=0.0,
        max_sequence_length=max_sequence_length,
    )


def redraw_weights(backbone, seed=0, kernel_stddev=None, embedding_stddev=1.0):
    """Redraws a backbone's kernels and embeddings at the model's scale.

    keras-hub draws GPT-2's weights at a standard deviation of 0.02, made
    for 768-wide models; at the width of these examples a lookup is learnt
    far sooner from kernels at `hidden_dim ** -0.5` (the default of
    `kernel_stddev`) and embeddings at 1. Biases and layer norms are kept.
    A standard deviation of None leaves those weights as they are.
    """
    kernel_stddev = kernel_stddev or backbone.hidden_dim**-0.5
    rng = np.random.default_rng(seed)
    stddevs = {"kernel": kernel_stddev, "embeddings": embedding_stddev}
    for weight in backbone.weights:
        if stddevs.get(weight.name) is not None:
            weight.assign(rng.normal(0.0, stddevs[weight.name], weight.shape))
    return backbone


def compile_causal_lm(causal_lm, learning_rate, metric=None):
    """AdamW (weight decay 0.01, gradient norm clipped at 1.0), weighted.

    `metric` defaults to the accuracy on the tokens whose `sample_weight`
    is not 0 (the answer of a task); no per-segment metrics.
    """
    causal_lm.compile(
        optimizer=keras.optimizers.AdamW(
            learning_rate, weight_decay=0.01, clipnorm=1.0
        ),
        weighted_metrics=[
            metric or keras.metrics.SparseCategoricalAccuracy(name="accuracy")
        ],
        segment_metrics=None,
    )
    return causal_lm


def time_budget(config, kind):
    """Seconds of training for a model of `kind`.

    `time_budget` for the RMT, `baseline_time_budget` for "no memory",
    `full_attention_time_budget` (by default the RMT's) for full attention;
    None: no limit.
    """
    return {
        "RMT": config["time_budget"],
        "no memory": config["baseline_time_budget"],
        "full attention": config.get(
            "full_attention_time_budget", config["time_budget"]
        ),
    }[kind]


def epochs(config, kind):
    """Epochs of training (of `steps_per_epoch` steps) for a model of `kind`.

    `epochs` for the RMT; `baseline_epochs` for "no memory" and
    `full_attention_epochs` for full attention, each by default `epochs`.
    Quick modes count steps rather than seconds, so that what a model
    learns does not depend on the machine's load.
    """
    return {
        "RMT": config["epochs"],
        "no memory": config.get("baseline_epochs", config["epochs"]),
        "full attention": config.get("full_attention_epochs", config["epochs"]),
    }[kind]


def fit(model, x, time_budget, target=None, callbacks=(), **kwargs):
    """`model.fit(x, **kwargs)` stopped by a `TimeBudget`.

    Returns the history's dict and how training ended:
    `{"stopped_because": ..., "train_seconds": ...}`.
    """
    stop = TimeBudget(time_budget, target=target)
    start = time.time()
    history = model.fit(x, callbacks=[stop, *callbacks], **kwargs)
    seconds = time.time() - start
    ended = {"stopped_because": stop.reason, "train_seconds": seconds}
    return history.history, ended


def weighted_accuracy(model, rows, batch_size=None):
    """`evaluate()`'s accuracy on `(inputs, labels, sample_weight)` rows."""
    inputs, labels, weight = rows
    logs = model.evaluate(
        inputs, labels, sample_weight=weight, batch_size=batch_size,
        return_dict=True, verbose=0,
    )  # fmt: skip
    return logs["accuracy"]


def by_segments(results):
    """Test accuracy and plot curves from `{model: [run, ...]}`.

    Returns `{model: {segments: test accuracy}}`, and the same with full
    attention (which reads one segment) drawn level across the RMT's
    numbers of segments.
    """
    accuracy = {
        kind: {str(run["segments"]): run["test_accuracy"] for run in runs}
        for kind, runs in results.items()
    }
    level = accuracy["full attention"]["1"]
    curves = {
        **accuracy,
        "full attention": dict.fromkeys(accuracy["RMT"], level),
    }
    return accuracy, curves


def print_by_count(title, table):
    """Prints `{model: {count: value}}` as `  model  count: value ...`."""
    print(f"\n{title}")
    for kind, by_count in table.items():
        row = "  ".join(f"{n}: {v:.3f}" for n, v in by_count.items())
        print(f"  {kind:<15} {row}")


def print_markdown(first_column, table, label=str):
    """Prints `{model: {key: value}}` as a Markdown table, a row a key."""
    models = list(table)
    print(f"| {first_column} | " + " | ".join(models) + " |")
    print("| --- |" + " --- |" * len(models))
    for key in table[models[0]]:
        cells = " | ".join(f"{table[m][key]:.3f}" for m in models)
        print(f"| {label(key)} | {cells} |")


class TimeBudget(keras.callbacks.Callback):
    """Stops `fit` after `seconds`, or once `monitor` reaches `target`."""

    def __init__(self, seconds=None, monitor="val_accuracy", target=None):
        super().__init__()
        self.seconds, self.monitor, self.target = seconds, monitor, target
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


class StopAfter(keras.callbacks.Callback):
    """Stops training after `steps` steps or `seconds` (None: no limit).

    Seconds count from the end of the first step, so compiling is left out.
    """

    def __init__(self, steps=None, seconds=None):
        super().__init__()
        self.max_steps, self.seconds = steps, seconds
        self.start, self.steps = None, 0

    def on_train_batch_end(self, batch, logs=None):
        self.steps += 1
        if self.start is None:
            self.start = time.time()
        out_of_time = self.seconds and time.time() - self.start > self.seconds
        if out_of_time or self.steps == self.max_steps:
            self.model.stop_training = True


def save_json(summary, output_dir):
    """Writes `<name>.json`, with where it ran; returns its path.

    Examples that train many models call it after each, so that a run cut
    short keeps what it measured.
    """
    summary["environment"] = {
        "backend": keras.backend.backend(),
        "keras": keras.__version__,
        "machine": platform.machine(),
        "dtype_policy": keras.config.dtype_policy().name,
    }
    os.makedirs(output_dir, exist_ok=True)
    path = os.path.join(output_dir, f"{summary['name']}.json")
    with open(path, "w") as file:
        json.dump(summary, file, indent=2)
    return path


def write(summary, output_dir):
    """Writes `<name>.json` (with where it ran) and `<name>.png`."""
    path = save_json(summary, output_dir)
    plot(summary, output_dir)
    print(f"wrote {path} and .png")


def plot(summary, output_dir):
    """One line per model of `summary["curves"]`: `{model: {x: y}}`.

    Optional keys: `"chance"` (a dotted line, y from 0 to 1), `"log_x"`
    (x on a log-2 scale) and `"marks"` (`{label: x}`, dashed lines).
    """
    try:
        import matplotlib
    except ImportError:
        print("matplotlib is not installed: no plot")
        return
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(6, 4))
    for name, points in summary["curves"].items():
        xs = [int(x) for x in points]
        axis.plot(xs, list(points.values()), marker="o", label=name)
    if summary.get("chance") is not None:
        axis.axhline(summary["chance"], color="gray", ls=":", label="chance")
        axis.set_ylim(0, 1.05)
    for label, x in summary.get("marks", {}).items():
        axis.axvline(x, color="gray", ls="--", label=label)
    if summary.get("log_x"):
        axis.set_xscale("log", base=2)
    axis.set_xlabel(summary["xlabel"])
    axis.set_ylabel(summary["ylabel"])
    axis.set_title(summary["title"])
    axis.legend()
    figure.tight_layout()
    figure.savefig(os.path.join(output_dir, f"{summary['name']}.png"))
    plt.close(figure)


if __name__ == "__main__":
    import glob
    import sys

    for folder in sys.argv[1:]:
        for path in sorted(glob.glob(os.path.join(folder, "*.json"))):
            with open(path) as file:
                plot(json.load(file), folder)
