import numpy as np
import pytest
from tasks.facts_in_noise import VOCABULARY, facts_in_noise

pytestmark = pytest.mark.backend_independent

WORDS = VOCABULARY


def _answer_by_reading(words):
    """Where the person asked about went last, read from the words."""
    asked = words[-2]
    last = None
    for i in range(len(words) - 4):
        if words[i] == asked and words[i + 1 : i + 4] == ["went", "to", "the"]:
            last = words[i + 4]
    return last


def test_answer_is_where_the_person_asked_about_went_last():
    inputs, labels, weight = facts_in_noise(
        40, num_segments=3, segment_length=16, num_facts=4, num_people=3
    )
    assert inputs["token_ids"].shape == (40, 48)
    for ids, label in zip(inputs["token_ids"], labels[:, -1]):
        words = [WORDS[i] for i in ids]
        assert words[-4:-2] == ["where", "is"] and words[-1] == "?"
        assert words.count("went") == 4
        assert WORDS[label] == _answer_by_reading(words)
    np.testing.assert_array_equal(weight[:, -1], 1)
    assert weight.sum() == 40


def test_noise_never_uses_fact_words():
    inputs, _, _ = facts_in_noise(20, num_segments=8, num_facts=1)
    words = [WORDS[i] for i in inputs["token_ids"].ravel()]
    assert words.count("went") == 20
    assert words.count("the") == 20


def test_too_short_for_the_facts_is_named():
    with pytest.raises(
        ValueError,
        match=r"3 facts and the question need 22 words, more than the row's "
        r"num_segments \* segment_length = 16",
    ):
        facts_in_noise(1, num_segments=1, segment_length=16)
