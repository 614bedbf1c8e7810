import numpy as np
import pytest

from keras_rmt.datasets import vary_n_segments

pytestmark = pytest.mark.backend_independent


def _batch(length=10):
    token_ids = np.arange(2 * length, dtype="int32").reshape(2, length) + 1
    inputs = {"token_ids": token_ids, "padding_mask": np.ones_like(token_ids)}
    labels = token_ids + 100
    weight = np.linspace(0, 1, 2 * length).reshape(2, length)
    return inputs, labels, weight


def test_keeps_whole_segments_from_the_end_with_exact_lengths_for_a_seed():
    # 10 tokens in segments of 4 are 3 segments, counted from the end
    # (2, 4, 4 tokens): keeping k of them keeps 4, 8 or 10 tokens.
    rng = np.random.default_rng(0)
    inputs, labels, weight = _batch()
    lengths = []
    for _ in range(6):
        short, short_labels, short_weight = vary_n_segments(
            (inputs, labels, weight), segment_length=4, rng=rng
        )
        kept = short["token_ids"].shape[1]
        lengths.append(kept)
        np.testing.assert_array_equal(
            short["token_ids"], inputs["token_ids"][:, -kept:]
        )
        np.testing.assert_array_equal(short_labels, labels[:, -kept:])
        np.testing.assert_array_equal(short_weight, weight[:, -kept:])
    # np.random.default_rng(0).integers(1, 4) draws 3, 2, 2, 1, 1, 1.
    assert lengths == [10, 8, 8, 4, 4, 4]


def test_same_seed_same_cut_and_row_labels_are_kept_whole():
    inputs, _, _ = _batch(12)
    row_labels = np.array([5, 7])
    first, first_labels = vary_n_segments((inputs, row_labels), 4, rng=3)
    again, _ = vary_n_segments((inputs, row_labels), 4, rng=3)
    # np.random.default_rng(3).integers(1, 4) draws 3 first: all 12 tokens.
    assert first["token_ids"].shape == (2, 12)
    np.testing.assert_array_equal(first["token_ids"], again["token_ids"])
    np.testing.assert_array_equal(first_labels, row_labels)


def test_min_segments_bounds_the_cut_and_inputs_alone_work():
    inputs, _, _ = _batch()
    lengths = {
        vary_n_segments(inputs, 4, rng=seed, min_segments=3)["token_ids"].shape[
            1
        ]
        for seed in range(10)
    }
    assert lengths == {10}


def test_bad_arguments_are_named():
    inputs, _, _ = _batch()
    with pytest.raises(
        ValueError,
        match=r"`min_segments` must be an integer from 1 to the batch's 3 "
        r"segments. Received: min_segments=4",
    ):
        vary_n_segments(inputs, 4, min_segments=4)
    with pytest.raises(
        ValueError,
        match="`segment_length` must be a positive integer. "
        "Received: segment_length=0",
    ):
        vary_n_segments(inputs, 0)
