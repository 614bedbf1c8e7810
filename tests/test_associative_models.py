import keras
import keras_hub
import numpy as np
import pytest
from conftest import (
    build_optimizer,
    dtype_policy,
    jitted_on_jax,
    make_backbone,
    numpy,
    random_batch,
    wrap_rmt_backbone,
)
from test_associative_memory import randomize
from test_case import run_task_test

import keras_rmt

# With key_dim=2, DPFP features are nonzero only in the sign quadrant of
# the projected pair, so most reads are exactly zero: on some random draws
# (JAX's) no real token depends on the first layer's memory at all, and a
# training step leaves its weights exactly unchanged. 4 gives overlaps.
KEY_DIM = 4


def armt_backbone(family="gpt2", **overrides):
    """A tiny associative `RMTBackbone`; `overrides` go to its backbone."""
    backbone = wrap_rmt_backbone(
        make_backbone(family, **overrides), associative_key_dim=KEY_DIM
    )
    for layer in backbone.recurrent_segments.associative_memories:
        randomize(layer, seed=1)
    return backbone


@pytest.fixture(scope="module")
def armt_lm():
    # Compiled once: `compile()` drops the traced `predict` and `generate`.
    # One block: what its tests check (logits, generation, export) does
    # not depend on depth, and each trace and compile of it costs half.
    # The 2-block state is checked by test_associative_recurrent_segments
    # and test_a_training_step_moves_every_associative_weight.
    causal_lm = keras_rmt.models.RMTCausalLM(armt_backbone(num_layers=1))
    causal_lm.compile(sampler="greedy")
    return causal_lm


def logits_of(model, inputs):
    """`model.predict(inputs)` as a reference, traced only where it pays.

    TensorFlow traces a graph per model and input shape (4-5 s for these
    models) where an eager call takes under 1 s; JAX's compiled `predict`
    costs less than its op-by-op call. test_score_gives_the_logits_of_predict
    checks the compiled `predict` against the eager call on every backend.
    """
    if keras.backend.backend() == "tensorflow":
        return numpy(model(inputs))
    return model.predict(inputs, verbose=0)


def test_backbone_reads_a_stream_in_pieces_as_at_once():
    backbone = armt_backbone()
    layer = backbone.recurrent_segments
    assert isinstance(layer, keras_rmt.layers.AssociativeRecurrentSegments)
    batch = random_batch(2, 12, lengths=[12, 7])
    # Jitted on JAX: op by op, each operation of each segment compiles.
    call = jitted_on_jax(backbone, backbone)
    whole = numpy(call(batch))
    first = call({k: v[:, :8] for k, v in batch.items()})
    rest = {k: keras.ops.convert_to_tensor(v[:, 8:]) for k, v in batch.items()}
    rest = call({**rest, "memory": first["memory"]})
    np.testing.assert_allclose(
        numpy(rest["sequence_output"]),
        whole["sequence_output"][:, 8:],
        atol=1e-5,
    )
    assert whole["memory"].shape == (2, *layer.state_shape)


def test_causal_lm_logits_and_round_trip(armt_lm, tmp_path):
    # `predict` (compiled on JAX and torch) for the shape that
    # test_score_gives_the_logits_of_predict reuses. On TensorFlow the
    # model and the reloaded one run eagerly: the compiled `predict` is
    # test_score_gives_the_logits_of_predict's (one trace instead of two).
    causal_lm = armt_lm
    batch = random_batch(2, 10, lengths=[10, 7])
    backbone = causal_lm.backbone

    def reference(inputs):
        hidden = backbone(inputs)["sequence_output"]
        return backbone.token_embedding(hidden, reverse=True)

    expected = numpy(jitted_on_jax(backbone, reference)(batch))
    logits = causal_lm.predict(batch, verbose=0)
    np.testing.assert_allclose(logits, expected, atol=1e-5)

    causal_lm.save(tmp_path / "armt_lm.keras")
    restored = keras.saving.load_model(tmp_path / "armt_lm.keras")
    assert restored.backbone.associative_key_dim == KEY_DIM
    np.testing.assert_array_equal(restored.predict(batch, verbose=0), logits)


# The compiled train step of an associative model (on TensorFlow too).
@pytest.mark.compiled
def test_a_training_step_moves_every_associative_weight():
    restored = keras_rmt.models.RMTCausalLM(armt_backbone())
    # Two segments: the second reads what the first wrote. (Each segment
    # more adds 5 s to the first compiled step on TensorFlow.)
    batch = random_batch(2, 8, lengths=[8, 5])
    # Every weight of every layer's associative memory gets a gradient.
    layers = restored.backbone.recurrent_segments.associative_memories
    weights = [w for layer in layers for w in layer.trainable_weights]
    before = [numpy(w) for w in weights]
    restored.compile(optimizer=keras.optimizers.SGD(1.0))
    # Else TensorFlow traces the train step twice (see build_optimizer).
    build_optimizer(restored)
    restored.fit(
        batch,
        batch["token_ids"],
        sample_weight=batch["padding_mask"],
        verbose=0,
    )
    for weight, value in zip(weights, before):
        assert np.abs(numpy(weight) - value).max() > 0.0, weight.path


