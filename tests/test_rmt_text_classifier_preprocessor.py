import re
import shutil

import keras
import keras_hub
import numpy as np
import pytest
import tensorflow as tf

import keras_rmt

pytestmark = pytest.mark.backend_independent

Preprocessor = keras_rmt.models.RMTTextClassifierPreprocessor

# WordPiece ids (tests/conftest.py): [PAD]=0 [CLS]=2 [SEP]=3, the=41
# quick=42 brown=43 fox=44 jump=45 ##s=46 over=48 dog=50.
TEXTS = ["the quick brown fox jumps", "fox", ""]
LABELS = [1, 0, 1]


def as_numpy(tree):
    return keras.tree.map_structure(np.asarray, tree)


def assert_rows(x, rows, width, pad=0):
    """`x` holds `rows` (specials included), padded at the end to `width`."""
    token_ids = np.full((len(rows), width), pad, "int32")
    for i, row in enumerate(rows):
        token_ids[i, : len(row)] = row
    mask = np.arange(width)[None] < np.array([len(r) for r in rows])[:, None]
    x = as_numpy(x)
    np.testing.assert_array_equal(x["token_ids"], token_ids)
    np.testing.assert_array_equal(x["padding_mask"], mask)


def test_bert_every_segment_is_cls_content_sep(wordpiece_tokenizer):
    preprocessor = Preprocessor(wordpiece_tokenizer, segment_length=4)
    assert preprocessor.memory_layout == "encoder"
    x, y = preprocessor(TEXTS, LABELS)
    rows = [
        [2, 41, 42, 3, 2, 43, 44, 3, 2, 45, 46, 3],
        [2, 44, 3],
        [2, 3],
    ]
    assert_rows(x, rows, 12)
    np.testing.assert_array_equal(as_numpy(y), LABELS)


def test_roberta_segments_use_its_own_start_end_and_pad(roberta_tokenizer):
    ids = {t: roberta_tokenizer.token_to_id(t) for t in ["the", "Ġfox", "Ġdog"]}
    start, pad, end = 0, 1, 2
    preprocessor = Preprocessor(roberta_tokenizer, segment_length=3)
    assert preprocessor.memory_layout == "encoder"
    x = preprocessor(["the fox the dog", "the"])
    rows = [
        [start, ids["the"], end, start, ids["Ġfox"], end]
        + [start, roberta_tokenizer.token_to_id("Ġthe"), end]
        + [start, ids["Ġdog"], end],
        [start, ids["the"], end],
    ]
    assert_rows(x, rows, 12, pad=pad)


def test_encoder_without_end_token_fills_one_more_per_segment(
    wordpiece_tokenizer,
):
    preprocessor = Preprocessor(
        wordpiece_tokenizer, segment_length=4, add_end_token=False
    )
    x = preprocessor(TEXTS)
    assert_rows(x, [[2, 41, 42, 43, 2, 44, 45, 46], [2, 44], [2]], 8)


def test_gpt2_has_no_specials_between_segments(gpt2_tokenizer):
    tokens = ["the", "Ġfox", "Ġthe", "Ġdog"]
    ids = [gpt2_tokenizer.token_to_id(t) for t in tokens]
    preprocessor = Preprocessor(gpt2_tokenizer, segment_length=4)
    assert preprocessor.memory_layout == "decoder"
    # <|endoftext|> (0) opens and closes the document.
    assert_rows(
        preprocessor(["the fox the dog", ""]), [[0, *ids, 0], [0, 0]], 8
    )


