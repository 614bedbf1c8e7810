import keras
import numpy as np
import pytest
from conftest import (
    DECODERS,
    ENCODERS,
    HIDDEN_DIM,
    gradient,
    make_backbone,
    make_rmt,
    make_rmt_on_shared,
    numpy,
    random_batch,
    text_inputs,
    wrap_rmt,
)

import keras_rmt
from keras_rmt.adapters import backbone_body

MEMORY_IDS = [1, 2]

_ONE_BLOCK_BACKBONES = {}


def _one_block_rmt(family, **kwargs):
    """`make_rmt_on_shared` around a 1-block backbone, built once per family.

    For the traced-graph tests: a loop's numbers differ over segments, not
    blocks, and each block more is traced (TensorFlow) or compiled (JAX)
    again for every graph.
    """
    if family not in _ONE_BLOCK_BACKBONES:
        _ONE_BLOCK_BACKBONES[family] = make_backbone(family, num_layers=1)
    return wrap_rmt(_ONE_BLOCK_BACKBONES[family], **kwargs)


def _memory_from_token_rows(rmt, ids):
    """Make the memory equal the token embeddings of `ids`."""
    table = keras.ops.convert_to_numpy(rmt.backbone.token_embedding.embeddings)
    rmt.memory.memory.assign(table[ids])


def _backbone_outputs(backbone, ids):
    inputs = {"token_ids": ids, "padding_mask": np.ones_like(ids)}
    if "segment_ids" in backbone.input:
        inputs["segment_ids"] = np.zeros_like(ids)
    outputs = backbone(inputs)
    if isinstance(outputs, dict):
        outputs = outputs["sequence_output"]
    return keras.ops.convert_to_numpy(outputs)


@pytest.mark.parametrize("family", DECODERS + ENCODERS)
def test_one_segment_equals_backbone_on_joined_sequence(family):
    rmt = make_rmt_on_shared(family, segment_length=6)
    _memory_from_token_rows(rmt, MEMORY_IDS)
    batch = random_batch(2, 6)
    outputs = numpy(rmt(batch))

    m, ids = len(MEMORY_IDS), batch["token_ids"]
    memory_ids = np.tile(MEMORY_IDS, (2, 1)).astype("int32")
    if family in DECODERS:
        assert rmt.memory_layout == "decoder"
        joined = np.concatenate([memory_ids, ids, memory_ids], axis=1)
        reference = _backbone_outputs(rmt.backbone, joined)
        expected_tokens, expected_memory = reference[:, m:-m], reference[:, -m:]
    else:
        assert rmt.memory_layout == "encoder"
        joined = np.concatenate([ids[:, :1], memory_ids, ids[:, 1:]], axis=1)
        reference = _backbone_outputs(rmt.backbone, joined)
        expected_tokens = np.concatenate(
            [reference[:, :1], reference[:, 1 + m :]], axis=1
        )
        expected_memory = reference[:, 1 : 1 + m]
    np.testing.assert_allclose(
        outputs["sequence_output"], expected_tokens, atol=1e-5
    )
    np.testing.assert_allclose(outputs["memory"], expected_memory, atol=1e-5)


@pytest.mark.parametrize("family", ["gpt2", "bert"])
def test_last_segment_reads_first_segment_through_memory(family):
    batch = random_batch(2, 12)
    changed = {k: v.copy() for k, v in batch.items()}
    changed["token_ids"][:, 1] = 3

    def last_segment(rmt, inputs):
        return numpy(rmt(inputs))["sequence_output"][:, -4:]

    with_memory = make_rmt_on_shared(family)
    difference = last_segment(with_memory, batch) - last_segment(
        with_memory, changed
    )
    assert np.abs(difference).max() > 0.0

    without_memory = make_rmt_on_shared(family, carry_memory=False)
    np.testing.assert_array_equal(
        last_segment(without_memory, batch),
        last_segment(without_memory, changed),
    )


