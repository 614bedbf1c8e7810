"""Runs an exported RMT SavedModel in a process that imports TensorFlow only.

    python serve_saved_model.py SAVED_MODEL REQUESTS.npz RESULTS.npz [SERVER]

For every `NAME/token_ids` (and `NAME/padding_mask`) in REQUESTS, writes
`serve/NAME/OUTPUT` from one `serve` call and `stream/NAME/OUTPUT` from
feeding the same input through `serve_segment`, `segment_length` tokens at a
time from `initial_memory`: per-token outputs joined along the tokens, the
final memory. Writes `metadata/KEY` from the `metadata` signature and
`attribute/KEY` from the loaded object's attributes of the same names,
and `saved_model_cli` the text of `saved_model_cli show --all` on the
SavedModel (TensorFlow's own command, run here: a process of its own would
import TensorFlow, and with it JAX and Keras, once more). Keras, keras-hub,
keras-rmt, JAX and PyTorch cannot be imported here (TensorFlow runs without
them); `blocked` lists them.

Then, given SERVER (the path of `keras_rmt/export/rest_server.py`), runs
that script's `main` on SAVED_MODEL in this process (`--port 0`), as
`python SERVER SAVED_MODEL --port 0` would: it prints `Serving rmt at URL`
and serves until stopped. One TensorFlow-only process for both, rather
than two that each import TensorFlow.
"""

import contextlib
import io
import runpy
import sys

BLOCKED = ("keras", "keras_hub", "keras_rmt", "jax", "torch")
for _name in BLOCKED:
    sys.modules[_name] = None  # `import` now raises ImportError.

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402


def stream(served, inputs):
    length = inputs["token_ids"].shape[1]
    step = int(served.segment_length.numpy())
    batch = tf.constant(inputs["token_ids"].shape[0], tf.int32)
    memory = served.initial_memory(batch_size=batch)["memory"]
    pieces = {}
    for start in range(0, length, step):
        segment = {k: v[:, start : start + step] for k, v in inputs.items()}
        outputs = served.signatures["serve_segment"](
            memory=memory, **{k: tf.constant(v) for k, v in segment.items()}
        )
        memory = outputs.pop("memory")
        for name, value in outputs.items():
            pieces.setdefault(name, []).append(value.numpy())
    results = {n: np.concatenate(p, axis=1) for n, p in pieces.items()}
    results["memory"] = memory.numpy()
    return results


def saved_model_cli_show(saved_model):
    """What `saved_model_cli show --dir SAVED_MODEL --all` prints."""
    from tensorflow.python.tools import saved_model_cli

    argv = sys.argv
    sys.argv = ["saved_model_cli", "show", "--dir", saved_model, "--all"]
    try:
        with contextlib.redirect_stdout(io.StringIO()) as shown:
            saved_model_cli.main()  # The command's entry point.
    except SystemExit as done:  # It exits when done.
        if done.code:
            raise
    finally:
        sys.argv = argv
    return shown.getvalue()


def main(saved_model, requests, results_path, server=None):
    served = tf.saved_model.load(saved_model)
    requests = np.load(requests)
    names = sorted({key.split("/")[0] for key in requests.files})
    results = {}
    for name in names:
        inputs = {
            key.split("/")[1]: requests[key]
            for key in requests.files
            if key.startswith(name + "/")
        }
        whole = served.signatures["serve"](
            **{k: tf.constant(v) for k, v in inputs.items()}
        )
        for output, value in whole.items():
            results[f"serve/{name}/{output}"] = value.numpy()
        for output, value in stream(served, inputs).items():
            results[f"stream/{name}/{output}"] = value
    for key, value in served.signatures["metadata"]().items():
        results[f"metadata/{key}"] = value.numpy()
        results[f"attribute/{key}"] = getattr(served, key).numpy()
    results["saved_model_cli"] = np.array(saved_model_cli_show(saved_model))
    results["blocked"] = np.array(
        [name for name in BLOCKED if sys.modules[name] is None]
    )
    np.savez(results_path, **results)
    if server:
        # Run by path, as a script: it cannot be imported from keras_rmt.
        serve = runpy.run_path(server, run_name="rest_server")["main"]
        serve([saved_model, "--name", "rmt", "--port", "0"])


if __name__ == "__main__":
    main(*sys.argv[1:])
