import keras
import keras_hub
import numpy as np
import pytest
from conftest import make_backbone, make_rmt_backbone, numpy, random_batch
from test_case import (
    assert_config_round_trip,
    assert_keras_file_round_trip,
)

import keras_rmt
from keras_rmt.layers import segment_loops


def _tensors(batch):
    return {k: keras.ops.convert_to_tensor(v) for k, v in batch.items()}


@pytest.mark.parametrize("family", ["gpt2", "bert"])
def test_reading_in_pieces_with_memory_equals_reading_at_once(family):
    backbone = make_rmt_backbone(family)
    batch = random_batch(2, 12, seed=1)
    whole = numpy(backbone(_tensors(batch)))
    first = backbone(_tensors({k: v[:, :8] for k, v in batch.items()}))
    rest = backbone(
        {
            **_tensors({k: v[:, 8:] for k, v in batch.items()}),
            "memory": first["memory"],
        }
    )
    np.testing.assert_allclose(
        np.concatenate(
            [numpy(first["sequence_output"]), numpy(rest["sequence_output"])],
            axis=1,
        ),
        whole["sequence_output"],
        atol=1e-5,
    )
    np.testing.assert_allclose(
        numpy(rest["memory"]), whole["memory"], atol=1e-5
    )


def test_outputs_are_the_layers_and_segment_ids_default_to_zeros():
    backbone = make_rmt_backbone("bert")
    batch = random_batch(2, 9, lengths=[9, 5])
    assert set(backbone.input) == {
        "token_ids",
        "padding_mask",
        "segment_ids",
        "memory",
    }
    got = numpy(backbone(_tensors(batch)))
    with_zeros = numpy(
        backbone(_tensors({**batch, "segment_ids": np.zeros((2, 9), "int32")}))
    )
    layer = numpy(backbone.recurrent_segments(_tensors(batch)))
    for name in ("sequence_output", "memory"):
        np.testing.assert_array_equal(got[name], layer[name])
        np.testing.assert_array_equal(got[name], with_zeros[name])
    assert got["memory"].shape == (2, 2, 16)


def test_weights_are_the_wrapped_backbones_plus_memory():
    inner = make_backbone("gpt2")
    backbone = keras_rmt.models.RMTBackbone(
        inner, num_memory_tokens=3, segment_length=4
    )
    assert backbone.token_embedding is inner.token_embedding
    assert len(backbone.weights) == len(inner.weights) + 1
    assert backbone.count_params() == inner.count_params() + 3 * 16


def test_train_memory_only_freezes_the_wrapped_backbone():
    backbone = make_rmt_backbone("gpt2", train_memory_only=True)
    assert [w.path for w in backbone.trainable_weights] == [
        backbone.memory.memory.path
    ]
    clone = keras_rmt.models.RMTBackbone.from_config(backbone.get_config())
    assert clone.train_memory_only
    backbone.train_memory_only = False
    assert len(backbone.trainable_weights) == len(backbone.weights)


def test_config_round_trip():
    backbone = make_rmt_backbone(
        "gpt2", bptt_depth=1, alignment="right", memory_initializer="zeros"
    )
    clone = keras_rmt.models.RMTBackbone.from_config(backbone.get_config())
    assert clone.get_config() == backbone.get_config()
    assert clone.memory_layout == "decoder"


def test_keras_file_round_trip_gives_identical_outputs(tmp_path):
    backbone = make_rmt_backbone("gpt2", bptt_depth=1)
    batch = random_batch(2, 10, lengths=[10, 7])
    expected = backbone.predict(batch, verbose=0)
    backbone.save(tmp_path / "backbone.keras")
    restored = keras.saving.load_model(tmp_path / "backbone.keras")
    assert isinstance(restored, keras_rmt.models.RMTBackbone)
    got = restored.predict(batch, verbose=0)
    for name in expected:
        np.testing.assert_array_equal(got[name], expected[name])


