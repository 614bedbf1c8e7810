import keras
import keras_hub
import numpy as np
import pytest
from conftest import (
    DECODERS,
    HIDDEN_DIM,
    POSITIONS,
    _rotary,
    dtype_policy,
    gradient,
    jitted_on_jax,
    make_backbone,
    numpy,
    random_batch,
    text_inputs,
)
from test_associative_memory import layer_weights, np_write, randomize

import keras_rmt
from keras_rmt.layers import segment_loops

MEMORY_IDS = [1, 2]
# Above 2: DPFP features of two key_dim-2 vectors rarely overlap, which
# would make many reads exactly zero and the checks below weaker.
KEY_DIM = 4


def make_decoder(family, seed=0, **overrides):
    if family == "qwen":
        keras.utils.set_random_seed(seed)
        return keras_hub.models.QwenBackbone(**_rotary(**overrides))
    return make_backbone(family, seed, **overrides)


def make_armt(
    family="gpt2", segment_length=4, seed=0, num_layers=None, **kwargs
):
    """A tiny ARMT whose value projections are drawn, not zero.

    With zero values (the paper's start) nothing is written, and every
    check below would hold trivially. Segments are unrolled unless asked
    otherwise: JAX compiles a scan at every eager call, which costs more
    than these tiny segments; `gpt2_armt` keeps the default loop.
    `num_layers` replaces the backbone's 2 blocks where depth is not the
    point.
    """
    kwargs.setdefault("segment_loop", "unrolled")
    overrides = {} if num_layers is None else {"num_layers": num_layers}
    armt = keras_rmt.layers.AssociativeRecurrentSegments(
        make_decoder(family, seed, **overrides),
        memory=keras_rmt.layers.MemoryTokens(len(MEMORY_IDS)),
        segment_length=segment_length,
        key_dim=KEY_DIM,
        **kwargs,
    )
    for index, layer in enumerate(armt.associative_memories):
        randomize(layer, seed=seed + index)
    return armt


@pytest.fixture(scope="module")
def gpt2_armt():
    return make_armt("gpt2", segment_loop="auto")


def call_of(armt):
    """`armt`'s call as NumPy; on JAX jitted, one compile per input shape.

    Op by op, JAX dispatches and compiles each operation of each segment.
    """
    call = jitted_on_jax(armt, armt)
    return lambda inputs: numpy(call(inputs))


@pytest.mark.parametrize("family", [*DECODERS, "qwen"])
def test_first_segment_state_equals_numpy_writes_of_backbone_blocks(family):
    armt = make_armt(family, segment_length=5)
    backbone = armt.backbone
    # Memory tokens equal to the embeddings of MEMORY_IDS make the segment
    # the backbone's own input `[ids ; MEMORY_IDS]`.
    table = keras.ops.convert_to_numpy(backbone.token_embedding.embeddings)
    armt.memory.memory.assign(table[MEMORY_IDS])
    batch = random_batch(2, 5)
    outputs = numpy(armt(batch))

    joined = np.concatenate(
        [batch["token_ids"], np.tile(MEMORY_IDS, (2, 1))], axis=1
    ).astype("int32")
    blocks = keras.Model(
        backbone.input,
        [backbone.output, *[b.output for b in backbone.transformer_layers]],
    )
    reference = numpy(
        blocks({"token_ids": joined, "padding_mask": np.ones_like(joined)})
    )
    m = len(MEMORY_IDS)
    np.testing.assert_allclose(
        outputs["sequence_output"], reference[0][:, :-m], atol=1e-5
    )
    features = armt.associative_memories[0].key_features
    state = outputs["memory"].reshape(2, -1, features, HIDDEN_DIM + 1)
    assert state.shape[1] == len(backbone.transformer_layers)
    for index, layer in enumerate(armt.associative_memories):
        for row in range(2):
            A, z = np_write(
                reference[1 + index][row, -m:].astype("float64"),
                np.zeros((features, HIDDEN_DIM)),
                np.zeros(features),
                layer_weights(layer),
                nu=3,
            )
            np.testing.assert_allclose(
                state[row, index, :, :-1], A, rtol=1e-3, atol=1e-5
            )
            np.testing.assert_allclose(
                state[row, index, :, -1], z, rtol=1e-3, atol=1e-5
            )


