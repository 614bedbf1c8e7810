"""Facts hidden in noise, the question at the end: memory over 32 segments.

In the spirit of the 1M-token report and BABILong qa1: a row is noise words
with a few facts ("mary went to the kitchen .") put anywhere in it and the
question at the end ("where is mary ?"); the answer is where that person
went last, predicted at the last position. A `keras_rmt.models.RMTCausalLM`
trains with `keras_rmt.callbacks.SegmentCurriculum`: one segment, then two,
up to `--train-segments` (4), growing when training accuracy reaches
`--grow-at` or stops improving. The data is a
`keras_rmt.datasets.SegmentedDataset` whose batches draw their number of
segments from 1 to the current one (`vary_n_segments=True`) and hold 1 to
`num_facts` facts, so that some rows have long stretches of noise after
their last fact, as long inputs do.

Training accuracy is 1.0 after a few epochs and cannot tell weights that
read long inputs well from weights that drift over many noise segments; so
in full mode the weights kept are those of the epoch with the lowest loss
on validation rows of 16 segments (Keras' `EarlyStopping` set to restore
the best weights, never to stop; no gradient sees more than 4 segments).
The model is then evaluated (`evaluate()`, the weight on the answer alone)
on rows far longer than any it saw, up to 32 segments (8x), from other
seeds than validation's. The same model without carried memory ("no
memory") is the baseline; full attention is left out, as its position
table cannot reach past the training length.

Quick mode counts steps, not seconds (6 epochs of 50 steps a model), so
its figures do not depend on the machine's load; full mode trains each
model for a time budget on a GPU.

Usage: `python examples/facts_in_noise.py --quick` on a CPU (a few minutes
a model), or without `--quick` on a GPU for the full sizes
(`examples/run_full_on_gpu.sh` runs all the full modes). Prints test
accuracy by number of segments and writes `facts_in_noise.json` and `.png`
to `--output-dir`; `--help` lists the options. The results are in
docs/results.md.
"""

import time

import example_common
import keras
from tasks.facts_in_noise import VOCABULARY, facts_in_noise

import keras_rmt

# Quick mode redraws the backbone's weights at the model's scale and carries
# 2 memory tokens: docs/results.md compares it with keras-hub's weights and
# 4 tokens.
QUICK = {
    "segment_length": 24, "num_facts": 3, "num_people": 1, "num_places": 6,
    "num_memory_tokens": 2, "hidden_dim": 64, "num_layers": 2,
    "num_heads": 4, "batch_size": 32, "epochs": 6, "steps_per_epoch": 50,
    "learning_rate": 2e-3, "time_budget": None, "baseline_time_budget": None,
    "test_samples": 256, "validation_samples": 256,
    "kernel_stddev": 64**-0.5, "embedding_stddev": 1.0,
}  # fmt: skip
FULL = {
    "segment_length": 32, "num_facts": 4, "num_people": 1, "num_places": 6,
    "num_memory_tokens": 8, "hidden_dim": 128, "num_layers": 4,
    "num_heads": 4, "batch_size": 128, "epochs": 1000, "steps_per_epoch": 100,
    "learning_rate": 1e-3, "time_budget": 300, "baseline_time_budget": 45,
    "test_samples": 1000, "validation_samples": 256, "select_segments": 16,
    "segment_loop": "unrolled",
}  # fmt: skip


def build_causal_lm(config, carry_memory=True, segment_loop=None, seed=0):
    """A compiled `RMTCausalLM` over a small GPT-2 (no download)."""
    num_memory_tokens = config["num_memory_tokens"]
    gpt2 = example_common.small_gpt2(
        config,
        vocabulary_size=len(VOCABULARY),
        max_sequence_length=config["segment_length"] + 2 * num_memory_tokens,
        seed=seed,
    )
    if config.get("kernel_stddev"):
        example_common.redraw_weights(
            gpt2, seed, config["kernel_stddev"], config["embedding_stddev"]
        )
    backbone = keras_rmt.models.RMTBackbone(
        gpt2,
        num_memory_tokens=num_memory_tokens,
        segment_length=config["segment_length"],
        memory_attention="bidirectional",
        carry_memory=carry_memory,
        segment_loop=segment_loop or config.get("segment_loop", "auto"),
    )
    causal_lm = keras_rmt.models.RMTCausalLM(backbone)
    return example_common.compile_causal_lm(causal_lm, config["learning_rate"])


