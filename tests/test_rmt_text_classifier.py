import shutil

import keras
import keras_hub
import numpy as np
import pytest
from conftest import (
    backbone_inputs,
    build_optimizer,
    jitted_on_jax,
    make_backbone,
    make_rmt_backbone,
    numpy,
    random_batch,
    save_local_preset,
    wrap_rmt_backbone,
)
from tasks.first_token_recall import first_token_recall
from test_case import run_task_test

import keras_rmt

LENGTHS = [11, 6]


def _classifier(family, num_classes=3, backbone_kwargs=None, **kwargs):
    backbone = make_rmt_backbone(family, **(backbone_kwargs or {}))
    return keras_rmt.models.RMTTextClassifier(
        backbone, num_classes=num_classes, **kwargs
    )


def _dense(layer, x):
    kernel, bias = (numpy(w) for w in layer.weights)
    return x @ kernel + bias


@pytest.mark.parametrize(
    "family, alignment, positions",
    [
        # [CLS] of each row's last segment: 11 tokens -> segment 3 starts at
        # 8; 6 tokens -> segment 2 starts at 4.
        ("bert", "left", [8, 4]),
        # Last real token, wherever the segments are cut.
        ("gpt2", "left", [10, 5]),
        ("gpt2", "right", [10, 5]),
    ],
)
def test_logits_read_each_rows_last_segment(family, alignment, positions):
    classifier = _classifier(family, backbone_kwargs={"alignment": alignment})
    batch = backbone_inputs(random_batch(2, 11, lengths=LENGTHS), family)
    hidden = numpy(classifier.backbone(batch)["sequence_output"])
    features = hidden[[0, 1], positions]
    if family == "bert":
        features = np.tanh(_dense(classifier.pooler, features))
    else:
        assert classifier.pooler is None
    expected = _dense(classifier.output_dense, features)
    np.testing.assert_allclose(
        classifier.predict(batch, verbose=0), expected, atol=1e-5
    )


def _log_softmax(logits):
    logits = logits - logits.max(-1, keepdims=True)
    return logits - np.log(np.exp(logits).sum(-1, keepdims=True))


def test_mean_segment_loss_averages_segments_that_hold_tokens():
    classifier = _classifier("bert", segment_loss="mean")
    batch = backbone_inputs(random_batch(2, 11, lengths=LENGTHS), "bert")
    labels = np.array([2, 0], "int32")
    # Each call once (op by op on JAX, each costs): no dropout, so a
    # second call would give the same logits.
    training_logits = classifier(batch, training=True)
    segment_logits = numpy(training_logits)
    assert segment_logits.shape == (2, 3, 3)
    np.testing.assert_allclose(
        segment_logits[[0, 1], [2, 1]],
        numpy(classifier(batch)),
        atol=1e-6,
    )
    losses = -_log_softmax(segment_logits)[[0, 1], :, labels]
    # The 6-token row holds tokens in its first two segments only.
    expected = (losses[0].mean() + losses[1, :2].mean()) / 2
    got = classifier.compute_loss(batch, labels, training_logits)
    np.testing.assert_allclose(numpy(got), expected, rtol=1e-5)

    last = _classifier("bert")
    training_logits = last(batch, training=True)
    last_logits = numpy(training_logits)
    assert last_logits.shape == (2, 3)
    expected = -_log_softmax(last_logits)[[0, 1], labels].mean()
    got = last.compute_loss(batch, labels, training_logits)
    np.testing.assert_allclose(numpy(got), expected, rtol=1e-5)


@pytest.mark.parametrize(
    "segment_loss",
    [
        # The task's compiled fit, evaluate and predict on TensorFlow.
        pytest.param("last", marks=pytest.mark.compiled),
        "mean",
    ],
)
def test_fit_lowers_the_loss_and_evaluate_reports_the_last_segment(
    segment_loss,
):
    # Two segments (one traced copy of the backbone fewer than three, on
    # TensorFlow compiled three times): "last" and "mean" still differ.
    inputs, labels = first_token_recall(32, num_segments=2, num_keys=4, seed=0)
    # One block: the loss and the segment it reads do not depend on depth.
    classifier = keras_rmt.models.RMTTextClassifier(
        wrap_rmt_backbone(make_backbone("gpt2", num_layers=1)),
        num_classes=4,
        segment_loss=segment_loss,
    )
    classifier.compile(optimizer=keras.optimizers.Adam(1e-2))
    build_optimizer(classifier, (inputs, labels))
    history = classifier.fit(
        inputs, labels, batch_size=16, epochs=3, verbose=0
    ).history
    assert history["loss"][-1] < history["loss"][0]
    logs = classifier.evaluate(inputs, labels, return_dict=True, verbose=0)
    predictions = classifier.predict(inputs, verbose=0)
    expected = -_log_softmax(predictions)[np.arange(32), labels].mean()
    np.testing.assert_allclose(logs["loss"], expected, rtol=1e-4)
    np.testing.assert_allclose(
        logs["sparse_categorical_accuracy"],
        (predictions.argmax(-1) == labels).mean(),
    )


