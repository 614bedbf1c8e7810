"""The fast paths of RecurrentSegments compute the plain path's numbers.

`infer`/`stream` (one compiled segment step), `segment_loop="scan"` (one
traced segment in a loop) and `remat` (recomputed activations) are each
checked against the unrolled Python loop of `call`.
"""

import keras
import keras_hub
import numpy as np
import pytest
from conftest import (
    HIDDEN_DIM,
    VOCABULARY_SIZE,
    gradient,
    make_rmt,
    numpy,
    random_batch,
)

import keras_rmt

BACKEND = keras.backend.backend()
TOLERANCE = {"rtol": 1e-5, "atol": 1e-5}


def _dropout_rmt(**kwargs):
    keras.utils.set_random_seed(0)
    backbone = keras_hub.models.GPT2Backbone(
        vocabulary_size=VOCABULARY_SIZE,
        num_layers=2,
        num_heads=2,
        hidden_dim=HIDDEN_DIM,
        intermediate_dim=32,
        max_sequence_length=32,
        dropout=0.1,
    )
    return keras_rmt.layers.RecurrentSegments(
        backbone,
        memory=keras_rmt.layers.MemoryTokens(2),
        segment_length=4,
        **kwargs,
    )


def _gradient(loss_fn, variable):
    if BACKEND != "jax":
        return gradient(loss_fn, variable)
    import jax

    # Compiled: op-by-op JAX runs the unrolled loop slowly.
    def loss_of(value):
        with keras.StatelessScope(state_mapping=[(variable, value)]):
            return loss_fn()

    return np.asarray(jax.jit(jax.grad(loss_of))(variable.value))


def _outputs_and_gradient(rmt, batch):
    """Training-mode outputs and d(loss)/d(token table), dropout on."""
    outputs = numpy(rmt(batch, training=True))

    def loss():
        output = rmt(batch, training=True)["sequence_output"]
        weights = keras.ops.arange(HIDDEN_DIM, dtype="float32")
        return keras.ops.sum(output * weights)

    return outputs, _gradient(loss, rmt.backbone.token_embedding.embeddings)


@pytest.fixture(scope="module")
def dropout_batch():
    return random_batch(2, 9, lengths=[9, 5])


@pytest.fixture(scope="module")
def unrolled_reference(dropout_batch):
    """The plain path's outputs and gradient, dropout on, computed once."""
    return _outputs_and_gradient(
        _dropout_rmt(segment_loop="unrolled"), dropout_batch
    )


@pytest.mark.parametrize(
    "family, alignment", [("gpt2", "right"), ("bert", "left")]
)
def test_infer_equals_call(family, alignment):
    rmt = make_rmt(family, alignment=alignment)
    batch = random_batch(3, 13, lengths=[13, 6, 2])
    expected = numpy(rmt(batch))
    got = numpy(rmt.infer(batch))
    np.testing.assert_allclose(
        got["sequence_output"], expected["sequence_output"], **TOLERANCE
    )
    np.testing.assert_allclose(got["memory"], expected["memory"], **TOLERANCE)


def test_infer_last_segment_and_continuation_equal_call():
    rmt = make_rmt("gpt2")
    batch = random_batch(2, 12)
    expected = numpy(rmt(batch))
    last = numpy(rmt.infer(batch, keep="last_segment"))
    np.testing.assert_allclose(
        last["sequence_output"],
        expected["sequence_output"][:, 8:],
        **TOLERANCE,
    )
    first = rmt.infer({k: v[:, :8] for k, v in batch.items()})
    rest = numpy(
        rmt.infer({k: v[:, 8:] for k, v in batch.items()}, first["memory"])
    )
    np.testing.assert_allclose(
        rest["sequence_output"],
        expected["sequence_output"][:, 8:],
        **TOLERANCE,
    )
    np.testing.assert_allclose(rest["memory"], expected["memory"], **TOLERANCE)


def test_stream_yields_each_segment_of_call():
    rmt = make_rmt("gpt2", carry_memory=False)
    batch = random_batch(2, 10)
    expected = numpy(rmt(batch))["sequence_output"]
    pieces = [numpy(piece) for piece in rmt.stream(batch)]
    assert [p["sequence_output"].shape for p in pieces] == [(2, 4, 16)] * 3
    joined = np.concatenate([p["sequence_output"] for p in pieces], axis=1)
    np.testing.assert_allclose(joined[:, :10], expected, **TOLERANCE)


