"""Serve an RMT from a TF SavedModel, streaming long inputs by segment.

Trains the tiny first-token-recall RMT of `first_token_recall.py` for a few
seconds, exports it with `keras_rmt.export.export_saved_model` (on torch,
through `python -m keras_rmt export` on a `.keras` file), then starts a
process that imports TensorFlow only - Keras, keras-hub and keras-rmt cannot
be imported there - loads the SavedModel with `tf.saved_model.load`, and:

- calls `serve` once on inputs of `--segments` segments;
- streams the same inputs through `serve_segment`, one segment per call,
  starting from `initial_memory` and passing each call's `memory` to the
  next: the caller holds the memory, so any length costs one segment.

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

import numpy as np

BLOCKED = ("keras", "keras_hub", "keras_rmt", "jax", "torch")


def train_and_export(saved_model, epochs, train_samples):
    """Trains the recall model on 3 segments and writes its SavedModel."""
    import keras
    from first_token_recall import build_model

    import keras_rmt

    model = build_model()
    train = keras_rmt.datasets.first_token_recall(train_samples, seed=0)
    model.fit(*train, batch_size=64, epochs=epochs, verbose=0)
    if keras.backend.backend() in ("tensorflow", "jax"):
        keras_rmt.export.export_saved_model(model, saved_model)
    else:
        keras_file = saved_model + ".keras"
        model.save(keras_file)
        command = ["-m", "keras_rmt", "export", keras_file, saved_model]
        subprocess.run([sys.executable, *command], check=True)


def serve(saved_model, requests, results):
    """The serving side: TensorFlow and NumPy only."""
    for name in BLOCKED:
        sys.modules[name] = None  # `import` now raises ImportError.
    import tensorflow as tf

    served = tf.saved_model.load(saved_model)
    inputs = {k: tf.constant(v) for k, v in np.load(requests).items()}
    whole = served.serve(inputs)

    step = int(served.segment_length.numpy())
    length = inputs["token_ids"].shape[1]
    memory = served.initial_memory(batch_size=inputs["token_ids"].shape[0])
    memory = memory["memory"]
    for start in range(0, length, step):
        segment = {k: v[:, start : start + step] for k, v in inputs.items()}
        streamed = served.serve_segment({**segment, "memory": memory})
        memory = streamed["memory"]
    with open(results, "w") as file:
        json.dump(
            {
                "segments": -(-length // step),
                "max_logits_difference": float(
                    tf.reduce_max(tf.abs(streamed["head"] - whole["head"]))
                ),
                "max_memory_difference": float(
                    tf.reduce_max(tf.abs(memory - whole["memory"]))
                ),
                "predicted_keys": tf.argmax(streamed["head"], -1)
                .numpy()
                .tolist(),
            },
            file,
        )


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--segments", type=int, default=50, help="Segments per served input."
    )
    parser.add_argument(
        "--samples", type=int, default=64, help="Inputs to serve."
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
    parser.add_argument("--serve", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        return serve(*args.serve)

    import keras_rmt

    output_dir = args.output_dir or tempfile.mkdtemp()
    os.makedirs(output_dir, exist_ok=True)
    saved_model = os.path.join(output_dir, "saved_model")
    train_and_export(saved_model, args.epochs, args.train_samples)
    inputs, keys = keras_rmt.datasets.first_token_recall(
        args.samples, num_segments=args.segments, seed=2
    )
    requests = os.path.join(output_dir, "requests.npz")
    results = os.path.join(output_dir, "results.json")
    np.savez(requests, **inputs)
    subprocess.run(
        [sys.executable, __file__, "--serve", saved_model, requests, results],
        check=True,
    )
    with open(results) as file:
        report = json.load(file)
    report["accuracy"] = float(
        np.mean(np.array(report["predicted_keys"]) == keys)
    )
    print(f"SavedModel: {saved_model}")
    print(
        f"Streamed {args.samples} inputs of {report['segments']} segments "
        "through serve_segment in a TensorFlow-only process."
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
