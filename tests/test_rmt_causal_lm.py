import keras
import keras_hub
import numpy as np
import pytest
from conftest import (
    VOCABULARY_SIZE,
    build_optimizer,
    generation_functions,
    jitted_on_jax,
    make_backbone,
    make_rmt_backbone,
    numpy,
    random_batch,
    save_local_preset,
)
from tasks.first_token_recall import first_token_recall

import keras_rmt


def _causal_lm(family="gpt2", **kwargs):
    return keras_rmt.models.RMTCausalLM(make_rmt_backbone(family, **kwargs))


def _cross_entropy(logits, labels):
    logits = logits - logits.max(-1, keepdims=True)
    log_probs = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    return -np.take_along_axis(log_probs, labels[..., None], -1)[..., 0]


@pytest.mark.parametrize("family", ["gpt2", "llama"])
def test_logits_are_the_token_embedding_in_reverse(family):
    causal_lm = _causal_lm(family)
    batch = random_batch(2, 10, lengths=[10, 7])
    hidden = numpy(causal_lm.backbone(batch)["sequence_output"])
    embedding = causal_lm.backbone.token_embedding
    if family == "gpt2":  # Tied: the input embedding matrix itself.
        matrix = numpy(embedding.embeddings).T
    else:  # Llama keeps a separate output matrix.
        matrix = numpy(embedding.reverse_embeddings)
        assert not np.allclose(matrix, numpy(embedding.embeddings).T)
    np.testing.assert_allclose(
        numpy(causal_lm(batch)), hidden @ matrix, atol=1e-4
    )


@pytest.fixture(scope="module")
def evaluated():
    """A task evaluated on 3 segments, with a labels mask.

    Module scope: set up before the tests' eager switch (conftest), so on
    TensorFlow `evaluate` and `predict` run compiled, and the tests that
    read it are marked so: the compiled test of the segment losses.
    """
    keras.utils.set_random_seed(0)
    causal_lm = _causal_lm()
    causal_lm.compile(segment_metrics=4)
    batch = random_batch(2, 11, seed=2, lengths=[11, 6])
    rng = np.random.default_rng(3)
    labels = rng.integers(0, VOCABULARY_SIZE, (2, 11)).astype("int32")
    weights = (rng.random((2, 11)) < 0.7).astype("float32") * batch[
        "padding_mask"
    ]
    logs = causal_lm.evaluate(
        batch, labels, sample_weight=weights, return_dict=True, verbose=0
    )
    losses = _cross_entropy(causal_lm.predict(batch, verbose=0), labels)
    return logs, losses, weights


@pytest.mark.compiled
def test_loss_is_token_weighted_cross_entropy_over_all_segments(evaluated):
    logs, losses, weights = evaluated
    expected = (losses * weights).sum() / weights.sum()
    np.testing.assert_allclose(logs["loss"], expected, rtol=1e-5)


@pytest.mark.compiled
def test_each_segments_loss_is_reported(evaluated):
    logs, losses, weights = evaluated
    for index in range(3):
        part = slice(4 * index, 4 * index + 4)
        expected = (losses[:, part] * weights[:, part]).sum() / weights[
            :, part
        ].sum()
        np.testing.assert_allclose(
            logs[f"segment_{index + 1}_loss"], expected, rtol=1e-5
        )
    # No fourth segment in 11 tokens: nothing to report.
    assert np.isnan(logs["segment_4_loss"])


def test_fit_with_a_labels_mask_trains_the_answer_tokens_only():
    # The last token's label is the first token, two segments back; the
    # labels mask keeps the loss on that answer alone.
    inputs, keys = first_token_recall(64, num_keys=4, seed=0)
    labels = np.zeros_like(inputs["token_ids"])
    labels[:, -1] = keys + 2
    weights = np.zeros(labels.shape, "float32")
    weights[:, -1] = 1.0
    causal_lm = _causal_lm()
    causal_lm.compile(optimizer=keras.optimizers.Adam(1e-2), segment_metrics=3)
    build_optimizer(causal_lm)
    history = causal_lm.fit(
        inputs,
        labels,
        sample_weight=weights,
        batch_size=32,
        epochs=2,
        verbose=0,
    ).history
    assert history["loss"][-1] < history["loss"][0]
    np.testing.assert_allclose(
        history["segment_3_loss"], history["loss"], rtol=1e-5
    )
    assert np.isnan(history["segment_1_loss"][-1])


