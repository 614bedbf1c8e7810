"""The fast paths of RecurrentSegments compute the plain path's numbers.

`infer`/`stream` (one compiled segment step), `segment_loop="scan"` (one
traced segment in a loop), TensorFlow's scan for lengths unknown while
tracing and `remat` (recomputed activations) are each checked against the
unrolled Python loop of `call`, losses added inside the backbone included.
"""

import keras
import numpy as np
import pytest
from conftest import (
    HIDDEN_DIM,
    VOCABULARY_SIZE,
    build_optimizer,
    make_backbone,
    make_rmt_on_shared,
    numpy,
    random_batch,
    wrap_rmt,
)

import keras_rmt
from keras_rmt.layers import segment_loops

BACKEND = keras.backend.backend()
TOLERANCE = {"rtol": 1e-5, "atol": 1e-5}


def _dropout_rmt(**kwargs):
    # One block: the loops differ over segments, not blocks, and each loop
    # compiles (JAX) or traces (TensorFlow) half the graph.
    backbone = make_backbone("gpt2", num_layers=1, dropout=0.1)
    return wrap_rmt(backbone, **kwargs)


def _outputs_and_gradient(rmt, batch):
    """Training-mode outputs and d(loss)/d(token table), dropout on.

    Both from one call, so that each loop is traced once.
    """
    table = rmt.backbone.token_embedding.embeddings
    weights = keras.ops.arange(HIDDEN_DIM, dtype="float32")

    def loss_and_outputs():
        outputs = rmt(batch, training=True)
        loss = keras.ops.sum(outputs["sequence_output"] * weights)
        return loss, outputs

    if BACKEND == "jax":
        import jax

        def loss_of(value):
            with keras.StatelessScope(state_mapping=[(table, value)]):
                return loss_and_outputs()

        # Compiled: op-by-op JAX runs the unrolled loop slowly.
        grad, outputs = jax.jit(jax.grad(loss_of, has_aux=True))(table.value)
    elif BACKEND == "tensorflow":
        import tensorflow as tf

        with tf.GradientTape() as tape:
            loss, outputs = loss_and_outputs()
        grad = tape.gradient(loss, table.value)
    else:
        table.value.grad = None
        loss, outputs = loss_and_outputs()
        loss.backward()
        grad = table.value.grad
    return numpy(outputs), keras.ops.convert_to_numpy(grad)


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
    rmt = make_rmt_on_shared(family, alignment=alignment)
    batch = random_batch(3, 13, lengths=[13, 6, 2])
    expected = numpy(rmt(batch))
    got = numpy(rmt.infer(batch))
    np.testing.assert_allclose(
        got["sequence_output"], expected["sequence_output"], **TOLERANCE
    )
    np.testing.assert_allclose(got["memory"], expected["memory"], **TOLERANCE)


def test_infer_last_segment_and_continuation_equal_call():
    rmt = make_rmt_on_shared("gpt2")
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
    rmt = make_rmt_on_shared("gpt2", carry_memory=False)
    batch = random_batch(2, 10)
    expected = numpy(rmt(batch))["sequence_output"]
    pieces = [numpy(piece) for piece in rmt.stream(batch)]
    assert [p["sequence_output"].shape for p in pieces] == [(2, 4, 16)] * 3
    joined = np.concatenate([p["sequence_output"] for p in pieces], axis=1)
    np.testing.assert_allclose(joined[:, :10], expected, **TOLERANCE)


@pytest.mark.skipif(
    BACKEND != "torch", reason="Only torch records an autograd graph eagerly"
)
def test_infer_and_stream_keep_no_autograd_graph():
    rmt = make_rmt_on_shared("gpt2")
    batch = random_batch(2, 9)
    # `call` records one, so the checks below could fail.
    assert rmt(batch)["memory"].requires_grad is True
    assert rmt.infer(batch)["memory"].requires_grad is False
    last = rmt.infer(batch, keep="last_segment")
    assert last["sequence_output"].requires_grad is False
    assert [p["memory"].requires_grad for p in rmt.stream(batch)] == [False] * 3


def test_infer_traces_one_segment_for_every_length(monkeypatch):
    rmt = make_rmt_on_shared("gpt2")
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


