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

Usage: `python examples/associative_extrapolation.py --quick` on a CPU
(800 steps a model), or without `--quick` on a GPU for the full sizes, with
`--dtype-policy mixed_bfloat16` (`benchmarks/gpu_associative_examples.sh`).
Prints a table of accuracy by length and writes
`associative_extrapolation.json` (after every reading, so a run cut short
keeps them) and, where matplotlib is installed, `.png` to `--output-dir`;
`--set KEY=VALUE` changes a setting, `--plot FILE.json` draws the plot of
an earlier run. The results are in docs/results.md.
"""

import time

import example_common
import keras
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
    """An `RMTCausalLM` ("ARMT", "RMT", "no memory") on a small GPT-2."""
    gpt2 = example_common.small_gpt2(
        config,
        vocabulary_size=len(VOCABULARY),
        max_sequence_length=config["segment_length"]
        + 2 * config["num_memory_tokens"],
        seed=seed,
    )
    example_common.redraw_weights(gpt2, seed)
    backbone = keras_rmt.models.RMTBackbone(
        gpt2,
        num_memory_tokens=config["num_memory_tokens"],
        segment_length=config["segment_length"],
        carry_memory=kind != "no memory",
        associative_key_dim=config["key_dim"] if kind == "ARMT" else None,
    )
    causal_lm = keras_rmt.models.RMTCausalLM(backbone)
    return example_common.compile_causal_lm(causal_lm, config["learning_rate"])


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


def main(argv=None):
    parser = example_common.parser(__doc__.splitlines()[0])
    args = parser.parse_args(argv)
    config = example_common.settings(args, QUICK, FULL)
    trained = config["train_segments"]
    start, runs, table, curves = time.time(), {}, {}, {}
    summary = {
        "name": NAME,
        "mode": config["mode"],
        "config": config,
        "accuracy": table,
        "chance": 1 / config["num_places"],
        "runs": runs,
        "backend": keras.backend.backend(),
        "dtype_policy": keras.config.dtype_policy().name,
        "title": f"Facts in noise, trained on {trained} segments",
        "xlabel": f"segments at evaluation ({config['segment_length']} "
        "words each)",
        "ylabel": "accuracy",
        "curves": curves,
        "log_x": True,
        "marks": {"trained length": trained},
    }
    for kind in MODELS:
        model = build(kind, config, args.seed)
        began = time.time()
        runs[kind] = train(model, config, args.seed)
        runs[kind]["train_seconds"] = time.time() - began
        table[kind], curves[kind] = {}, {}
        for times in config["lengths"]:
            count = times * trained
            seed = args.seed + 100 + times
            value = accuracy(model, config, count, seed)
            table[kind][str(times)] = curves[kind][str(count)] = value
            summary["seconds"] = time.time() - start
            example_common.save_json(summary, args.output_dir)
        print(f"{kind}: {runs[kind]}", flush=True)
    example_common.write(summary, args.output_dir)
    words = trained * config["segment_length"]
    print(f"\ntrained on {trained} segments ({words} words)")
    example_common.print_markdown(
        "length", table, lambda times: f"{times}x ({int(times) * words} words)"
    )
    return summary


if __name__ == "__main__":
    main()