def test_infer_traces_one_segment_for_every_length(monkeypatch):
    rmt = make_rmt("gpt2")
    traced = []
    step = rmt._segment_step

    def counting_step(*args):
        traced.append(1)
        return step(*args)

    monkeypatch.setattr(rmt, "_segment_step", counting_step)
    for length in (4, 9, 30):
        rmt.infer(random_batch(2, length))
    # Compiling backends trace the step once; torch runs it per segment.
    expected = 1 + 3 + 8 if BACKEND == "torch" else 1
    assert len(traced) == expected


def test_scan_gives_the_numbers_of_the_unrolled_loop(dropout_batch, request):
    if BACKEND == "tensorflow":
        with pytest.raises(ValueError, match="segment_loop='scan'"):
            _dropout_rmt(segment_loop="scan")
        return
    plain, plain_grad = request.getfixturevalue("unrolled_reference")
    scanned, scanned_grad = _outputs_and_gradient(
        _dropout_rmt(segment_loop="scan"), dropout_batch
    )
    for key in ("sequence_output", "memory"):
        np.testing.assert_allclose(scanned[key], plain[key], **TOLERANCE)
    np.testing.assert_allclose(scanned_grad, plain_grad, rtol=1e-5, atol=1e-3)


@pytest.mark.parametrize("segment_loop", ["unrolled", "auto"])
def test_remat_gives_the_gradients_of_the_plain_loop(
    segment_loop, dropout_batch, request
):
    if BACKEND == "tensorflow":
        with pytest.raises(ValueError, match="`remat=True` is not available"):
            _dropout_rmt(segment_loop=segment_loop, remat=True)
        return
    plain, plain_grad = request.getfixturevalue("unrolled_reference")
    remat, remat_grad = _outputs_and_gradient(
        _dropout_rmt(segment_loop=segment_loop, remat=True), dropout_batch
    )
    np.testing.assert_allclose(
        remat["sequence_output"], plain["sequence_output"], **TOLERANCE
    )
    np.testing.assert_allclose(remat_grad, plain_grad, rtol=1e-5, atol=1e-3)


def _fit_losses(rmt):
    token_ids = keras.Input((8,), dtype="int32", name="token_ids")
    padding_mask = keras.Input((8,), dtype="int32", name="padding_mask")
    inputs = {"token_ids": token_ids, "padding_mask": padding_mask}
    logits = keras.layers.Dense(VOCABULARY_SIZE)(rmt(inputs)["sequence_output"])
    model = keras.Model(inputs, logits)
    model.compile(
        optimizer=keras.optimizers.SGD(0.1),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        # The case that matters is JAX's: a scan inside the jitted step.
        # Elsewhere the default loop is the unrolled one; tracing it would
        # only cost test time.
        run_eagerly=BACKEND != "jax",
    )
    batch = random_batch(2, 8, seed=1)
    history = model.fit(
        batch, batch["token_ids"], batch_size=2, epochs=2, verbose=0
    )
    return history.history["loss"]


def test_fit_with_dropout_on_the_default_loop_equals_unrolled():
    # On JAX the default scans inside the jitted train step: the seed states
    # must leave the loop through its carry, not as leaked tracers.
    keras.utils.set_random_seed(0)
    expected = _fit_losses(_dropout_rmt(segment_loop="unrolled"))
    keras.utils.set_random_seed(0)
    # "auto" scans on JAX and unrolls on TensorFlow; torch scans on request.
    loop = "scan" if BACKEND == "torch" else "auto"
    got = _fit_losses(_dropout_rmt(segment_loop=loop))
    np.testing.assert_allclose(got, expected, rtol=1e-5)
    assert expected[1] < expected[0]


def test_new_arguments_are_checked_and_kept_in_config():
    with pytest.raises(ValueError, match="Received: segment_loop='fast'"):
        make_rmt("gpt2", segment_loop="fast")
    rmt = make_rmt("gpt2", segment_loop="unrolled")
    with pytest.raises(ValueError, match="Received: keep='first'"):
        rmt.infer(random_batch(1, 4), keep="first")
    config = rmt.get_config()
    assert (config["segment_loop"], config["remat"]) == ("unrolled", False)
    clone = keras_rmt.layers.RecurrentSegments.from_config(config)
    assert (clone.segment_loop, clone.remat) == ("unrolled", False)
