import contextlib
import io
import json
import os
import re
import signal
import subprocess
import sys
import urllib.error
import urllib.request

import keras
import numpy as np
import pytest
from conftest import (
    jitted_on_jax,
    make_backbone,
    numpy,
    random_batch,
    text_inputs,
    wrap_rmt,
    wrap_rmt_backbone,
)

import keras_rmt

# A SavedModel is a traced graph whatever `run_eagerly` says: the claims
# here concern the traced path (nothing here reads `run_eagerly` but the
# torch `fit` through `.keras`, which torch runs as users do anyway).
pytestmark = pytest.mark.compiled

BACKEND = keras.backend.backend()
HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
SERVER = os.path.join(ROOT, "keras_rmt", "export", "rest_server.py")
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


EXPORT_BACKEND = pytest.mark.skipif(
    BACKEND not in ("tensorflow", "jax"),
    reason="Exports in this process from TensorFlow and JAX only (torch "
    "exports through the command line, tested here too).",
)


def build_model(seed=0):
    inputs = text_inputs()
    # One block: what is exported and served does not depend on the depth,
    # and each block costs every export its trace.
    backbone = make_backbone("gpt2", seed, num_layers=1)
    rmt = wrap_rmt(backbone, NUM_MEMORY_TOKENS, SEGMENT_LENGTH)
    outputs = rmt(inputs)
    # An auto-numbered layer: the served output is named `logits` anyway.
    logits = keras.layers.Dense(5)(outputs["sequence_output"])
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
    it, what `saved_model_cli show --all` says about it (run in that
    process), what the export printed with `verbose=True`, and the URL of
    the REST server that process then runs on the SavedModel.

    From TensorFlow and JAX the SavedModel is written in this process; from
    torch, through `python -m keras_rmt export` on the `.keras` file.
    """
    model = build_model()
    folder = tmp_path_factory.mktemp("export")
    path = str(folder / "saved_model")
    if BACKEND in ("tensorflow", "jax"):
        with contextlib.redirect_stdout(io.StringIO()) as printed:
            keras_rmt.export.export_saved_model(model, path, verbose=True)
        printed = printed.getvalue()
    else:
        train(model)  # A model trained on torch goes through `.keras`.
        model.save(folder / "model.keras")
        command = [sys.executable, "-m", "keras_rmt", "export", "--verbose"]
        (printed,) = run(
            [*command, str(folder / "model.keras"), path], backend=BACKEND
        )
    requests = {
        f"{name}/{key}": value
        for name, inputs in REQUESTS.items()
        for key, value in inputs.items()
    }
    np.savez(folder / "requests.npz", **requests)
    script = os.path.join(HERE, "serve_saved_model.py")
    # One TensorFlow-only process serves the requests, then runs the REST
    # server (`rest_server.py`'s `main`) on the SavedModel, on a free
    # loopback port: one import of TensorFlow rather than two.
    command = [sys.executable, script, path, str(folder / "requests.npz")]
    command += [str(folder / "results.npz"), SERVER]
    process = subprocess.Popen(
        command,
        env=environment(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    line = process.stdout.readline()
    try:
        assert line.startswith("Serving rmt at http://127.0.0.1:"), (
            line + process.stderr.read()[-3000:] if not line else line
        )
        results = dict(np.load(folder / "results.npz"))
        shown = str(results.pop("saved_model_cli"))
        url = line.split(" at ")[1].strip() + "/v1/models/rmt"
        yield model, path, results, shown, printed, url
    finally:
        process.terminate()
        process.wait()


def keras_outputs(model, names):
    """`model`'s logits and memory for the requests `names`, in one call:
    rows padded at the end give the outputs and memory they give alone."""
    together = {
        key: np.concatenate([padded(REQUESTS[n][key], 17) for n in names])
        for key in ("token_ids", "padding_mask")
    }
    whole = keras_rmt.export.streaming_model(model, memory_input=False)
    expected = numpy(jitted_on_jax(whole, whole)(together))
    row, outputs = 0, {}
    for name in names:
        batch, length = REQUESTS[name]["token_ids"].shape
        rows = slice(row, row + batch)
        row += batch
        outputs[name] = {
            "logits": expected["logits"][rows, :length],
            "memory": expected["memory"][rows],
        }
    return outputs


def padded(x, length):
    return np.pad(x, [(0, 0), (0, length - x.shape[1])])


def test_saved_model_matches_keras_in_a_tensorflow_only_process(exported):
    model, _, results = exported[:3]
    assert list(results["blocked"]) == [
        "keras",
        "keras_hub",
        "keras_rmt",
        "jax",
        "torch",
    ]
    names = ("one", "some", "many")
    expected = keras_outputs(model, names)
    for name in names:
        batch, length = REQUESTS[name]["token_ids"].shape
        served = results[f"serve/{name}/logits"]
        assert served.shape == (batch, length, 5)
        for output in ("logits", "memory"):
            np.testing.assert_allclose(
                results[f"serve/{name}/{output}"],
                expected[name][output],
                atol=1e-5,
                rtol=0,
            )


def test_streaming_50_segments_matches_one_serve_call(exported):
    results = exported[2]
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


METADATA = {
    "segment_length": 4,
    "num_memory_tokens": 2,
    "hidden_dim": 16,
    "vocabulary_size": 64,
    "alignment": b"left",
    "memory_layout": b"decoder",
    "keras_rmt_version": keras_rmt.__version__.encode(),
}


def test_saved_model_cli_lists_the_signatures(exported):
    signatures = read_signatures(exported[3])
    tokens = {
        "token_ids": ("DT_INT32", "(-1, -1)"),
        "padding_mask": ("DT_INT32", "(-1, -1)"),
    }
    memory = {"memory": ("DT_FLOAT", "(-1, 2, 16)")}
    # The head is an auto-numbered Dense layer: served as `logits`.
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
    assert signatures["metadata"] == {
        "inputs": {},
        "outputs": {
            key: ("DT_STRING" if isinstance(value, bytes) else "DT_INT32", "()")
            for key, value in METADATA.items()
        },
    }


def test_metadata_is_read_in_a_tensorflow_only_process(exported):
    results = exported[2]
    for key, value in METADATA.items():
        assert results[f"metadata/{key}"] == value, key
        assert results[f"attribute/{key}"] == value, key


def test_verbose_prints_one_line_per_signature(exported):
    printed = exported[4].splitlines()
    tokens = "padding_mask: int32 (-1, -1), token_ids: int32 (-1, -1)"
    memory = "memory: float32 (-1, 2, 16)"
    outputs = f"logits: float32 (-1, -1, 5), {memory}"
    expected = [
        f"serve({tokens}) -> {outputs}",
        f"serve_segment({memory}, {tokens}) -> {outputs}",
        f"initial_memory(batch_size: int32 ()) -> {memory}",
        "metadata() -> alignment: string (), hidden_dim: int32 (), "
        "keras_rmt_version: string (), memory_layout: string (), "
        "num_memory_tokens: int32 (), segment_length: int32 (), "
        "vocabulary_size: int32 ()",
        f"serving_default({tokens}) -> {outputs}",
    ]
    assert printed[: len(expected)] == expected
    # No resource captures: the export's own lines, and the command's one.
    assert len(printed) == len(expected) + (BACKEND == "torch")


def test_served_functions_refuse_bad_inputs_clearly(exported):
    import tensorflow as tf

    path = exported[1]
    served = tf.saved_model.load(path)
    signature = served.signatures["serve_segment"]
    memory = served.initial_memory(batch_size=2)["memory"]
    tokens = tf.ones((2, 4), tf.int32)
    tokens5 = tf.ones((2, 5), tf.int32)

    def call(signature=signature, **changes):
        inputs = {"token_ids": tokens, "padding_mask": tokens}
        if "memory" in signature.structured_input_signature[1]:
            inputs["memory"] = memory
        return signature(**{**inputs, **changes})

    def refused(message, names=("serve", "serve_segment"), **changes):
        for name in names:
            if name == "serve" and "memory" in changes:
                continue
            with pytest.raises(
                tf.errors.InvalidArgumentError, match=re.escape(message)
            ):
                call(served.signatures[name], **changes)

    with pytest.raises(
        tf.errors.InvalidArgumentError,
        match=re.escape(
            "serve_segment takes at most 4 tokens per call "
            "(segment_length=4): cut longer inputs into segments of 4 "
            "tokens, or call serve"
        ),
    ):
        call(token_ids=tokens5, padding_mask=tokens5)
    for value in (tf.ones((4,), tf.int32), tf.ones((1, 4, 1), tf.int32)):
        refused(
            "`token_ids` must have 2 dimensions, (batch_size, length)",
            token_ids=value,
        )
        refused(
            "`padding_mask` must have 2 dimensions, (batch_size, length)",
            padding_mask=value,
        )
    empty = tf.ones((2, 0), tf.int32)
    refused(
        "`token_ids` must hold at least one token (length >= 1)",
        token_ids=empty,
        padding_mask=empty,
    )
    # Batch 0 is refused alike from TensorFlow and JAX exports.
    no_rows = tf.ones((0, 4), tf.int32)
    refused(
        "`token_ids` must hold at least one row (batch_size >= 1)",
        token_ids=no_rows,
        padding_mask=no_rows,
        memory=memory[:0],
    )
    refused(
        "`token_ids` must hold at least one row (batch_size >= 1)",
        names=("serve",),
        token_ids=no_rows,
        padding_mask=no_rows,
    )
    with pytest.raises(
        tf.errors.InvalidArgumentError,
        match=re.escape("`batch_size` must be at least 1"),
    ):
        served.signatures["initial_memory"](batch_size=tf.constant(0))
    vocabulary = "`token_ids` must be in [0, 64) (vocabulary_size=64)"
    for value in (64, -1):
        refused(vocabulary, token_ids=tf.fill((2, 4), value))
    refused(
        "`memory` must have 3 dimensions, (batch_size, 2, 16)",
        memory=memory[0],
    )
    memory_error = (
        "`memory` must have shape (batch_size, 2, 16), with the batch size "
        "of `token_ids`"
    )
    refused(memory_error, memory=memory[:, :1])
    refused(memory_error, memory=memory[:1])
    refused(
        "`padding_mask` must have the batch size and length of `token_ids`",
        padding_mask=tf.ones((2, 3), tf.int32),
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
            "TensorFlow (or `--backend jax`) and exports it there."
        ),
    ):
        keras_rmt.export.export_saved_model(model, "unused")


@EXPORT_BACKEND
def test_inputs_it_cannot_serve_are_refused_before_writing(tmp_path):
    # Served inputs are checked against `token_ids`: without one, the export
    # failed inside its trace with a bare KeyError.
    rmt = wrap_rmt(make_backbone("gpt2", num_layers=1))
    input_ids = keras.Input((None,), dtype="int32", name="input_ids")
    mask = keras.Input((None,), dtype="int32", name="attention_mask")
    outputs = rmt({"token_ids": input_ids, "padding_mask": mask})
    renamed = keras.Model(
        {"input_ids": input_ids, "attention_mask": mask},
        outputs["sequence_output"],
    )
    with pytest.raises(
        ValueError,
        match=re.escape(
            "an input named 'token_ids' (the others are checked against "
            "it): name that `keras.Input` 'token_ids', or wrap the model in "
            "one whose inputs are named so. Received: model inputs "
            "['attention_mask', 'input_ids']"
        ),
    ):
        keras_rmt.export.export_saved_model(renamed, str(tmp_path / "a"))
    inputs = text_inputs()
    features = keras.Input((None, 3), name="features")
    hidden = rmt(inputs)["sequence_output"]
    pooled = keras.layers.Concatenate()([hidden, features])
    extra = keras.Model({**inputs, "features": features}, pooled)
    with pytest.raises(
        ValueError,
        match=re.escape(
            "inputs of shape (batch_size, length), one value per token. "
            "Received: input 'features' with 3 dimensions"
        ),
    ):
        keras_rmt.export.export_saved_model(extra, str(tmp_path / "b"))
    assert sorted(os.listdir(tmp_path)) == []


def test_rmt_tasks_export_the_rmt_saved_model(monkeypatch):
    from keras_rmt.export import saved_model

    written = []
    monkeypatch.setattr(
        saved_model,
        "export_saved_model",
        lambda model, path, overwrite, verbose: written.append(
            (model, path, overwrite, verbose)
        ),
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
    tasks[1].export("again", overwrite=True)
    assert written == [(task, "out", False, False) for task in tasks] + [
        (tasks[1], "again", True, False)
    ]
    with pytest.raises(
        ValueError,
        match=re.escape(
            "With format='tf_saved_model', export() takes no other "
            "arguments than overwrite. Received: ['input_signature']"
        ),
    ):
        tasks[1].export("out", input_signature=[])


# === Re-exports: atomic, refused over a folder unless asked ===

# Writing the folder (a temporary sibling renamed into place, whatever
# `tf.saved_model.save` leaves when it fails or is killed) is the same code
# from TensorFlow and JAX, which differ only in the graphs handed to it: the
# re-exports that fail or are killed midway run once (each costs two exports
# or a process that imports the backend and exports). The failing one
# exports in this process, from TensorFlow; the killed one in a TensorFlow
# process of its own, whatever this run's backend: started from the torch
# run, the shortest, whose SavedModel comes from such a process anyway.
WRITTEN_ONCE = pytest.mark.skipif(
    BACKEND != "tensorflow",
    reason="Atomic re-export: the folder is written by the same code from "
    "TensorFlow and JAX; tested once, from TensorFlow.",
)
KILLED_ONCE = pytest.mark.skipif(
    BACKEND != "torch",
    reason="Atomic re-export: the killed export runs in a TensorFlow process "
    "of its own whatever this run's backend; started once, from torch.",
)


def snapshot(folder):
    """Every file under `folder`, by relative path: its bytes."""
    found = {}
    for parent, _, files in os.walk(folder):
        for name in files:
            path = os.path.join(parent, name)
            with open(path, "rb") as file:
                found[os.path.relpath(path, folder)] = file.read()
    return found


def leftovers(folder):
    return sorted(name for name in os.listdir(folder) if ".tmp" in name)


def serve_some(path):
    import tensorflow as tf

    served = tf.saved_model.load(path)
    inputs = {k: tf.constant(v) for k, v in REQUESTS["some"].items()}
    return served.signatures["serve"](**inputs)["logits"].numpy()


@pytest.fixture
def old_export(exported, tmp_path):
    """A copy of the module's export, and its files."""
    import shutil

    path = str(tmp_path / "saved_model")
    shutil.copytree(exported[1], path)
    return path, snapshot(path)


