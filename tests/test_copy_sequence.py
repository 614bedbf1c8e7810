import numpy as np
import pytest
from tasks.copy_sequence import copy_sequence

pytestmark = pytest.mark.backend_independent


def test_target_is_the_source_repeated_after_the_separator():
    inputs, labels, weight = copy_sequence(
        5, source_length=4, target_length=10, seed=3
    )
    ids = inputs["token_ids"]
    row = np.concatenate([ids, labels[:, -1:]], axis=1)
    source = row[:, :4]
    np.testing.assert_array_equal(row[:, 4], 1)
    np.testing.assert_array_equal(row[:, 5:], np.tile(source, 3)[:, :10])
    np.testing.assert_array_equal(labels[:, :-1], ids[:, 1:])
    np.testing.assert_array_equal(weight.sum(axis=1), 10)
    np.testing.assert_array_equal(weight[:, 4:], 1)
    assert ids.shape == (5, 14)
    assert ids[:, :4].min() >= 2 and ids[:, :4].max() < 12


def test_reverse_writes_the_source_backwards_and_seeds_repeat():
    inputs, labels, _ = copy_sequence(
        3, source_length=5, target_length=5, reverse=True, seed=1
    )
    np.testing.assert_array_equal(labels[:, 5:], inputs["token_ids"][:, 4::-1])
    again, _, _ = copy_sequence(
        3, source_length=5, target_length=5, reverse=True, seed=1
    )
    np.testing.assert_array_equal(again["token_ids"], inputs["token_ids"])


def test_bad_length_is_named():
    with pytest.raises(
        ValueError,
        match="`source_length` must be a positive integer. "
        "Received: source_length=0",
    ):
        copy_sequence(2, source_length=0)