def test_sentencepiece_decoder_matches_the_sentencepiece_library(
    llama_tokenizer, sentencepiece_proto
):
    import sentencepiece

    texts = ["the quick brown fox", "a cat sat on the mat"]
    reference = sentencepiece.SentencePieceProcessor(
        model_proto=sentencepiece_proto
    )
    rows = [[1, *ids, 2] for ids in reference.encode(texts)]
    width = -(-max(map(len, rows)) // 5) * 5
    preprocessor = Preprocessor(llama_tokenizer, segment_length=5)
    assert preprocessor.memory_layout == "decoder"
    assert_rows(preprocessor(texts), rows, width)


def test_layout_of_an_unknown_family_must_be_given(wordpiece_tokenizer):
    tokenizer = keras_hub.tokenizers.WordPieceTokenizer(
        vocabulary=wordpiece_tokenizer.get_vocabulary()
    )
    message = (
        "memory_layout='auto' cannot tell whether WordPieceTokenizer "
        "(backbone family: None) feeds an encoder or a decoder backbone."
    )
    with pytest.raises(ValueError, match=re.escape(message)):
        Preprocessor(tokenizer, segment_length=4)
    decoder = Preprocessor(
        tokenizer,
        segment_length=4,
        memory_layout="decoder",
        add_start_token=False,
        add_end_token=False,
    )
    assert_rows(decoder(["the dog"]), [[41, 50]], 4)
    with pytest.raises(ValueError, match=r"row 1 has no tokens"):
        decoder(["the dog", ""])


@pytest.mark.parametrize(
    "truncate, first_row",
    [
        ("keep_first", [2, 41, 42, 3, 2, 43, 44, 3, 2, 45, 3]),
        ("keep_last", [2, 42, 43, 3, 2, 44, 45, 3, 2, 46, 3]),
    ],
)
def test_truncation_keeps_first_or_last_content(
    wordpiece_tokenizer, truncate, first_row
):
    # 11 positions: two whole segments, then [CLS] + 1 token + [SEP].
    preprocessor = Preprocessor(
        wordpiece_tokenizer, segment_length=4, max_length=11, truncate=truncate
    )
    assert_rows(preprocessor(TEXTS), [first_row, [2, 44, 3], [2, 3]], 12)


def test_too_long_document_is_an_error_by_default(wordpiece_tokenizer):
    preprocessor = Preprocessor(
        wordpiece_tokenizer, segment_length=4, max_length=10
    )
    message = (
        "RMTTextClassifierPreprocessor: row 0 needs 12 positions (special "
        "tokens included), more than max_length=10, and truncate='error'."
    )
    with pytest.raises(ValueError, match=re.escape(message)):
        preprocessor(TEXTS)
    dataset = tf.data.Dataset.from_tensor_slices(TEXTS).batch(3)
    with pytest.raises(
        tf.errors.InvalidArgumentError,
        match=r"(?s)an input is longer than max_length=10 "
        r".*at most 4 fit.*\[6\]",
    ):
        dataset.map(preprocessor).get_single_element()


def test_fixed_sequence_length(wordpiece_tokenizer):
    preprocessor = Preprocessor(
        wordpiece_tokenizer, segment_length=4, sequence_length=16
    )
    rows = [[2, 41, 42, 3, 2, 43, 44, 3, 2, 45, 46, 3], [2, 44, 3], [2, 3]]
    assert_rows(preprocessor(TEXTS), rows, 16)


def test_tf_data_map_with_labels_matches_eager_call(wordpiece_tokenizer):
    preprocessor = Preprocessor(wordpiece_tokenizer, segment_length=4)
    eager = as_numpy(preprocessor(TEXTS, LABELS, [1.0, 1.0, 0.5]))
    data = (TEXTS, LABELS, [1.0, 1.0, 0.5])
    batched = tf.data.Dataset.from_tensor_slices(data).batch(3)
    mapped = as_numpy(batched.map(preprocessor).get_single_element())
    keras.tree.map_structure(np.testing.assert_array_equal, mapped, eager)


def test_map_one_string_at_a_time_then_batch(wordpiece_tokenizer):
    # keras-hub's way: a fixed sequence_length gives one shape per example.
    fixed = Preprocessor(
        wordpiece_tokenizer, segment_length=4, sequence_length=12
    )
    single = tf.data.Dataset.from_tensor_slices((TEXTS, LABELS))
    batched = as_numpy(single.map(fixed).batch(3).get_single_element())
    eager = as_numpy(fixed(TEXTS, LABELS))
    keras.tree.map_structure(np.testing.assert_array_equal, batched, eager)
    # Without one, each example would get its own length: refused up front.
    free = Preprocessor(wordpiece_tokenizer, segment_length=4)
    with pytest.raises(
        ValueError,
        match=r"mapped over one string at a time .* Batch first, "
        r"`ds.batch\(n\).map\(preprocessor\)`.*"
        r"Received: sequence_length=None",
    ):
        single.map(free)


def test_sentence_pairs_are_refused_clearly(wordpiece_tokenizer):
    preprocessor = Preprocessor(wordpiece_tokenizer, segment_length=4)
    # keras-hub unpacks `(a, b)` into `(x, y)`: texts as labels.
    with pytest.raises(ValueError, match="takes labels that are numbers"):
        preprocessor((["the fox"], ["the dog"]))
    with pytest.raises(ValueError, match="takes labels that are numbers"):
        tf.data.Dataset.from_tensor_slices((TEXTS, TEXTS)).batch(3).map(
            preprocessor
        )
    with pytest.raises(
        ValueError,
        match=r"A tuple is read, .* as the 2 texts of a sentence pair.*"
        r"Received: x=tuple of 2 elements",
    ):
        preprocessor((["the fox"], ["the dog"]), [1])
    # A tuple of one feature is that feature, as in keras-hub.
    assert_rows(preprocessor(x=(["fox"],)), [[2, 44, 3]], 4)


def test_non_string_input_is_an_error(wordpiece_tokenizer):
    preprocessor = Preprocessor(wordpiece_tokenizer, segment_length=4)
    message = (
        "RMTTextClassifierPreprocessor takes a string or a batch (list or 1-D "
        "tensor) of strings. Received: x=[3, 4] (element 0 has type int)"
    )
    with pytest.raises(ValueError, match=re.escape(message)):
        preprocessor([3, 4], [1, 0])
    dataset = tf.data.Dataset.from_tensor_slices(([3, 4], [1, 0])).batch(2)
    with pytest.raises(ValueError, match=r"Received: x=.*dtype=int32"):
        dataset.map(preprocessor)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (
            {"memory_layout": "both"},
            "`memory_layout` must be one of ('auto', 'encoder', 'decoder'). "
            "Received: memory_layout='both'",
        ),
        (
            {"add_start_token": False},
            "at the start of every segment: the memory follows it. "
            "Received: add_start_token=False",
        ),
        (
            {"segment_length": 2},
            "leave room for content beside the 2 special tokens of every "
            "segment. Received: segment_length=2",
        ),
        (
            {"max_length": 1},
            "The length limit leaves no room for the 2 special tokens of a "
            "row. Received: max_length=1",
        ),
    ],
)
def test_bad_arguments(wordpiece_tokenizer, kwargs, message):
    kwargs = {"segment_length": 4, **kwargs}
    with pytest.raises(ValueError, match=re.escape(message)):
        Preprocessor(wordpiece_tokenizer, **kwargs)


