"""Cuts a text into next-byte rows: the shared core of the text corpora."""

import numpy as np

from .checks import check_positive_integer, check_split

VOCABULARY_SIZE = 257  # byte values + 1; 0 is padding


def byte_rows(
    read_text,
    sequence_length,
    split="train",
    validation_fraction=0.1,
    max_bytes=None,
    stride=None,
):
    """Rows of byte ids (byte value + 1; 0 is padding) and next-byte labels.

    The shared core of the text corpora (`tasks.bbc_news`,
    `tasks.python_docs`): `read_text()` gives the corpus; it is called once
    the arguments are checked, so a bad argument fails before any reading.
    The last `validation_fraction` of its UTF-8 bytes is the `"validation"`
    split, the rest the `"train"` split. A row starts every `stride` bytes;
    bytes after the last whole row are left out.

    Args:
        read_text: callable. Returns the corpus as a string.
        sequence_length: int. Tokens per row.
        split: `"train"` or `"validation"`. Defaults to `"train"`.
        validation_fraction: float. Share of the bytes held out. Defaults
            to `0.1`.
        max_bytes: int or None. Use at most this many bytes of the split.
            Defaults to `None`: all of it.
        stride: int or None. Bytes between the starts of two rows; less
            than `sequence_length` gives overlapping rows (more rows to
            train on). Defaults to `None`: `sequence_length`, rows that do
            not overlap.

    Returns:
        `(inputs, labels)`: a dict with `"token_ids"` and `"padding_mask"`
        (int32, `(rows, sequence_length)`) and next-byte labels (int32,
        same shape).
    """
    check_split(split, validation_fraction)
    check_positive_integer("sequence_length", sequence_length)
    if not 0 < validation_fraction < 1:
        raise ValueError(
            "`validation_fraction` must be between 0 and 1. "
            f"Received: validation_fraction={validation_fraction!r}"
        )
    check_positive_integer("stride", stride, allow_none=True)
    text = read_text()
    data = np.frombuffer(text.encode("utf-8"), "uint8").astype("int32") + 1
    held_out = int(len(data) * (1 - validation_fraction))
    data = data[:held_out] if split == "train" else data[held_out:]
    if max_bytes is not None:
        data = data[:max_bytes]
    if len(data) - 1 < sequence_length:
        raise ValueError(
            f"The {split} split ({len(data)} bytes) is shorter than one row. "
            f"Received: sequence_length={sequence_length}"
        )
    stride = stride or sequence_length
    rows = (len(data) - 1 - sequence_length) // stride + 1
    starts = np.arange(rows)[:, None] * stride
    positions = starts + np.arange(sequence_length)[None]
    token_ids, labels = data[positions], data[positions + 1]
    inputs = {"token_ids": token_ids, "padding_mask": np.ones_like(token_ids)}
    return inputs, labels
