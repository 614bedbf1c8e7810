"""Where the paper examples' numbers go: JSON files and plots.

`python examples/example_results.py DIR...` draws the plot of every results
JSON in each DIR (for runs on a machine without matplotlib).
"""

import json
import os

import keras


def environment():
    """Where the numbers were measured."""
    import platform

    devices = []
    if keras.backend.backend() == "jax":
        import jax

        devices = [f"{d} ({d.device_kind})" for d in jax.devices()]
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
    nothing: `python examples/example_results.py DIR` draws every plot later
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


def report_sweep(summary, segments, output_dir):
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


if __name__ == "__main__":
    import glob
    import sys

    for folder in sys.argv[1:]:
        for path in sorted(glob.glob(os.path.join(folder, "*.json"))):
            with open(path) as file:
                print(plot_summary(json.load(file), folder))