@EXPORT_BACKEND
def test_a_non_empty_target_is_refused_without_overwrite(old_export):
    path, files = old_export
    with pytest.raises(
        FileExistsError,
        match=re.escape(
            f"{path} exists and is not empty. Pass overwrite=True to replace "
            "it: the new SavedModel is written next to it and renamed into "
            f"place once complete. Received: path={path!r}, overwrite=False"
        ),
    ):
        keras_rmt.export.export_saved_model(build_model(), path)
    assert snapshot(path) == files


@WRITTEN_ONCE
def test_a_failed_reexport_keeps_the_old_export_and_no_tmp(
    exported, old_export, monkeypatch
):
    from tensorflow.python.lib.io import file_io

    path, files = old_export
    write = file_io.atomic_write_string_to_file

    def disk_full(filename, contents, overwrite=True):
        # After the variables, before the graph: where a save straight
        # into the target left the old graph with the new weights.
        if filename.endswith("saved_model.pb"):
            raise OSError(28, "No space left on device")
        return write(filename, contents, overwrite)

    other = build_model(seed=1)
    monkeypatch.setattr(file_io, "atomic_write_string_to_file", disk_full)
    with pytest.raises(OSError, match="No space left on device"):
        keras_rmt.export.export_saved_model(other, path, overwrite=True)
    assert snapshot(path) == files
    assert leftovers(os.path.dirname(path)) == []
    np.testing.assert_array_equal(
        serve_some(path), exported[2]["serve/some/logits"]
    )

    monkeypatch.setattr(file_io, "atomic_write_string_to_file", write)
    keras_rmt.export.export_saved_model(other, path, overwrite=True)
    assert leftovers(os.path.dirname(path)) == []
    # Readable as a folder made by `os.mkdir` is (not a private temp one).
    umask = os.umask(0)
    os.umask(umask)
    assert os.stat(path).st_mode & 0o777 == 0o777 & ~umask
    new = serve_some(path)
    np.testing.assert_allclose(
        new, numpy(other(REQUESTS["some"])), atol=1e-5, rtol=0
    )
    assert np.abs(new - exported[2]["serve/some/logits"]).max() > 0.1


