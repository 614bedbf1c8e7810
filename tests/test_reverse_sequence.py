import numpy as np
import pytest
from tasks.copy_sequence import copy_sequence
from tasks.reverse_sequence import reverse_sequence

pytestmark = pytest.mark.backend_independent


def test_equals_copy_sequence_reversed_with_a_target_as_long_as_the_source():
    got = reverse_sequence(4, source_length=6, num_symbols=5, seed=2)
    expected = copy_sequence(
        4, source_length=6, target_length=6, num_symbols=5, reverse=True,
        seed=2,
    )  # fmt: skip
    for a, b in zip(got[1:], expected[1:]):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(got[0]["token_ids"], expected[0]["token_ids"])
    assert got[0]["token_ids"].shape == (4, 12)
