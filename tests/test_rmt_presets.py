import keras
import numpy as np
import pytest
from conftest import make_rmt_backbone, numpy, random_batch, save_local_preset
from test_case import one_train_step

import keras_rmt


@pytest.fixture(scope="module")
def causal_lm_preset(tmp_path_factory, wordpiece_tokenizer):
    """A pretrained RMT language model saved as a preset, and the model.

    WordPiece: a byte-pair tokenizer's tf.data map costs 7 CPU s a dataset.
    """
    causal_lm = keras_rmt.models.RMTCausalLM(
        make_rmt_backbone("gpt2"),
        preprocessor=keras_rmt.models.RMTCausalLMPreprocessor(
            wordpiece_tokenizer, segment_length=4
        ),
    )
    preset = str(tmp_path_factory.mktemp("rmt_causal_lm"))
    causal_lm.save_to_preset(preset)
    return preset, causal_lm


def test_classifier_from_a_causal_lm_preset_keeps_backbone_and_memory(
    causal_lm_preset,
):
    preset, causal_lm = causal_lm_preset
    classifier = keras_rmt.models.RMTTextClassifier.from_preset(
        preset, num_classes=2
    )
    backbone = classifier.backbone
    assert isinstance(backbone, keras_rmt.models.RMTBackbone)
    for got, expected in zip(backbone.weights, causal_lm.backbone.weights):
        assert got.path == expected.path
        np.testing.assert_array_equal(numpy(got), numpy(expected))
    assert backbone.memory.memory.path in [w.path for w in backbone.weights]
    preprocessor = classifier.preprocessor
    assert isinstance(
        preprocessor, keras_rmt.models.RMTTextClassifierPreprocessor
    )
    assert preprocessor.segment_length == 4
    assert preprocessor.memory_layout == "decoder"
    texts = ["the quick brown fox jumps over the lazy dog", "the dog"]
    assert classifier.predict(texts, verbose=0).shape == (2, 2)
    one_train_step(classifier, texts, np.array([0, 1]))


@pytest.mark.backend_independent
def test_preprocessors_load_the_tokenizer_and_segments_of_an_rmt_preset(
    causal_lm_preset, tmp_path, wordpiece_tokenizer
):
    causal_lm_preset, _ = causal_lm_preset
    # An RMTBackbone alone, segments of 6, with a tokenizer saved beside it.
    backbone_preset = str(tmp_path)
    make_rmt_backbone("gpt2", segment_length=6).save_to_preset(backbone_preset)
    wordpiece_tokenizer.save_to_preset(backbone_preset)
    texts = ["the quick brown fox jumps over the lazy dog", "the dog"]
    # A classifier's layout is the one its GPT-2 RMT backbone saved, not a
    # guess from the WordPiece tokenizer.
    for preset, segment_length in ((causal_lm_preset, 4), (backbone_preset, 6)):
        for cls, options in (
            (keras_rmt.models.RMTCausalLMPreprocessor, {}),
            (
                keras_rmt.models.RMTTextClassifierPreprocessor,
                {"memory_layout": "decoder"},
            ),
        ):
            loaded = cls.from_preset(preset)
            assert loaded.segment_length == segment_length
            for name, value in options.items():
                assert getattr(loaded, name) == value
            assert type(loaded.tokenizer) is type(wordpiece_tokenizer)
            assert loaded.tokenizer(texts) == wordpiece_tokenizer(texts)
            # The same segments as a preprocessor on the tokenizer itself.
            expected = cls(
                wordpiece_tokenizer, segment_length=segment_length, **options
            )(texts)
            for got, want in zip(
                keras.tree.flatten(loaded(texts)),
                keras.tree.flatten(expected),
            ):
                np.testing.assert_array_equal(np.asarray(got), np.asarray(want))


def test_rmt_preset_takes_a_new_segment_loop_only(causal_lm_preset):
    preset, causal_lm = causal_lm_preset
    restored = keras_rmt.models.RMTCausalLM.from_preset(
        preset, segment_loop="unrolled"
    )
    assert restored.backbone.recurrent_segments.segment_loop == "unrolled"
    batch = random_batch(2, 12, lengths=[12, 7])
    np.testing.assert_allclose(
        numpy(restored(batch)), numpy(causal_lm(batch)), atol=1e-5
    )
    with pytest.raises(
        ValueError,
        match=r"cannot be given again \(only \['segment_loop', 'scan_unroll', "
        r"'remat'\] "
        r"can\). Received: \{'segment_length': 8\}",
    ):
        keras_rmt.models.RMTCausalLM.from_preset(preset, segment_length=8)


def test_plain_preset_without_rmt_arguments_names_the_missing_ones(
    tmp_path, gpt2_tokenizer
):
    preset = save_local_preset(tmp_path / "gpt2", "gpt2", gpt2_tokenizer)
    with pytest.raises(
        ValueError,
        match=r"RMTCausalLM.from_preset\(.*\): the preset holds a plain "
        r"keras-hub backbone.*pass num_memory_tokens and segment_length .*"
        r"Received RMT arguments: \{\}",
    ):
        keras_rmt.models.RMTCausalLM.from_preset(preset)
    with pytest.raises(
        ValueError,
        match=r"pass segment_length .*"
        r"Received RMT arguments: \{'num_memory_tokens': 2\}",
    ):
        keras_rmt.models.RMTTextClassifier.from_preset(
            preset, num_classes=2, num_memory_tokens=2
        )
    # segment_loop and remat reach the backbone built from a plain preset.
    causal_lm = keras_rmt.models.RMTCausalLM.from_preset(
        preset, num_memory_tokens=2, segment_length=4, segment_loop="unrolled"
    )
    assert causal_lm.backbone.segment_loop == "unrolled"
    assert keras.saving.get_registered_name(type(causal_lm)).startswith(
        "keras_rmt"
    )
