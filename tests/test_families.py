"""Families beyond the first eight: an MoE decoder (Mixtral), factorized
embeddings (ALBERT, `embedding_dim` 8 for a hidden width of 16), Qwen3 and
Phi3. Each is built, run, trained a step, saved and reloaded, and checked
against a one-segment reference computed here from the backbone's own
layers."""

import keras
import numpy as np
import pytest
from conftest import (
    VOCABULARY_SIZE,
    jitted_on_jax,
    make_backbone,
    make_rmt,
    numpy,
    random_batch,
    wrap_rmt,
)

import keras_rmt

FAMILIES = ["mixtral", "albert", "qwen3", "phi3"]
SEGMENT_LENGTH = 6


@pytest.fixture(scope="module", params=FAMILIES)
def family_rmt(request):
    family = request.param
    # The decoders with one block: what is particular to each family (its
    # embeddings, rotary positions, MoE blocks, final norm) is in every
    # block, and the reference below runs the blocks in a plain loop; each
    # block more costs compile time on JAX (a Mixtral step: seconds).
    # ALBERT keeps two, so that its reference repeats its shared group.
    overrides = {} if family == "albert" else {"num_layers": 1}
    backbone = make_backbone(family, **overrides)
    return family, wrap_rmt(backbone, segment_length=SEGMENT_LENGTH)


def _call(rmt, batch):
    """`rmt(batch)` as numpy; on JAX one compiled call, not op by op (an
    eager Mixtral call dispatches and compiles hundreds of small ops)."""
    return numpy(jitted_on_jax(rmt, rmt)(batch))


def _decoder_reference(backbone, memory, token_ids):
    """[read ; segment ; write] through the blocks and the final norm."""
    embeddings = backbone.token_embedding(token_ids)
    x = keras.ops.concatenate([memory, embeddings, memory], axis=1)
    mask = np.ones(x.shape[:2], "int32")
    for block in backbone.transformer_layers:
        x = block(x, decoder_padding_mask=mask)
    hidden = backbone.layer_norm(x)
    m = memory.shape[1]
    return hidden[:, m:-m], hidden[:, -m:]


def _albert_reference(backbone, memory, token_ids):
    """[first token ; memory ; rest] after the embedding projection: the
    memory is at the hidden width and takes no position."""
    tokens = backbone.token_embedding(token_ids)
    segments = backbone.segment_embedding(keras.ops.zeros_like(token_ids))
    x = tokens + backbone.position_embedding(tokens) + segments
    x = backbone.embeddings_projection(backbone.embeddings_layer_norm(x))
    x = keras.ops.concatenate([x[:, :1], memory, x[:, 1:]], axis=1)
    mask = np.ones(x.shape[:2], "int32")
    calls = backbone.num_layers // backbone.num_groups
    for group in backbone.transformer_layers:
        for _ in range(calls):
            for block in group:
                x = block(x, padding_mask=mask)
    m = memory.shape[1]
    tokens = keras.ops.concatenate([x[:, :1], x[:, 1 + m :]], axis=1)
    return tokens, x[:, 1 : 1 + m]


def test_one_segment_equals_reference_from_the_backbones_layers(family_rmt):
    family, rmt = family_rmt
    batch = random_batch(2, SEGMENT_LENGTH)
    outputs = _call(rmt, batch)
    reference = _albert_reference if family == "albert" else _decoder_reference

    def reference_of(token_ids):
        memory = rmt.memory(keras.ops.zeros((2, 1, 16), "float32"))
        return reference(rmt.backbone, memory, token_ids)

    # Compiled on JAX too: the backbone's layers op by op cost more.
    tokens, written = numpy(
        jitted_on_jax(rmt, reference_of)(batch["token_ids"])
    )
    assert rmt.memory_layout == ("encoder" if family == "albert" else "decoder")
    np.testing.assert_allclose(outputs["sequence_output"], tokens, atol=1e-5)
    np.testing.assert_allclose(outputs["memory"], written, atol=1e-5)


def test_short_row_in_a_long_batch_equals_the_row_alone(family_rmt):
    _, rmt = family_rmt
    # Row 1 fills the first of the batch's three segments. Alone, it is
    # cut to (2, SEGMENT_LENGTH) (row 0 cut too): the shape of the one-
    # segment test, whose compiled call JAX's cache then reuses.
    batch = random_batch(2, 14, seed=2, lengths=[14, SEGMENT_LENGTH])
    together = _call(rmt, batch)
    assert together["sequence_output"].shape == (2, 14, 16)
    alone = _call(rmt, {k: v[:, :SEGMENT_LENGTH] for k, v in batch.items()})
    np.testing.assert_allclose(
        together["sequence_output"][1, :SEGMENT_LENGTH],
        alone["sequence_output"][1],
        atol=1e-5,
    )
    np.testing.assert_allclose(
        together["memory"][1], alone["memory"][1], atol=1e-5
    )


def test_fit_step_trains_the_memory_and_the_keras_file_reloads(
    family_rmt, tmp_path
):
    # The module's layer (building another costs seconds on JAX): the other
    # tests compare it with itself or its own layers, whatever its weights.
    family, rmt = family_rmt
    inputs = {
        name: keras.Input((None,), dtype="int32", name=name)
        for name in ("token_ids", "padding_mask")
    }
    logits = keras.layers.Dense(VOCABULARY_SIZE)(rmt(inputs)["sequence_output"])
    model = keras.Model(inputs, logits)
    model.compile(
        optimizer=keras.optimizers.SGD(0.5),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    batch = random_batch(2, 12, seed=3, lengths=[12, 7])
    before = numpy(rmt.memory.memory)
    loss = float(model.train_on_batch(batch, batch["token_ids"]))
    assert np.isfinite(loss)
    # The memory gets a gradient through the second segment.
    assert np.abs(numpy(rmt.memory.memory) - before).max() > 0.0

    expected = model.predict_on_batch(batch)
    model.save(tmp_path / f"{family}.keras")
    restored = keras.saving.load_model(tmp_path / f"{family}.keras")
    layer = restored.layers[2]
    assert isinstance(layer, keras_rmt.layers.RecurrentSegments)
    np.testing.assert_allclose(
        restored.predict_on_batch(batch), expected, atol=1e-6
    )


def test_factorized_memory_takes_no_position_of_the_table():
    # 32 positions: the segment may fill them, whatever the memory size.
    rmt = make_rmt("albert", num_tokens=8, segment_length=32)
    assert rmt.hidden_dim == 16
    assert tuple(rmt.memory.memory.shape) == (8, 16)
    with pytest.raises(ValueError, match=r"Use segment_length <= 32\."):
        make_rmt("albert", segment_length=33)
