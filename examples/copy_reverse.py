"""Copy and reverse through memory: the paper's algorithmic tasks.

A row is a source of random symbols, a separator, then the target the model
must write: the source twice (copy 24/48), reversed (reverse 24/24), or the
long copy of 120 symbols (360 tokens). The whole row is cut into N segments
and read by a `keras_rmt.models.RMTCausalLM` over a small GPT-2 built from
its config. For each N we train an RMT and the same model whose memory is
not carried between segments ("no memory", `carry_memory=False`), and once
the same backbone reading the whole row as one segment ("full attention").
Accuracy is `evaluate()`'s weighted accuracy: the share of target tokens
written right (the `sample_weight` of the task is 1 on them alone).

The RMT and the memory-less model train with the paper's curriculum: a
`keras_rmt.datasets.SegmentedDataset` gives rows of one segment's share of
the task first (copy 4 of the 24 symbols over 6 segments), and
`keras_rmt.callbacks.SegmentCurriculum` adds a segment's share whenever
training accuracy reaches `grow_at` or stops improving; each batch draws
its share from 1 to the current stage, and rows are left-padded to the
whole task's length, so that one compiled step serves the whole curriculum.

Quick mode counts steps, not seconds (the RMT and full attention up to 44
epochs of 50 steps, stopping once validation accuracy reaches 0.99; the
memory-less model 10 epochs), so its figures do not depend on the machine's
load; full mode trains each model for a time budget on a GPU.

Usage: `python examples/copy_reverse.py --quick --task copy` on a CPU (a
few minutes a model), or without `--quick` on a GPU for the paper's sizes
(`--task copy --segments 6`, `--task reverse --segments 4`, `--task
long-copy`; `examples/run_full_on_gpu.sh` runs all the full modes). Prints
test accuracy by number of segments and writes `<task><source length>.json`
and `.png` to `--output-dir`; `--help` lists the options. The results are
in docs/results.md.
"""

import math

import example_common
import numpy as np
from tasks.copy_sequence import copy_sequence

import keras_rmt

TASKS = {  # source and target lengths, numbers of segments
    "copy": {"source": 24, "target": 48, "segments": [3, 6, 9]},
    "reverse": {"source": 24, "target": 24, "segments": [2, 4, 6]},
    "long-copy": {"source": 120, "target": 240, "segments": [3, 6, 9]},
}
QUICK_TASKS = {
    "copy": {"source": 4, "target": 8, "segments": [3]},
    "reverse": {"source": 4, "target": 4, "segments": [2]},
    "long-copy": {"source": 8, "target": 16, "segments": [3, 6]},
}
QUICK = {
    "num_symbols": 8, "num_memory_tokens": 4, "hidden_dim": 64,
    "num_layers": 2, "num_heads": 4, "batch_size": 32, "epochs": 44,
    "baseline_epochs": 10, "steps_per_epoch": 50, "test_samples": 512,
    "validation_samples": 256, "learning_rate": 2e-3, "time_budget": None,
    "baseline_time_budget": None, "target": 0.99, "grow_at": 0.95,
    "patience": 5,
}  # fmt: skip
FULL = {
    "num_symbols": 10, "num_memory_tokens": 10, "hidden_dim": 128,
    "num_layers": 4, "num_heads": 4, "batch_size": 64, "epochs": 1000,
    "steps_per_epoch": 100, "test_samples": 1024, "validation_samples": 256,
    "learning_rate": 1e-3, "time_budget": 400, "baseline_time_budget": 45,
    "full_attention_time_budget": 45, "target": 0.99, "grow_at": 0.95,
    "patience": 5,
    # On a GPU 1.6x faster a step than the scan for these small models.
    "segment_loop": "unrolled",
}  # fmt: skip


def build_causal_lm(config, segment_length, carry_memory=True, seed=0):
    """A compiled `RMTCausalLM` over a small GPT-2 (no download)."""
    num_memory_tokens = config["num_memory_tokens"]
    gpt2 = example_common.small_gpt2(
        config,
        vocabulary_size=config["num_symbols"] + 2,
        max_sequence_length=segment_length + 2 * num_memory_tokens,
        seed=seed,
    )
    backbone = keras_rmt.models.RMTBackbone(
        gpt2,
        num_memory_tokens=num_memory_tokens,
        segment_length=segment_length,
        # Each memory block sees itself whole, as in the paper.
        memory_attention="bidirectional",
        carry_memory=carry_memory,
        segment_loop=config.get("segment_loop", "auto"),
    )
    causal_lm = keras_rmt.models.RMTCausalLM(backbone)
    return example_common.compile_causal_lm(causal_lm, config["learning_rate"])