# Every loop of `call` against the unrolled Python loop, dropout on:
# (segment_loop, scan_unroll, remat, bptt_depth). The batch has 3 segments,
# so `scan_unroll=2` runs one iteration of 2 segments and 1 left over; its
# rows have 3 and 2 segments, so `bptt_depth=1` cuts a hand-off of the first
# row and keeps the others. `"auto"` is one of these (`choose_loop`); with
# `remat="auto"` it recomputes the segments of JAX's training scan.
LOOPS = [
    ("auto", 1, "auto", None),
    ("auto", 1, "auto", 1),
    ("scan", 1, False, None),
    ("scan", 2, False, None),
    ("scan", 1, False, 1),
    ("scan", 2, False, 1),
    ("scan", 2, True, 1),
    ("unrolled", 1, True, 1),
]
# float32 numbers computed in another order.
LOOP_TOLERANCE = {"rtol": 1e-6, "atol": 1e-6}


def _assert_same_numbers(got, expected):
    (outputs, grad), (expected_outputs, expected_grad) = got, expected
    for key in ("sequence_output", "memory"):
        np.testing.assert_allclose(
            outputs[key], expected_outputs[key], **LOOP_TOLERANCE
        )
    # Relative to the gradient's largest entry (about 1e3).
    scale = np.max(np.abs(expected_grad))
    np.testing.assert_allclose(
        grad / scale, expected_grad / scale, **LOOP_TOLERANCE
    )


@pytest.fixture(scope="module")
def truncated_reference(dropout_batch):
    """As `unrolled_reference`, with `bptt_depth=1`."""
    return _outputs_and_gradient(
        _dropout_rmt(segment_loop="unrolled", bptt_depth=1), dropout_batch
    )


def test_truncation_changes_the_reference_gradient(
    unrolled_reference, truncated_reference
):
    # Else the truncated cases below could not tell truncation from none.
    full, truncated = unrolled_reference[1], truncated_reference[1]
    assert np.max(np.abs(full - truncated)) > 1e-4 * np.max(np.abs(full))


@pytest.mark.parametrize("segment_loop, scan_unroll, remat, bptt_depth", LOOPS)
def test_every_loop_gives_the_numbers_of_the_unrolled_loop(
    segment_loop, scan_unroll, remat, bptt_depth, dropout_batch, request
):
    options = dict(
        segment_loop=segment_loop,
        scan_unroll=scan_unroll,
        remat=remat,
        bptt_depth=bptt_depth,
    )
    if BACKEND == "tensorflow" and (segment_loop == "scan" or remat is True):
        with pytest.raises(ValueError, match="not available on the Tensor"):
            _dropout_rmt(**options)
        return
    reference = "unrolled" if bptt_depth is None else "truncated"
    expected = request.getfixturevalue(f"{reference}_reference")
    got = _outputs_and_gradient(_dropout_rmt(**options), dropout_batch)
    _assert_same_numbers(got, expected)


@pytest.mark.compiled
@pytest.mark.skipif(
    BACKEND != "tensorflow",
    reason="Only TensorFlow traces graphs before the length is known",
)
@pytest.mark.parametrize("bptt_depth", [None, 1])
def test_the_graph_scan_gives_the_numbers_of_the_unrolled_loop(
    bptt_depth, dropout_batch, request
):
    import tensorflow as tf

    rmt = _dropout_rmt(bptt_depth=bptt_depth)
    table = rmt.backbone.token_embedding.embeddings
    spec = tf.TensorSpec((None, None), tf.int32)

    @tf.function(input_signature=[{"token_ids": spec, "padding_mask": spec}])
    def outputs_and_gradient(inputs):
        with tf.GradientTape() as tape:
            outputs = rmt(inputs, training=True)
            weights = tf.range(HIDDEN_DIM, dtype="float32")
            loss = tf.reduce_sum(outputs["sequence_output"] * weights)
        return outputs, tape.gradient(loss, table.value)

    outputs, grad = outputs_and_gradient(dropout_batch)
    reference = "unrolled" if bptt_depth is None else "truncated"
    expected = request.getfixturevalue(f"{reference}_reference")
    _assert_same_numbers((numpy(outputs), np.asarray(grad)), expected)


