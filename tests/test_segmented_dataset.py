import numpy as np
import pytest
from conftest import build_optimizer, make_rmt, make_rmt_backbone, numpy

import keras_rmt
from keras_rmt.datasets import SegmentedDataset


def _make_batch(batch_size, num_segments, rng):
    length = 4 * num_segments
    token_ids = rng.integers(3, 64, (batch_size, length)).astype("int32")
    inputs = {"token_ids": token_ids, "padding_mask": np.ones_like(token_ids)}
    return inputs, token_ids + 1


@pytest.mark.backend_independent
def test_num_segments_sets_the_width_of_the_next_batches():
    data = SegmentedDataset(
        _make_batch, batch_size=2, num_batches=3, segment_length=4
    )
    assert data[0][0]["token_ids"].shape == (2, 4)
    data.num_segments = 3
    assert data[0][0]["token_ids"].shape == (2, 12)
    assert len(data) == data.num_batches == 3


@pytest.mark.backend_independent
def test_batches_repeat_for_a_seed_and_change_between_epochs():
    data = SegmentedDataset(_make_batch, 2, 3, segment_length=4, seed=5)
    first = data[1][0]["token_ids"]
    np.testing.assert_array_equal(first, data[1][0]["token_ids"])
    data.on_epoch_end()
    assert not np.array_equal(first, data[1][0]["token_ids"])


@pytest.mark.backend_independent
def test_vary_n_segments_draws_each_batch_from_one_to_num_segments():
    data = SegmentedDataset(
        _make_batch, 2, 40, segment_length=4, num_segments=3,
        vary_n_segments=True,
    )  # fmt: skip
    widths = {data[i][0]["token_ids"].shape[1] for i in range(40)}
    assert widths == {4, 8, 12}


@pytest.mark.backend_independent
def test_pad_to_pads_whole_segments_at_the_end_with_zero_weight():
    data = SegmentedDataset(_make_batch, 2, 1, segment_length=4, pad_to=3)
    inputs, labels, weight = data[0]
    assert inputs["token_ids"].shape == labels.shape == weight.shape == (2, 12)
    np.testing.assert_array_equal(inputs["padding_mask"][:, :4], 1)
    np.testing.assert_array_equal(inputs["padding_mask"][:, 4:], 0)
    np.testing.assert_array_equal(inputs["token_ids"][:, 4:], 0)
    np.testing.assert_array_equal(weight, inputs["padding_mask"])
    np.testing.assert_array_equal(labels[:, :4], inputs["token_ids"][:, :4] + 1)


def test_padding_segments_leave_rmt_outputs_unchanged():
    rmt = make_rmt("gpt2", segment_length=4)
    padded = SegmentedDataset(
        _make_batch, 2, 1, segment_length=4, num_segments=2, pad_to=4
    )
    plain = SegmentedDataset(
        _make_batch, 2, 1, segment_length=4, num_segments=2
    )
    padded_out = numpy(rmt(padded[0][0]))
    plain_out = numpy(rmt(plain[0][0]))
    np.testing.assert_allclose(
        padded_out["sequence_output"][:, :8],
        plain_out["sequence_output"],
        atol=1e-5,
    )
    np.testing.assert_allclose(
        padded_out["memory"], plain_out["memory"], atol=1e-5
    )


@pytest.mark.backend_independent
def test_bad_arguments_are_named():
    with pytest.raises(
        ValueError,
        match="`batch_size` must be a positive integer. Received: batch_size=0",
    ):
        SegmentedDataset(_make_batch, 0, 1, segment_length=4)
    data = SegmentedDataset(_make_batch, 1, 1, segment_length=4, pad_to=2)
    with pytest.raises(
        ValueError,
        match="`num_segments` must be at most pad_to=2. "
        "Received: num_segments=3",
    ):
        data.num_segments = 3


def _padded_and_plain(make_batch, num_segments=2, pad_to=4):
    """The same batch from a `pad_to` dataset and from one without."""
    padded = SegmentedDataset(
        make_batch, 2, 1, segment_length=4, num_segments=num_segments,
        pad_to=pad_to,
    )  # fmt: skip
    plain = SegmentedDataset(
        make_batch, 2, 1, segment_length=4, num_segments=num_segments
    )
    return padded[0], plain[0]


@pytest.fixture(scope="module", params=["bert", "gpt2"])
def classifier(request):
    return keras_rmt.models.RMTTextClassifier(
        make_rmt_backbone(request.param), num_classes=3
    )


def test_classifier_reads_each_padded_row_as_that_row_alone(classifier):
    (padded, _, _), (plain, _) = _padded_and_plain(_make_batch)
    assert padded["token_ids"].shape == (2, 16)
    got = numpy(classifier(padded))
    for row in range(2):
        alone = {name: value[row : row + 1] for name, value in plain.items()}
        np.testing.assert_allclose(
            got[row], numpy(classifier(alone))[0], atol=1e-5
        )
    # Each row its own logits, not one padding segment's for all.
    assert np.abs(got[0] - got[1]).max() > 1e-4


def _cross_entropy(logits, labels):
    logits = logits - logits.max(-1, keepdims=True)
    log_probs = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    return -np.take_along_axis(log_probs, labels[..., None], -1)[..., 0]


def test_segment_losses_name_each_rows_real_segments_under_pad_to():
    (inputs, labels, weight), (_, plain_labels) = _padded_and_plain(
        _make_batch, num_segments=2, pad_to=4
    )
    # Logits that depend on the position's own label only.
    logits = np.eye(65, dtype="float32")[labels % 65] * 3.0
    metric = keras_rmt.metrics.SegmentLosses(segment_length=4, num_segments=4)
    metric.update_state(labels, logits, weight)
    result = numpy(metric.result())
    plain_logits = np.eye(65, dtype="float32")[plain_labels % 65] * 3.0
    losses = _cross_entropy(plain_logits, plain_labels)
    for segment in range(2):
        np.testing.assert_allclose(
            result[f"segment_{segment + 1}_loss"],
            losses[:, segment * 4 : (segment + 1) * 4].mean(),
            rtol=1e-5,
        )
    assert np.isnan(result["segment_3_loss"])
    assert np.isnan(result["segment_4_loss"])


def _classification_batch(batch_size, num_segments, rng):
    inputs, _ = _make_batch(batch_size, num_segments, rng)
    return inputs, inputs["token_ids"][:, 0] % 2


def _assert_fits_on_growing_segments(task, make_batch):
    """The task trains on a `SegmentedDataset` the curriculum grows."""
    data = SegmentedDataset(make_batch, 2, 2, segment_length=4, pad_to=2)
    curriculum = keras_rmt.callbacks.SegmentCurriculum(
        data, max_segments=2, schedule=[1, 2]
    )
    task.compile(optimizer="adam")
    build_optimizer(task)
    history = task.fit(data, epochs=2, callbacks=[curriculum], verbose=0)
    assert history.history["num_segments"] == [1, 2]
    assert np.isfinite(history.history["loss"]).all()


def test_classifier_fits_on_a_growing_segmented_dataset(classifier):
    _assert_fits_on_growing_segments(classifier, _classification_batch)


def _next_token_batch(batch_size, num_segments, rng):
    inputs, labels = _make_batch(batch_size, num_segments, rng)
    return inputs, labels % 64  # within the tiny vocabulary


def test_causal_lm_fits_on_a_growing_segmented_dataset():
    causal_lm = keras_rmt.models.RMTCausalLM(make_rmt_backbone("gpt2"))
    _assert_fits_on_growing_segments(causal_lm, _next_token_batch)