KILLED_EXPORT = """
import os, signal, sys
sys.path.insert(0, {here!r})
from tensorflow.python.lib.io import file_io
import keras_rmt
from test_export import build_model

write = file_io.atomic_write_string_to_file

def killed(filename, contents, overwrite=True):
    if filename.endswith("saved_model.pb"):
        os.kill(os.getpid(), signal.SIGKILL)
    return write(filename, contents, overwrite)

file_io.atomic_write_string_to_file = killed
keras_rmt.export.export_saved_model(
    build_model(seed=1), {path!r}, overwrite=True
)
"""


@KILLED_ONCE
def test_a_reexport_killed_midway_keeps_the_old_export(exported, old_export):
    path, files = old_export
    script = KILLED_EXPORT.format(here=HERE, path=path)
    process = subprocess.run(
        [sys.executable, "-c", script],
        env=environment("tensorflow"),
        capture_output=True,
        text=True,
    )
    assert process.returncode == -signal.SIGKILL, process.stderr[-3000:]
    # Killed after writing the new variables: none of them reached the
    # target, which still serves the old numbers. (A SIGKILL leaves the
    # temporary sibling; it is never read as the SavedModel.)
    assert snapshot(path) == files
    np.testing.assert_array_equal(
        serve_some(path), exported[2]["serve/some/logits"]
    )
    (temporary,) = leftovers(os.path.dirname(path))
    assert re.fullmatch(r"saved_model\.\w+\.tmp", temporary)


