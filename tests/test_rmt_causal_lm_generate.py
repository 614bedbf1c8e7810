"""Generation with a key/value cache, samplers, memory across calls, score."""

import warnings

import keras
import keras_hub
import numpy as np
import pytest
from conftest import (
    BACKBONES,
    HIDDEN_DIM,
    VOCABULARY_SIZE,
    generation_functions,
    jitted_on_jax,
    make_backbone,
    numpy,
    random_batch,
)

import keras_rmt


def _grouped_query(cls, **extra):
    return lambda: cls(
        vocabulary_size=VOCABULARY_SIZE,
        num_layers=2,
        num_query_heads=2,
        num_key_value_heads=1,
        hidden_dim=HIDDEN_DIM,
        intermediate_dim=32,
        **extra,
    )


def _multi_head(cls, heads_key="num_heads", **extra):
    return lambda: cls(
        vocabulary_size=VOCABULARY_SIZE,
        num_layers=2,
        hidden_dim=HIDDEN_DIM,
        intermediate_dim=32,
        **{heads_key: 2},
        **extra,
    )


# Families beyond the shared tiny backbones, built the same way.
MORE_DECODERS = {
    "llama3": _grouped_query(keras_hub.models.Llama3Backbone),
    "gemma3": _grouped_query(
        keras_hub.models.Gemma3Backbone,
        head_dim=8,
        image_size=16,
        vision_encoder=None,
    ),
    "qwen": _grouped_query(keras_hub.models.QwenBackbone),
    "phi3": _grouped_query(keras_hub.models.Phi3Backbone),
    "falcon": _multi_head(
        keras_hub.models.FalconBackbone, "num_attention_heads"
    ),
    "bloom": _multi_head(keras_hub.models.BloomBackbone),
    "gpt_neox": _multi_head(keras_hub.models.GPTNeoXBackbone),
}
# Not GPT-NeoX: keras-hub's own GPT-NeoX cache is only about 2e-4 close to
# its full pass (test_gpt_neox_cached_steps_are_as_close_as_keras_hubs_own).
CACHED_FAMILIES = (
    "gpt2",
    "opt",
    "llama",
    "mistral",
    "gemma",
    "qwen3",
    "mixtral",
    *(family for family in MORE_DECODERS if family != "gpt_neox"),
)


def _causal_lm(family, seed=0, **kwargs):
    keras.utils.set_random_seed(seed)
    build = MORE_DECODERS.get(family) or BACKBONES[family]
    backbone = keras_rmt.models.RMTBackbone(
        build(), num_memory_tokens=2, segment_length=4, **kwargs
    )
    return keras_rmt.models.RMTCausalLM(backbone)


def _recomputing_twin(causal_lm):
    """A task on the same backbone that runs each step's segment again."""
    twin = keras_rmt.models.RMTCausalLM(causal_lm.backbone)
    # The path families without a key/value cache take.
    object.__setattr__(twin, "_segment_cache_decision", (None,))
    return twin


def _cross_entropy(logits, labels):
    logits = logits - logits.max(-1, keepdims=True)
    log_probs = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    return -np.take_along_axis(log_probs, labels[..., None], -1)[..., 0]


LENGTHS = [3, 6]
TOTAL = 14  # Four segments of 4.


def _stepped(family):
    """Greedy steps through the cache, and the logits of one full pass."""
    causal_lm = _causal_lm(family)
    assert causal_lm._segment_cache() is not None
    start_generation, next_logits = generation_functions(causal_lm)
    prompt = random_batch(2, TOTAL, seed=4, lengths=LENGTHS)
    token_ids = prompt["token_ids"].copy()
    cache, index, _ = start_generation(
        keras.ops.convert_to_tensor(token_ids),
        keras.ops.convert_to_tensor(prompt["padding_mask"]),
    )
    assert int(index) == min(LENGTHS)
    step_logits = []
    for step in range(min(LENGTHS), TOTAL):
        logits, _, cache = next_logits(
            keras.ops.convert_to_tensor(token_ids), cache, step
        )
        logits = numpy(logits)
        step_logits.append(logits)
        for row, length in enumerate(LENGTHS):
            if step >= length:
                token_ids[row, step] = logits[row].argmax()
    full = numpy(
        causal_lm(
            {"token_ids": token_ids, "padding_mask": np.ones_like(token_ids)}
        )
    )
    return causal_lm, np.stack(step_logits, axis=1), full


