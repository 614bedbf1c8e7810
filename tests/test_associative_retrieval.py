import numpy as np
import pytest
from tasks.associative_retrieval import associative_retrieval

pytestmark = pytest.mark.backend_independent


def test_answer_is_the_value_paired_with_the_asked_key():
    inputs, labels, weight = associative_retrieval(
        50, num_pairs=4, num_keys=6, num_values=3, seed=0
    )
    ids = inputs["token_ids"]
    assert ids.shape == (50, 10)
    np.testing.assert_array_equal(ids[:, 8], 1)
    for row, answer in zip(ids, labels[:, -1]):
        pairs = dict(zip(row[0:8:2].tolist(), row[1:8:2].tolist()))
        assert len(pairs) == 4  # keys are distinct
        assert pairs[int(row[9])] == answer
        assert all(2 <= k < 8 for k in pairs)
        assert all(8 <= v < 11 for v in pairs.values())
    np.testing.assert_array_equal(weight[:, :-1], 0)
    np.testing.assert_array_equal(weight[:, -1], 1)


def test_too_few_keys_is_named():
    with pytest.raises(
        ValueError,
        match="Received: num_keys=3, num_pairs=4",
    ):
        associative_retrieval(2, num_pairs=4, num_keys=3)
