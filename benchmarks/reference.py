"""The reference PyTorch RMT, measured as `run.py` measures keras-rmt.

The official code (github booydar/recurrent-memory-transformer, branch
babilong-release, `modeling_rmt/language_modeling.py`: `MemoryCell` and
`RecurrentWrapper`) around Hugging Face's GPT-2 with bf16 autocast, on the
same configuration as `run.py --gpu`: GPT-2-small, batch 8, segments of 512
tokens, 10 memory tokens. It needs torch (CUDA) and transformers, which the
package does not depend on, and the reference file, which is not part of
this repository: copy it into the git-ignored `benchmarks/reference_rmt/`:

    git -C RMT_CHECKOUT show \
        babilong-release:modeling_rmt/language_modeling.py \
        > benchmarks/reference_rmt/language_modeling.py
    python benchmarks/reference.py --segments 8 --dropout 0.1 --log rows.jsonl

Training: a forward with labels (the 50,257-way LM head and its loss), a
backward through every segment and an AdamW step. Inference: eval mode, no
gradients, the LM head replaced by the identity, so that it returns hidden
states as `RecurrentSegments.infer` does (no vocabulary projection).
"""

import argparse
import importlib.util
import json
import os
import time

HERE = os.path.dirname(os.path.abspath(__file__))


def _reference_module(path):
    spec = importlib.util.spec_from_file_location("reference_rmt", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _model(args, reference):
    import torch
    import transformers

    config = transformers.GPT2Config(
        vocab_size=50257,
        n_positions=1024,
        n_embd=768,
        n_layer=12,
        n_head=12,
        resid_pdrop=args.dropout,
        embd_pdrop=args.dropout,
        attn_pdrop=args.dropout,
    )
    torch.manual_seed(0)
    base = transformers.GPT2LMHeadModel(config)
    cell = reference.MemoryCell(base, num_mem_tokens=args.memory_tokens)
    model = reference.RecurrentWrapper(
        cell,
        segment_size=args.segment_length,
        max_n_segments=max(args.segments),
    )
    return model.cuda(), base


def _median_seconds(step, seconds, minimum=3):
    import torch

    times = []
    start = time.perf_counter()
    while len(times) < minimum or time.perf_counter() - start < seconds:
        torch.cuda.synchronize()
        begin = time.perf_counter()
        step()
        torch.cuda.synchronize()
        times.append(time.perf_counter() - begin)
        if len(times) >= 50:
            break
    return sorted(times)[len(times) // 2]


def _measure(kind, count, step, args):
    import torch

    tokens = args.batch_size * count * args.segment_length
    row = {"kind": kind, "segments": count, "tokens": tokens}
    try:
        torch.cuda.reset_peak_memory_stats()
        torch.cuda.synchronize()
        begin = time.perf_counter()
        step()
        torch.cuda.synchronize()
        row["first_call_s"] = time.perf_counter() - begin
        row["step_s"] = _median_seconds(step, args.seconds)
        row["tokens_per_s"] = tokens / row["step_s"]
        row["peak_bytes"] = torch.cuda.max_memory_allocated()
    except Exception as error:  # Out of memory, most often.
        row["error"] = f"{type(error).__name__}: {str(error)[:300]}"
    row.update(dropout=args.dropout, device=torch.cuda.get_device_name())
    print(json.dumps(row), flush=True)
    if args.log:
        with open(args.log, "a") as file:
            file.write(json.dumps(row) + "\n")
    return row


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--segments", default="8", help="e.g. 8,32")
    parser.add_argument("--kinds", default="reference_train,reference_infer")
    parser.add_argument("--dropout", type=float, default=0.1)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--segment-length", type=int, default=512)
    parser.add_argument("--memory-tokens", type=int, default=10)
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument(
        "--reference",
        default=os.path.join(HERE, "reference_rmt", "language_modeling.py"),
    )
    parser.add_argument("--log")
    args = parser.parse_args()
    args.segments = [int(x) for x in args.segments.split(",")]

    import torch

    reference = _reference_module(args.reference)
    model, base = _model(args, reference)
    generator = torch.Generator().manual_seed(0)
    kinds = args.kinds.split(",")
    if "reference_train" in kinds:
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
        model.train()
        for count in args.segments:
            length = count * args.segment_length
            ids = torch.randint(
                1, 50257, (args.batch_size, length), generator=generator
            ).cuda()

            def train_step(ids=ids):
                with torch.autocast("cuda", dtype=torch.bfloat16):
                    loss = model(input_ids=ids, labels=ids)["loss"]
                loss.backward()
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)

            _measure("reference_train", count, train_step, args)
        del optimizer
    if "reference_infer" in kinds:
        base.lm_head = torch.nn.Identity()
        model.eval()
        for count in args.segments:
            length = count * args.segment_length
            ids = torch.randint(
                1, 50257, (args.batch_size, length), generator=generator
            ).cuda()

            def infer_step(ids=ids):
                with (
                    torch.no_grad(),
                    torch.autocast("cuda", dtype=torch.bfloat16),
                ):
                    model(input_ids=ids)

            _measure("reference_infer", count, infer_step, args)


if __name__ == "__main__":
    main()