def test_serializes_reloads_with_identical_outputs_and_trains(tmp_path):
    classifier = _classifier("bert", segment_loss="mean", dropout=0.1)
    batch = backbone_inputs(random_batch(2, 11, lengths=LENGTHS), "bert")
    restored = run_task_test(
        classifier, (batch, np.array([2, 0])), (2, 3), tmp_path
    )
    assert restored.segment_loss == "mean"


def _bert_tokenizer():
    vocabulary = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "b"]
    return keras_hub.models.BertTokenizer(vocabulary=vocabulary)


def test_from_keras_hub_preset_and_preset_round_trip(
    tmp_path, bare_bert_preset
):
    # The session's preset folder holds make_backbone("bert")'s weights.
    shutil.copytree(bare_bert_preset, tmp_path / "bert")
    bert = make_backbone("bert")
    _bert_tokenizer().save_to_preset(tmp_path / "bert")
    classifier = keras_rmt.models.RMTTextClassifier.from_preset(
        str(tmp_path / "bert"),
        num_classes=2,
        num_memory_tokens=2,
        segment_length=4,
    )
    assert classifier.backbone.memory_layout == "encoder"
    inner = classifier.backbone.backbone
    for got, expected in zip(inner.weights, bert.weights):
        np.testing.assert_array_equal(numpy(got), numpy(expected))
    classifier.save_to_preset(tmp_path / "rmt")
    restored = keras_rmt.models.RMTTextClassifier.from_preset(
        str(tmp_path / "rmt")
    )
    # Token ids straight into the model: its preprocessor takes strings.
    batch = backbone_inputs(random_batch(2, 11, lengths=LENGTHS), "bert")
    np.testing.assert_array_equal(
        numpy(restored(batch)), numpy(classifier(batch))
    )
    # A new head: the backbone and memory are kept, the head is drawn anew.
    new_head = keras_rmt.models.RMTTextClassifier.from_preset(
        str(tmp_path / "rmt"), num_classes=5
    )
    assert numpy(new_head(batch)).shape == (2, 5)
    np.testing.assert_array_equal(
        numpy(new_head.backbone.memory.memory),
        numpy(classifier.backbone.memory.memory),
    )


def test_bad_configurations_are_refused(bare_bert_preset):
    with pytest.raises(ValueError, match="alignment='left'"):
        _classifier("bert", backbone_kwargs={"alignment": "right"})
    with pytest.raises(ValueError, match="segment_loss='sum'"):
        _classifier("gpt2", segment_loss="sum")
    with pytest.raises(ValueError, match="num_classes=0"):
        _classifier("gpt2", num_classes=0)
    with pytest.raises(ValueError, match="has no tokenizer"):
        keras_rmt.models.RMTTextClassifier.from_preset(
            bare_bert_preset,
            num_classes=2,
            num_memory_tokens=2,
            segment_length=4,
        )


WORDS = ["the", "fox", "dog", "quick", "brown", "lazy", "over"]


def test_fit_predict_evaluate_from_raw_strings(tmp_path, wordpiece_tokenizer):
    # The class is the first word; it sits in the first of three segments.
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, 16)
    texts = [
        " ".join([WORDS[label]] + list(rng.choice(WORDS[3:], 7)))
        for label in labels
    ]
    # One block: what the test checks does not depend on depth.
    preset = save_local_preset(
        tmp_path / "bert", "bert", wordpiece_tokenizer, num_layers=1
    )
    classifier = keras_rmt.models.RMTTextClassifier.from_preset(
        preset, num_classes=3, num_memory_tokens=2, segment_length=5
    )
    preprocessor = classifier.preprocessor
    assert isinstance(
        preprocessor, keras_rmt.models.RMTTextClassifierPreprocessor
    )
    assert preprocessor.memory_layout == "encoder"
    x, _ = preprocessor(texts[:1], labels[:1])
    assert numpy(x["token_ids"]).shape == (1, 15)
    classifier.compile(optimizer=keras.optimizers.Adam(1e-2))
    build_optimizer(classifier)
    # Two epochs: each costs seconds (eagerly on TensorFlow, 4 CPU s).
    history = classifier.fit(texts, labels, batch_size=8, epochs=2, verbose=0)
    assert history.history["loss"][-1] < history.history["loss"][0]

    predictions = classifier.predict(texts, batch_size=16, verbose=0)
    x, _ = preprocessor(texts, labels)
    # The call on the token ids, in one compiled call on JAX (op by op,
    # it costs more).
    np.testing.assert_allclose(
        predictions,
        numpy(jitted_on_jax(classifier, classifier)(numpy(x))),
        atol=1e-5,
    )
    logs = classifier.evaluate(
        texts, labels, batch_size=16, return_dict=True, verbose=0
    )
    expected = -_log_softmax(predictions)[np.arange(16), labels].mean()
    np.testing.assert_allclose(logs["loss"], expected, rtol=1e-4)

    classifier.save_to_preset(tmp_path / "rmt")
    restored = keras_rmt.models.RMTTextClassifier.from_preset(
        str(tmp_path / "rmt")
    )
    np.testing.assert_array_equal(
        restored.predict(texts, batch_size=16, verbose=0), predictions
    )
