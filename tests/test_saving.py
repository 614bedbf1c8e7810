import os
import subprocess
import sys

import keras
import numpy as np
import pytest
from check_weights_under_backend import (
    max_difference_after_loading,
    recall_model,
    save_weights_and_logits,
)
from conftest import make_rmt, numpy, random_batch, text_inputs
from tasks.first_token_recall import first_token_recall

import keras_rmt

BACKENDS = ("tensorflow", "jax", "torch")


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


@pytest.mark.backend_independent
def test_weights_load_under_another_backend(tmp_path):
    # A ring through the three backends, run once: this process saves; each
    # other backend, in a process of its own, checks the weights the one
    # before it saved and saves its own (other values); this process checks
    # the last ones.
    start = BACKENDS.index(keras.backend.backend())
    ring = BACKENDS[start:] + BACKENDS[:start]
    inputs, _ = first_token_recall(4, seed=3)
    inputs["padding_mask"][1, 7:] = 0
    save_weights_and_logits(recall_model(), inputs, tmp_path / ring[0])
    script = os.path.join(
        os.path.dirname(__file__), "check_weights_under_backend.py"
    )
    for seed, (saved_by, backend) in enumerate(zip(ring, ring[1:]), 2):
        result = subprocess.run(
            [
                sys.executable,
                script,
                str(tmp_path / saved_by),
                str(tmp_path / backend),
                str(seed),
            ],
            env={**os.environ, "KERAS_BACKEND": backend},
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert result.returncode == 0, result.stdout + result.stderr
        assert f"under {backend}" in result.stdout
    model = recall_model()
    assert max_difference_after_loading(model, tmp_path / ring[-1]) < 1e-4
    # What this process loaded last is the last backend's own model.
    head = numpy(model.get_layer("head").kernel)
    assert not np.allclose(head, numpy(recall_model().get_layer("head").kernel))