def _short_gpt2_lm(memory_attention="backbone"):
    """Segments of 4 plus 2 x 2 memory fill GPT-2's 8 positions exactly."""
    keras.utils.set_random_seed(1)
    gpt2 = keras_hub.models.GPT2Backbone(
        vocabulary_size=VOCABULARY_SIZE,
        num_layers=2,
        num_heads=2,
        hidden_dim=16,
        intermediate_dim=32,
        max_sequence_length=8,
    )
    backbone = keras_rmt.models.RMTBackbone(
        gpt2,
        num_memory_tokens=2,
        segment_length=4,
        memory_attention=memory_attention,
    )
    return keras_rmt.models.RMTCausalLM(backbone)


def _greedy_reference(causal_lm, prompt, lengths, total):
    """Every step recomputes all segments from scratch with the layer."""
    token_ids = prompt[:, :total].copy()
    all_logits = []
    for index in range(min(lengths), total):
        prefix = {
            "token_ids": token_ids[:, :index],
            "padding_mask": np.ones((len(lengths), index), "int32"),
        }
        logits = numpy(causal_lm(prefix))[:, -1]
        all_logits.append(logits)
        for row, length in enumerate(lengths):
            if index >= length:
                token_ids[row, index] = logits[row].argmax()
    return token_ids, np.stack(all_logits, axis=1)


# GPT-2 with the backbone's mask generates with a key/value cache; with the
# paper's mask it runs the segment again at each step.
@pytest.fixture(scope="module", params=["kv_cache", "recompute"])
def generation(request):
    memory_attention = {"kv_cache": "backbone", "recompute": "bidirectional"}
    causal_lm = _short_gpt2_lm(memory_attention[request.param])
    uses_cache = causal_lm._segment_cache() is not None
    assert uses_cache == (request.param == "kv_cache")
    lengths = [3, 6]
    prompt = random_batch(2, 14, seed=4, lengths=lengths)
    expected, logits = _greedy_reference(
        causal_lm, prompt["token_ids"], lengths, 14
    )
    return causal_lm, prompt, expected, logits


def test_greedy_generation_across_segments_equals_recomputing(generation):
    # 14 tokens: four segments, past the backbone's 8 positions.
    causal_lm, prompt, expected, _ = generation
    causal_lm.compile(sampler="greedy")
    got = causal_lm.generate(prompt, stop_token_ids=None)
    np.testing.assert_array_equal(numpy(got["token_ids"]), expected)


def test_generation_steps_give_the_recomputed_logits(generation):
    causal_lm, prompt, expected, logits = generation
    start_generation, next_logits = generation_functions(causal_lm)
    prompt = {k: keras.ops.convert_to_tensor(v) for k, v in prompt.items()}
    cache, index, _ = start_generation(
        prompt["token_ids"], prompt["padding_mask"]
    )
    assert int(index) == 3
    token_ids = keras.ops.convert_to_tensor(expected)
    for step in range(3, 14):
        got, _, cache = next_logits(token_ids, cache, step)
        np.testing.assert_allclose(numpy(got), logits[:, step - 3], atol=1e-5)


@pytest.mark.parametrize(
    "sampler",
    [
        keras_hub.samplers.TopKSampler(k=1),
        keras_hub.samplers.TopPSampler(p=1e-6),
    ],
    ids=["top_k", "top_p"],
)
def test_keras_hub_samplers_drive_generation(generation, sampler):
    # With all their mass on the best token they must agree with greedy.
    causal_lm, prompt, expected, _ = generation
    causal_lm.compile(sampler=sampler)
    got = causal_lm.generate(prompt, stop_token_ids=None)
    np.testing.assert_array_equal(numpy(got["token_ids"]), expected)


