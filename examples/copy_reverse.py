"""Copy and reverse through memory: the paper's algorithmic tasks.

A row is a source of random symbols, a separator, then the target the model
must write: the source twice (copy 24/48), reversed (reverse 24/24), or
the long copy of 120 symbols (360 tokens). The whole row is cut into N
segments; for each N we train an RMT, the same model without carried
memory ("no memory") and, once, full attention over the whole row, and
measure the share of target tokens written right (chance 1 / symbols).

Writes `<task><source length>.json` and `.png` (accuracy against the
number of segments) to `--output-dir`. Paper (Bulatov et al., 2022): RMT
stays near 1.0 on copy up to 9 segments; long copy 1.0 at 3, 6 and 9
segments (Transformer-XL 0.78 / 0.13 / 0.14); reverse 120 at 2/4/6
segments 0.96 / 0.997 / 1.0.
"""

import example_utils
from tasks.copy_sequence import copy_sequence

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
PAPER = {
    "copy": "RMT ~1.0 up to 9 segments; Transformer-XL falls to ~0.1-0.2",
    "reverse": "RMT (reverse 120) 0.96 / 0.997 / 1.0 at 2 / 4 / 6 segments",
    "long-copy": "RMT 1.0 at 3, 6, 9 segments; Transformer-XL "
    "0.78 / 0.13 / 0.14",
}
QUICK = {
    "num_symbols": 8, "num_memory_tokens": 4, "hidden_dim": 64,
    "num_layers": 2, "num_heads": 4, "batch_size": 32, "epochs": 1000,
    "steps_per_epoch": 50, "test_samples": 512, "learning_rate": 2e-3,
    "time_budget": 240, "baseline_time_budget": 45, "target": 0.99,
}  # fmt: skip
FULL = {
    "num_symbols": 10, "num_memory_tokens": 10, "hidden_dim": 128,
    "num_layers": 4, "num_heads": 4, "batch_size": 64, "epochs": 1000,
    "steps_per_epoch": 100, "test_samples": 1024, "learning_rate": 1e-3,
    "time_budget": 400, "baseline_time_budget": 45,
    "full_attention_time_budget": 45, "target": 0.99, "grow_at": 0.95,
    "patience": 5, "segment_loop": "unrolled",
}  # fmt: skip


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
        spec = (QUICK_TASKS if args.quick else TASKS)[task]

        def generate(num_samples, seed, share=1.0, spec=spec, task=task):
            source = max(1, int(spec["source"] * share))  # the curriculum's
            return copy_sequence(
                num_samples,
                source_length=source,
                target_length=source * spec["target"] // spec["source"],
                num_symbols=config["num_symbols"],
                reverse=task == "reverse",
                seed=seed,
            )

        summaries[task] = example_utils.sweep(
            f"{task}{spec['source']}",
            generate,
            vocabulary_size=config["num_symbols"] + 2,
            segments=args.segments or spec["segments"],
            config=config,
            args=args,
            title=f"{task} {spec['source']}/{spec['target']} tokens",
            chance=1 / config["num_symbols"],
            paper=PAPER[task],
        )
    return summaries


if __name__ == "__main__":
    main()