@pytest.mark.parametrize("family", ["gpt2", "bert"])
@pytest.mark.parametrize("depth", [None, 0, 1, 2])
def test_bptt_depth_stops_gradients_exactly(family, depth):
    num_segments, segment_length = 4, 3
    rmt = make_rmt_on_shared(
        family, segment_length=segment_length, bptt_depth=depth
    )
    # Segment j uses only token ids 10 * (j + 1) + [0, 1, 2], so the
    # gradient on those embedding rows is the gradient from segment j.
    ids = np.array(
        [[10 * (j + 1) + i for j in range(num_segments) for i in range(3)]],
        "int32",
    )
    batch = {"token_ids": ids, "padding_mask": np.ones_like(ids)}
    table = rmt.backbone.token_embedding.embeddings

    def loss():
        output = rmt(batch)["sequence_output"][:, -segment_length:]
        return keras.ops.sum(
            output * keras.ops.arange(HIDDEN_DIM, dtype="float32")
        )

    grads = gradient(loss, table)
    for j in range(num_segments):
        rows = grads[10 * (j + 1) : 10 * (j + 1) + 3]
        hand_offs = num_segments - 1 - j
        if depth is not None and hand_offs > depth:
            np.testing.assert_array_equal(rows, 0.0)
        else:
            assert np.abs(rows).max() > 0.0, f"segment {j}"


@pytest.mark.parametrize("alignment", ["left", "right"])
def test_bptt_depth_counts_back_from_each_rows_last_segment(alignment):
    segment_length, depth = 3, 1
    rmt = make_rmt_on_shared(
        "gpt2",
        segment_length=segment_length,
        bptt_depth=depth,
        alignment=alignment,
    )
    # A 3-segment row (8 tokens: right alignment pads its first segment)
    # batched with a 5-segment row; each token id is used once.
    short, long = (9, 15) if alignment == "left" else (8, 15)
    ids = np.zeros((2, long), "int32")
    ids[0, :short] = np.arange(3, 3 + short)
    ids[1] = np.arange(20, 20 + long)
    mask = (ids != 0).astype("int32")
    batch = {"token_ids": ids, "padding_mask": mask}
    alone = {k: v[:1, :short] for k, v in batch.items()}
    table = rmt.backbone.token_embedding.embeddings

    def table_gradient(inputs):
        def loss():
            output = rmt(inputs)["sequence_output"][0, short - 3 : short]
            return keras.ops.sum(
                output * keras.ops.arange(HIDDEN_DIM, dtype="float32")
            )

        return gradient(loss, table)

    together, by_itself = table_gradient(batch), table_gradient(alone)
    # The batch sums in float32 in another order than the row alone: equal
    # within 1e-6 of the gradient's largest entry (some hundreds), while a
    # hand-off cut or kept wrongly changes rows by about that entry.
    scale = np.max(np.abs(by_itself))
    offset = (-short) % segment_length if alignment == "right" else 0
    segments = (np.arange(short) + offset) // segment_length
    for j in range(segments[-1] + 1):
        rows = ids[0, :short][segments == j]
        np.testing.assert_allclose(
            together[rows] / scale, by_itself[rows] / scale, atol=1e-6
        )
        if segments[-1] - j > depth:
            np.testing.assert_array_equal(together[rows], 0.0)
        else:
            assert np.abs(together[rows]).max() > 0.0, f"segment {j}"


@pytest.mark.parametrize(
    "family, alignment",
    [("gpt2", "left"), ("gpt2", "right"), ("bert", "left")],
)
def test_short_row_in_long_batch_equals_row_alone(family, alignment):
    rmt = make_rmt_on_shared(family, alignment=alignment)
    batch = random_batch(3, 13, lengths=[7, 13, 4])
    together = numpy(rmt(batch))
    for row, length in enumerate([7, 13, 4]):
        alone = numpy(
            rmt({k: v[row : row + 1, :length] for k, v in batch.items()})
        )
        np.testing.assert_allclose(
            together["sequence_output"][row, :length],
            alone["sequence_output"][0],
            atol=1e-5,
        )
        np.testing.assert_allclose(
            together["memory"][row], alone["memory"][0], atol=1e-5
        )


def test_bool_padding_mask_equals_int_mask():
    rmt = make_rmt_on_shared("gpt2")
    batch = random_batch(2, 10, lengths=[10, 6])
    as_bool = {**batch, "padding_mask": batch["padding_mask"].astype(bool)}
    expected, got = numpy(rmt(batch)), numpy(rmt(as_bool))
    for name in ("sequence_output", "memory"):
        np.testing.assert_array_equal(got[name], expected[name])


def test_right_alignment_pads_the_first_segment():
    rmt = make_rmt_on_shared("gpt2", alignment="right", carry_memory=False)
    batch = random_batch(1, 6)
    # With right alignment the last 4 tokens are a segment of their own.
    tail = {k: v[:, 2:] for k, v in batch.items()}
    np.testing.assert_allclose(
        numpy(rmt(batch))["sequence_output"][:, 2:],
        numpy(rmt(tail))["sequence_output"],
        atol=1e-5,
    )


