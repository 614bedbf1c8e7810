import re
import shutil

import keras
import keras_hub
import numpy as np
import pytest
import tensorflow as tf

import keras_rmt

pytestmark = pytest.mark.backend_independent

Preprocessor = keras_rmt.models.RMTCausalLMPreprocessor

# WordPiece ids (tests/conftest.py): [PAD]=0 [CLS]=2 [SEP]=3, the=41
# quick=42 brown=43 fox=44 jump=45 ##s=46 over=48 dog=50.
TEXTS = ["the quick brown fox jumps over", "the dog", ""]
CONTENT = [[41, 42, 43, 44, 45, 46, 48], [41, 50], []]


def as_numpy(tree):
    return keras.tree.map_structure(np.asarray, tree)


def expected(rows, width, pad=0):
    """x, y, mask for token streams `rows` (specials included), by hand."""
    x = np.full((len(rows), width), pad, "int32")
    y = np.full((len(rows), width), pad, "int32")
    mask = np.zeros((len(rows), width), bool)
    for i, row in enumerate(rows):
        n = max(len(row) - 1, 0)
        x[i, :n], y[i, :n], mask[i, :n] = row[:-1], row[1:], True
    return x, y, mask


def assert_packed(outputs, rows, width, pad=0):
    x, y, sample_weight = as_numpy(outputs)
    want_x, want_y, want_mask = expected(rows, width, pad)
    np.testing.assert_array_equal(x["token_ids"], want_x)
    np.testing.assert_array_equal(x["padding_mask"], want_mask)
    np.testing.assert_array_equal(y, want_y)
    np.testing.assert_array_equal(sample_weight, want_mask)


def test_wordpiece_rows_padded_to_whole_segments(wordpiece_tokenizer):
    preprocessor = Preprocessor(wordpiece_tokenizer, segment_length=4)
    x, y, sample_weight = as_numpy(preprocessor(TEXTS))
    np.testing.assert_array_equal(
        x["token_ids"],
        [
            [2, 41, 42, 43, 44, 45, 46, 48],
            [2, 41, 50, 0, 0, 0, 0, 0],
            [2, 0, 0, 0, 0, 0, 0, 0],
        ],
    )
    np.testing.assert_array_equal(
        y,
        [
            [41, 42, 43, 44, 45, 46, 48, 3],
            [41, 50, 3, 0, 0, 0, 0, 0],
            [3, 0, 0, 0, 0, 0, 0, 0],
        ],
    )
    mask = np.arange(8)[None] < np.array([8, 3, 1])[:, None]
    np.testing.assert_array_equal(x["padding_mask"], mask)
    np.testing.assert_array_equal(sample_weight, mask)


def test_gpt2_bpe_end_token_is_a_label_even_with_the_pad_id(gpt2_tokenizer):
    tokens = ["the", "Ġfox", "Ġthe", "Ġdog"]
    ids = [gpt2_tokenizer.token_to_id(t) for t in tokens]
    preprocessor = Preprocessor(gpt2_tokenizer, segment_length=4)
    # <|endoftext|> (0) starts and ends the row and is also the pad id.
    assert_packed(preprocessor(["the fox the dog"]), [[0, *ids, 0]], 8)