def test_auto_runs_what_its_table_says(monkeypatch):
    rmt = make_rmt_on_shared("gpt2")
    choose = segment_loops.choose_loop
    # Today's table: on JAX a scan, recomputing its segments in training;
    # the unrolled loop elsewhere.
    if BACKEND == "jax":
        assert choose(rmt, 8, training=True) == ("scan", 1, True)
        assert choose(rmt, 8, training=False) == ("scan", 1, False)
    else:
        assert choose(rmt, 8, training=True) == ("unrolled", 1, False)
    assert choose(rmt, 1, training=True) == ("unrolled", 1, False)
    table = (
        (BACKEND, True, 3, "scan", 2, True),
        ("another backend", None, 2, "scan", 4, False),
        (None, None, 2, "unrolled", 1, False),
    )
    monkeypatch.setattr(segment_loops, "AUTO_LOOPS", table)
    assert choose(rmt, 3, training=True) == ("scan", 2, True)
    assert choose(rmt, 3, training=False) == ("unrolled", 1, False)
    assert choose(rmt, 2, training=True) == ("unrolled", 1, False)
    # The layer's own choices are not the table's: a named loop runs
    # without remat unless the layer asks for it.
    unrolled = make_rmt_on_shared("gpt2", segment_loop="unrolled")
    assert choose(unrolled, 3, training=True) == ("unrolled", 1, False)
    without = make_rmt_on_shared("gpt2", remat=False)
    assert choose(without, 3, training=True) == ("scan", 2, False)
    if BACKEND != "tensorflow":
        scan = make_rmt_on_shared("gpt2", segment_loop="scan")
        assert choose(scan, 3, training=True) == ("scan", 1, False)
        forced = make_rmt_on_shared("gpt2", segment_loop="unrolled", remat=True)
        assert choose(forced, 3, training=True) == ("unrolled", 1, True)


def test_scan_unroll_is_checked():
    with pytest.raises(ValueError, match="Received: scan_unroll=0"):
        make_rmt_on_shared("gpt2", scan_unroll=0)
    with pytest.raises(
        ValueError,
        match="Received: scan_unroll=2, segment_loop='auto'",
    ):
        make_rmt_on_shared("gpt2", scan_unroll=2)


def _fit_losses(rmt, length=8, epochs=2, run_eagerly=None):
    token_ids = keras.Input((length,), dtype="int32", name="token_ids")
    padding_mask = keras.Input((length,), dtype="int32", name="padding_mask")
    inputs = {"token_ids": token_ids, "padding_mask": padding_mask}
    logits = keras.layers.Dense(VOCABULARY_SIZE)(rmt(inputs)["sequence_output"])
    model = keras.Model(inputs, logits)
    if run_eagerly is None:
        # The case that matters is JAX's: a scan inside the jitted step.
        # Elsewhere the default loop is the unrolled one; tracing it would
        # only cost test time.
        run_eagerly = BACKEND != "jax"
    model.compile(
        optimizer=keras.optimizers.SGD(0.1),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        run_eagerly=run_eagerly,
        # TensorFlow's scan (a length unknown while tracing) trains without
        # XLA only.
        jit_compile=False if BACKEND == "tensorflow" else "auto",
    )
    build_optimizer(model)
    batch = random_batch(2, 8, seed=1)
    history = model.fit(
        batch, batch["token_ids"], batch_size=2, epochs=epochs, verbose=0
    )
    return history.history["loss"]


def _default_loop_losses(rmt_factory, **kwargs):
    """Fit losses of the default loop, which differs from the unrolled one.

    JAX scans by default; torch scans on request; TensorFlow scans in a
    graph traced before the length is known.
    """
    if BACKEND == "tensorflow":
        return _fit_losses(
            rmt_factory(segment_loop="auto"),
            length=None,
            run_eagerly=False,
            **kwargs,
        )
    loop = "scan" if BACKEND == "torch" else "auto"
    return _fit_losses(rmt_factory(segment_loop=loop), **kwargs)


