"""Speed, memory and compile time of RecurrentSegments against its baselines.

One command measures, for one configuration and a list of segment counts:
training and inference tokens/s, peak device memory and first-call
(compile) time, for the RMT, for the bare backbone on the same segments, and
for full attention over the whole input where it fits. It prints a table and
writes JSON.

    python benchmarks/run.py --quick          # tiny GPT-2 on a CPU, minutes
    python benchmarks/run.py --gpu            # GPT-2-small, mixed_bfloat16
    python benchmarks/run.py --gpu --data-parallel 2   # issue 8

Runs on the JAX backend (it reads JAX's device memory statistics and times
with `block_until_ready`). Each kind of measurement runs in its own process,
so that one process's peak memory is not another's; segment counts are
taken in increasing order, so a process's peak is that of its largest count
so far (for flat-memory paths: the same as the first).
"""

import argparse
import json
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

QUICK = {
    "vocabulary_size": 512,
    "num_layers": 2,
    "num_heads": 2,
    "hidden_dim": 64,
    "intermediate_dim": 128,
    "batch_size": 2,
    "segment_length": 32,
    "memory_tokens": 4,
    "dtype_policy": "float32",
    "infer_segments": [1, 4, 16, 64],
    "train_segments": [1, 2, 4],
    "full_segments": [1, 2, 4],
}
GPU = {
    "vocabulary_size": 50257,
    "num_layers": 12,
    "num_heads": 12,
    "hidden_dim": 768,
    "intermediate_dim": 3072,
    "batch_size": 8,
    "segment_length": 512,
    "memory_tokens": 10,
    "dtype_policy": "mixed_bfloat16",
    "infer_segments": [1, 2, 4, 8, 16, 32, 64, 128],
    "train_segments": [1, 2, 4, 8, 16],
    "full_segments": [1, 2, 4, 8],
}
KINDS = (
    "rmt_infer",
    "rmt_train",
    "backbone_infer",
    "backbone_train",
    "full_infer",
    "full_train",
    "segment_infer",
    "segment_train",
)


# ---------------------------------------------------------------------------
# One process: one kind of measurement over several segment counts.
# ---------------------------------------------------------------------------


def _setup(config):
    os.environ.setdefault("KERAS_BACKEND", "jax")
    import keras

    if keras.backend.backend() != "jax":
        raise SystemExit("benchmarks/run.py runs on the JAX backend.")
    keras.config.set_dtype_policy(config["dtype_policy"])
    if config.get("flash"):
        keras.config.enable_flash_attention()
    if config.get("unfused_inference"):
        # As before attention read its dropout rate as 0 at inference: the
        # "before" column of the inference comparison.
        from keras_rmt.layers import recurrent_segments

        recurrent_segments.fuse_attention_at_inference = lambda backbone: None
    if config.get("data_parallel"):
        import jax

        devices = jax.devices()[: config["data_parallel"]]
        keras.distribution.set_distribution(
            keras.distribution.DataParallel(devices=devices)
        )
    keras.utils.set_random_seed(config.get("seed", 0))
    return keras


def _backbone(config, max_sequence_length):
    import keras
    import keras_hub

    from keras_rmt.utils import keras_hub_internals

    backbone = keras_hub.models.GPT2Backbone(
        vocabulary_size=config["vocabulary_size"],
        num_layers=config["num_layers"],
        num_heads=config["num_heads"],
        hidden_dim=config["hidden_dim"],
        intermediate_dim=config["intermediate_dim"],
        dropout=config["dropout"],
        max_sequence_length=max_sequence_length,
    )
    for layer in keras_hub_internals.sublayers(backbone):
        if not isinstance(layer, keras.layers.MultiHeadAttention):
            continue
        if config.get("no_attention_dropout"):
            # Ablation (changes the model): no attention-probability
            # dropout, the other dropouts kept. What a free attention
            # dropout would buy.
            layer._dropout = 0.0
        elif config.get("cudnn_attention_dropout") and layer._dropout > 0:
            _attention_dropout_through_cudnn(layer)
    return backbone


