"""What the paper examples share: flags, a time budget, JSON and plots.

Not part of the library, and nothing here is needed to use it: the examples
read top to bottom without it. `python examples/example_common.py DIR...`
draws the plot of every results JSON in each DIR (for runs on a machine
without matplotlib).
"""

import argparse
import json
import os
import platform
import time

import keras

# `--smoke-test`: a few steps of a tiny model, to check that a script runs.
SMOKE_TEST = {
    "hidden_dim": 8, "num_layers": 1, "num_heads": 1, "batch_size": 4,
    "epochs": 1, "steps_per_epoch": 2, "test_samples": 8,
    "validation_samples": 4, "num_memory_tokens": 2,
}  # fmt: skip


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
    return parser


def settings(args, quick, full):
    """The mode's settings, overridden by the flags given."""
    args.quick = args.quick or args.smoke_test
    chosen = dict(quick if args.quick else full)
    if args.smoke_test:
        chosen.update(SMOKE_TEST)
    for name in ("epochs", "steps_per_epoch", "time_budget"):
        if getattr(args, name) is not None:
            chosen[name] = getattr(args, name)
    chosen["mode"] = (
        "smoke test" if args.smoke_test else "quick" if args.quick else "full"
    )
    return chosen


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


def write(summary, output_dir):
    """Writes `<name>.json` (with where it ran) and `<name>.png`."""
    summary["environment"] = {
        "backend": keras.backend.backend(),
        "keras": keras.__version__,
        "machine": platform.machine(),
    }
    os.makedirs(output_dir, exist_ok=True)
    path = os.path.join(output_dir, f"{summary['name']}.json")
    with open(path, "w") as file:
        json.dump(summary, file, indent=2)
    plot(summary, output_dir)
    print(f"wrote {path} and .png")


def plot(summary, output_dir):
    """One line per model of `summary["curves"]`: `{model: {x: y}}`."""
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
