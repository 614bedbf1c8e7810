"""Packing token ids into whole segments, in NumPy or in TensorFlow.

Preprocessors run eagerly on Python lists (NumPy) and inside `tf.data`
graphs (TensorFlow, whatever the Keras backend). The same index arithmetic
serves both: every function takes `xp`, a `NumpyOps` or `TFOps`, and rows as
a dense `(batch, width)` id array with a `(batch,)` array of lengths.
"""

import numpy as np

TRUNCATIONS = ("error", "keep_first", "keep_last")


class NumpyOps:
    """The few array operations the packers need, on NumPy arrays."""

    def arange(self, n):
        return np.arange(n, dtype="int32")

    def minimum(self, a, b):
        return np.minimum(a, b)

    def maximum(self, a, b):
        return np.maximum(a, b)

    def clip(self, x, low, high):
        return np.clip(x, low, high)

    def where(self, condition, a, b):
        return np.where(condition, a, b).astype("int32")

    def take(self, values, indices):
        return np.take(np.asarray(values, "int32"), indices)

    def take_along_rows(self, x, indices):
        return np.take_along_axis(x, indices, axis=1)

    def max(self, x):
        return np.max(x)

    def width(self, x):
        return x.shape[1]


class TFOps:
    """The same operations on TensorFlow tensors, for `tf.data` graphs."""

    def __init__(self):
        import tensorflow as tf

        self.tf = tf

    def arange(self, n):
        return self.tf.range(n, dtype="int32")

    def minimum(self, a, b):
        return self.tf.minimum(a, b)

    def maximum(self, a, b):
        return self.tf.maximum(a, b)

    def clip(self, x, low, high):
        return self.tf.clip_by_value(x, low, high)

    def where(self, condition, a, b):
        return self.tf.where(condition, a, b)

    def take(self, values, indices):
        return self.tf.gather(self.tf.constant(values, "int32"), indices)

    def take_along_rows(self, x, indices):
        return self.tf.gather(x, indices, batch_dims=1)

    def max(self, x):
        return self.tf.reduce_max(x)

    def width(self, x):
        return self.tf.shape(x)[1]


def kept_span(lengths, budget, truncate, xp):
    """Start and count of the content tokens each row keeps.

    `budget` is the most content tokens a row may keep (None: no limit).
    With `"keep_first"` a longer row keeps its first `budget` tokens, with
    `"keep_last"` its last ones. `"error"` is checked by the caller before
    any packing, so here it keeps everything.
    """
    if budget is None or truncate == "error":
        return lengths * 0, lengths
    count = xp.minimum(lengths, budget)
    if truncate == "keep_last":
        return lengths - count, count
    return lengths * 0, count


def _pick(xp, ids, index):
    """ids[row, index[row, p]], with out-of-range positions clipped."""
    last = xp.width(ids) - 1
    return xp.take_along_rows(ids, xp.clip(index, 0, last))


def stream(ids, start, count, prefix, suffix, width, pad_id, xp):
    """`prefix + ids[start:start + count] + suffix`, padded to `width`.

    `ids` must have at least one column. Returns `(tokens, lengths)`:
    `tokens` is `(batch, width)`, `lengths` the true length of every row.
    """
    a, e = len(prefix), len(suffix)
    p = xp.arange(width)[None, :]
    count = count[:, None]
    tokens = _pick(xp, ids, start[:, None] + p - a)
    tokens = _frame(xp, tokens, p, count, prefix, suffix)
    lengths = count[:, 0] + a + e
    tokens = xp.where(p < lengths[:, None], tokens, pad_id)
    return tokens, lengths


def segments_needed(count, content_per_segment, xp):
    """Segments holding `count` content tokens: at least one per row."""
    count = xp.maximum(count, 1)
    return (count + content_per_segment - 1) // content_per_segment


def wrapped_segments(
    ids, start, count, segment_length, prefix, suffix, width, pad_id, xp
):
    """Every segment as `prefix + chunk + suffix`, padded to `width`.

    Each row's content `ids[start:start + count]` is cut into chunks of
    `segment_length - len(prefix) - len(suffix)` tokens; only the last chunk
    of a row may be short, and the rest of its segment is padding. A row
    with no content still gets one segment holding just `prefix + suffix`.
    Returns `(tokens, padding_mask)`, both `(batch, width)`.
    """
    a, e = len(prefix), len(suffix)
    per_segment = segment_length - a - e
    p = xp.arange(width)[None, :]
    segment, offset = p // segment_length, p % segment_length
    count = count[:, None]
    used_segments = segments_needed(count, per_segment, xp)
    in_segment = xp.clip(count - segment * per_segment, 0, per_segment)
    tokens = _pick(xp, ids, start[:, None] + segment * per_segment + offset - a)
    tokens = _frame(xp, tokens, offset, in_segment, prefix, suffix)
    real = (segment < used_segments) & (offset < a + in_segment + e)
    return xp.where(real, tokens, pad_id), real


def padded_length(longest, segment_length, sequence_length, xp):
    """Whole segments for the longest row (at least one), or the fixed size."""
    if sequence_length is not None:
        return sequence_length
    return segments_needed(longest, segment_length, xp) * segment_length


def _frame(xp, tokens, position, count, prefix, suffix):
    """Writes `prefix` before and `suffix` after `count` content tokens.

    `position` is each token's place in its frame: `prefix` fills places
    `[0, len(prefix))`, the content follows, then `suffix`.
    """
    a, e = len(prefix), len(suffix)
    if e:
        tail = xp.take(suffix, xp.clip(position - a - count, 0, e - 1))
        tokens = xp.where(position >= a + count, tail, tokens)
    if a:
        head = xp.take(prefix, xp.minimum(position, a - 1))
        tokens = xp.where(position < a, head, tokens)
    return tokens