# Compiled: the train step of the layer's default loop, traced as users run
# it (TensorFlow: its scan, the length unknown while tracing).
@pytest.mark.compiled
def test_fit_with_dropout_on_the_default_loop_equals_unrolled():
    # On JAX the default scans inside the jitted train step: the seed states
    # must leave the loop through its carry, not as leaked tracers.
    keras.utils.set_random_seed(0)
    expected = _fit_losses(_dropout_rmt(segment_loop="unrolled"))
    keras.utils.set_random_seed(0)
    got = _default_loop_losses(_dropout_rmt)
    np.testing.assert_allclose(got, expected, rtol=1e-5)
    assert expected[1] < expected[0]


# === Losses the backbone adds (MoE routers) ===


def _moe_rmt(**kwargs):
    # Tiny Mixtral, router_aux_loss_coef=10: its aux loss dominates. One
    # block, as `_dropout_rmt`: JAX runs these calls op by op.
    return wrap_rmt(make_backbone("mixtral", num_layers=1), **kwargs)


def _total_loss(layer):
    return float(sum(np.sum(numpy(loss)) for loss in layer.losses))


@pytest.fixture(scope="module")
def moe_batch():
    return random_batch(2, 9, seed=1, lengths=[9, 5])


@pytest.fixture(scope="module")
def moe_unrolled_loss(moe_batch):
    rmt = _moe_rmt(segment_loop="unrolled")
    rmt(moe_batch, training=True)
    return _total_loss(rmt)


@pytest.mark.skipif(
    BACKEND == "tensorflow",
    reason="TensorFlow has no scan or remat for a known length; its graph "
    "scan is checked by test_backbone_losses_survive_the_graph_scan",
)
@pytest.mark.parametrize(
    "segment_loop, remat",
    [("scan", False), ("unrolled", True), ("scan", True)],
)
def test_backbone_losses_survive_every_loop(
    segment_loop, remat, moe_batch, moe_unrolled_loss
):
    assert moe_unrolled_loss > 10.0
    rmt = _moe_rmt(segment_loop=segment_loop, remat=remat)
    rmt(moe_batch, training=True)
    np.testing.assert_allclose(_total_loss(rmt), moe_unrolled_loss, rtol=1e-5)


@pytest.mark.compiled
@pytest.mark.skipif(
    BACKEND != "tensorflow",
    reason="Only TensorFlow traces graphs before the length is known",
)
def test_backbone_losses_survive_the_graph_scan(moe_batch, moe_unrolled_loss):
    import tensorflow as tf

    rmt = _moe_rmt()
    spec = tf.TensorSpec((None, None), tf.int32)

    @tf.function(input_signature=[{"token_ids": spec, "padding_mask": spec}])
    def total_loss(inputs):
        rmt(inputs, training=True)
        return tf.add_n([tf.reduce_sum(loss) for loss in rmt.losses])

    got = float(total_loss(moe_batch))
    np.testing.assert_allclose(got, moe_unrolled_loss, rtol=1e-5)


# Compiled: the default loop's traced train step must add the backbone's
# losses (TensorFlow: inside its scan).
@pytest.mark.compiled
def test_fit_loss_holds_backbone_losses_on_the_default_loop():
    keras.utils.set_random_seed(0)
    expected = _fit_losses(_moe_rmt(segment_loop="unrolled"), epochs=1)
    keras.utils.set_random_seed(0)
    got = _default_loop_losses(_moe_rmt, epochs=1)
    np.testing.assert_allclose(got, expected, rtol=1e-5)
    # The router loss (coefficient 10) is most of the loss.
    assert expected[0] > 10.0


def test_new_arguments_are_checked_and_kept_in_config():
    with pytest.raises(ValueError, match="Received: segment_loop='fast'"):
        make_rmt_on_shared("gpt2", segment_loop="fast")
    rmt = make_rmt_on_shared("gpt2", segment_loop="unrolled")
    with pytest.raises(ValueError, match="Received: keep='first'"):
        rmt.infer(random_batch(1, 4), keep="first")
    config = rmt.get_config()
    assert (config["segment_loop"], config["remat"]) == ("unrolled", "auto")
    clone = keras_rmt.layers.RecurrentSegments.from_config(config)
    assert (clone.segment_loop, clone.remat) == ("unrolled", "auto")
    with pytest.raises(ValueError, match="Received: remat='yes'"):
        make_rmt_on_shared("gpt2", remat="yes")
