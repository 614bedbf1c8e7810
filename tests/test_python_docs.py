from pydoc_data.topics import topics

import numpy as np
import pytest
from tasks.python_docs import python_docs

pytestmark = pytest.mark.backend_independent


def test_rows_are_the_text_bytes_and_labels_the_next_byte():
    inputs, labels = python_docs(100, split="train", max_bytes=1001)
    text = "\n\n".join(topics[name] for name in sorted(topics))
    expected = np.frombuffer(text.encode("utf-8")[:1001], "uint8") + 1
    assert inputs["token_ids"].shape == (10, 100)
    np.testing.assert_array_equal(inputs["token_ids"].ravel(), expected[:1000])
    np.testing.assert_array_equal(labels.ravel(), expected[1:1001])


def test_stride_gives_overlapping_rows():
    inputs, labels = python_docs(8, max_bytes=41, stride=4)
    plain, _ = python_docs(8, max_bytes=41)
    assert inputs["token_ids"].shape == (9, 8)  # starts 0, 4, ..., 32
    np.testing.assert_array_equal(inputs["token_ids"][::2], plain["token_ids"])
    np.testing.assert_array_equal(labels[1, :-1], inputs["token_ids"][1, 1:])


def test_validation_is_the_held_out_end():
    train, _ = python_docs(64, split="train")
    held_out, _ = python_docs(64, split="validation")
    total = sum(len(t.encode("utf-8")) for t in topics.values())
    total += 2 * (len(topics) - 1)
    assert len(train["token_ids"]) == (int(total * 0.9) - 1) // 64
    assert len(held_out["token_ids"]) == (total - int(total * 0.9) - 1) // 64


def test_bad_split_is_named():
    with pytest.raises(ValueError, match="Received: split='test'"):
        python_docs(8, split="test")


@pytest.mark.parametrize(
    "argument, value",
    [("stride", 0), ("stride", -4), ("validation_fraction", 1.0)],
)
def test_bad_stride_or_fraction_is_named(argument, value):
    with pytest.raises(ValueError, match=f"Received: {argument}={value}"):
        python_docs(8, **{argument: value})