# === Tasks: every input served, outputs named for what they are ===


@pytest.fixture(scope="module")
def bert_classifier(tmp_path_factory):
    backbone = wrap_rmt_backbone(make_backbone("bert", num_layers=1))
    model = keras_rmt.models.RMTTextClassifier(backbone, num_classes=3)
    path = str(tmp_path_factory.mktemp("bert") / "saved_model")
    if BACKEND in ("tensorflow", "jax"):
        keras_rmt.export.export_saved_model(model, path)
    return model, path


@EXPORT_BACKEND
def test_segment_ids_are_served(bert_classifier):
    import tensorflow as tf

    model, path = bert_classifier
    signature = tf.saved_model.load(path).signatures["serve"]
    assert sorted(signature.structured_input_signature[1]) == [
        "padding_mask",
        "segment_ids",
        "token_ids",
    ]
    assert sorted(signature.structured_outputs) == ["logits", "memory"]
    inputs = random_batch(2, 9, seed=6, lengths=[9, 6])
    rng = np.random.default_rng(6)
    inputs["segment_ids"] = rng.integers(0, 2, (2, 9)).astype("int32")
    served = signature(**{k: tf.constant(v) for k, v in inputs.items()})
    call = jitted_on_jax(model, model)
    expected = numpy(call(inputs))
    np.testing.assert_allclose(
        served["logits"].numpy(), expected, atol=1e-5, rtol=0
    )
    # The ids change the outputs: serving them as zeros would show.
    zeros = {**inputs, "segment_ids": np.zeros_like(inputs["segment_ids"])}
    assert np.abs(numpy(call(zeros)) - expected).max() > 1e-3


