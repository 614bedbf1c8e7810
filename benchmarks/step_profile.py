"""Where one training step's GPU time goes: kernels by kind, per step.

Builds `run.py`'s GPT-2-small training model (8 segments of 512, batch 8,
`mixed_bfloat16`), traces three steps with `jax.profiler` and sums the GPU
kernels of the trace by kind. Used to compare loops back to back:

    XLA_FLAGS=--xla_gpu_enable_triton_gemm=false \\
        python benchmarks/step_profile.py --segment-loop scan --no-remat \\
        --dropout 0 --out OUT_DIR

`--quick` runs run.py's tiny model on the CPU (the host's XLA threads take
the place of the GPU's streams), to check the script. Prints and writes
`OUT_DIR/profile_LOOP_REMAT_DROPOUT.json`: the step's wall time, the
kernels' summed and overlapping ("busy") time, the kernel count,
milliseconds by kind and the 40 longest kernels.
"""

import argparse
import collections
import glob
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import run  # noqa: E402

# Kernel name fragments, first match wins: cuDNN attention before the
# `sm90` that its name and cuBLAS's share.
KINDS = (
    ("fused attention (cuDNN)", ("cudnn", "fmha", "flash")),
    ("matrix multiplies", ("gemm", "nvjet", "cutlass", "cublas", "xmma")),
    ("stacking (dynamic-update-slice)", ("dynamic_update_slice",)),
    ("copies", ("memcpy", "copy")),
    ("reductions", ("reduce",)),
    ("transposes", ("transpose",)),
    ("casts", ("convert",)),
    ("other fusions", ("fusion",)),
)


def kind_of(name):
    name = name.lower()
    for kind, fragments in KINDS:
        if any(fragment in name for fragment in fragments):
            return kind
    return "other"


def busy_ns(intervals):
    """Time covered by at least one kernel."""
    total, start, end = 0, None, None
    for s, e in sorted(intervals):
        if end is None or s > end:
            total += 0 if end is None else end - start
            start, end = s, e
        else:
            end = max(end, e)
    return total + (0 if end is None else end - start)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--segment-loop", default="auto")
    parser.add_argument("--no-remat", action="store_true")
    parser.add_argument("--dropout", type=float, default=0.1)
    parser.add_argument("--segments", type=int, default=8)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--out", default=".")
    parser.add_argument("--quick", action="store_true", help="tiny, on a CPU")
    args = parser.parse_args()
    config = dict(
        run.QUICK if args.quick else run.GPU,
        dropout=args.dropout,
        flash=False,
        remat=False if args.no_remat else "auto",
        no_lm_head=False,
        unfused_inference=False,
        no_attention_dropout=False,
        scan_unroll=1,
        segment_loop=args.segment_loop,
        associative_key_dim=0,
    )
    keras = run._setup(config)
    import jax
    from jax.profiler import ProfileData

    length = args.segments * config["segment_length"]
    model = run._lm_model(keras, run._rmt(config), length, config)
    batch = run._batch(config, config["batch_size"], length)
    labels = batch["token_ids"]
    begin = time.perf_counter()
    model.train_on_batch(batch, labels)
    first = time.perf_counter() - begin
    step = run._timed(lambda: model.train_on_batch(batch, labels), 2.0)
    name = f"{args.segment_loop}_{config['remat']}_{args.dropout}"
    trace_dir = os.path.join(args.out, f"trace_{name}")
    with jax.profiler.trace(trace_dir):
        for _ in range(args.steps):
            model.train_on_batch(batch, labels)
    path = glob.glob(f"{trace_dir}/**/*.xplane.pb", recursive=True)[0]
    by_name, count, intervals = collections.Counter(), collections.Counter(), []
    plane_name, line_name = (
        ("/host:CPU", "XLA")
        if args.quick
        else (
            "/device:GPU",
            "Stream",
        )
    )
    for plane in ProfileData.from_file(path).planes:
        if not plane.name.startswith(plane_name):
            continue
        for line in plane.lines:
            if line_name not in line.name:
                continue
            for event in line.events:
                by_name[event.name] += event.duration_ns
                count[event.name] += 1
                intervals.append(
                    (event.start_ns, event.start_ns + event.duration_ns)
                )
    kinds = collections.Counter()
    for kernel, ns in by_name.items():
        kinds[kind_of(kernel)] += ns / args.steps / 1e6
    report = {
        "segment_loop": args.segment_loop,
        "remat": config["remat"],
        "dropout": args.dropout,
        "segments": args.segments,
        "first_call_s": first,
        "step_ms": step * 1e3,
        "tokens_per_s": config["batch_size"] * length / step,
        "kernel_ms": sum(by_name.values()) / args.steps / 1e6,
        "busy_ms": busy_ns(intervals) / args.steps / 1e6,
        "kernels": sum(count.values()) / args.steps,
        "ms_by_kind": dict(kinds.most_common()),
        "longest": [
            (kernel[:120], ns / args.steps / 1e6, count[kernel] / args.steps)
            for kernel, ns in by_name.most_common(40)
        ],
    }
    print(json.dumps({k: v for k, v in report.items() if k != "longest"}))
    with open(os.path.join(args.out, f"profile_{name}.json"), "w") as file:
        json.dump(report, file, indent=1)


if __name__ == "__main__":
    main()
