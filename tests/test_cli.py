import re
import subprocess
import sys

import keras
import numpy as np
import pytest
from conftest import make_rmt, numpy, random_batch, text_inputs

from keras_rmt.export import cli

BACKEND = keras.backend.backend()


@pytest.fixture(scope="module")
def keras_file(tmp_path_factory):
    inputs = text_inputs()
    rmt = make_rmt("gpt2", 2, 4)
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


@pytest.mark.parametrize("backend", ["tensorflow", "jax"])
def test_export_command_runs_under_the_backend_asked_for(
    keras_file, backend, monkeypatch
):
    # The command's real runs (and the SavedModels they write) are checked
    # in tests/test_export.py, from torch; here, what it starts.
    model, path = keras_file
    argv = ["export", path, "out", "--backend", backend]
    started, exported = [], []

    def start(command, env):
        started.append((command, env["KERAS_BACKEND"]))
        return subprocess.CompletedProcess(command, 0)

    monkeypatch.delenv("KERAS_BACKEND", raising=False)
    monkeypatch.setattr(subprocess, "run", start)
    monkeypatch.setattr(
        cli,
        "export_saved_model",
        lambda model, path, verbose: exported.append((model, path)),
    )
    assert cli.main(argv) == 0
    if backend != BACKEND:
        # Keras cannot switch backends once imported: a new process can.
        assert started == [
            ([sys.executable, "-m", "keras_rmt", *argv], backend)
        ]
        assert exported == []
        return
    assert started == []
    ((loaded, out_dir),) = exported
    assert out_dir == "out"
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