def test_generation_stops_after_a_stop_token(generation):
    causal_lm, prompt, expected, _ = generation
    causal_lm.compile(sampler="greedy")
    stop = int(expected[0, 5])
    got = numpy(causal_lm.generate(prompt, stop_token_ids=[stop]))
    first_stop = 3 + list(expected[0, 3:]).index(stop)
    assert got["padding_mask"][0].sum() == first_stop + 1
    np.testing.assert_array_equal(
        got["token_ids"][0, : first_stop + 1], expected[0, : first_stop + 1]
    )


def test_generation_stops_at_the_first_of_several_stop_tokens(generation):
    causal_lm, prompt, expected, _ = generation
    causal_lm.compile(sampler="greedy")
    stops = {int(expected[0, 7]), int(expected[1, 9])}
    got = numpy(causal_lm.generate(prompt, stop_token_ids=sorted(stops)))
    for row, length in enumerate([3, 6]):
        generated = list(expected[row, length:])
        ends = [i for i, token in enumerate(generated) if token in stops]
        kept = length + ends[0] + 1 if ends else len(expected[row])
        assert got["padding_mask"][row].sum() == kept, row
        np.testing.assert_array_equal(
            got["token_ids"][row, :kept], expected[row, :kept]
        )


def test_train_memory_only_changes_memory_and_nothing_else():
    causal_lm = keras_rmt.models.RMTCausalLM(
        make_rmt_backbone("gpt2", train_memory_only=True)
    )
    causal_lm.compile(optimizer=keras.optimizers.Adam(1e-2))
    build_optimizer(causal_lm)
    before = [numpy(w) for w in causal_lm.backbone.backbone.weights]
    memory_before = numpy(causal_lm.backbone.memory.memory)
    batch = random_batch(4, 9)
    causal_lm.fit(batch, batch["token_ids"], epochs=2, verbose=0)
    for got, expected in zip(causal_lm.backbone.backbone.weights, before):
        np.testing.assert_array_equal(numpy(got), expected)
    change = numpy(causal_lm.backbone.memory.memory) - memory_before
    assert np.abs(change).min() > 0


def test_keras_file_round_trip_gives_identical_outputs(tmp_path):
    causal_lm = _causal_lm(bptt_depth=1, memory_attention="bidirectional")
    batch = random_batch(2, 10, lengths=[10, 5])
    expected = causal_lm.predict(batch, verbose=0)
    causal_lm.save(tmp_path / "causal_lm.keras")
    restored = keras.saving.load_model(tmp_path / "causal_lm.keras")
    assert isinstance(restored, keras_rmt.models.RMTCausalLM)
    assert restored.backbone.memory_attention == "bidirectional"
    np.testing.assert_array_equal(restored.predict(batch, verbose=0), expected)


def _gpt2_tokenizer():
    vocabulary = {"<|endoftext|>": 0, "a": 1, "b": 2, "Ġ": 3, "Ġa": 4, "Ġb": 5}
    return keras_hub.models.GPT2Tokenizer(
        vocabulary=vocabulary, merges=["Ġ a", "Ġ b"]
    )


def test_from_keras_hub_preset_and_preset_round_trip(tmp_path):
    gpt2 = make_backbone("gpt2")
    gpt2.save_to_preset(tmp_path / "gpt2")
    _gpt2_tokenizer().save_to_preset(tmp_path / "gpt2")
    causal_lm = keras_rmt.models.RMTCausalLM.from_preset(
        str(tmp_path / "gpt2"), num_memory_tokens=2, segment_length=4
    )
    assert causal_lm.backbone.num_memory_tokens == 2
    for got, expected in zip(causal_lm.backbone.backbone.weights, gpt2.weights):
        np.testing.assert_array_equal(numpy(got), numpy(expected))
    causal_lm.save_to_preset(tmp_path / "rmt")
    restored = keras_rmt.models.RMTCausalLM.from_preset(str(tmp_path / "rmt"))
    # Token ids straight into the model: its preprocessor takes strings.
    batch = random_batch(2, 10, lengths=[10, 5])
    np.testing.assert_array_equal(
        numpy(restored(batch)), numpy(causal_lm(batch))
    )