def test_text_classifier_builds_trains_and_round_trips(tmp_path):
    # One block: the round trip and the training step do not need depth.
    classifier = keras_rmt.models.RMTTextClassifier(
        armt_backbone("llama", num_layers=1), num_classes=3
    )
    # TensorFlow traces a graph for each `predict` and one for the train
    # step (20 s of the test's 25): run eagerly there (as every test not
    # marked `compiled` does on TensorFlow). The compiled train
    # step of an associative model is test_a_training_step_moves_every_
    # associative_weight's, its compiled predict test_causal_lm_logits_and_
    # round_trip's.
    classifier.compile(
        optimizer=keras.optimizers.SGD(0.1),
        run_eagerly=keras.backend.backend() == "tensorflow",
    )
    batch = random_batch(2, 11, lengths=[11, 6])
    restored = run_task_test(
        classifier,
        (batch, np.array([0, 2])),
        (2, 3),
        tmp_path,
        # Llama's output projection, unused by a classifier.
        expected_unchanged=["token_embedding/reverse_embeddings"],
    )
    layer = restored.backbone.recurrent_segments
    assert isinstance(layer, keras_rmt.layers.AssociativeRecurrentSegments)


def test_associative_backbone_keeps_the_default_layout():
    with pytest.raises(ValueError, match="memory_attention='bidirectional'"):
        keras_rmt.models.RMTBackbone(
            make_backbone("gpt2"),
            num_memory_tokens=2,
            segment_length=4,
            associative_key_dim=2,
            memory_attention="bidirectional",
        )


def test_greedy_generation_carries_the_state_across_segments(armt_lm):
    # Causal within a segment, state from whole segments before it: each
    # greedy token is the argmax of one full pass over the final output.
    # Prompts of 3 and 6 grown to 14: three segment boundaries.
    prompt = random_batch(2, 14, seed=4, lengths=[3, 6])
    with pytest.warns(UserWarning, match="associative memory .ARMT. has no"):
        output = numpy(armt_lm.generate(prompt, stop_token_ids=None))
    token_ids = output["token_ids"]
    np.testing.assert_array_equal(token_ids[0, :3], prompt["token_ids"][0, :3])
    full = logits_of(
        armt_lm,
        {"token_ids": token_ids, "padding_mask": np.ones_like(token_ids)},
    )
    for row, length in enumerate([3, 6]):
        np.testing.assert_array_equal(
            token_ids[row, length:], full[row, length - 1 : -1].argmax(-1)
        )
    # The state is read: the same tokens without it give other logits.
    empty = keras_rmt.models.RMTCausalLM(
        wrap_rmt_backbone(
            make_backbone("gpt2", num_layers=1),
            associative_key_dim=KEY_DIM,
            carry_memory=False,
        )
    )
    empty.set_weights(armt_lm.get_weights())
    other = logits_of(
        empty,
        {"token_ids": token_ids, "padding_mask": np.ones_like(token_ids)},
    )
    assert np.abs(other[:, 4:] - full[:, 4:]).max() > 1e-4


# The compiled `generate` of an associative causal LM (on TensorFlow too):
# the cheapest generation here (one row, 8 tokens).
@pytest.mark.compiled
def test_generation_memory_continues_a_stream(armt_lm):
    prompt = random_batch(1, 8, seed=6)
    layer = armt_lm.backbone.recurrent_segments
    # Built again under this test's `run_eagerly` (False): an earlier test
    # may have built it eagerly on TensorFlow. (This prompt's shape is new
    # to the generate function anyway: nothing is traced twice.)
    armt_lm.generate_function = None
    _, state = armt_lm.generate(prompt, stop_token_ids=None, return_memory=True)
    assert state.shape == (1, *layer.state_shape)
    expected = numpy(layer(prompt)["memory"])
    np.testing.assert_allclose(state, expected, rtol=1e-4, atol=1e-5)


# The compiled `predict` of an associative causal LM (on TensorFlow too),
# against its eager `score`.
@pytest.mark.compiled
def test_score_gives_the_logits_of_predict(armt_lm):
    # The shape of test_causal_lm_logits_and_round_trip: one traced predict
    # on JAX and torch. On TensorFlow that test built `predict_function`
    # eagerly: built again here, traced.
    if keras.backend.backend() == "tensorflow":
        armt_lm.predict_function = None
    batch = random_batch(2, 10, seed=7, lengths=[10, 6])
    logits = armt_lm.predict(batch, verbose=0)
    scored = numpy(armt_lm.score(batch["token_ids"], batch["padding_mask"]))
    assert scored.shape == logits.shape == (2, 10, 64)
    np.testing.assert_allclose(scored[0], logits[0], atol=1e-4)
    np.testing.assert_allclose(scored[1, :6], logits[1, :6], atol=1e-4)


