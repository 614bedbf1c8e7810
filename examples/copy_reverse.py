"""Copy and reverse through memory: the paper's algorithmic tasks.

A row is a source of random symbols, a separator, then the target the model
must write: the source twice (copy 24/48), reversed (reverse 24/24), or
the long copy of 120 symbols (360 tokens). The whole row is cut into N
segments; for each N we train an RMT, the same model without carried
memory ("no memory") and, once, full attention over the whole row, and
measure the share of target tokens written right (chance 1 / symbols).

Writes `<task>.json` and `<task>.png` (accuracy against the number of
segments) to `--output-dir`. Paper (Bulatov et al., 2022): RMT stays near
1.0 on copy up to 9 segments; long copy 1.0 at 3, 6 and 9 segments
(Transformer-XL 0.78 / 0.13 / 0.14); reverse 120 at 2/4/6 segments
0.96 / 0.997 / 1.0.
"""

import math
import time

import example_utils
import keras
import numpy as np

import keras_rmt

TASKS = {  # source and target lengths, numbers of segments
    "copy": {"source": 24, "target": 48, "segments": [1, 4, 6, 9]},
    "reverse": {"source": 24, "target": 24, "segments": [1, 4, 6]},
    "long-copy": {"source": 120, "target": 240, "segments": [3, 6, 9]},
}
QUICK_TASKS = {
    "copy": {"source": 6, "target": 12, "segments": [1, 4]},
    "reverse": {"source": 8, "target": 8, "segments": [1, 4]},
    "long-copy": {"source": 12, "target": 24, "segments": [3, 6]},
}
PAPER = {
    "copy": "RMT ~1.0 up to 9 segments; Transformer-XL falls to ~0.1-0.2",
    "reverse": "RMT (reverse 120) 0.96 / 0.997 / 1.0 at 2 / 4 / 6 segments",
    "long-copy": "RMT 1.0 at 3, 6, 9 segments; Transformer-XL 0.78 / 0.13 / "
    "0.14",
}
QUICK = {
    "num_symbols": 8, "num_memory_tokens": 4, "hidden_dim": 64,
    "num_layers": 2, "num_heads": 4, "batch_size": 32, "epochs": 12,
    "steps_per_epoch": 40, "test_samples": 512, "learning_rate": 2e-3,
    "time_budget": 150,
}  # fmt: skip
FULL = {
    "num_symbols": 10, "num_memory_tokens": 10, "hidden_dim": 128,
    "num_layers": 4, "num_heads": 4, "batch_size": 64, "epochs": 60,
    "steps_per_epoch": 100, "test_samples": 1024, "learning_rate": 1e-3,
    "time_budget": 60,
}  # fmt: skip
TARGET = 0.99


def run_task(task, spec, config, args):
    length = spec["source"] + spec["target"]

    def generate(num_samples, num_segments, seed):
        return keras_rmt.datasets.copy_sequence(
            num_samples,
            source_length=spec["source"],
            target_length=spec["target"],
            num_symbols=config["num_symbols"],
            reverse=task == "reverse",
            seed=seed,
        )

    test = generate(config["test_samples"], None, args.seed + 1)
    validation = generate(256, None, args.seed + 2)
    data = example_utils.task_data(
        generate, config["batch_size"], config["steps_per_epoch"], args.seed
    )
    runs = [
        (kind, n) for n in spec["segments"] for kind in ("RMT", "no memory")
    ]
    runs.append(("full attention", 1))
    results = {}
    for kind, n in runs:
        print(
            f"== {task}: {kind}, {n} segment(s) ({keras.backend.backend()}) =="
        )
        segment_length = math.ceil(length / n)
        model = example_utils.build_model(
            kind,
            vocabulary_size=config["num_symbols"] + 2,
            segment_length=segment_length,
            num_memory_tokens=config["num_memory_tokens"],
            hidden_dim=config["hidden_dim"],
            num_layers=config["num_layers"],
            num_heads=config["num_heads"],
            learning_rate=config["learning_rate"],
            max_length=length,
            seed=args.seed,
        )
        run = example_utils.train(
            model,
            data,
            validation=validation,
            epochs=config["epochs"],
            target=TARGET,
            seconds=config["time_budget"],
            verbose=args.verbose,
        )
        run.update(
            segments=n,
            segment_length=segment_length,
            test_accuracy=example_utils.accuracy(model, test),
        )
        print(f"   test accuracy {run['test_accuracy']:.3f}")
        results.setdefault(kind, []).append(run)
    return results


def report(task, spec, config, results, args, seconds):
    chance = 1 / config["num_symbols"]
    curves = {}
    for kind, runs in results.items():
        if kind == "full attention":
            xs = spec["segments"]
            ys = [runs[0]["test_accuracy"]] * len(xs)
        else:
            xs = [run["segments"] for run in runs]
            ys = [run["test_accuracy"] for run in runs]
        curves[kind] = (xs, ys)
    name = f"{task}{spec['source']}"
    summary = {
        "task": task,
        "source_length": spec["source"],
        "target_length": spec["target"],
        "mode": "quick" if args.quick else "full",
        "config": config,
        "chance": chance,
        "test_accuracy": {
            kind: {str(run["segments"]): run["test_accuracy"] for run in runs}
            for kind, runs in results.items()
        },
        "paper": PAPER[task],
        "runs": results,
        "seconds": seconds,
        "environment": example_utils.environment(),
    }
    example_utils.write_json(summary, args.output_dir, name)
    example_utils.plot(
        curves,
        f"{args.output_dir}/{name}.png",
        xlabel="number of segments",
        ylabel="target token accuracy",
        title=f"{task} {spec['source']}/{spec['target']} tokens",
        chance=chance,
    )
    print(f"\n{task} {spec['source']}/{spec['target']}: test accuracy")
    for kind, by_count in summary["test_accuracy"].items():
        row = "  ".join(f"{n} seg: {v:.3f}" for n, v in by_count.items())
        print(f"  {kind:<15} {row}")
    print(f"  chance {chance:.3f}; wrote {args.output_dir}/{name}.json, .png")
    return summary


def main(argv=None):
    parser = example_utils.parser(__doc__.splitlines()[0])
    parser.add_argument(
        "--task", choices=sorted(TASKS), action="append",
        help="repeat for several; defaults to copy and reverse",
    )  # fmt: skip
    parser.add_argument(
        "--segments", type=int, nargs="+", default=None,
        help="numbers of segments; overrides the mode's",
    )  # fmt: skip
    args = parser.parse_args(argv)
    config = example_utils.setting(args, QUICK, FULL)
    summaries = {}
    for task in args.task or ["copy", "reverse"]:
        spec = dict((QUICK_TASKS if args.quick else TASKS)[task])
        if args.segments:
            spec["segments"] = args.segments
        start = time.time()
        results = run_task(task, spec, config, args)
        summaries[task] = report(
            task, spec, config, results, args, time.time() - start
        )
    return summaries


if __name__ == "__main__":
    np.set_printoptions(precision=3)
    main()