def test_second_segment_reads_the_first_through_associative_memory():
    armt = make_armt("gpt2")
    batch = random_batch(1, 8)
    changed = {k: v.copy() for k, v in batch.items()}
    changed["token_ids"][:, 1] = 3
    call = call_of(armt)
    first = call(batch)["sequence_output"][:, 4:]
    second = call(changed)["sequence_output"][:, 4:]
    assert np.abs(first - second).max() > 1e-4

    baseline = call_of(make_armt("gpt2", carry_memory=False))
    np.testing.assert_array_equal(
        baseline(batch)["sequence_output"][:, 4:],
        baseline(changed)["sequence_output"][:, 4:],
    )


@pytest.mark.parametrize("depth", [None, 1])
def test_bptt_depth_stops_gradients_through_the_state_exactly(depth):
    # Segments of 4, the length of the module's other single-row calls:
    # JAX compiles each operation once per shape when run op by op.
    num_segments, segment_length = 4, 4
    armt = make_armt("gpt2", segment_length=segment_length, bptt_depth=depth)
    # Segment j uses only token ids 10 * (j + 1) + [0, 1, 2, 3], so the
    # gradient on those embedding rows is the gradient from segment j.
    ids = np.array(
        [[10 * (j + 1) + i for j in range(num_segments) for i in range(4)]],
        "int32",
    )
    batch = {"token_ids": ids, "padding_mask": np.ones_like(ids)}
    table = armt.backbone.token_embedding.embeddings

    def loss():
        output = armt(batch)["sequence_output"][:, -segment_length:]
        return keras.ops.sum(
            output * keras.ops.arange(HIDDEN_DIM, dtype="float32")
        )

    grads = gradient(loss, table)
    for j in range(num_segments):
        rows = grads[10 * (j + 1) : 10 * (j + 1) + 4]
        hand_offs = num_segments - 1 - j
        if depth is not None and hand_offs > depth:
            np.testing.assert_array_equal(rows, 0.0)
        else:
            assert np.abs(rows).max() > 0.0, f"segment {j}"


@pytest.mark.parametrize("alignment", ["left", "right"])
def test_short_row_in_long_batch_equals_row_alone(alignment):
    # One block: padding is handled (or not) in every block alike.
    call = call_of(make_armt("llama", alignment=alignment, num_layers=1))
    batch = random_batch(3, 13, lengths=[7, 13, 4])
    together = call(batch)
    for row, length in enumerate([7, 13, 4]):
        alone = call({k: v[row : row + 1, :length] for k, v in batch.items()})
        np.testing.assert_allclose(
            together["sequence_output"][row, :length],
            alone["sequence_output"][0],
            atol=1e-5,
        )
        np.testing.assert_allclose(
            together["memory"][row], alone["memory"][0], rtol=1e-4, atol=1e-5
        )


def test_infer_stream_and_continuing_from_memory_equal_call(gpt2_armt):
    # The compiled step (XLA on TensorFlow) orders float sums its own way.
    batch = random_batch(2, 14, lengths=[14, 9], seed=3)
    whole = numpy(gpt2_armt(batch))
    inferred = numpy(gpt2_armt.infer(batch))
    np.testing.assert_allclose(
        inferred["sequence_output"], whole["sequence_output"], atol=1e-4
    )
    np.testing.assert_allclose(
        inferred["memory"], whole["memory"], rtol=1e-4, atol=1e-4
    )
    last = numpy(gpt2_armt.infer(batch, keep="last_segment"))
    np.testing.assert_allclose(
        last["sequence_output"][0, :2],
        whole["sequence_output"][0, 12:],
        atol=1e-4,
    )
    np.testing.assert_allclose(
        last["memory"], whole["memory"], rtol=1e-4, atol=1e-4
    )
    first = gpt2_armt({k: v[:, :8] for k, v in batch.items()})
    rest = {k: v[:, 8:] for k, v in batch.items()}
    rest = numpy(gpt2_armt({**rest, "memory": first["memory"]}))
    np.testing.assert_allclose(
        rest["sequence_output"], whole["sequence_output"][:, 8:], atol=1e-4
    )
    np.testing.assert_allclose(
        rest["memory"], whole["memory"], rtol=1e-4, atol=1e-4
    )