# A SavedModel is a traced graph whatever `run_eagerly` says.
@pytest.mark.compiled
@pytest.mark.skipif(
    keras.backend.backend() not in ("tensorflow", "jax"),
    reason="Exports in this process from TensorFlow and JAX only.",
)
def test_saved_model_streams_the_associative_state_like_stream(
    armt_lm, tmp_path
):
    import tensorflow as tf

    path = str(tmp_path / "armt")
    armt_lm.export(path, format="tf_saved_model")
    served = tf.saved_model.load(path)
    layer = armt_lm.backbone.recurrent_segments
    batch = random_batch(2, 11, seed=8)
    state = served.initial_memory(batch_size=2)["memory"]
    assert tuple(state.shape) == (2, *layer.state_shape)
    np.testing.assert_array_equal(state.numpy(), 0.0)
    streamed = list(layer.stream(batch))
    assert len(streamed) == 3
    embedding = armt_lm.backbone.token_embedding
    for index, expected in enumerate(streamed):
        segment = {
            k: tf.constant(v[:, 4 * index : 4 * index + 4])
            for k, v in batch.items()
        }
        outputs = served.serve_segment({**segment, "memory": state})
        state = outputs["memory"]
        tokens = segment["token_ids"].shape[1]
        logits = embedding(expected["sequence_output"], reverse=True)
        np.testing.assert_allclose(
            outputs["logits"].numpy(), numpy(logits)[:, :tokens], atol=1e-4
        )
        np.testing.assert_allclose(
            state.numpy(), numpy(expected["memory"]), rtol=1e-4, atol=1e-5
        )
    whole = served.serve(batch)
    np.testing.assert_allclose(
        whole["memory"].numpy(), state.numpy(), rtol=1e-4, atol=1e-5
    )
    rows, width = layer.state_shape
    message = f"`memory` must have shape (batch_size, {rows}, {width})"
    refused = pytest.raises(tf.errors.InvalidArgumentError)
    with refused as error:
        served.signatures["serve_segment"](**segment, memory=state[:, :1])
    assert message in str(error.value)


@pytest.mark.compiled
@pytest.mark.skipif(
    keras.backend.backend() not in ("tensorflow", "jax"),
    reason="Exports in this process from TensorFlow and JAX only.",
)
def test_a_mixed_precision_saved_model_serves_what_keras_computes(tmp_path):
    # Under mixed_bfloat16 the segments compute in bfloat16 and the state
    # stays float32: the SavedModel's scan (its length unknown when traced)
    # carries both. Its serve and serve_segment failed, or the JAX export.
    import tensorflow as tf

    with dtype_policy("mixed_bfloat16"):
        causal_lm = keras_rmt.models.RMTCausalLM(armt_backbone(num_layers=1))
    path = str(tmp_path / "armt")
    causal_lm.export(path, format="tf_saved_model")
    served = tf.saved_model.load(path)
    batch = random_batch(2, 11, seed=8, lengths=[11, 6])
    whole = served.serve(batch)
    memory = numpy(causal_lm.backbone(batch)["memory"])
    assert whole["memory"].dtype == tf.float32
    np.testing.assert_allclose(whole["memory"].numpy(), memory, atol=2e-2)
    logits = numpy(keras.ops.cast(causal_lm(batch), "float32"))
    served_logits = tf.cast(whole["logits"], tf.float32).numpy()
    np.testing.assert_allclose(served_logits[0], logits[0], atol=5e-2)
    np.testing.assert_allclose(served_logits[1, :6], logits[1, :6], atol=5e-2)
    state = served.initial_memory(batch_size=2)["memory"]
    segment = {k: tf.constant(v[:, :4]) for k, v in batch.items()}
    first = served.serve_segment({**segment, "memory": state})
    np.testing.assert_allclose(
        tf.cast(first["logits"], tf.float32).numpy(), logits[:, :4], atol=5e-2
    )


def test_contrastive_search_runs_under_mixed_precision():
    # The samplers write each step's bfloat16 hidden state into the
    # prompt's, which took the float32 dtype of the associative state and
    # refused it. With one candidate (k=1) contrastive search picks greedy's
    # first token; later steps' logits come from its differently batched
    # candidate step, which bfloat16 may round to another near-tie.
    with dtype_policy("mixed_bfloat16"):
        causal_lm = keras_rmt.models.RMTCausalLM(armt_backbone(num_layers=1))
    lengths = [6, 3]
    # Token ids in, the padding is where generation writes.
    prompt = random_batch(2, 10, seed=4, lengths=lengths)
    prompt = {**prompt, "padding_mask": prompt["padding_mask"].astype(bool)}
    outputs = {}
    for name, sampler in [
        ("greedy", "greedy"),
        ("contrastive", keras_hub.samplers.ContrastiveSampler(k=1, alpha=0.0)),
    ]:
        causal_lm.compile(sampler=sampler)
        outputs[name] = numpy(causal_lm.generate(prompt, stop_token_ids=None))
    got, greedy = outputs["contrastive"], outputs["greedy"]
    assert got["token_ids"].shape == greedy["token_ids"].shape == (2, 10)
    for row, length in enumerate(lengths):
        np.testing.assert_array_equal(
            got["token_ids"][row, : length + 1],
            greedy["token_ids"][row, : length + 1],
        )
    assert got["padding_mask"].all()
