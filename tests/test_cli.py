import os
import re
import signal
import subprocess
import sys
import time

import keras
import numpy as np
import pytest
from conftest import make_backbone, numpy, random_batch, text_inputs, wrap_rmt

from keras_rmt.export import cli

BACKEND = keras.backend.backend()
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXPORTS_HERE = pytest.mark.skipif(
    BACKEND not in ("tensorflow", "jax"),
    reason="The command exports in its own process from TensorFlow or JAX.",
)


def one_block_rmt():
    """A tiny RMT over a 1-block GPT-2: each block costs every `.keras`
    load (and save) its layers; the command does not depend on the depth."""
    return wrap_rmt(make_backbone("gpt2", num_layers=1), 2, 4)


@pytest.fixture(scope="module")
def keras_file(tmp_path_factory):
    inputs = text_inputs()
    rmt = one_block_rmt()
    sequence_output = rmt(inputs)["sequence_output"]
    model = keras.Model(inputs, {"sequence_output": sequence_output})
    path = str(tmp_path_factory.mktemp("cli") / "model.keras")
    model.save(path)
    return model, path


def test_unknown_backend_is_refused(capsys):
    with pytest.raises(SystemExit) as raised:
        cli.main(["export", "a.keras", "out", "--backend", "torch"])
    assert raised.value.code == 2
    assert (
        "argument --backend: invalid choice: 'torch' (choose from "
        "'tensorflow', 'jax')" in capsys.readouterr().err
    )


class Replaced(Exception):
    """What the fake `os.execve` raises: the real one never returns."""


@pytest.mark.parametrize("backend", ["tensorflow", "jax"])
def test_export_command_runs_under_the_backend_asked_for(
    keras_file, backend, monkeypatch
):
    # The command's real runs (and the SavedModels they write) are checked
    # in tests/test_export.py, from torch; here, what it runs.
    model, path = keras_file
    argv = ["export", path, "out", "--backend", backend, "--overwrite"]
    replaced, exported = [], []

    def execve(executable, command, env):
        replaced.append((executable, command, env["KERAS_BACKEND"]))
        raise Replaced

    monkeypatch.delenv("KERAS_BACKEND", raising=False)
    monkeypatch.setattr(os, "execve", execve)
    monkeypatch.setattr(
        cli,
        "export_saved_model",
        lambda model, path, overwrite, verbose: exported.append(
            (model, path, overwrite)
        ),
    )
    if backend != BACKEND:
        # Keras cannot switch backends once imported: the process becomes
        # one that imports it with the backend asked for.
        with pytest.raises(Replaced):
            cli.main(argv)
        command = [sys.executable, "-m", "keras_rmt", *argv]
        assert replaced == [(sys.executable, command, backend)]
        assert exported == []
        return
    assert cli.main(argv) == 0
    assert replaced == []
    ((loaded, out_dir, overwrite),) = exported
    assert (out_dir, overwrite) == ("out", True)
    inputs = random_batch(2, 7, lengths=[7, 3])
    np.testing.assert_array_equal(
        numpy(loaded(inputs))["sequence_output"],
        numpy(model(inputs))["sequence_output"],
    )


def test_a_backend_that_cannot_be_switched_to_is_reported(
    keras_file, monkeypatch
):
    other = "jax" if BACKEND != "jax" else "tensorflow"
    monkeypatch.setenv("KERAS_BACKEND", other)
    with pytest.raises(
        RuntimeError,
        match=re.escape(
            f"KERAS_BACKEND={other} is set, but Keras runs on {BACKEND!r}: "
            "was Keras imported before?"
        ),
    ):
        cli.main(["export", keras_file[1], "out", "--backend", other])


WAIT_HERE = """
import os, time

# Imported by the export command (`--import`): says which process exports,
# then waits there to be signalled.
with open(os.environ["READY"] + ".part", "w") as file:
    file.write(str(os.getpid()))
os.rename(os.environ["READY"] + ".part", os.environ["READY"])
time.sleep(300)
"""


def alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


# The command runs under torch whatever this process runs: once is enough.
@pytest.mark.backend_independent
def test_sigterm_to_the_command_leaves_no_process_behind(keras_file, tmp_path):
    # From torch, the command switches to TensorFlow: SIGTERM to the process
    # started (as `timeout` or a scheduler sends it) must stop the export.
    (tmp_path / "wait_here.py").write_text(WAIT_HERE)
    folder = tmp_path / "exports"
    folder.mkdir()
    ready, out = tmp_path / "ready", folder / "out"
    environment = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([ROOT, str(tmp_path)]),
        "KERAS_BACKEND": "torch",
        "READY": str(ready),
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    command = [sys.executable, "-m", "keras_rmt", "export", keras_file[1]]
    command += [str(out), "--backend", "tensorflow", "--import", "wait_here"]
    # A file, not a pipe: a process left behind would hold a pipe open.
    log = tmp_path / "stderr.txt"
    with open(log, "w") as stderr:
        process = subprocess.Popen(command, env=environment, stderr=stderr)
    while not ready.exists():
        assert process.poll() is None, log.read_text()[-3000:]
        time.sleep(0.2)
    exporter = int(ready.read_text())
    try:
        process.send_signal(signal.SIGTERM)
        process.wait()
        assert not alive(exporter), "the export runs on after SIGTERM"
    finally:
        if alive(exporter) and exporter != process.pid:
            os.kill(exporter, signal.SIGKILL)
    assert process.returncode in (128 + signal.SIGTERM, -signal.SIGTERM)
    # Nothing written, not even a temporary folder.
    assert os.listdir(folder) == []


@EXPORTS_HERE
def test_safe_mode_false_reaches_the_loader(keras_file, monkeypatch):
    loaded = []

    def load(path, safe_mode=True):
        loaded.append((path, safe_mode))
        return keras_file[0]

    monkeypatch.setattr(cli, "load", load)
    monkeypatch.setattr(cli, "export_saved_model", lambda *a, **k: None)
    argv = ["export", keras_file[1], "out", "--backend", BACKEND]
    cli.main(argv)
    cli.main(argv + ["--safe-mode", "false"])
    assert loaded == [(keras_file[1], True), (keras_file[1], False)]


def test_a_model_with_a_lambda_layer_loads_with_safe_mode_false(tmp_path):
    inputs = text_inputs()
    hidden = one_block_rmt()(inputs)["sequence_output"]
    doubled = keras.layers.Lambda(lambda x: x * 2.0)(hidden)
    model = keras.Model(inputs, {"sequence_output": doubled})
    path = str(tmp_path / "lambda.keras")
    model.save(path)
    with pytest.raises(ValueError, match=re.escape("safe_mode=False")):
        cli.load(path)
    loaded = cli.load(path, safe_mode=False)
    batch = random_batch(1, 5)
    np.testing.assert_array_equal(
        numpy(loaded(batch))["sequence_output"],
        numpy(model(batch))["sequence_output"],
    )


def test_a_truncated_keras_file_is_called_damaged(keras_file, tmp_path):
    with open(keras_file[1], "rb") as file:
        data = file.read()
    path = str(tmp_path / "cut.keras")
    with open(path, "wb") as file:
        file.write(data[: len(data) // 2])
    with pytest.raises(
        ValueError,
        match=re.escape(
            f"{path} is damaged: it is not a complete .keras archive (a zip "
            "file), as when a copy or a save was cut short. Save or copy the "
            f"model again. Received: model={path!r}"
        ),
    ):
        cli.load(path)