def _attention_dropout_through_cudnn(layer):
    """Trains `layer` with cuDNN's fused causal attention with dropout.

    The route to a fast attention dropout, measured here, not in the
    library: JAX's private cuDNN entry point (`keras.ops` has no attention
    with dropout), XLA's command buffers off, a dropout mask of cuDNN's
    drawing. It ignores the attention mask and applies a causal one: right
    for these benchmarks, whose rows fill every segment (the decoder
    layout's mask is then causal; `CHECK_CAUSAL_MASK=1` checks it on the
    device at every call). Inference keeps Keras' own path.
    """
    import jax
    import numpy as np
    from jax._src.cudnn import fused_attention_stablehlo as cudnn

    keras_attention = layer._compute_attention
    check = os.environ.get("CHECK_CAUSAL_MASK") == "1"

    def check_causal(mask):
        mask = np.asarray(mask)
        causal = np.tril(np.ones(mask.shape[-2:], bool))
        if not (mask.astype(bool) == causal).all():
            raise ValueError("the attention mask is not causal")

    def compute_attention(query, key, value, attention_mask=None, **kwargs):
        if not kwargs.get("training") or kwargs.get("return_attention_scores"):
            return keras_attention(query, key, value, attention_mask, **kwargs)
        if check:
            jax.debug.callback(check_causal, attention_mask)
        output = cudnn.dot_product_attention(
            query,
            key,
            value,
            scale=1 / float(layer._key_dim) ** 0.5,
            mask_type=cudnn.MaskType.CAUSAL,
            dropout_rate=layer._dropout,
        )
        return output, None

    layer._compute_attention = compute_attention


def _rmt(config):
    import keras_rmt

    positions = config["segment_length"] + 2 * config["memory_tokens"]
    options = {}
    layer_class = keras_rmt.layers.RecurrentSegments
    if config.get("associative_key_dim"):
        layer_class = keras_rmt.layers.AssociativeRecurrentSegments
        options["key_dim"] = config["associative_key_dim"]
    return layer_class(
        _backbone(config, max(positions, 64)),
        memory=keras_rmt.layers.MemoryTokens(config["memory_tokens"]),
        segment_length=config["segment_length"],
        segment_loop=config["segment_loop"],
        remat=config["remat"],
        scan_unroll=config["scan_unroll"],
        **options,
    )


def _batch(config, batch_size, length, seed=0):
    import numpy as np

    rng = np.random.default_rng(seed)
    ids = rng.integers(1, config["vocabulary_size"], (batch_size, length))
    ids = ids.astype("int32")
    return {"token_ids": ids, "padding_mask": np.ones_like(ids)}


def _log(config, row):
    row = {**row, "flash": config["flash"], "dropout": config["dropout"]}
    row.update(remat=config["remat"], xla_flags=os.environ.get("XLA_FLAGS"))
    row.update(segment_loop=config["segment_loop"])
    row.update(associative_key_dim=config.get("associative_key_dim", 0))
    row.update(
        unfused_inference=config["unfused_inference"],
        scan_unroll=config["scan_unroll"],
        no_attention_dropout=config["no_attention_dropout"],
    )
    print(json.dumps(row), flush=True)
    if config.get("log"):
        with open(config["log"], "a") as file:
            file.write(json.dumps(row) + "\n")


def _peak_bytes():
    import jax

    stats = [d.memory_stats() or {} for d in jax.local_devices()]
    return max(s.get("peak_bytes_in_use", 0) for s in stats) or None