@pytest.mark.parametrize("carry_memory", [True, False])
def test_continuing_from_memory_equals_one_call(carry_memory):
    # Without carrying, the memory output is the memory every segment
    # reads: going on from it reads the same (it was the last written).
    rmt = make_rmt_on_shared("gpt2", carry_memory=carry_memory)
    batch = random_batch(2, 16)
    whole = numpy(rmt(batch))
    first = rmt({k: v[:, :8] for k, v in batch.items()})
    second = rmt(
        {**{k: v[:, 8:] for k, v in batch.items()}, "memory": first["memory"]}
    )
    np.testing.assert_allclose(
        whole["sequence_output"][:, 8:],
        numpy(second["sequence_output"]),
        atol=1e-5,
    )
    np.testing.assert_allclose(
        whole["memory"], numpy(second["memory"]), atol=1e-5
    )


# Compiled: on TensorFlow, `predict` traces the unknown-length model's graph
# (from the second length on, with the length unknown: its scan).
@pytest.mark.compiled
@pytest.mark.parametrize("family", ["gpt2", "bert"])
def test_unknown_length_model_equals_exact_length_model(family):
    rmt = _one_block_rmt(family)
    dynamic_inputs = text_inputs()
    dynamic = keras.Model(dynamic_inputs, rmt(dynamic_inputs))
    for length in (5, 8, 13):
        batch = random_batch(2, length, seed=length)
        exact_inputs = text_inputs(length)
        exact = keras.Model(exact_inputs, rmt(exact_inputs))
        # The reference is the exact-length model called directly: tracing
        # its `predict` for each length would only cost test time.
        expected = numpy(exact(batch))
        for name, value in dynamic.predict(batch, verbose=0).items():
            np.testing.assert_allclose(value, expected[name], atol=1e-5)


# Compiled: its claim is about a graph traced before the length is known.
@pytest.mark.compiled
def test_graph_traced_without_length_equals_eager():
    """On TensorFlow the length can be unknown while tracing; elsewhere the
    compiled function sees concrete shapes. Either way: same numbers."""
    rmt = _one_block_rmt("gpt2", bptt_depth=1)
    compiled = _compile_for_unknown_length(rmt)
    for length in (3, 8, 13):
        batch = random_batch(2, length, seed=length, lengths=[length, 2])
        expected = numpy(rmt(batch))
        got = numpy(compiled(batch))
        for name in expected:
            np.testing.assert_allclose(got[name], expected[name], atol=1e-5)


def _compile_for_unknown_length(layer):
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        spec = tf.TensorSpec((None, None), tf.int32)
        return tf.function(
            lambda x: layer(x),
            input_signature=[{"token_ids": spec, "padding_mask": spec}],
        )
    if backend == "jax":
        import jax

        return jax.jit(lambda x: layer(x))
    return layer


def test_bidirectional_memory_attention_matches_hand_built_mask():
    rmt = make_rmt_on_shared(
        "gpt2", segment_length=5, memory_attention="bidirectional"
    )
    _memory_from_token_rows(rmt, MEMORY_IDS)
    batch = random_batch(1, 5)
    outputs = numpy(rmt(batch))

    m, n = len(MEMORY_IDS), 5 + 2 * len(MEMORY_IDS)
    allowed = np.zeros((n, n), "int32")
    for query in range(n):
        for key in range(n):
            both_read = query < m and key < m
            both_write = query >= n - m and key >= n - m
            allowed[query, key] = key <= query or both_read or both_write
    backbone = rmt.backbone
    ids = np.concatenate([MEMORY_IDS, batch["token_ids"][0], MEMORY_IDS])[None]
    x = backbone.token_embedding(ids)
    x = x + backbone.position_embedding(x)
    for block in backbone.transformer_layers:
        x = block(
            x,
            decoder_attention_mask=allowed[None],
            use_causal_mask=False,
        )
    reference = keras.ops.convert_to_numpy(backbone.layer_norm(x))
    np.testing.assert_allclose(
        outputs["sequence_output"], reference[:, m:-m], atol=1e-5
    )
    np.testing.assert_allclose(outputs["memory"], reference[:, -m:], atol=1e-5)

    causal_memory = make_rmt_on_shared("gpt2", segment_length=5)
    _memory_from_token_rows(causal_memory, MEMORY_IDS)
    # The read block differs, so every token output differs.
    assert (
        np.abs(
            numpy(causal_memory(batch))["sequence_output"]
            - outputs["sequence_output"]
        ).min()
        > 0.0
    )