@pytest.fixture(scope="module", params=CACHED_FAMILIES)
def stepped(request):
    _, step_logits, full = _stepped(request.param)
    return step_logits, full


def test_cached_steps_give_the_logits_of_recomputing(stepped):
    # Causal within a segment, memory from whole segments before it: the
    # logits of one pass over the final sequence are those of recomputing
    # every prefix. 11 steps cross three segment boundaries.
    step_logits, full = stepped
    np.testing.assert_allclose(
        step_logits, full[:, min(LENGTHS) - 1 : TOTAL - 1], atol=1e-4
    )


def _keras_hub_cache_error(backbone, token_ids):
    """How far keras-hub's own cached steps are from its one full pass."""
    causal_lm = keras_hub.models.GPTNeoXCausalLM(backbone, preprocessor=None)
    full = numpy(
        causal_lm(
            {"token_ids": token_ids, "padding_mask": np.ones_like(token_ids)}
        )
    )
    _, cache = causal_lm._build_cache(np.zeros_like(token_ids))
    # Jitted on JAX (as keras-hub's generate runs it): one compile.
    call_with_cache = jitted_on_jax(causal_lm, causal_lm.call_with_cache)
    steps = []
    for index in range(token_ids.shape[1]):
        logits, _, cache = call_with_cache(
            token_ids[:, index : index + 1],
            cache,
            keras.ops.convert_to_tensor(index, "int32"),
        )
        steps.append(numpy(logits)[:, 0])
    return np.abs(np.stack(steps, axis=1) - full).max()


def test_gpt_neox_cached_steps_are_as_close_as_keras_hubs_own():
    # keras-hub's GPT-NeoX cached path differs from its own full pass
    # (GPT-2's by about 1e-8), so the RMT's steps through that code can be
    # held only to the same closeness. If keras-hub's error drops below
    # 1e-5, move GPT-NeoX into CACHED_FAMILIES.
    causal_lm, step_logits, full = _stepped("gpt_neox")
    token_ids = random_batch(2, TOTAL, seed=4)["token_ids"]
    upstream = _keras_hub_cache_error(causal_lm.backbone.backbone, token_ids)
    assert upstream > 1e-5
    ours = np.abs(step_logits - full[:, min(LENGTHS) - 1 : TOTAL - 1]).max()
    assert ours <= 4 * upstream


@pytest.fixture(scope="module")
def twins():
    causal_lm = _causal_lm("llama", seed=3)
    return causal_lm, _recomputing_twin(causal_lm)


def _generate(causal_lm, sampler, prompt, **kwargs):
    causal_lm.compile(sampler=sampler)
    return numpy(causal_lm.generate(prompt, stop_token_ids=None, **kwargs))


SAMPLERS = {
    "greedy": lambda: "greedy",
    "beam": lambda: keras_hub.samplers.BeamSampler(num_beams=3),
    "contrastive": lambda: keras_hub.samplers.ContrastiveSampler(k=3),
    "top_k": lambda: keras_hub.samplers.TopKSampler(k=4, seed=1),
    "random": lambda: keras_hub.samplers.RandomSampler(seed=2),
}


