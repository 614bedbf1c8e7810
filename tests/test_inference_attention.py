"""Attention with dropout in the config runs fused when not training."""

import keras
import numpy as np
import pytest
from conftest import backbone_inputs, numpy, random_batch, shared_backbone
from keras.src import ops as src_ops
from keras_hub.src.models.gemma import gemma_attention

import keras_rmt
from keras_rmt.adapters.inference_attention import fuse_attention_at_inference

SEGMENTS = 2
SEGMENT_LENGTH = 4
NUM_LAYERS = 2  # of every tiny backbone of conftest.py


def _with_dropout(family, rate):
    """The family's tiny backbone with the same weights and `dropout=rate`."""
    reference = shared_backbone(family)
    config = reference.get_config()
    config["dropout"] = rate
    backbone = type(reference).from_config(config)
    backbone.set_weights(reference.get_weights())
    return backbone


def _rmt(backbone):
    return keras_rmt.layers.RecurrentSegments(
        backbone,
        memory=keras_rmt.layers.MemoryTokens(2),
        segment_length=SEGMENT_LENGTH,
        # One trace of the backbone per segment, on every backend.
        segment_loop="unrolled",
    )


@pytest.fixture(scope="module")
def pairs():
    """Per family: an RMT with dropout 0, one with 0.1, same weights."""
    built = {}

    def pair(family):
        if family not in built:
            plain = _rmt(_with_dropout(family, 0.0))
            with_dropout = _rmt(_with_dropout(family, 0.1))
            with_dropout.memory.set_weights(plain.memory.get_weights())
            batch = random_batch(2, SEGMENTS * SEGMENT_LENGTH, seed=1)
            built[family] = plain, with_dropout, backbone_inputs(batch, family)
        return built[family]

    return pair


@pytest.fixture
def fused_calls(monkeypatch):
    """Counts calls of `ops.dot_product_attention`, the fused path."""
    calls = []
    fused = src_ops.dot_product_attention

    def spy(*args, **kwargs):
        calls.append(1)
        return fused(*args, **kwargs)

    monkeypatch.setattr(src_ops, "dot_product_attention", spy)
    monkeypatch.setattr(keras.ops, "dot_product_attention", spy)
    # Gemma fuses only on accelerators; answer its checks as a GPU would.
    monkeypatch.setattr(gemma_attention, "running_on_gpu", lambda: True)
    monkeypatch.setattr(
        gemma_attention, "gpu_supports_fused_attention_op", lambda: True
    )
    return calls


@pytest.mark.parametrize(
    "family",
    [
        "gpt2",
        "bert",
        pytest.param(
            "gemma",
            marks=pytest.mark.skipif(
                keras.backend.backend() == "tensorflow",
                reason="keras-hub's Gemma attention never fuses on TensorFlow",
            ),
        ),
    ],
)
def test_inference_with_dropout_is_fused_and_equals_dropout_zero(
    family, pairs, fused_calls
):
    plain, with_dropout, batch = pairs(family)
    expected = numpy(plain(batch, training=False))

    del fused_calls[:]
    outputs = numpy(with_dropout(batch, training=False))
    # Every attention layer of every segment took the fused op.
    assert len(fused_calls) == NUM_LAYERS * SEGMENTS
    for name in ("sequence_output", "memory"):
        np.testing.assert_allclose(
            outputs[name], expected[name], rtol=1e-6, atol=1e-6
        )


def test_compiled_inference_with_dropout_equals_dropout_zero(pairs):
    plain, with_dropout, batch = pairs("gpt2")
    expected = numpy(plain(batch, training=False))
    inferred = numpy(with_dropout.infer(batch))
    for name in ("sequence_output", "memory"):
        np.testing.assert_allclose(
            inferred[name], expected[name], rtol=1e-5, atol=1e-5
        )


def test_training_still_applies_attention_dropout(pairs, fused_calls):
    _, with_dropout, batch = pairs("gpt2")
    inference = numpy(with_dropout(batch, training=False))["sequence_output"]

    del fused_calls[:]
    keras.utils.set_random_seed(1)
    first = numpy(with_dropout(batch, training=True))["sequence_output"]
    # Training keeps Keras' own path, with its attention-probability dropout.
    assert fused_calls == []
    keras.utils.set_random_seed(2)
    second = numpy(with_dropout(batch, training=True))["sequence_output"]
    assert np.abs(first - second).max() > 1e-3
    assert np.abs(first - inference).max() > 1e-3


def test_fusing_twice_wraps_once_and_keeps_the_rate():
    backbone = _with_dropout("gpt2", 0.1)
    fuse_attention_at_inference(backbone)
    layer = backbone.transformer_layers[0]._self_attention_layer
    call = layer.call
    fuse_attention_at_inference(backbone)
    assert layer.call is call
    backbone(random_batch(1, 4), training=False)
    assert layer._dropout == 0.1
    assert backbone.get_config()["dropout"] == 0.1


def test_layers_without_dropout_are_left_alone():
    backbone = _with_dropout("gpt2", 0.0)
    layer = backbone.transformer_layers[0]._self_attention_layer
    fuse_attention_at_inference(backbone)
    assert not hasattr(layer.call, "_keras_rmt_fused_at_inference")


def test_training_passed_by_position_keeps_the_dropout(fused_calls):
    backbone = _with_dropout("gpt2", 0.1)
    fuse_attention_at_inference(backbone)
    layer = backbone.transformer_layers[0]._self_attention_layer
    x = keras.random.normal((1, 4, 16))
    # query, value, key, attention_mask, cache, cache_update_index,
    # return_attention_scores, training
    layer.call(x, x, None, None, None, None, False, True)
    assert fused_calls == []
    layer.call(x, x, None, None, None, None, False, False)
    assert len(fused_calls) == 1