def main(argv=None):
    parser = example_common.parser(__doc__.splitlines()[0])
    parser.add_argument("--train-segments", type=int, default=4)
    parser.add_argument(
        "--eval-segments", type=int, nargs="+", default=[1, 2, 4, 8, 16, 32]
    )
    parser.add_argument("--grow-at", type=float, default=0.95)
    parser.add_argument(
        "--select-segments", type=int, help="overrides the mode's"
    )
    args = parser.parse_args(argv)
    config = example_common.settings(args, QUICK, FULL)
    if args.select_segments:
        config["select_segments"] = args.select_segments

    def rows(num_samples, num_segments, seed, num_facts=None):
        """`(inputs, labels, sample_weight)`, the weight on the answer."""
        return facts_in_noise(
            num_samples,
            num_segments,
            segment_length=config["segment_length"],
            num_facts=num_facts or config["num_facts"],
            num_people=config["num_people"],
            num_places=config["num_places"],
            seed=seed,
        )

    def make_batch(batch_size, num_segments, rng):
        # 1 to `num_facts` facts: fewer facts leave more noise segments
        # after the last one, which the memory must hold across.
        facts = int(rng.integers(1, config["num_facts"] + 1))
        return rows(batch_size, num_segments, int(rng.integers(2**31)), facts)

    select = config.get("select_segments")
    validation = rows(
        config["validation_samples"],
        select or args.train_segments,
        args.seed + 1,
    )
    start, accuracy, runs = time.time(), {}, {}
    for kind in ("RMT", "no memory"):
        print(f"== facts in noise: {kind} ({keras.backend.backend()}) ==")
        causal_lm = build_causal_lm(config, kind == "RMT", seed=args.seed)
        data = keras_rmt.datasets.SegmentedDataset(
            make_batch,
            batch_size=config["batch_size"],
            num_batches=config["steps_per_epoch"],
            segment_length=config["segment_length"],
            vary_n_segments=True,
            # One input shape for the whole curriculum: TensorFlow's fit
            # fixes shapes from its first batches, and JAX compiles once.
            pad_to=args.train_segments,
            seed=args.seed,
        )
        curriculum = keras_rmt.callbacks.SegmentCurriculum(
            data,
            max_segments=args.train_segments,
            monitor="accuracy",
            target=args.grow_at,
            patience=3,
            verbose=1,
        )
        callbacks = [curriculum]
        if select:
            keep_best = keras.callbacks.EarlyStopping(
                patience=config["epochs"], restore_best_weights=True
            )
            callbacks.append(keep_best)
        history, _ = example_common.fit(
            causal_lm,
            data,
            example_common.time_budget(config, kind),
            callbacks=callbacks,
            validation_data=validation,
            epochs=example_common.epochs(config, kind),
            verbose=args.verbose,
        )
        runs[kind] = {
            "val_loss": history["val_loss"],
            "segments_by_epoch": curriculum.history,
            "steps": len(history["loss"]) * config["steps_per_epoch"],
        }
        if select:
            runs[kind]["kept_epoch"] = keep_best.best_epoch + 1
        if config.get("segment_loop") == "unrolled":
            # Long inputs read with the scan: one compiled segment step,
            # whatever their length, where unrolling traces every segment.
            reader = build_causal_lm(config, kind == "RMT", "scan")
            reader.set_weights(causal_lm.get_weights())
            causal_lm = reader
        accuracy[kind] = {}
        for count in args.eval_segments:
            test = rows(config["test_samples"], count, args.seed + 100 + count)
            value = example_common.weighted_accuracy(causal_lm, test, 128)
            accuracy[kind][str(count)] = value
            print(f"   {count:>3} segments: {value:.3f}")
    summary = {
        "name": "facts_in_noise",
        "title": "Where is Mary? Facts hidden in noise",
        "config": config,
        "train_segments": args.train_segments,
        "test_accuracy": accuracy,
        "chance": 1 / config["num_places"],
        "runs": runs,
        "seconds": time.time() - start,
        "xlabel": f"number of segments ({config['segment_length']} words "
        f"each; trained up to {args.train_segments})",
        "ylabel": "answer accuracy",
        "curves": accuracy,
    }
    example_common.print_by_count(
        f"facts in noise, trained up to {args.train_segments} segments",
        accuracy,
    )
    example_common.write(summary, args.output_dir)
    return summary


if __name__ == "__main__":
    main()
