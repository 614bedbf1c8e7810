"""Cutting token streams into aligned segments and putting outputs back."""

from keras import ops

ALIGNMENTS = ("left", "right")


def num_segments(length, segment_length):
    """Segments needed for `length` tokens: a Python int when it is known."""
    return (length + segment_length - 1) // segment_length


def row_offsets(padding_mask, segment_length, alignment):
    """Padding put before each row so that its segments line up.

    Left alignment puts none (the last segment is the short one). Right
    alignment shifts every row by its own amount so that its last real token
    ends a segment (the first segment is the short one); rows are expected to
    carry their padding at the end, as keras-hub preprocessors write it.
    """
    if alignment == "left":
        return None
    lengths = ops.sum(ops.cast(padding_mask != 0, "int32"), axis=1)
    return ops.mod(-lengths, segment_length)


def align(x, offsets, total_length, pad_value=0):
    """(batch, tokens) -> (batch, total_length), shifted right by `offsets`."""
    length = ops.shape(x)[1]
    if offsets is None:
        padding = ops.full(
            (ops.shape(x)[0], total_length - length), pad_value, x.dtype
        )
        return ops.concatenate([x, padding], axis=1)
    source = ops.arange(total_length, dtype="int32")[None] - offsets[:, None]
    inside = (source >= 0) & (source < length)
    gathered = ops.take_along_axis(x, ops.clip(source, 0, length - 1), axis=1)
    return ops.where(inside, gathered, ops.cast(pad_value, x.dtype))


def unalign(y, offsets, length):
    """(batch, total_length, hidden) -> (batch, length, hidden)."""
    if offsets is None:
        return y[:, :length]
    total_length = ops.shape(y)[1]
    source = ops.arange(length, dtype="int32")[None] + offsets[:, None]
    source = ops.clip(source, 0, total_length - 1)
    source = ops.broadcast_to(
        source[:, :, None], (ops.shape(y)[0], length, ops.shape(y)[2])
    )
    return ops.take_along_axis(y, source, axis=1)


def last_real_segments(aligned_padding_mask, segment_length):
    """Per row, the index of the last segment holding a real token.

    Read from the aligned mask, so it holds for any alignment and wherever
    the padding is; -1 for a row of padding only.
    """
    total = ops.shape(aligned_padding_mask)[1]
    positions = ops.arange(total, dtype="int32")[None]
    last = ops.max(ops.where(aligned_padding_mask != 0, positions, -1), axis=1)
    return ops.floor_divide(last, segment_length)
