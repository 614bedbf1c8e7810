"""Serve an RMT over REST, streaming a long document one segment per request.

Trains the tiny first-token-recall RMT of `first_token_recall.py` for a few
seconds and exports it with `keras_rmt.export.export_saved_model` (on torch,
through `python -m keras_rmt export` on a `.keras` file). Then starts
`keras_rmt/export/rest_server.py`, a small TF-Serving-like REST server, on
the loopback, in a process that imports TensorFlow only (Keras, keras-hub
and keras-rmt cannot be imported there), and acts as its client:

- reads `segment_length` from the `metadata` signature;
- streams each document through `serve_segment`, one segment per request,
  starting from `initial_memory` and sending back the `memory` of the last
  reply: the client keeps only the memory between requests, so a document
  of any length costs one segment per request;
- calls `serve` once on the whole documents, for comparison.

Prints how far the streamed logits and final memory are from the single
`serve` call (float32 rounding), and the share of keys recalled. Runs on the
CPU in under a minute with any Keras backend
(`KERAS_BACKEND=tensorflow|jax|torch`).
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import urllib.request

import numpy as np
from tasks.first_token_recall import first_token_recall


def train_and_export(saved_model, epochs, train_samples):
    """Trains the recall model on 3 segments and writes its SavedModel."""
    import keras
    from first_token_recall import build_model

    import keras_rmt

    model = build_model()
    train = first_token_recall(train_samples, seed=0)
    model.fit(*train, batch_size=64, epochs=epochs, verbose=0)
    if keras.backend.backend() in ("tensorflow", "jax"):
        keras_rmt.export.export_saved_model(model, saved_model)
    else:
        keras_file = saved_model + ".keras"
        model.save(keras_file)
        command = ["-m", "keras_rmt", "export", keras_file, saved_model]
        subprocess.run([sys.executable, *command], check=True)


def start_server(saved_model):
    """The REST server on a free loopback port; returns (process, url)."""
    import keras_rmt

    server = os.path.join(
        os.path.dirname(keras_rmt.export.__file__), "rest_server.py"
    )
    process = subprocess.Popen(
        [sys.executable, server, saved_model, "--name", "rmt", "--port", "0"],
        stdout=subprocess.PIPE,
        text=True,
    )
    line = process.stdout.readline()  # "Serving rmt at http://HOST:PORT"
    if not line.startswith("Serving rmt at "):
        process.kill()
        raise RuntimeError("The REST server did not start.")
    return process, line.split(" at ")[1].strip() + "/v1/models/rmt"


def predict(url, signature, **inputs):
    """One TF Serving REST call: the signature's outputs, as arrays."""
    body = {
        "signature_name": signature,
        "inputs": {k: np.asarray(v).tolist() for k, v in inputs.items()},
    }
    request = urllib.request.Request(
        url + ":predict",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request) as reply:
        outputs = json.loads(reply.read())["outputs"]
    return {k: np.asarray(v) for k, v in outputs.items()}


def stream(url, token_ids, padding_mask):
    """Streams documents through `serve_segment`; returns the last logits,
    the final memory and the number of requests. Only the memory is kept
    between requests."""
    step = int(predict(url, "metadata")["segment_length"])
    memory = predict(url, "initial_memory", batch_size=len(token_ids))
    memory = memory["memory"]
    starts = range(0, token_ids.shape[1], step)
    for start in starts:
        outputs = predict(
            url,
            "serve_segment",
            token_ids=token_ids[:, start : start + step],
            padding_mask=padding_mask[:, start : start + step],
            memory=memory,
        )
        memory = outputs["memory"]
    return outputs["logits"], memory, len(starts)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--segments", type=int, default=50, help="Segments per document."
    )
    parser.add_argument(
        "--samples", type=int, default=64, help="Documents to serve."
    )
    parser.add_argument(
        "--epochs", type=int, default=3, help="Training epochs."
    )
    parser.add_argument(
        "--train-samples", type=int, default=1024, help="Training inputs."
    )
    parser.add_argument(
        "--output-dir", help="Where to write the SavedModel (a temp folder)."
    )
    args = parser.parse_args(argv)

    output_dir = args.output_dir or tempfile.mkdtemp()
    os.makedirs(output_dir, exist_ok=True)
    saved_model = os.path.join(output_dir, "saved_model")
    train_and_export(saved_model, args.epochs, args.train_samples)
    inputs, keys = first_token_recall(
        args.samples, num_segments=args.segments, seed=2
    )
    server, url = start_server(saved_model)
    try:
        logits, memory, segments = stream(url, **inputs)
        whole = predict(url, "serve", **inputs)
    finally:
        server.terminate()
        server.wait()
    report = {
        "segments": segments,
        "max_logits_difference": float(np.abs(logits - whole["logits"]).max()),
        "max_memory_difference": float(np.abs(memory - whole["memory"]).max()),
        "accuracy": float(np.mean(logits.argmax(-1) == keys)),
    }
    print(f"SavedModel: {saved_model}, served at {url}")
    print(
        f"Streamed {args.samples} documents of {report['segments']} "
        "segments through serve_segment, one REST request per segment."
    )
    print(
        "Largest difference from one serve call: logits "
        f"{report['max_logits_difference']:.2e}, final memory "
        f"{report['max_memory_difference']:.2e}"
    )
    print(
        f"Keys recalled after {report['segments']} segments: "
        f"{report['accuracy']:.3f} (trained on 3 segments; chance 0.125)"
    )
    return report


if __name__ == "__main__":
    main()