def test_preset_without_tokenizer_is_refused_clearly(tmp_path):
    make_backbone("gpt2").save_to_preset(tmp_path / "gpt2")
    with pytest.raises(ValueError, match="has no tokenizer"):
        keras_rmt.models.RMTCausalLM.from_preset(
            str(tmp_path / "gpt2"), num_memory_tokens=2, segment_length=4
        )
    causal_lm = keras_rmt.models.RMTCausalLM.from_preset(
        str(tmp_path / "gpt2"),
        num_memory_tokens=2,
        segment_length=4,
        preprocessor=None,
    )
    assert causal_lm.preprocessor is None


def test_refuses_backbones_it_cannot_use():
    with pytest.raises(ValueError, match="must be a keras_rmt.models.RMTB"):
        keras_rmt.models.RMTCausalLM(make_backbone("gpt2"))
    with pytest.raises(ValueError, match="memory_layout='encoder'"):
        _causal_lm("bert")
    with pytest.raises(ValueError, match="segment_metrics=-1"):
        _causal_lm().compile(segment_metrics=-1)


def test_predict_joins_batches_of_strings_of_different_widths(
    wordpiece_tokenizer,
):
    # Each batch of strings is padded to its own whole segments: 4 and 12
    # positions here. predict pads both to the widest, as one batch of all
    # the strings is, on every backend (JAX and torch refused to join
    # them, TensorFlow gave a ragged tensor), from a list or a tf.data
    # dataset of batches.
    import tensorflow as tf

    causal_lm = keras_rmt.models.RMTCausalLM(
        make_rmt_backbone("gpt2"),
        preprocessor=keras_rmt.models.RMTCausalLMPreprocessor(
            wordpiece_tokenizer, segment_length=4
        ),
    )
    texts = ["the dog", "fox", "the quick brown fox jumps over the dog", "a"]
    x, _, _ = causal_lm.preprocessor(texts)
    assert x["token_ids"].shape == (4, 12)
    expected = numpy(jitted_on_jax(causal_lm, causal_lm)(x))
    dataset = tf.data.Dataset.from_tensor_slices(texts).batch(2)
    for inputs, batch_size in ((texts, 2), (dataset, None)):
        logits = causal_lm.predict(inputs, batch_size=batch_size, verbose=0)
        assert isinstance(logits, np.ndarray)
        np.testing.assert_allclose(logits, expected, atol=1e-5)
    # The preprocessor pads per batch again afterwards.
    assert causal_lm.preprocessor.sequence_length is None


def test_fit_evaluate_and_predict_read_a_dataset_of_token_ids():
    # A keras.utils.PyDataset (the curriculum's SegmentedDataset) yields
    # token ids: evaluate and predict turned it into a tf.data dataset of
    # raw samples and failed (fit already read it as it is).
    def make_batch(batch_size, num_segments, rng):
        # The same batch at every step and epoch (Keras moves the dataset's
        # epoch on before it reads it).
        rng = np.random.default_rng(7)
        ids = rng.integers(3, VOCABULARY_SIZE, (batch_size, 4 * num_segments))
        ids = ids.astype("int32")
        inputs = {"token_ids": ids, "padding_mask": np.ones_like(ids)}
        return inputs, np.roll(ids, -1, axis=1), np.ones(ids.shape, "float32")

    data = keras_rmt.datasets.SegmentedDataset(
        make_batch, 2, 2, segment_length=4, num_segments=2
    )
    causal_lm = _causal_lm()
    causal_lm.compile(optimizer="sgd")
    # The dataset's batches as arrays: evaluated alike.
    x, y, weights = (
        keras.tree.map_structure(lambda *parts: np.concatenate(parts), *parts)
        for parts in zip(*(data[i] for i in range(len(data))))
    )
    expected = causal_lm.evaluate(
        x, y, sample_weight=weights, batch_size=2, return_dict=True, verbose=0
    )
    got = causal_lm.evaluate(data, return_dict=True, verbose=0)
    assert sorted(got) == sorted(expected)
    # NaN for the segments the batches do not reach, on both sides.
    np.testing.assert_allclose(
        [got[name] for name in sorted(got)],
        [expected[name] for name in sorted(got)],
        rtol=1e-6,
    )
    np.testing.assert_allclose(
        causal_lm.predict(data, verbose=0), numpy(causal_lm(x)), atol=1e-5
    )
    history = causal_lm.fit(data, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])


