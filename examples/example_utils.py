"""What the paper examples share on the command line, and the sweep.

`parser` and `setting` give every example `--quick`, `--smoke-test`,
`--output-dir` and the budget overrides; `sweep` trains the three models of
`example_models` at each number of segments and reports through
`example_results`.
"""

import argparse
import math
import time

import example_models
import example_results
import example_training
import keras


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


def sweep(name, generate, vocabulary_size, segments, config, args, **report):
    """Accuracy against the number of segments: RMT, no memory, full.

    `generate(num_samples, seed, share=1.0)` gives `(inputs, labels,
    sample_weight)` of the whole task for `share=1.0`, and of a smaller
    instance of it (`share` of the symbols or pairs) otherwise. For each
    count in `segments` the whole row is cut into that many segments
    (`ceil(length / count)` tokens each), and the RMT and the memory-less
    model train with the paper's curriculum (`curriculum_data`): 1 segment's
    share of the task first, one more whenever training accuracy reaches
    `config["grow_at"]` or stops improving; with `config["curriculum"]`
    False they train on the whole task from the start. Full attention
    trains once, on the whole task. `config` holds the model and training
    sizes and the options `example_models.build_from_config` reads;
    `report` (`title`, `chance`, `paper`) goes into the JSON and plot.
    """
    test = generate(config["test_samples"], args.seed + 1)
    validation = generate(config.get("validation_samples", 256), args.seed + 2)
    length = test[0]["token_ids"].shape[1]
    kinds = example_models.MODEL_KINDS
    runs = [(kind, n) for n in segments for kind in kinds[:2]]
    if config.get("full_attention", True):
        runs.append(("full attention", 1))
    start, results = time.time(), {}
    for kind, count in runs:
        backend = keras.backend.backend()
        print(f"== {name}: {kind}, {count} segment(s) ({backend}) ==")
        segment_length = math.ceil(length / count)
        model = example_models.build_from_config(
            kind, vocabulary_size, segment_length, config,
            max_length=length, seed=args.seed,
        )  # fmt: skip
        whole = kind == "full attention" or not config.get("curriculum", True)
        data, callbacks = example_training.curriculum_data(
            generate, 1 if whole else count, length, config, args.seed
        )
        run = example_training.train(
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
            test_accuracy=example_training.accuracy(model, test),
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
        "environment": example_results.environment(),
    }
    example_results.report_sweep(summary, segments, args.output_dir)
    return summary


def _time_budget(config, kind):
    """Seconds of training for a model: baselines may get less."""
    budget = config.get("time_budget")
    if kind == "no memory":
        return config.get("baseline_time_budget", budget)
    if kind == "full attention":
        return config.get("full_attention_time_budget", budget)
    return budget