# === Bad input ===


def _raises(match, build):
    with pytest.raises(ValueError, match=match):
        build()


def test_segment_and_memory_longer_than_position_table():
    _raises(
        r"need 34 positions.*max_sequence_length=32.*segment_length=30, "
        r"num_tokens=2. Use segment_length <= 28",
        lambda: make_rmt_on_shared("gpt2", segment_length=30),
    )
    _raises(
        r"need 33 positions \(encoder layout\)",
        lambda: make_rmt_on_shared("bert", num_tokens=3, segment_length=30),
    )


def test_bad_arguments_name_the_argument_and_value():
    _raises(
        r"`num_tokens` must be a positive integer. Received: num_tokens=0",
        lambda: keras_rmt.layers.MemoryTokens(0),
    )
    _raises(
        r"`segment_length` must be a positive integer. "
        r"Received: segment_length=0",
        lambda: make_rmt_on_shared("gpt2", segment_length=0),
    )
    _raises(
        r"`bptt_depth` must be None or a non-negative integer. "
        r"Received: bptt_depth=-1",
        lambda: make_rmt_on_shared("gpt2", bptt_depth=-1),
    )
    _raises(
        r"`alignment` must be one of \('left', 'right'\). "
        r"Received: alignment='middle'",
        lambda: make_rmt_on_shared("gpt2", alignment="middle"),
    )


def test_backbone_that_cannot_be_wrapped_is_refused_by_class():
    memory = keras_rmt.layers.MemoryTokens(2)
    _raises(
        r"It is not a keras_hub.models.Backbone. Received: backbone=Dense",
        lambda: keras_rmt.layers.RecurrentSegments(
            keras.layers.Dense(4), memory, segment_length=4
        ),
    )
    _raises(
        r"memory_attention='bidirectional' needs .*TransformerDecoder.*"
        r"Received: backbone=LlamaBackbone",
        lambda: make_rmt_on_shared("llama", memory_attention="bidirectional"),
    )


def test_bad_call_inputs_name_the_input_and_value():
    rmt = make_rmt_on_shared("gpt2")
    batch = random_batch(2, 8)
    _raises(
        r"inputs\['token_ids'\] must hold integers. "
        r"Received: token_ids with dtype float32",
        lambda: rmt(
            {**batch, "token_ids": batch["token_ids"].astype("float32")}
        ),
    )
    _raises(
        r"inputs\['padding_mask'\] must have the shape of "
        r"inputs\['token_ids'\]. "
        r"Received: token_ids.shape=\(2, 8\), padding_mask.shape=\(2, 7\)",
        lambda: rmt({**batch, "padding_mask": batch["padding_mask"][:, :7]}),
    )
    _raises(
        r"inputs\['memory'\] must have shape \(batch_size, 2, 16\). "
        r"Received: memory.shape=\(2, 3, 16\)",
        lambda: rmt({**batch, "memory": np.zeros((2, 3, 16), "float32")}),
    )
    _raises(
        r"needs inputs\['padding_mask'\]",
        lambda: rmt({"token_ids": batch["token_ids"]}),
    )


def test_encoder_families_are_detected_and_encoders_overridable():
    for family in ENCODERS:
        assert make_rmt_on_shared(family).memory_layout == "encoder"
    # A bidirectional backbone may take the decoder layout; a causal one
    # cannot take the encoder layout (its memory would see one token).
    forced = make_rmt_on_shared("bert", memory_layout="decoder")
    assert forced.memory_layout == "decoder"
    _raises(
        r"`memory_layout='encoder'` needs a bidirectional backbone.*"
        r"Received: memory_layout='encoder', backbone=GPT2Backbone",
        lambda: make_rmt_on_shared("gpt2", memory_layout="encoder"),
    )


