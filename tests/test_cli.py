import os
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
    keras_file, backend, tmp_path, monkeypatch
):
    model, path = keras_file
    out_dir = str(tmp_path / "saved_model")
    argv = ["export", path, out_dir, "--backend", backend]
    if backend != BACKEND:
        # Keras cannot switch backends once imported: the command starts a
        # process for it. (tests/test_export.py runs one from torch.)
        started = []

        def record(command, env):
            started.append((command, env["KERAS_BACKEND"]))
            return subprocess.CompletedProcess(command, 0)

        monkeypatch.delenv("KERAS_BACKEND", raising=False)
        monkeypatch.setattr(subprocess, "run", record)
        assert cli.main(argv) == 0
        assert started == [
            ([sys.executable, "-m", "keras_rmt", *argv], backend)
        ]
        assert not os.path.exists(out_dir)
        return
    import tensorflow as tf

    assert cli.main(argv) == 0
    served = tf.saved_model.load(out_dir)
    inputs = random_batch(2, 7, lengths=[7, 3])
    outputs = served.serve(inputs)
    np.testing.assert_allclose(
        outputs["sequence_output"].numpy(),
        numpy(model(inputs))["sequence_output"],
        atol=1e-5,
        rtol=0,
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