def _timed(function, min_seconds, min_repeats=3):
    """Median seconds of `function()` (which must wait for its results)."""
    times = []
    start = time.perf_counter()
    while len(times) < min_repeats or time.perf_counter() - start < min_seconds:
        begin = time.perf_counter()
        function()
        times.append(time.perf_counter() - begin)
        if len(times) >= 50:
            break
    return sorted(times)[len(times) // 2]


def _lm_model(keras, body, length, config):
    """token ids -> tied-embedding logits, with a next-token loss."""
    token_ids = keras.Input((length,), dtype="int32", name="token_ids")
    padding_mask = keras.Input((length,), dtype="int32", name="padding_mask")
    inputs = {"token_ids": token_ids, "padding_mask": padding_mask}
    hidden = body(inputs)
    if isinstance(hidden, dict):
        hidden = hidden["sequence_output"]
    embedding = (
        body.backbone.token_embedding
        if hasattr(body, "memory")
        else body.token_embedding
    )
    if config.get("no_lm_head"):
        outputs = keras.layers.Dense(1, name="probe")(hidden)
        loss = "mse"
    else:
        outputs = embedding(hidden, reverse=True)
        loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    model = keras.Model(inputs, outputs)
    model.compile(
        optimizer=keras.optimizers.AdamW(1e-4), loss=loss, jit_compile=True
    )
    return model


def _train(keras, model, batch, config, steps_seconds):
    import numpy as np

    labels = batch["token_ids"]
    if config.get("no_lm_head"):
        labels = np.zeros(labels.shape + (1,), "float32")
    begin = time.perf_counter()
    loss = model.train_on_batch(batch, labels)
    first = time.perf_counter() - begin
    seconds = _timed(lambda: model.train_on_batch(batch, labels), steps_seconds)
    return first, seconds, float(loss)


def _run_kind(kind, config):
    keras = _setup(config)
    import jax

    from keras_rmt.layers.segment_loops import choose_loop

    B, L = config["batch_size"], config["segment_length"]
    scale = config.get("data_parallel") or 1
    B = B * scale
    results = []
    counts = {
        "rmt_infer": config["infer_segments"],
        "rmt_train": config["train_segments"],
        "backbone_infer": config["infer_segments"],
        "backbone_train": config["train_segments"],
        "full_infer": config["full_segments"],
        "full_train": config["full_segments"],
        # The bare backbone on one segment of `batch_size` rows: what the
        # RMT runs once per segment, without memory.
        "segment_infer": [1],
        "segment_train": [1],
    }[kind]
    rmt = _rmt(config) if kind.startswith("rmt") else None
    full = None
    if kind.startswith("full"):
        full = _backbone(config, max(counts) * L)
    bare = None
    if kind.startswith(("backbone", "segment")):
        bare = _backbone(config, L)
    for count in counts:
        tokens = B * count * L
        row = {"kind": kind, "segments": count, "tokens": tokens}
        try:
            if kind == "rmt_infer":
                batch = _batch(config, B, count * L)
                # Time the compile at every count.
                rmt._inference_functions = None

                def run():
                    out = rmt.infer(batch, keep="last_segment")
                    jax.block_until_ready(out["memory"])

                begin = time.perf_counter()
                run()
                row["first_call_s"] = time.perf_counter() - begin
                row["step_s"] = _timed(run, config["seconds"])
            elif kind in ("backbone_infer", "full_infer", "segment_infer"):
                model = full if full is not None else bare
                shape = (B * count, L) if bare is not None else (B, count * L)
                batch = _batch(config, *shape)
                values = [v.value for v in model.variables]

                @jax.jit
                def forward(values, batch, model=model):
                    mapping = zip(model.variables, values)
                    with keras.StatelessScope(state_mapping=mapping):
                        return model(batch)

                def run():
                    jax.block_until_ready(forward(values, batch))

                begin = time.perf_counter()
                run()
                row["first_call_s"] = time.perf_counter() - begin
                row["step_s"] = _timed(run, config["seconds"])
            else:
                if kind == "rmt_train":
                    body, shape = rmt, (B, count * L)
                    # What `segment_loop` ran at this count ("auto": its
                    # table's choice).
                    loop = choose_loop(rmt, count, training=True)
                    row.update(
                        loop=loop.name,
                        loop_unroll=loop.scan_unroll,
                        loop_remat=loop.remat,
                    )
                elif kind in ("backbone_train", "segment_train"):
                    body, shape = bare, (B * count, L)
                else:
                    body, shape = full, (B, count * L)
                model = _lm_model(keras, body, shape[1], config)
                batch = _batch(config, *shape)
                first, seconds, loss = _train(
                    keras, model, batch, config, config["seconds"]
                )
                row.update(first_call_s=first, step_s=seconds, loss=loss)
                del model
            row["tokens_per_s"] = tokens / row["step_s"]
            row["peak_bytes"] = _peak_bytes()
        except Exception as error:  # Out of memory, most often.
            row["error"] = f"{type(error).__name__}: {str(error)[:300]}"
        results.append(row)
        _log(config, row)
        if "error" in row and kind.startswith("full"):
            break
    return results


def _loss_curve(config):
    """Losses of `steps` training steps on a fixed sequence of batches."""
    keras = _setup(config)
    B = config["batch_size"] * (config.get("data_parallel") or 1)
    count, L = config["curve_segments"], config["segment_length"]
    model = _lm_model(keras, _rmt(config), count * L, config)
    losses, times = [], []
    for step in range(config["curve_steps"]):
        batch = _batch(config, B, count * L, seed=step)
        begin = time.perf_counter()
        losses.append(float(model.train_on_batch(batch, batch["token_ids"])))
        times.append(time.perf_counter() - begin)
    steady = sorted(times[2:])[len(times[2:]) // 2] if len(times) > 2 else None
    row = {
        "kind": "loss_curve",
        "segments": count,
        "batch_size": B,
        "devices": config.get("data_parallel") or 1,
        "losses": losses,
        "first_call_s": times[0],
        "step_s": steady,
        "tokens_per_s": B * count * L / steady if steady else None,
        "peak_bytes": _peak_bytes(),
    }
    _log(config, row)
    return [row]


# ---------------------------------------------------------------------------
# The driver: one process per kind, a table at the end.
# ---------------------------------------------------------------------------


def _table(rows, config):
    L, M = config["segment_length"], config["memory_tokens"]
    by = {(r["kind"], r["segments"]): r for r in rows}
    lines = [
        f"{'kind':<15}{'segs':>5}{'tokens':>9}{'tok/s':>12}{'step ms':>10}"
        f"{'first s':>9}{'peak GiB':>10}{'N-cost':>8}{'vs bare':>8}"
    ]
    for r in rows:
        if r["kind"] == "loss_curve":
            continue
        if "error" in r:
            lines.append(
                f"{r['kind']:<15}{r['segments']:>5}  {r['error'][:60]}"
            )
            continue
        one = by.get((r["kind"], 1))
        cost = (
            r["step_s"] / (r["segments"] * one["step_s"])
            if one and "step_s" in one
            else float("nan")
        )
        bare = by.get((r["kind"].replace("rmt", "backbone"), r["segments"]))
        ratio = (
            r["step_s"] / bare["step_s"]
            if r["kind"].startswith("rmt") and bare and "step_s" in bare
            else float("nan")
        )
        peak = (r.get("peak_bytes") or 0) / 2**30
        lines.append(
            f"{r['kind']:<15}{r['segments']:>5}{r['tokens']:>9}"
            f"{r['tokens_per_s']:>12,.0f}{1000 * r['step_s']:>10.2f}"
            f"{r['first_call_s']:>9.2f}{peak:>10.2f}{cost:>8.2f}{ratio:>8.2f}"
        )
    lines.append(
        f"N-cost: step(N) / (N * step(1)); vs bare: RMT step / backbone step "
        f"on the same segments (memory adds (L + 2M) / L = "
        f"{(L + 2 * M) / L:.3f} of the positions)."
    )
    return "\n".join(lines)


def _parse():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--quick", action="store_true", help="tiny, on a CPU")
    which.add_argument("--gpu", action="store_true", help="GPT-2-small, bf16")
    parser.add_argument("--kinds", default=",".join(KINDS))
    parser.add_argument("--infer-segments", help="e.g. 1,8,64")
    parser.add_argument("--train-segments", help="e.g. 1,2,4,8")
    parser.add_argument("--full-segments", help="e.g. 1,2,4,8")
    parser.add_argument("--batch-size", type=int)
    parser.add_argument("--dropout", type=float, default=0.1)
    parser.add_argument("--flash", action="store_true")
    parser.add_argument(
        "--remat",
        action="store_const",
        const=True,
        default="auto",
        help="remat=True (default: the layer's default, 'auto')",
    )
    parser.add_argument(
        "--no-remat",
        dest="remat",
        action="store_const",
        const=False,
        help="remat=False (the scan stacks each segment's activations)",
    )
    parser.add_argument("--no-lm-head", action="store_true")
    parser.add_argument(
        "--unfused-inference",
        action="store_true",
        help="attention with dropout in the config is not fused at inference "
        "(as before keras-rmt read its rate as 0 when not training)",
    )
    parser.add_argument(
        "--no-attention-dropout",
        action="store_true",
        help="ablation: attention probabilities without dropout",
    )
    parser.add_argument(
        "--cudnn-attention-dropout",
        action="store_true",
        help="measurement only: attention dropout through JAX's private "
        "cuDNN fused attention (turns XLA's command buffers off)",
    )
    parser.add_argument(
        "--scan-unroll",
        type=int,
        default=1,
        help="with --segment-loop scan: segments traced together in each "
        "iteration of the scan (the layer's `scan_unroll`)",
    )
    parser.add_argument(
        "--triton-gemm",
        action="store_true",
        help="with --gpu, keep XLA's Triton matrix multiplies (by default "
        "they are switched off: cuBLAS trained 14%% faster on an H100)",
    )
    parser.add_argument(
        "--segment-loop", default="auto", choices=("auto", "unrolled", "scan")
    )
    parser.add_argument(
        "--associative-key-dim",
        type=int,
        default=0,
        help="ARMT: associative memory with keys of this size (paper: 64)",
    )
    parser.add_argument("--seconds", type=float, help="timing per point")
    parser.add_argument(
        "--data-parallel", type=int, default=0, help="devices for DataParallel"
    )
    parser.add_argument("--loss-curve", type=int, default=0, help="steps")
    parser.add_argument("--curve-segments", type=int, default=8)
    parser.add_argument(
        "--seed", type=int, default=0, help="weights and dropout masks"
    )
    parser.add_argument("--out", default="benchmark.json")
    parser.add_argument("--log", help="append each row to this JSON-lines file")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    return parser.parse_args()


def main():
    args = _parse()
    config = dict(QUICK if args.quick else GPU)
    for name in ("infer_segments", "train_segments", "full_segments"):
        value = getattr(args, name)
        if value:
            config[name] = [int(x) for x in value.split(",")]
    config.update(
        dropout=args.dropout,
        flash=args.flash,
        remat=args.remat,
        no_lm_head=args.no_lm_head,
        unfused_inference=args.unfused_inference,
        no_attention_dropout=args.no_attention_dropout,
        cudnn_attention_dropout=args.cudnn_attention_dropout,
        scan_unroll=args.scan_unroll,
        segment_loop=args.segment_loop,
        associative_key_dim=args.associative_key_dim,
        seconds=args.seconds or (0.5 if args.quick else 2.0),
        data_parallel=args.data_parallel,
        curve_steps=args.loss_curve,
        seed=args.seed,
        curve_segments=args.curve_segments,
        log=args.log,
    )
    if args.batch_size:
        config["batch_size"] = args.batch_size
    if args.child:
        rows = (
            _loss_curve(config)
            if args.child == "loss_curve"
            else _run_kind(args.child, config)
        )
        print("ROWS " + json.dumps(rows), flush=True)
        return
    kinds = ["loss_curve"] if args.loss_curve else args.kinds.split(",")
    rows = []
    env = dict(os.environ, KERAS_BACKEND="jax")
    if args.gpu and not args.triton_gemm:
        flags = [env.get("XLA_FLAGS"), "--xla_gpu_enable_triton_gemm=false"]
        env["XLA_FLAGS"] = " ".join(filter(None, flags))
    if args.cudnn_attention_dropout:
        # With command buffers, XLA fails a check initialising cuDNN's
        # dropout (benchmarks/attention_dropout.py).
        flags = [env.get("XLA_FLAGS"), "--xla_gpu_enable_command_buffer="]
        env["XLA_FLAGS"] = " ".join(filter(None, flags))
    env["PYTHONPATH"] = os.pathsep.join(
        [ROOT, *filter(None, [env.get("PYTHONPATH")])]
    )
    for kind in kinds:
        command = [sys.executable, __file__, *sys.argv[1:], "--child", kind]
        done = subprocess.run(
            command, env=env, capture_output=True, text=True, check=False
        )
        found = [
            line for line in done.stdout.splitlines() if line.startswith("ROWS")
        ]
        if not found:
            rows.append(
                {"kind": kind, "segments": 0, "error": done.stderr[-600:]}
            )
            print(done.stderr[-2000:], file=sys.stderr)
            continue
        rows.extend(json.loads(found[-1][5:]))
    import jax

    device = jax.devices()[0].device_kind if not args.quick else "cpu"
    report = {"config": config, "device": device, "rows": rows}
    with open(args.out, "w") as file:
        json.dump(report, file, indent=1)
    print(f"device: {device}")
    print(_table(rows, config))
    for row in rows:
        if row["kind"] == "loss_curve":
            speed = row["tokens_per_s"]  # None below 3 steps
            print(
                f"loss curve, {row['devices']} device(s), batch "
                f"{row['batch_size']}: {f'{speed:,.0f}' if speed else '-'} "
                f"tok/s, losses {[round(x, 4) for x in row['losses']]}"
            )


if __name__ == "__main__":
    main()