def _texts(count, seed):
    """Documents whose last word repeats their first, 9 or 10 tokens long.

    Two segments of 8 each: one compiled shape for the whole test.
    """
    rng = np.random.default_rng(seed)
    texts = []
    for _ in range(count):
        words = list(rng.choice(["the", "fox", "dog"], 6))
        texts.append(" ".join(words + words[:1]))
    return texts


# The compiled test of RMTCausalLM's fit, predict, evaluate and generate on
# TensorFlow (traced as users run them); the other tests run eagerly there.
# WordPiece: a byte-pair tokenizer's tf.data map costs 7 CPU s a dataset,
# and the preprocessor tests cover byte-pair tokenizers.
@pytest.mark.compiled
def test_fit_predict_evaluate_and_generate_from_raw_strings(
    tmp_path, wordpiece_tokenizer
):
    # One block: what the test checks does not depend on depth.
    preset = save_local_preset(
        tmp_path / "gpt2", "gpt2", wordpiece_tokenizer, num_layers=1
    )
    causal_lm = keras_rmt.models.RMTCausalLM.from_preset(
        preset, num_memory_tokens=2, segment_length=8
    )
    assert isinstance(
        causal_lm.preprocessor, keras_rmt.models.RMTCausalLMPreprocessor
    )
    texts = _texts(16, seed=0)
    x, y, weights = (numpy(t) for t in causal_lm.preprocessor(texts))
    causal_lm.compile(optimizer=keras.optimizers.Adam(1e-2))
    build_optimizer(causal_lm, (x, y, weights))
    history = causal_lm.fit(texts, batch_size=8, epochs=3, verbose=0)
    assert history.history["loss"][-1] < history.history["loss"][0] - 0.5

    logits = causal_lm.predict(texts, batch_size=16, verbose=0)
    # The call on the token ids, in one compiled call on JAX (op by op,
    # it costs more).
    called = jitted_on_jax(causal_lm, causal_lm)(x)
    np.testing.assert_allclose(logits, numpy(called), atol=1e-5)
    losses = _cross_entropy(logits, y)
    logs = causal_lm.evaluate(texts, batch_size=16, return_dict=True, verbose=0)
    np.testing.assert_allclose(
        logs["loss"], (losses * weights).sum() / weights.sum(), rtol=1e-5
    )

    causal_lm.compile(sampler="greedy")
    prompts = ["the quick", "fox"]
    generated = causal_lm.generate(prompts, max_length=24)
    for prompt, text in zip(prompts, generated):
        assert text.startswith(prompt)
    causal_lm.save_to_preset(tmp_path / "rmt")
    restored = keras_rmt.models.RMTCausalLM.from_preset(str(tmp_path / "rmt"))
    restored.compile(sampler="greedy")
    # The round trip's point is the weights and the tokenizer: on
    # TensorFlow, no second trace (and XLA compile) of the generate loop.
    restored.run_eagerly = keras.backend.backend() == "tensorflow"
    assert restored.generate(prompts, max_length=24) == generated
