import os
import subprocess
import sys

import keras
import numpy as np
from check_weights_under_backend import recall_model
from conftest import make_rmt, numpy, random_batch, text_inputs
from tasks.first_token_recall import first_token_recall

import keras_rmt

NEXT_BACKEND = {"tensorflow": "jax", "jax": "torch", "torch": "tensorflow"}


def test_keras_file_round_trip_gives_identical_outputs(tmp_path):
    for family, options in [
        ("gpt2", {"bptt_depth": 1, "memory_attention": "bidirectional"}),
        ("bert", {"bptt_depth": 0}),
    ]:
        inputs = text_inputs()
        model = keras.Model(inputs, make_rmt(family, **options)(inputs))
        batch = random_batch(2, 11, lengths=[11, 6])
        # Called, not `predict`: on TensorFlow the first `predict` of each
        # model traces it (seconds); a round trip needs only the outputs.
        expected = numpy(model(batch))
        path = tmp_path / f"{family}.keras"
        model.save(path)
        restored = keras.saving.load_model(path)
        layer = restored.get_layer(model.layers[-1].name)
        assert isinstance(layer, keras_rmt.layers.RecurrentSegments)
        for name, value in options.items():
            assert getattr(layer, name) == value
        got = numpy(restored(batch))
        for name in expected:
            np.testing.assert_array_equal(got[name], expected[name])


def test_layer_config_round_trip():
    layer = make_rmt("gpt2", bptt_depth=2, alignment="right")
    clone = keras_rmt.layers.RecurrentSegments.from_config(layer.get_config())
    assert clone.get_config() == layer.get_config()


def test_weights_load_under_another_backend(tmp_path):
    model = recall_model()
    inputs, _ = first_token_recall(4, seed=3)
    inputs["padding_mask"][1, 7:] = 0
    # Called, not `predict` (here and in the script): the first `predict`
    # of a model traces it, which costs more than the call on every backend.
    logits = keras.ops.convert_to_numpy(model(inputs))
    model.save_weights(tmp_path / "model.weights.h5")
    np.savez(tmp_path / "expected.npz", logits=logits, **inputs)

    other = NEXT_BACKEND[keras.backend.backend()]
    script = os.path.join(
        os.path.dirname(__file__), "check_weights_under_backend.py"
    )
    result = subprocess.run(
        [
            sys.executable,
            script,
            str(tmp_path / "model.weights.h5"),
            str(tmp_path / "expected.npz"),
        ],
        env={**os.environ, "KERAS_BACKEND": other},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"under {other}" in result.stdout