@pytest.mark.parametrize("sampler", list(SAMPLERS))
def test_every_sampler_gives_the_tokens_of_recomputing(twins, sampler):
    # Beam and contrastive search copy and reorder the cache per candidate:
    # memory and key/value cache must follow their beam.
    causal_lm, twin = twins
    prompt = random_batch(2, 11, seed=5, lengths=[3, 5])
    got = _generate(causal_lm, SAMPLERS[sampler](), prompt)
    expected = _generate(twin, SAMPLERS[sampler](), prompt)
    np.testing.assert_array_equal(got["token_ids"], expected["token_ids"])
    np.testing.assert_array_equal(
        got["token_ids"][:, :3], prompt["token_ids"][:, :3]
    )


def test_continuing_from_a_returned_memory_equals_one_call(twins):
    causal_lm, _ = twins
    causal_lm.compile(sampler="greedy")
    first = random_batch(2, 8, seed=7, lengths=[3, 5])
    second = random_batch(2, 8, seed=8, lengths=[2, 4])
    out, memory = causal_lm.generate(
        first, stop_token_ids=None, return_memory=True
    )
    assert memory.shape == (2, 2, HIDDEN_DIM)
    more, after = causal_lm.generate(
        second, stop_token_ids=None, memory=memory, return_memory=True
    )
    joined = {
        "token_ids": np.concatenate(
            [out["token_ids"], second["token_ids"]], axis=1
        ),
        "padding_mask": np.concatenate(
            [np.ones((2, 8), "int32"), second["padding_mask"]], axis=1
        ),
    }
    at_once = numpy(causal_lm.generate(joined, stop_token_ids=None))
    expected = at_once["token_ids"][:, 8:]
    np.testing.assert_array_equal(more["token_ids"], expected)
    whole = causal_lm.backbone(
        {
            "token_ids": at_once["token_ids"],
            "padding_mask": np.ones((2, 16), "int32"),
        }
    )
    np.testing.assert_allclose(after, numpy(whole["memory"]), atol=1e-5)


def test_returned_memory_closes_a_partial_last_segment(twins):
    # 10 tokens: the third segment holds 2; rows stop at different places.
    causal_lm, _ = twins
    causal_lm.compile(sampler="greedy")
    prompt = random_batch(2, 10, seed=9, lengths=[3, 6])
    plain = numpy(causal_lm.generate(prompt, stop_token_ids=None))
    stop = int(plain["token_ids"][0, 4])
    out, memory = causal_lm.generate(
        prompt, stop_token_ids=[stop], return_memory=True
    )
    out = numpy(out)
    assert out["padding_mask"][0].sum() < 10
    expected = causal_lm.backbone(
        {
            "token_ids": out["token_ids"],
            "padding_mask": out["padding_mask"].astype("int32"),
        }
    )["memory"]
    np.testing.assert_allclose(memory, numpy(expected), atol=1e-5)


def test_memory_of_the_wrong_shape_is_refused(twins):
    causal_lm, _ = twins
    prompt = random_batch(2, 8, lengths=[3, 5])
    with pytest.raises(ValueError, match=r"memory.shape=\(2, 3, 16\)"):
        causal_lm.generate(
            prompt, stop_token_ids=None, memory=np.zeros((2, 3, HIDDEN_DIM))
        )


@pytest.fixture(scope="module")
def scored():
    causal_lm = _causal_lm("gpt2", seed=2)
    # Set up before the tests' eager switch (conftest): eager here too.
    causal_lm.run_eagerly = keras.backend.backend() == "tensorflow"
    batch = random_batch(2, 10, seed=3, lengths=[10, 7])
    targets = np.roll(batch["token_ids"], -1, axis=1)
    return causal_lm, batch, targets, causal_lm.predict(batch, verbose=0)


def test_score_gives_predicts_logits_and_their_loss(scored):
    causal_lm, batch, targets, logits = scored
    got = causal_lm.score(batch["token_ids"], batch["padding_mask"])
    np.testing.assert_allclose(numpy(got), logits, atol=1e-5)
    losses = causal_lm.score(
        batch["token_ids"],
        batch["padding_mask"],
        scoring_mode="loss",
        target_ids=targets,
    )
    assert losses.shape == (2, 10)
    np.testing.assert_allclose(
        numpy(losses), _cross_entropy(logits, targets), atol=1e-5
    )


