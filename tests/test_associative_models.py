import keras
import numpy as np
import pytest
from conftest import make_backbone, make_rmt_backbone, numpy, random_batch
from test_associative_memory import randomize

import keras_rmt


# With key_dim=2, DPFP features are nonzero only in the sign quadrant of
# the projected pair, so most reads are exactly zero: on some random draws
# (JAX's) no real token depends on the first layer's memory at all, and a
# training step leaves its weights exactly unchanged. 4 gives overlaps.
KEY_DIM = 4


def armt_backbone(family="gpt2"):
    backbone = make_rmt_backbone(family, associative_key_dim=KEY_DIM)
    for layer in backbone.recurrent_segments.associative_memories:
        randomize(layer, seed=1)
    return backbone


def test_backbone_reads_a_stream_in_pieces_as_at_once():
    backbone = armt_backbone()
    layer = backbone.recurrent_segments
    assert isinstance(layer, keras_rmt.layers.AssociativeRecurrentSegments)
    batch = random_batch(2, 12, lengths=[12, 7])
    whole = numpy(backbone(batch))
    first = backbone({k: v[:, :8] for k, v in batch.items()})
    rest = {k: keras.ops.convert_to_tensor(v[:, 8:]) for k, v in batch.items()}
    rest = backbone({**rest, "memory": first["memory"]})
    np.testing.assert_allclose(
        numpy(rest["sequence_output"]),
        whole["sequence_output"][:, 8:],
        atol=1e-5,
    )
    assert whole["memory"].shape == (2, *layer.state_shape)


def test_causal_lm_logits_and_round_trip(tmp_path):
    causal_lm = keras_rmt.models.RMTCausalLM(armt_backbone())
    batch = random_batch(2, 10, lengths=[10, 7])
    hidden = causal_lm.backbone(batch)["sequence_output"]
    expected = numpy(causal_lm.backbone.token_embedding(hidden, reverse=True))
    logits = causal_lm.predict(batch, verbose=0)
    np.testing.assert_allclose(logits, expected, atol=1e-5)

    causal_lm.save(tmp_path / "armt_lm.keras")
    restored = keras.saving.load_model(tmp_path / "armt_lm.keras")
    assert restored.backbone.associative_key_dim == KEY_DIM
    np.testing.assert_array_equal(restored.predict(batch, verbose=0), logits)


def test_a_training_step_moves_every_associative_weight():
    restored = keras_rmt.models.RMTCausalLM(armt_backbone())
    batch = random_batch(2, 10, lengths=[10, 7])
    # Every weight of every layer's associative memory gets a gradient.
    layers = restored.backbone.recurrent_segments.associative_memories
    weights = [w for layer in layers for w in layer.trainable_weights]
    before = [numpy(w) for w in weights]
    restored.compile(optimizer=keras.optimizers.SGD(1.0))
    restored.fit(
        batch,
        batch["token_ids"],
        sample_weight=batch["padding_mask"],
        verbose=0,
    )
    for weight, value in zip(weights, before):
        assert np.abs(numpy(weight) - value).max() > 0.0, weight.path


def test_text_classifier_round_trip(tmp_path):
    classifier = keras_rmt.models.RMTTextClassifier(
        armt_backbone("llama"), num_classes=3
    )
    batch = random_batch(2, 11, lengths=[11, 6])
    logits = classifier.predict(batch, verbose=0)
    classifier.save(tmp_path / "armt_classifier.keras")
    restored = keras.saving.load_model(tmp_path / "armt_classifier.keras")
    np.testing.assert_array_equal(restored.predict(batch, verbose=0), logits)


def test_associative_backbone_keeps_the_default_layout():
    with pytest.raises(ValueError, match="memory_attention='bidirectional'"):
        keras_rmt.models.RMTBackbone(
            make_backbone("gpt2"),
            num_memory_tokens=2,
            segment_length=4,
            associative_key_dim=2,
            memory_attention="bidirectional",
        )