def test_from_preset_wraps_a_keras_hub_preset_and_round_trips(tmp_path):
    inner = make_backbone("gpt2")
    inner.save_to_preset(tmp_path / "gpt2")
    backbone = keras_rmt.models.RMTBackbone.from_preset(
        str(tmp_path / "gpt2"), num_memory_tokens=2, segment_length=4
    )
    assert isinstance(backbone.backbone, keras_hub.models.GPT2Backbone)
    for got, expected in zip(backbone.backbone.weights, inner.weights):
        np.testing.assert_array_equal(numpy(got), numpy(expected))
    backbone.save_to_preset(tmp_path / "rmt")
    restored = keras_rmt.models.RMTBackbone.from_preset(str(tmp_path / "rmt"))
    batch = random_batch(2, 10)
    expected = backbone.predict(batch, verbose=0)
    got = restored.predict(batch, verbose=0)
    for name in expected:
        np.testing.assert_array_equal(got[name], expected[name])
    with pytest.raises(ValueError, match="cannot be given again"):
        keras_rmt.models.RMTBackbone.from_preset(
            str(tmp_path / "rmt"), segment_length=8
        )


def test_configuration_that_does_not_fit_the_backbone_is_refused(tmp_path):
    make_backbone("gpt2").save_to_preset(tmp_path / "gpt2")
    with pytest.raises(ValueError, match="max_sequence_length=32"):
        keras_rmt.models.RMTBackbone.from_preset(
            str(tmp_path / "gpt2"), num_memory_tokens=8, segment_length=20
        )


def test_refuses_what_it_cannot_wrap():
    backbone = make_rmt_backbone("gpt2")
    with pytest.raises(ValueError, match="not an RMTBackbone"):
        keras_rmt.models.RMTBackbone(
            backbone, num_memory_tokens=2, segment_length=4
        )
    with pytest.raises(ValueError, match="must be a positive integer"):
        make_rmt_backbone("gpt2", num_memory_tokens=0)


NOT_TF = keras.backend.backend() != "tensorflow"


def test_segment_loop_and_remat_are_passed_and_round_trip():
    backbone = make_rmt_backbone("gpt2", segment_loop="unrolled", remat=NOT_TF)
    layer = backbone.recurrent_segments
    assert (layer.segment_loop, layer.remat) == ("unrolled", NOT_TF)
    config = backbone.get_config()
    assert (config["segment_loop"], config["remat"]) == ("unrolled", NOT_TF)
    clone = assert_config_round_trip(backbone)
    assert clone.recurrent_segments.segment_loop == "unrolled"
    assert clone.recurrent_segments.remat == NOT_TF


@pytest.mark.skipif(not NOT_TF, reason="TensorFlow refuses the scan")
def test_scan_unroll_is_passed_and_round_trips():
    backbone = make_rmt_backbone("gpt2", segment_loop="scan", scan_unroll=2)
    assert backbone.recurrent_segments.scan_unroll == 2
    assert backbone.get_config()["scan_unroll"] == 2
    clone = assert_config_round_trip(backbone)
    assert clone.recurrent_segments.scan_unroll == 2


def test_scan_unroll_without_the_scan_is_refused():
    with pytest.raises(
        ValueError, match="Received: scan_unroll=2, segment_loop='auto'"
    ):
        make_rmt_backbone("gpt2", scan_unroll=2)


@pytest.mark.skipif(NOT_TF, reason="the layer refuses these on TF only")
def test_scan_and_remat_are_refused_on_tensorflow():
    with pytest.raises(ValueError, match="Received: segment_loop='scan'"):
        make_rmt_backbone("gpt2", segment_loop="scan")
    with pytest.raises(ValueError, match="Received: remat=True"):
        make_rmt_backbone("gpt2", remat=True)


def _loops_used(monkeypatch):
    """Records which loop RecurrentSegments.call runs."""
    used = []
    for name in ("unrolled", "threaded_scan"):
        original = getattr(segment_loops, name)

        def spy(*args, _name=name, _original=original, **kwargs):
            used.append(_name)
            return _original(*args, **kwargs)

        monkeypatch.setattr(segment_loops, name, spy)
    return used


@pytest.mark.parametrize(
    "segment_loop, expected",
    [
        ("unrolled", "unrolled"),
        pytest.param(
            "scan",
            "threaded_scan",
            marks=pytest.mark.skipif(not NOT_TF, reason="refused on TF"),
        ),
    ],
)
def test_a_task_runs_the_segment_loop_it_was_built_with(
    segment_loop, expected, monkeypatch, tmp_path
):
    classifier = keras_rmt.models.RMTTextClassifier(
        make_rmt_backbone("gpt2", segment_loop=segment_loop), num_classes=2
    )
    batch = random_batch(2, 12)
    restored = assert_keras_file_round_trip(
        classifier, batch, tmp_path / "classifier.keras"
    )
    assert restored.backbone.segment_loop == segment_loop
    used = _loops_used(monkeypatch)
    restored(batch)
    assert used == [expected]
