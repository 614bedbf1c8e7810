from .byte_rows import byte_rows


def python_docs(sequence_length, split="train", **options):
    """A real English text corpus that every Python installation ships.

    The Python Language Reference and library topics, as `pydoc` shows
    them (the standard library's `pydoc_data.topics`: about 0.47 MB of
    English technical prose), read as bytes (id = byte value + 1; 0 is
    padding) and cut into rows of `sequence_length` tokens by
    `tasks.byte_rows.byte_rows`, labels the next byte. Topics are joined in
    name order; the last tenth of the text is the `"validation"` split.
    Needs no download, so a language model can be trained and measured
    anywhere.

    Args:
        sequence_length: int. Tokens per row.
        split: `"train"` or `"validation"`. Defaults to `"train"`.
        **options: `validation_fraction`, `max_bytes` and `stride`, as
            `byte_rows` takes them.

    Returns:
        `(inputs, labels)`, as `byte_rows` returns them.

    Example:
    ```python
    from tasks.python_docs import python_docs

    inputs, labels = python_docs(64, split="validation")
    inputs["token_ids"].shape[1:]  # (64,)
    tuple(labels[0, :-1] - inputs["token_ids"][0, 1:])[:3]  # (0, 0, 0)
    ```
    """
    return byte_rows(_read_text, sequence_length, split, **options)


def _read_text():
    """The pydoc topics, in name order, joined by blank lines."""
    from pydoc_data.topics import topics

    return "\n\n".join(topics[name] for name in sorted(topics))