def test_without_carry_continuing_from_the_state_equals_one_call():
    # Every segment reads the state the call started from, which is also
    # the state returned: going on from it reads the same.
    armt = make_armt("gpt2", num_layers=1, carry_memory=False)
    batch = random_batch(2, 12, lengths=[12, 7], seed=3)
    whole = numpy(armt(batch))
    np.testing.assert_array_equal(whole["memory"], 0.0)
    first = armt({k: v[:, :8] for k, v in batch.items()})
    rest = {k: v[:, 8:] for k, v in batch.items()}
    rest = numpy(armt({**rest, "memory": first["memory"]}))
    np.testing.assert_allclose(
        rest["sequence_output"], whole["sequence_output"][:, 8:], atol=1e-5
    )


def test_memory_of_wrong_shape_is_refused(gpt2_armt):
    batch = random_batch(1, 4)
    with pytest.raises(ValueError, match="associative state of shape"):
        gpt2_armt({**batch, "memory": np.zeros((1, 2, HIDDEN_DIM), "float32")})


def test_keras_file_round_trip_gives_identical_outputs(tmp_path):
    inputs = text_inputs()
    # One block: saving and loading do not depend on depth.
    armt = make_armt("gpt2", bptt_depth=1, num_layers=1)
    model = keras.Model(inputs, armt(inputs))
    # TensorFlow would trace each model's graph for `predict` (10 s of the
    # test's 14): both run eagerly there. JAX's compiled predict costs less
    # than its op-by-op call, and the reloaded model's reuses the compiled
    # code. Compiled predicts of an associative model on every backend:
    # test_associative_models.py.
    eager = keras.backend.backend() == "tensorflow"
    model.run_eagerly = eager
    batch = random_batch(2, 11, lengths=[11, 6])
    expected = model.predict(batch, verbose=0)
    model.save(tmp_path / "armt.keras")
    restored = keras.saving.load_model(tmp_path / "armt.keras")
    restored.run_eagerly = eager
    layer = restored.get_layer(armt.name)
    assert isinstance(layer, keras_rmt.layers.AssociativeRecurrentSegments)
    assert (layer.key_dim, layer.bptt_depth) == (KEY_DIM, 1)
    got = restored.predict(batch, verbose=0)
    for name in expected:
        np.testing.assert_array_equal(got[name], expected[name])


def test_layer_config_round_trip(gpt2_armt):
    cls = keras_rmt.layers.AssociativeRecurrentSegments
    clone = cls.from_config(gpt2_armt.get_config())
    assert clone.get_config() == gpt2_armt.get_config()


def test_encoder_backbone_is_refused():
    with pytest.raises(ValueError, match="Received: backbone=BertBackbone"):
        keras_rmt.layers.AssociativeRecurrentSegments(
            make_backbone("bert"),
            memory=keras_rmt.layers.MemoryTokens(2),
            segment_length=4,
        )


def test_segment_by_segment_equals_one_call(gpt2_armt):
    # `segment()` runs the subclass's own step and reads its state.
    batch = random_batch(2, 10)
    whole = numpy(gpt2_armt(batch))
    state, pieces = None, []
    for start in range(0, 10, 4):
        piece = {k: v[:, start : start + 4] for k, v in batch.items()}
        outputs = gpt2_armt.segment(piece, state)
        pieces.append(numpy(outputs["sequence_output"]))
        state = outputs["memory"]
    np.testing.assert_allclose(
        np.concatenate(pieces, axis=1),
        whole["sequence_output"],
        rtol=1e-4,
        atol=1e-5,
    )
    np.testing.assert_allclose(
        numpy(state), whole["memory"], rtol=1e-4, atol=1e-4
    )


