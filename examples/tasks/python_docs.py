from .byte_rows import byte_rows


def python_docs(
    sequence_length,
    split="train",
    validation_fraction=0.1,
    max_bytes=None,
    stride=None,
):
    """A real English text corpus that every Python installation ships.

    The Python Language Reference and library topics, as `pydoc` shows
    them (the standard library's `pydoc_data.topics`: about 0.47 MB of
    English technical prose), read as bytes (id = byte value + 1; 0 is
    padding) and cut into rows of `sequence_length` tokens, labels the next
    byte, one row every `stride` bytes (by default, rows do not overlap).
    Topics are joined in name order; the last `validation_fraction` of the
    text is the `"validation"` split. Needs no download, so a language
    model can be trained and measured anywhere.

    Args:
        sequence_length: int. Tokens per row.
        split: `"train"` or `"validation"`. Defaults to `"train"`.
        validation_fraction: float. Share of the text held out. Defaults to
            `0.1`.
        max_bytes: int or None. Use at most this many bytes of the split.
            Defaults to `None`: all of it.
        stride: int or None. Bytes between the starts of two rows; less
            than `sequence_length` gives overlapping rows (more rows to
            train on). Defaults to `None`: `sequence_length`.

    Returns:
        `(inputs, labels)`: a dict with `"token_ids"` and `"padding_mask"`
        (int32, `(rows, sequence_length)`) and next-byte labels (int32,
        same shape).

    Example:
    ```python
    from tasks.python_docs import python_docs

    inputs, labels = python_docs(64, split="validation")
    inputs["token_ids"].shape[1:]  # (64,)
    tuple(labels[0, :-1] - inputs["token_ids"][0, 1:])[:3]  # (0, 0, 0)
    ```
    """
    return byte_rows(
        _read_text,
        sequence_length,
        split,
        validation_fraction,
        max_bytes,
        stride,
    )


def _read_text():
    """The pydoc topics, in name order, joined by blank lines."""
    from pydoc_data.topics import topics

    return "\n\n".join(topics[name] for name in sorted(topics))