def test_causality_is_probed_once_per_architecture(monkeypatch):
    # Two eager backbone passes find out whether a backbone is causal; a
    # second backbone of the same class and configuration (other weights)
    # reuses the answer, another architecture is probed.
    probed = []
    probe = backbone_body.BackboneBody._probe_causality

    def counting_probe(body):
        probed.append(type(body.backbone).__name__)
        return probe(body)

    monkeypatch.setattr(
        backbone_body.BackboneBody, "_probe_causality", counting_probe
    )
    monkeypatch.setattr(backbone_body, "_CAUSALITY_BY_ARCHITECTURE", {})
    layouts = [
        make_rmt(family, seed=seed).memory_layout
        for family, seed in [("gpt2", 0), ("gpt2", 1), ("bert", 0)]
    ]
    assert layouts == ["decoder", "decoder", "encoder"]
    assert probed == ["GPT2Backbone", "BertBackbone"]


def _dtypes(outputs):
    return {
        k: keras.backend.standardize_dtype(v.dtype) for k, v in outputs.items()
    }


@pytest.mark.parametrize("family", ["opt", "roberta", "distilbert"])
def test_a_bfloat16_backbone_gets_the_layout_of_its_float32_twin(family):
    # These families add positions inside the embeddings the body reads:
    # the causality probe's embeddings meet them in the backbone's compute
    # dtype (TensorFlow refused float32 + bfloat16 and nothing was built).
    rmt = wrap_rmt(make_backbone(family, dtype="bfloat16"))
    expected = "decoder" if family == "opt" else "encoder"
    assert rmt.memory_layout == make_rmt(family).memory_layout == expected
    outputs = rmt(random_batch(2, 6, seed=1))
    assert _dtypes(outputs) == {
        "sequence_output": "bfloat16",
        "memory": "bfloat16",
    }


@pytest.mark.parametrize(
    "layer_class",
    [
        keras_rmt.layers.RecurrentSegments,
        keras_rmt.layers.AssociativeRecurrentSegments,
    ],
)
def test_symbolic_outputs_have_the_dtypes_computed(layer_class):
    # A float32 layer over a bfloat16 backbone computes its sequence in the
    # backbone's dtype: a Functional graph must be told the same.
    rmt = layer_class(
        make_backbone("gpt2", dtype="bfloat16"),
        memory=keras_rmt.layers.MemoryTokens(2),
        segment_length=4,
        dtype="float32",
    )
    symbolic = _dtypes(rmt(text_inputs()))
    assert symbolic == _dtypes(rmt(random_batch(2, 6, seed=1)))
    assert symbolic["sequence_output"] == "bfloat16"


def test_encoder_layout_refuses_right_alignment():
    _raises(
        r"`alignment='right'` cannot be used with the encoder memory layout.*"
        r"Received: alignment='right', memory_layout='encoder'",
        lambda: make_rmt_on_shared("bert", alignment="right"),
    )


@pytest.mark.parametrize("family", ["gpt2", "bert"])
def test_segment_by_segment_equals_one_call(family):
    # The last piece is short (2 of 4 tokens): padded at the end, as the
    # last segment of a left-aligned call.
    rmt = make_rmt_on_shared(family)
    batch = random_batch(2, 10)
    whole = numpy(rmt(batch))
    memory, pieces = None, []
    for start in range(0, 10, 4):
        piece = {k: v[:, start : start + 4] for k, v in batch.items()}
        outputs = rmt.segment(piece, memory)
        pieces.append(numpy(outputs["sequence_output"]))
        memory = outputs["memory"]
    assert pieces[-1].shape == (2, 2, HIDDEN_DIM)
    np.testing.assert_allclose(
        np.concatenate(pieces, axis=1), whole["sequence_output"], atol=1e-5
    )
    np.testing.assert_allclose(numpy(memory), whole["memory"], atol=1e-5)


def test_segment_reads_the_memory_given_without_carry():
    rmt = make_rmt_on_shared("gpt2", carry_memory=False)
    batch = random_batch(1, 8)
    rng = np.random.default_rng(1)
    given = rng.normal(size=(1, 2, HIDDEN_DIM)).astype("float32")
    whole = numpy(rmt({**batch, "memory": given}))
    second = numpy(rmt.segment({k: v[:, 4:] for k, v in batch.items()}, given))
    np.testing.assert_allclose(
        second["sequence_output"], whole["sequence_output"][:, 4:], atol=1e-5
    )


def test_segment_refuses_more_than_one_segment():
    rmt = make_rmt_on_shared("gpt2")
    with pytest.raises(
        ValueError,
        match=r"runs at most segment_length=4 tokens\. "
        r"Received: token_ids.shape=\(1, 5\)",
    ):
        rmt.segment(random_batch(1, 5))