def test_position_budget_is_segment_plus_memory_tokens():
    # GPT-2's table holds 32 positions: 30 tokens and 2 memory tokens fit.
    length = POSITIONS - len(MEMORY_IDS)
    armt = make_armt("gpt2", segment_length=length)
    table = keras.ops.convert_to_numpy(armt.backbone.token_embedding.embeddings)
    armt.memory.memory.assign(table[MEMORY_IDS])
    batch = random_batch(1, length)
    joined = np.concatenate([batch["token_ids"], [MEMORY_IDS]], axis=1)
    backbone = armt.backbone
    reference = numpy(
        jitted_on_jax(backbone, backbone)(
            {"token_ids": joined, "padding_mask": np.ones_like(joined)}
        )
    )
    np.testing.assert_allclose(
        call_of(armt)(batch)["sequence_output"],
        reference[:, :length],
        atol=1e-5,
    )
    with pytest.raises(ValueError, match="Use segment_length <= 30"):
        make_armt("gpt2", segment_length=length + 1)


@pytest.fixture(scope="module")
def mixed_precision_armt():
    with dtype_policy("mixed_bfloat16"):
        return make_armt("gpt2", segment_length=4)


def test_mixed_precision_carries_the_state_in_float32(mixed_precision_armt):
    """A bfloat16 backbone carries, writes and reads the state in float32.

    Summed in bfloat16 over many segments, the matrix and its normalizer
    drift apart (training at 16 pairs learnt half as fast on a GPU).
    """
    armt = mixed_precision_armt
    ids = random_batch(2, 12, seed=3, lengths=[12, 0])
    # A value that bfloat16 cannot hold: 1 + 2**-12.
    state = np.full((2, *armt.state_shape), 1 + 2**-12, "float32")
    outputs = jitted_on_jax(armt, armt)({**ids, "memory": state})
    dtypes = {
        name: keras.backend.standardize_dtype(value.dtype)
        for name, value in outputs.items()
    }
    assert dtypes == {"sequence_output": "bfloat16", "memory": "float32"}
    outputs = numpy(outputs)
    # The row without tokens keeps its state exactly.
    np.testing.assert_array_equal(outputs["memory"][1], state[1])
    assert not np.array_equal(outputs["memory"][0], state[0])


def test_mixed_precision_writes_equal_float32_numpy(mixed_precision_armt):
    layer = mixed_precision_armt.associative_memories[0]
    rng = np.random.default_rng(1)
    slots = keras.ops.cast(rng.normal(size=(1, 2, HIDDEN_DIM)), "bfloat16")
    slots_32 = numpy(keras.ops.cast(slots, "float32"))
    A = rng.normal(size=(1, layer.key_features, HIDDEN_DIM)) * 0.1
    z = rng.uniform(0.5, 1.0, size=(1, layer.key_features))
    matrix, normalizer = numpy(
        layer.write(slots, A.astype("float32"), z.astype("float32"))
    )
    expected_A, expected_z = np_write(
        slots_32[0], A[0], z[0], layer_weights(layer), layer.nu
    )
    np.testing.assert_allclose(matrix[0], expected_A, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(normalizer[0], expected_z, rtol=1e-5)


def test_the_graph_scan_carries_a_float32_state_beside_bfloat16_segments(
    monkeypatch,
):
    # The scan of graphs traced before the length is known (TensorFlow's
    # unknown lengths, SavedModels from TensorFlow and JAX) carries the
    # segment's bfloat16 tokens beside the float32 state: its carry started
    # in the state's dtype and the scan refused the bfloat16 tokens. Chosen
    # here on every backend, against the unrolled loop.
    with dtype_policy("mixed_bfloat16"):
        armt = make_armt("gpt2", segment_length=4, num_layers=1)
    batch = random_batch(2, 11, seed=3, lengths=[11, 6])
    expected = numpy(armt(batch))
    monkeypatch.setattr(
        segment_loops,
        "choose_loop",
        lambda *args: segment_loops.Loop("graph_scan", 1, False),
    )
    outputs = armt(batch)
    assert keras.backend.standardize_dtype(outputs["memory"].dtype) == (
        "float32"
    )
    outputs = numpy(outputs)
    # To bfloat16's precision: on JAX the scan is compiled, where XLA
    # rounds the segments' bfloat16 work otherwise than op by op.
    np.testing.assert_allclose(outputs["memory"], expected["memory"], atol=2e-3)
    np.testing.assert_allclose(
        outputs["sequence_output"].astype("float32"),
        expected["sequence_output"].astype("float32"),
        atol=2e-2,
    )