def test_score_refuses_what_it_cannot_do(scored):
    causal_lm, batch, targets, _ = scored
    with pytest.raises(ValueError, match="scoring_mode='probs'"):
        causal_lm.score(batch["token_ids"], scoring_mode="probs")
    with pytest.raises(ValueError, match="target_ids=None"):
        causal_lm.score(batch["token_ids"], scoring_mode="loss")
    with pytest.raises(ValueError, match="layer_intercept_fn=<function"):
        causal_lm.score(batch["token_ids"], layer_intercept_fn=lambda x, i: x)


def test_a_backbone_without_a_cache_says_so_once():
    causal_lm = _causal_lm("gpt2", memory_attention="bidirectional")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert causal_lm._segment_cache() is None
        assert causal_lm._segment_cache() is None
    messages = [str(w.message) for w in caught]
    assert len(messages) == 1
    assert "without a key/value cache" in messages[0]
    assert "memory_attention='bidirectional'" in messages[0]


def test_max_length_defaults_to_the_preprocessors_sequence_length(
    wordpiece_tokenizer,
):
    # A prompt that ends its first segment: before, nothing was generated.
    # WordPiece: a byte-pair tokenizer's tf.data map costs 7 CPU s a call.
    preprocessor = keras_rmt.models.RMTCausalLMPreprocessor(
        wordpiece_tokenizer, segment_length=4, sequence_length=12
    )
    keras.utils.set_random_seed(0)
    backbone = keras_rmt.models.RMTBackbone(
        make_backbone("gpt2"), num_memory_tokens=2, segment_length=4
    )
    causal_lm = keras_rmt.models.RMTCausalLM(backbone, preprocessor)
    causal_lm.compile(sampler="greedy")
    prompt = "the fox dog"
    width = preprocessor.generate_preprocess([prompt], sequence_length=None)
    assert numpy(width["token_ids"]).shape == (1, 4)
    got = causal_lm.generate(prompt, stop_token_ids=None)
    assert got == causal_lm.generate(prompt, max_length=12, stop_token_ids=None)
    assert got != causal_lm.generate(prompt, max_length=4, stop_token_ids=None)

    preprocessor.sequence_length = None
    with pytest.raises(ValueError, match="needs `max_length`"):
        causal_lm.generate(prompt, stop_token_ids=None)


@pytest.mark.parametrize("cached", [True, False], ids=["cached", "recomputed"])
def test_right_aligned_generation_steps_give_the_logits_of_one_pass(cached):
    # Generation cuts segments from each row's start whatever the layer's
    # alignment; over rows of whole segments right alignment pads nothing,
    # so one pass gives the logits every step must give.
    causal_lm = _causal_lm("gpt2", alignment="right")
    if not cached:
        causal_lm = _recomputing_twin(causal_lm)
    token_ids = random_batch(2, 12, seed=5)["token_ids"]
    prompt_mask = np.zeros_like(token_ids)
    prompt_mask[:, :5] = 1
    start_generation, next_logits = generation_functions(causal_lm)
    cache, index, _ = start_generation(
        keras.ops.convert_to_tensor(token_ids),
        keras.ops.convert_to_tensor(prompt_mask),
    )
    assert int(index) == 5
    step_logits = []
    for step in range(5, 12):
        logits, _, cache = next_logits(
            keras.ops.convert_to_tensor(token_ids), cache, step
        )
        step_logits.append(numpy(logits))
    full = numpy(
        causal_lm(
            {"token_ids": token_ids, "padding_mask": np.ones_like(token_ids)}
        )
    )
    np.testing.assert_allclose(
        np.stack(step_logits, axis=1), full[:, 4:11], atol=1e-4
    )