@pytest.fixture(scope="module")
def right_aligned_lm(tmp_path_factory):
    backbone = wrap_rmt_backbone(
        make_backbone("gpt2", num_layers=1),
        alignment="right",
    )
    model = keras_rmt.models.RMTCausalLM(backbone)
    path = str(tmp_path_factory.mktemp("right") / "saved_model")
    if BACKEND in ("tensorflow", "jax"):
        keras_rmt.export.export_saved_model(model, path)
    return model, path


@EXPORT_BACKEND
def test_right_aligned_models_serve_whole_inputs_only(right_aligned_lm):
    import tensorflow as tf

    model, path = right_aligned_lm
    served = tf.saved_model.load(path)
    assert served.metadata()["alignment"].numpy() == b"right"
    inputs = random_batch(2, 9, seed=7, lengths=[9, 6])
    tensors = {k: tf.constant(v) for k, v in inputs.items()}
    outputs = served.signatures["serve"](**tensors)
    # RMTCausalLM's logits are served as `logits`.
    assert sorted(outputs) == ["logits", "memory"]
    expected = numpy(jitted_on_jax(model, model)(inputs))
    np.testing.assert_allclose(
        outputs["logits"].numpy(), expected, atol=1e-5, rtol=0
    )
    segment = {k: v[:, :4] for k, v in tensors.items()}
    with pytest.raises(
        tf.errors.InvalidArgumentError,
        match=re.escape(
            "serve_segment is not available for this model: it aligns "
            "segments to the right (alignment=right: the short segment of "
            "each row comes first, where the length of the row puts it), "
            "so a stream cut into segments of 4 tokens would not give the "
            "outputs of serve. Call serve with whole inputs"
        ),
    ):
        served.signatures["serve_segment"](
            memory=served.initial_memory(batch_size=2)["memory"], **segment
        )