def test_config_round_trip(wordpiece_tokenizer):
    preprocessor = Preprocessor(
        wordpiece_tokenizer,
        segment_length=4,
        max_length=8,
        truncate="keep_first",
    )
    config = preprocessor.get_config()
    assert config["memory_layout"] == "encoder"
    assert config["max_length"] == 8 and config["truncate"] == "keep_first"
    assert Preprocessor.from_config(config).get_config() == config
    assert keras.saving.get_registered_name(Preprocessor) == (
        "keras_rmt>RMTTextClassifierPreprocessor"
    )


def test_layout_of_known_families():
    layout_for_backbone = (
        keras_rmt.models.rmt_text_classifier_preprocessor.layout_for_backbone
    )
    models = keras_hub.models
    assert layout_for_backbone(models.RobertaBackbone) == "encoder"
    assert layout_for_backbone(models.GemmaBackbone) == "decoder"
    assert layout_for_backbone(models.ResNetBackbone) is None


def test_from_preset_folder_takes_the_layout_of_its_backbone(
    tmp_path, bare_bert_preset, wordpiece_tokenizer
):
    preset = str(tmp_path / "bert")
    shutil.copytree(bare_bert_preset, preset)
    # A bare WordPiece tokenizer names no family: the preset's backbone does.
    keras_hub.tokenizers.WordPieceTokenizer(
        vocabulary=wordpiece_tokenizer.get_vocabulary()
    ).save_to_preset(preset)
    loaded = Preprocessor.from_preset(preset, segment_length=4)
    assert loaded.memory_layout == "encoder"
    assert type(loaded.tokenizer) is keras_hub.tokenizers.WordPieceTokenizer
    # ...and a bare tokenizer has no [CLS] to start the segments with.
    with pytest.raises(ValueError, match=r"has start_token_id=None"):
        loaded(["the dog"])
    wordpiece_tokenizer.save_to_preset(preset)
    loaded = Preprocessor.from_preset(preset, segment_length=4)
    assert_rows(loaded(["the dog"]), [[2, 41, 50, 3]], 4)


def test_preset_without_tokenizer_is_an_error(bare_bert_preset):
    message = (
        "RMTTextClassifierPreprocessor.from_preset needs a tokenizer, but "
        f"preset '{bare_bert_preset}' has no tokenizer.json"
    )
    with pytest.raises(ValueError, match=re.escape(message)):
        Preprocessor.from_preset(bare_bert_preset, segment_length=4)
