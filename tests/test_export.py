import os
import re
import subprocess
import sys

import keras
import numpy as np
import pytest
from conftest import make_backbone, make_rmt, numpy, random_batch, text_inputs

import keras_rmt

BACKEND = keras.backend.backend()
HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
SEGMENT_LENGTH = 4
NUM_MEMORY_TOKENS = 2
# Batch sizes and lengths: the signatures leave both unknown, so none of
# these is seen at export time. "long" streams through 50 segments.
REQUESTS = {
    "one": random_batch(1, 3, seed=1),
    "some": random_batch(2, 9, seed=2, lengths=[9, 5]),
    "many": random_batch(5, 17, seed=3, lengths=[17, 1, 8, 12, 16]),
    "long": random_batch(2, 50 * SEGMENT_LENGTH, seed=4, lengths=[200, 157]),
}


def build_model():
    inputs = text_inputs()
    rmt = make_rmt("gpt2", NUM_MEMORY_TOKENS, SEGMENT_LENGTH)
    outputs = rmt(inputs)
    logits = keras.layers.Dense(5, name="logits")(outputs["sequence_output"])
    return keras.Model(inputs, logits)


def train(model):
    model.compile(
        optimizer=keras.optimizers.Adam(1e-2),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    batch = random_batch(4, 8, seed=5)
    model.train_on_batch(batch, batch["token_ids"] % 5)


def environment(backend=None):
    env = {**os.environ, "PYTHONPATH": ROOT}
    if backend:
        env["KERAS_BACKEND"] = backend
    return env


def run(*commands, backend=None):
    """Runs the commands side by side; returns their outputs."""
    processes = [
        subprocess.Popen(
            command,
            env=environment(backend),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for command in commands
    ]
    outputs = []
    for process in processes:
        stdout, stderr = process.communicate()
        assert process.returncode == 0, stderr[-3000:]
        outputs.append(stdout)
    return outputs


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """The trained model, its SavedModel, what a TF-only process got from
    it, and what `saved_model_cli show --all` says about it.

    From TensorFlow and JAX the SavedModel is written in this process; from
    torch, through `python -m keras_rmt export` on the `.keras` file.
    """
    model = build_model()
    folder = tmp_path_factory.mktemp("export")
    path = str(folder / "saved_model")
    if BACKEND in ("tensorflow", "jax"):
        keras_rmt.export.export_saved_model(model, path)
    else:
        train(model)  # A model trained on torch goes through `.keras`.
        model.save(folder / "model.keras")
        command = [sys.executable, "-m", "keras_rmt", "export"]
        run([*command, str(folder / "model.keras"), path], backend=BACKEND)
    requests = {
        f"{name}/{key}": value
        for name, inputs in REQUESTS.items()
        for key, value in inputs.items()
    }
    np.savez(folder / "requests.npz", **requests)
    script = os.path.join(HERE, "serve_saved_model.py")
    cli = os.path.join(os.path.dirname(sys.executable), "saved_model_cli")
    shown = run(
        [sys.executable, script, path, str(folder / "requests.npz")]
        + [str(folder / "results.npz")],
        [cli, "show", "--dir", path, "--all"],
    )[1]
    return model, path, dict(np.load(folder / "results.npz")), shown


def padded(x, length):
    return np.pad(x, [(0, 0), (0, length - x.shape[1])])


def test_saved_model_matches_keras_in_a_tensorflow_only_process(exported):
    model, _, results, _ = exported
    assert list(results["blocked"]) == [
        "keras",
        "keras_hub",
        "keras_rmt",
        "jax",
        "torch",
    ]
    # One Keras call for all three requests: rows padded at the end give
    # the outputs and memory they give alone.
    names = ("one", "some", "many")
    together = {
        key: np.concatenate([padded(REQUESTS[n][key], 17) for n in names])
        for key in ("token_ids", "padding_mask")
    }
    whole = keras_rmt.export.streaming_model(model, memory_input=False)
    expected = numpy(whole(together))
    row = 0
    for name in names:
        batch, length = REQUESTS[name]["token_ids"].shape
        rows = slice(row, row + batch)
        row += batch
        served = results[f"serve/{name}/logits"]
        assert served.shape == (batch, length, 5)
        np.testing.assert_allclose(
            served, expected["logits"][rows, :length], atol=1e-5, rtol=0
        )
        np.testing.assert_allclose(
            results[f"serve/{name}/memory"],
            expected["memory"][rows],
            atol=1e-5,
            rtol=0,
        )


def test_streaming_50_segments_matches_one_serve_call(exported):
    model, _, results, _ = exported
    for output in ("logits", "memory"):
        streamed = results[f"stream/long/{output}"]
        whole = results[f"serve/long/{output}"]
        np.testing.assert_allclose(streamed, whole, atol=1e-5, rtol=0)
    # Short inputs stream too: the last segment is a partial one.
    for name in ("one", "some", "many"):
        np.testing.assert_allclose(
            results[f"stream/{name}/logits"],
            results[f"serve/{name}/logits"],
            atol=1e-5,
            rtol=0,
        )


def read_signatures(text):
    """{signature: {"inputs"|"outputs": {name: (dtype, shape)}}}."""
    signatures = {}
    pattern = re.compile(
        r"(inputs|outputs)\['(\w+)'\] tensor_info:\s+dtype: (\w+)\s+"
        r"shape: (\([-\d, ]*\))"
    )
    blocks = re.split(r"signature_def\['(\w+)'\]:", text)
    for name, body in zip(blocks[1::2], blocks[2::2]):
        found = {"inputs": {}, "outputs": {}}
        for kind, tensor, dtype, shape in pattern.findall(body):
            found[kind][tensor] = (dtype, shape)
        signatures[name] = found
    return signatures


def test_saved_model_cli_lists_both_signatures(exported):
    signatures = read_signatures(exported[3])
    tokens = {
        "token_ids": ("DT_INT32", "(-1, -1)"),
        "padding_mask": ("DT_INT32", "(-1, -1)"),
    }
    memory = {"memory": ("DT_FLOAT", "(-1, 2, 16)")}
    logits = {"logits": ("DT_FLOAT", "(-1, -1, 5)")}
    assert signatures["serve"] == {
        "inputs": tokens,
        "outputs": {**logits, **memory},
    }
    assert signatures["serving_default"] == signatures["serve"]
    assert signatures["serve_segment"] == {
        "inputs": {**tokens, **memory},
        "outputs": {**logits, **memory},
    }
    assert signatures["initial_memory"] == {
        "inputs": {"batch_size": ("DT_INT32", "()")},
        "outputs": memory,
    }


def test_served_functions_refuse_bad_inputs_clearly(exported):
    import tensorflow as tf

    path = exported[1]
    served = tf.saved_model.load(path)
    signature = served.signatures["serve_segment"]
    memory = served.initial_memory(batch_size=2)["memory"]
    tokens = tf.ones((2, 4), tf.int32)
    tokens5 = tf.ones((2, 5), tf.int32)

    def call(**changes):
        inputs = {"token_ids": tokens, "padding_mask": tokens}
        return signature(**{"memory": memory, **inputs, **changes})

    with pytest.raises(
        tf.errors.InvalidArgumentError,
        match=re.escape(
            "serve_segment takes at most 4 tokens per call "
            "(segment_length=4): cut longer inputs into segments of 4 "
            "tokens, or call serve"
        ),
    ):
        call(token_ids=tokens5, padding_mask=tokens5)
    memory_error = re.escape(
        "`memory` must have shape (batch_size, 2, 16), with the batch size "
        "of `token_ids`"
    )
    with pytest.raises(tf.errors.InvalidArgumentError, match=memory_error):
        call(memory=memory[:, :1])
    with pytest.raises(tf.errors.InvalidArgumentError, match=memory_error):
        call(memory=memory[:1])
    with pytest.raises(
        tf.errors.InvalidArgumentError,
        match=re.escape(
            "`padding_mask` must have the batch size and length of `token_ids`"
        ),
    ):
        served.signatures["serve"](
            token_ids=tokens, padding_mask=tf.ones((2, 3), tf.int32)
        )
    with pytest.raises(
        tf.errors.InvalidArgumentError,
        match="expected to be a int32 tensor but is a int64 tensor",
    ):
        call(token_ids=tf.ones((2, 4), tf.int64))
    # Called as functions rather than signatures, the arguments are named.
    with pytest.raises(
        TypeError,
        match=re.escape(
            "Can not cast TensorSpec(shape=(2, 4), dtype=tf.int64, "
            "name='token_ids') to TensorSpec(shape=(None, None), "
            "dtype=tf.int32, name='token_ids')"
        ),
    ):
        served.serve_segment(
            {
                "token_ids": tf.ones((2, 4), tf.int64),
                "padding_mask": tokens,
                "memory": memory,
            }
        )


def test_export_from_torch_names_the_command(exported, monkeypatch):
    model = exported[0]
    if BACKEND != "torch":
        # The check that torch meets, on this backend.
        monkeypatch.setattr(keras.backend, "backend", lambda: "torch")
    with pytest.raises(
        RuntimeError,
        match=re.escape(
            "Keras writes TF SavedModels from the TensorFlow and JAX "
            "backends only. Received: model on the 'torch' backend. Save the "
            "model (`model.save('MODEL.keras')`) and run `python -m "
            "keras_rmt export MODEL.keras OUT_DIR`, which reloads it under "
            "TensorFlow (or `--backend jax`) in a new process and exports it "
            "there."
        ),
    ):
        keras_rmt.export.export_saved_model(model, "unused")


def test_rmt_tasks_export_the_rmt_saved_model(monkeypatch):
    from keras_rmt.export import saved_model

    written = []
    monkeypatch.setattr(
        saved_model,
        "export_saved_model",
        lambda model, path, verbose: written.append((model, path, verbose)),
    )
    backbone = keras_rmt.models.RMTBackbone(
        make_backbone("gpt2"), num_memory_tokens=2, segment_length=4
    )
    tasks = [
        backbone,
        keras_rmt.models.RMTCausalLM(backbone),
        keras_rmt.models.RMTTextClassifier(backbone, num_classes=3),
    ]
    for task in tasks:
        task.export("out")
    assert written == [(task, "out", False) for task in tasks]
    with pytest.raises(
        ValueError,
        match=re.escape(
            "With format='tf_saved_model', export() takes no other "
            "arguments. Received: ['input_signature']"
        ),
    ):
        tasks[1].export("out", input_signature=[])