def task_rows(task, spec, config, num_samples, seed, share=1.0):
    """`(inputs, labels, sample_weight)`: `share` of the task's symbols."""
    source = max(1, int(spec["source"] * share))
    return copy_sequence(
        num_samples,
        source_length=source,
        target_length=source * spec["target"] // spec["source"],
        num_symbols=config["num_symbols"],
        reverse=task == "reverse",
        seed=seed,
    )


def curriculum_data(task, spec, config, num_segments, length, seed):
    """Rows growing from one segment's share of the task to all of it.

    A curriculum stage `k` (the dataset's `num_segments`) gives rows of
    `k / num_segments` of the task, left-padded to `length` tokens.
    """

    def make_batch(batch_size, stage, rng):
        inputs, *targets = task_rows(
            task, spec, config, batch_size, int(rng.integers(2**31)),
            share=stage / num_segments,
        )  # fmt: skip
        width = length - inputs["token_ids"].shape[1]

        def pad(x):
            return np.pad(x, [(0, 0), (width, 0)])

        return ({k: pad(v) for k, v in inputs.items()}, *map(pad, targets))

    return keras_rmt.datasets.SegmentedDataset(
        make_batch,
        batch_size=config["batch_size"],
        num_batches=config["steps_per_epoch"],
        segment_length=length,  # pad_to is not used: rows are padded here
        num_segments=num_segments,
        vary_n_segments=True,
        seed=seed,
    )


def train_and_test(task, spec, config, kind, num_segments, args):
    """Trains one model; returns its run (test accuracy, history...)."""
    test = task_rows(task, spec, config, config["test_samples"], args.seed + 1)
    validation = task_rows(
        task, spec, config, config["validation_samples"], args.seed + 2
    )
    length = test[0]["token_ids"].shape[1]
    segment_length = math.ceil(length / num_segments)
    causal_lm = build_causal_lm(
        config, segment_length, carry_memory=kind == "RMT", seed=args.seed
    )
    data = curriculum_data(task, spec, config, num_segments, length, args.seed)
    callbacks = []
    if num_segments > 1:
        data.num_segments = 1
        curriculum = keras_rmt.callbacks.SegmentCurriculum(
            data,
            max_segments=num_segments,
            monitor="accuracy",
            target=config["grow_at"],
            patience=config["patience"],
            verbose=1,
        )
        callbacks.append(curriculum)
    history, run = example_common.fit(
        causal_lm,
        data,
        example_common.time_budget(config, kind),
        target=config["target"],
        callbacks=callbacks,
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
        "epochs_run": len(history["loss"]),
        "segments_by_epoch": history.get("num_segments"),
        **run,
    }


def main(argv=None):
    parser = example_common.parser(__doc__.splitlines()[0])
    parser.add_argument(
        "--task", choices=sorted(TASKS), action="append",
        help="repeat for several; defaults to copy and reverse",
    )  # fmt: skip
    parser.add_argument("--segments", type=int, nargs="+")
    args = parser.parse_args(argv)
    config = example_common.settings(args, QUICK, FULL)
    summaries = {}
    for task in args.task or ["copy", "reverse"]:
        spec = (QUICK_TASKS if args.quick else TASKS)[task]
        runs = []
        for count in args.segments or spec["segments"]:
            for kind in ("RMT", "no memory"):
                runs.append((kind, count))
        runs.append(("full attention", 1))
        results = {}
        for kind, count in runs:
            print(f"== {task}: {kind}, {count} segment(s) ==")
            run = train_and_test(task, spec, config, kind, count, args)
            results.setdefault(kind, []).append(run)
        accuracy, curves = example_common.by_segments(results)
        summary = {
            "name": f"{task}{spec['source']}",
            "title": f"{task} {spec['source']}/{spec['target']} tokens",
            "config": config,
            "test_accuracy": accuracy,
            "chance": 1 / config["num_symbols"],
            "runs": results,
            "xlabel": "number of segments",
            "ylabel": "target token accuracy",
            "curves": curves,
        }
        example_common.print_by_count(
            f"{summary['title']}: test accuracy by number of segments",
            accuracy,
        )
        example_common.write(summary, args.output_dir)
        summaries[task] = summary
    return summaries


if __name__ == "__main__":
    main()