# === A model server on the loopback ===


@pytest.fixture(scope="module")
def server(exported):
    """The URL of the REST server on the module's export, run in the
    TensorFlow-only process that served the requests (`exported`)."""
    return exported[5]


def post(url, body):
    """(HTTP status, JSON reply) of a predict request."""
    request = urllib.request.Request(
        url + ":predict",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request) as reply:
            return reply.status, json.loads(reply.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def predict(url, signature, **inputs):
    status, reply = post(
        url,
        {
            "signature_name": signature,
            "inputs": {k: np.asarray(v).tolist() for k, v in inputs.items()},
        },
    )
    assert status == 200, reply
    return {k: np.asarray(v) for k, v in reply["outputs"].items()}


def test_a_rest_server_serves_and_streams_like_keras(exported, server):
    model = exported[0]
    expected = keras_outputs(model, ("some", "many"))
    for name in ("some", "many"):
        served = predict(server, "serve", **REQUESTS[name])
        for output in ("logits", "memory"):
            np.testing.assert_allclose(
                served[output], expected[name][output], atol=1e-5, rtol=0
            )
    # A stream of serve_segment requests: the client keeps only the memory.
    inputs = REQUESTS["many"]
    (memory,) = predict(server, "initial_memory", batch_size=5).values()
    pieces = []
    for start in range(0, 17, SEGMENT_LENGTH):
        segment = {k: v[:, start : start + 4] for k, v in inputs.items()}
        outputs = predict(server, "serve_segment", memory=memory, **segment)
        memory = outputs["memory"]
        pieces.append(outputs["logits"])
    np.testing.assert_allclose(
        np.concatenate(pieces, axis=1),
        expected["many"]["logits"],
        atol=1e-5,
        rtol=0,
    )
    np.testing.assert_allclose(
        memory, expected["many"]["memory"], atol=1e-5, rtol=0
    )
    metadata = predict(server, "metadata")
    assert {k: v.item() for k, v in metadata.items()} == {
        k: v.decode() if isinstance(v, bytes) else v
        for k, v in METADATA.items()
    }


def test_a_rest_server_answers_bad_requests_with_the_message(server):
    status, reply = post(
        server,
        {
            "signature_name": "serve",
            "inputs": {"token_ids": [[1, 2, 99]], "padding_mask": [[1, 1, 1]]},
        },
    )
    assert status == 400
    assert (
        "`token_ids` must be in [0, 64) (vocabulary_size=64)" in reply["error"]
    )
    status, reply = post(server, {"signature_name": "serve", "inputs": {}})
    assert (status, reply) == (
        400,
        {
            "error": "Signature 'serve' takes inputs ['padding_mask', "
            "'token_ids']. Received: missing ['padding_mask', 'token_ids'], "
            "unknown []"
        },
    )