def test_sentencepiece_matches_the_sentencepiece_library(
    llama_tokenizer, sentencepiece_proto
):
    import sentencepiece

    texts = ["the quick brown fox", "key 1 2 3 value 4 5 6 what is the key"]
    reference = sentencepiece.SentencePieceProcessor(
        model_proto=sentencepiece_proto
    )
    rows = [[1, *ids, 2] for ids in reference.encode(texts)]
    width = -(-max(len(r) - 1 for r in rows) // 5) * 5
    preprocessor = Preprocessor(llama_tokenizer, segment_length=5)
    assert_packed(preprocessor(texts), rows, width)


def test_without_start_and_end_tokens_short_rows_are_all_padding(
    wordpiece_tokenizer,
):
    preprocessor = Preprocessor(
        wordpiece_tokenizer,
        segment_length=2,
        add_start_token=False,
        add_end_token=False,
    )
    # "fox" alone has no next token; "" has no token at all.
    assert_packed(preprocessor(["the dog", "fox", ""]), [[41, 50], [44], []], 2)


def test_one_string_gives_unbatched_outputs(wordpiece_tokenizer):
    preprocessor = Preprocessor(wordpiece_tokenizer, segment_length=4)
    x, y, sample_weight = as_numpy(preprocessor("the dog"))
    np.testing.assert_array_equal(x["token_ids"], [2, 41, 50, 0])
    np.testing.assert_array_equal(y, [41, 50, 3, 0])
    np.testing.assert_array_equal(sample_weight, [1, 1, 1, 0])


def test_fixed_sequence_length(wordpiece_tokenizer):
    preprocessor = Preprocessor(
        wordpiece_tokenizer, segment_length=4, sequence_length=12
    )
    rows = [[2, *c, 3] for c in CONTENT]
    assert_packed(preprocessor(TEXTS), rows, 12)


@pytest.mark.parametrize(
    "truncate, content",
    [("keep_first", [41, 42, 43, 44]), ("keep_last", [44, 45, 46, 48])],
)
def test_truncation_keeps_first_or_last_tokens_and_the_specials(
    wordpiece_tokenizer, truncate, content
):
    preprocessor = Preprocessor(
        wordpiece_tokenizer, segment_length=4, max_length=5, truncate=truncate
    )
    # 5 positions of x: [CLS] + 4 content tokens; [SEP] is the last label.
    rows = [[2, *content, 3], [2, 41, 50, 3], [2, 3]]
    assert_packed(preprocessor(TEXTS), rows, 8)


def test_too_long_input_is_an_error_by_default(wordpiece_tokenizer):
    preprocessor = Preprocessor(
        wordpiece_tokenizer, segment_length=4, max_length=5
    )
    message = (
        "RMTCausalLMPreprocessor: row 0 needs 8 positions (special tokens "
        "included), more than max_length=5, and truncate='error'."
    )
    with pytest.raises(ValueError, match=re.escape(message)):
        preprocessor(TEXTS)
    fixed = Preprocessor(
        wordpiece_tokenizer, segment_length=4, sequence_length=4
    )
    with pytest.raises(ValueError, match=r"more than sequence_length=4,"):
        fixed(["the dog", "the quick brown fox"])


@pytest.mark.parametrize(
    "tokenizer", ["wordpiece_tokenizer", "llama_tokenizer"]
)
def test_tf_data_map_matches_eager_call(request, tokenizer):
    tokenizer = request.getfixturevalue(tokenizer)
    preprocessor = Preprocessor(tokenizer, segment_length=4)
    texts = ["the quick brown fox jumps over the lazy dog", "the dog", ""]
    eager = as_numpy(preprocessor(texts))
    batched = tf.data.Dataset.from_tensor_slices(texts).batch(3)
    mapped = as_numpy(batched.map(preprocessor).get_single_element())
    keras.tree.map_structure(np.testing.assert_array_equal, mapped, eager)
    # Mapped one string at a time: one length with sequence_length, as
    # keras-hub; refused without it (every text would get its own).
    width = eager[0]["token_ids"].shape[1]
    fixed = Preprocessor(tokenizer, segment_length=4, sequence_length=width)
    single = tf.data.Dataset.from_tensor_slices(texts)
    keras.tree.map_structure(
        np.testing.assert_array_equal,
        as_numpy(single.map(fixed).batch(3).get_single_element()),
        as_numpy(fixed(texts)),
    )
    with pytest.raises(ValueError, match="Received: sequence_length=None"):
        single.map(preprocessor)
    prompts = batched.map(lambda t: preprocessor.generate_preprocess(t, 40))
    keras.tree.map_structure(
        np.testing.assert_array_equal,
        as_numpy(prompts.get_single_element()),
        as_numpy(preprocessor.generate_preprocess(texts, 40)),
    )


def test_tf_data_too_long_input_raises_when_produced(wordpiece_tokenizer):
    preprocessor = Preprocessor(
        wordpiece_tokenizer, segment_length=4, max_length=5
    )
    dataset = tf.data.Dataset.from_tensor_slices(TEXTS).batch(3)
    dataset = dataset.map(preprocessor)
    with pytest.raises(
        tf.errors.InvalidArgumentError,
        match=r"(?s)an input is longer than max_length=5 "
        r".*at most 4 fit.*\[7\]",
    ):
        dataset.get_single_element()


@pytest.mark.parametrize(
    "bad, detail",
    [
        ([1, 2], "Received: x=[1, 2] (element 0 has type int)"),
        (["ok", None], "Received: x=['ok', None] (element 1 has type "),
        ([], "Received: x=[] (an empty batch)"),
        (np.zeros((2,), "float32"), "Received: x=array([0., 0.]"),
    ],
)
def test_non_string_input_is_an_error(wordpiece_tokenizer, bad, detail):
    preprocessor = Preprocessor(wordpiece_tokenizer, segment_length=4)
    message = (
        "RMTCausalLMPreprocessor takes a string or a batch (list or 1-D "
        "tensor) of strings. " + detail
    )
    with pytest.raises(ValueError, match=re.escape(message)):
        preprocessor(bad)


def test_non_string_dataset_is_an_error(wordpiece_tokenizer):
    preprocessor = Preprocessor(wordpiece_tokenizer, segment_length=4)
    dataset = tf.data.Dataset.from_tensor_slices([1, 2]).batch(2)
    with pytest.raises(ValueError, match=r"Received: x=.*dtype=int32"):
        dataset.map(preprocessor)


def test_labels_are_refused_because_they_are_made_from_x(
    wordpiece_tokenizer,
):
    preprocessor = Preprocessor(wordpiece_tokenizer, segment_length=4)
    with pytest.raises(ValueError, match=r"makes its own labels.*y=\[1\]"):
        preprocessor(["the dog"], [1])


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"segment_length": 0}, "Received: segment_length=0"),
        (
            {"segment_length": 4, "sequence_length": 6},
            "multiple of segment_length=4). Received: sequence_length=6",
        ),
        (
            {"segment_length": 4, "sequence_length": 8, "max_length": 9},
            "`max_length` cannot exceed the fixed `sequence_length`=8. "
            "Received: max_length=9",
        ),
        (
            {"segment_length": 4, "truncate": "cut"},
            "Received: truncate='cut'",
        ),
    ],
)
def test_bad_arguments(wordpiece_tokenizer, kwargs, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        Preprocessor(wordpiece_tokenizer, **kwargs)


def test_tokenizer_without_a_start_token(wordpiece_tokenizer):
    tokenizer = keras_hub.tokenizers.WordPieceTokenizer(
        vocabulary=wordpiece_tokenizer.get_vocabulary()
    )
    preprocessor = Preprocessor(tokenizer, segment_length=4)
    with pytest.raises(ValueError, match=r"Pass `add_start_token=False`"):
        preprocessor(["the dog"])
    plain = Preprocessor(
        tokenizer, segment_length=4, add_start_token=False, add_end_token=False
    )
    assert_packed(plain(["the dog"]), [[41, 50]], 4)


def test_generate_preprocess_and_postprocess(wordpiece_tokenizer):
    preprocessor = Preprocessor(wordpiece_tokenizer, segment_length=4)
    prompts = as_numpy(preprocessor.generate_preprocess(TEXTS[:2]))
    np.testing.assert_array_equal(
        prompts["token_ids"],
        [[2, 41, 42, 43, 44, 45, 46, 48], [2, 41, 50, 0, 0, 0, 0, 0]],
    )
    np.testing.assert_array_equal(
        prompts["padding_mask"], np.arange(8)[None] < [[8], [3]]
    )
    room = as_numpy(preprocessor.generate_preprocess(TEXTS[:2], 10))
    np.testing.assert_array_equal(
        room["token_ids"], np.pad(prompts["token_ids"], [(0, 0), (0, 2)])
    )
    generated = {k: np.array(v) for k, v in room.items()}
    generated["token_ids"][1, 3:5] = [44, 3]
    generated["padding_mask"][1, 3:5] = True
    texts = preprocessor.generate_postprocess(generated)
    assert list(texts) == ["the quick brown fox jumps over", "the dog fox"]
    with pytest.raises(ValueError, match=r"Received: sequence_length=6"):
        preprocessor.generate_preprocess(TEXTS[:2], 6)


def test_config_round_trip(wordpiece_tokenizer):
    preprocessor = Preprocessor(
        wordpiece_tokenizer,
        segment_length=4,
        sequence_length=8,
        max_length=6,
        truncate="keep_last",
        add_end_token=False,
    )
    config = preprocessor.get_config()
    assert {k: config[k] for k in list(config)[-6:]} == {
        "segment_length": 4,
        "sequence_length": 8,
        "max_length": 6,
        "truncate": "keep_last",
        "add_start_token": True,
        "add_end_token": False,
    }
    assert Preprocessor.from_config(config).get_config() == config
    restored = keras.saving.deserialize_keras_object(
        keras.saving.serialize_keras_object(preprocessor)
    )
    assert type(restored) is Preprocessor
    assert keras.saving.get_registered_name(Preprocessor) == (
        "keras_rmt>RMTCausalLMPreprocessor"
    )


def test_from_preset_folder(tmp_path, bare_bert_preset, gpt2_tokenizer):
    # Only the tokenizer is read: any backbone's folder will do.
    preset = str(tmp_path / "preset")
    shutil.copytree(bare_bert_preset, preset)
    gpt2_tokenizer.save_to_preset(preset)
    loaded = Preprocessor.from_preset(preset, segment_length=4)
    assert type(loaded.tokenizer) is keras_hub.models.GPT2Tokenizer
    reference = Preprocessor(gpt2_tokenizer, segment_length=4)
    texts = ["the fox", "the dog the fox"]
    keras.tree.map_structure(
        np.testing.assert_array_equal,
        as_numpy(loaded(texts)),
        as_numpy(reference(texts)),
    )
    # A saved RMT preprocessor is loaded with its own configuration.
    saved = Preprocessor(gpt2_tokenizer, segment_length=4, max_length=6)
    saved.save_to_preset(preset)
    again = Preprocessor.from_preset(preset)
    assert again.get_config() == saved.get_config()
    assert Preprocessor.from_preset(preset, max_length=7).max_length == 7


def test_preset_without_tokenizer_is_an_error(bare_bert_preset):
    message = (
        "RMTCausalLMPreprocessor.from_preset needs a tokenizer, but preset "
        f"'{bare_bert_preset}' has no tokenizer.json (it holds ['config.json', "
        "'metadata.json', 'model.weights.h5'])."
    )
    with pytest.raises(ValueError, match=re.escape(message)):
        Preprocessor.from_preset(bare_bert_preset, segment_length=4)


@pytest.mark.parametrize(
    "truncate, content",
    [("keep_first", [41, 42, 43, 44]), ("keep_last", [46, 48, 41, 50])],
)
def test_generation_room_cuts_prompts_by_the_truncate_policy(
    wordpiece_tokenizer, truncate, content
):
    # generate(max_length=5): the policy keeps 4 tokens of the prompt after
    # [CLS], eagerly and in tf.data alike; truncate="error" refuses it.
    preprocessor = Preprocessor(
        wordpiece_tokenizer, segment_length=4, truncate=truncate
    )
    texts = ["the quick brown fox jumps over the dog", "the dog"]
    want = [[2, *content], [2, 41, 50, 0, 0]]
    eager = as_numpy(preprocessor.generate_preprocess(texts, 5))
    mapped = tf.data.Dataset.from_tensor_slices(texts).batch(2)
    mapped = mapped.map(lambda t: preprocessor.generate_preprocess(t, 5))
    for prompts in (eager, as_numpy(next(iter(mapped)))):
        np.testing.assert_array_equal(prompts["token_ids"], want)
        np.testing.assert_array_equal(
            prompts["padding_mask"], np.arange(5)[None] < [[5], [3]]
        )
    refusing = Preprocessor(wordpiece_tokenizer, segment_length=4)
    message = (
        "`sequence_length` (`max_length` in `generate()`) must leave room "
        "for the prompt, which takes 10 positions, and truncate='error'."
    )
    with pytest.raises(ValueError, match=re.escape(message)):
        refusing.generate_preprocess(texts, 5)
