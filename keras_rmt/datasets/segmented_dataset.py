import keras
import numpy as np

from keras_rmt.utils.checks import check_positive_integer


class SegmentedDataset(keras.utils.PyDataset):
    """Batches made fresh for a number of segments that can change.

    A fixed `tf.data` pipeline cannot change the length of its inputs while
    `fit` runs; this `keras.utils.PyDataset` asks `make_batch` for a new
    batch at every step, for whatever `num_segments` holds at that moment.
    `keras_rmt.callbacks.SegmentCurriculum` sets `num_segments` between
    epochs, so a model trains on 1 segment, then 2, 3 ... (the paper's
    curriculum). With `vary_n_segments=True`, each batch instead draws its
    number of segments uniformly from 1 to `num_segments`.

    TensorFlow's `fit` fixes the shapes of a `PyDataset` from its first
    batches. So that one `fit` can grow the inputs there, `pad_to` pads
    every batch at the end with whole segments of padding (`padding_mask`
    0, and `sample_weight` 0 where labels have a time axis) up to `pad_to`
    segments. The padding goes where keras-hub preprocessors put it and
    where every reader of the library expects it (the classifier's last
    segment, `keras_rmt.metrics.SegmentLosses`, right alignment): a segment
    that is all padding leaves memory unchanged in
    `keras_rmt.layers.RecurrentSegments`, so the outputs at the real tokens,
    the memory and the segments' numbers do not change; only compute grows.
    A model of your own must then read each row's last real token through
    `padding_mask`, not at position -1.

    Args:
        make_batch: callable. `make_batch(batch_size, num_segments, rng)`
            returns `(inputs, labels)` or `(inputs, labels, sample_weight)`
            with `inputs` a dict holding `"token_ids"` and `"padding_mask"`
            of shape `(batch_size, num_segments * segment_length)`; `rng` is
            a `numpy.random.Generator`.
        batch_size: int. Rows per batch.
        num_batches: int. Batches per epoch.
        segment_length: int. Tokens per segment, used by `pad_to`.
        num_segments: int. Segments of the next batches. Defaults to `1`.
        vary_n_segments: bool. Draw each batch's number of segments from
            1 to `num_segments`. Defaults to `False`.
        pad_to: int or None. Pad every batch at the end to this many
            segments.
            Defaults to `None`: no padding.
        seed: int. Seed of the random generator; batch `i` of epoch `e` is
            the same for the same seed. Defaults to `0`.
        **kwargs: `workers`, `use_multiprocessing`, `max_queue_size` of
            `keras.utils.PyDataset`. Keep the default single worker: a
            worker that runs ahead makes batches before `num_segments`
            changes.

    Example:
    ```python
    def make_batch(batch_size, num_segments, rng):
        token_ids = rng.integers(1, 100, (batch_size, num_segments * 4))
        inputs = {
            "token_ids": token_ids,
            "padding_mask": np.ones_like(token_ids),
        }
        return inputs, token_ids[:, 0]

    data = keras_rmt.datasets.SegmentedDataset(
        make_batch, batch_size=2, num_batches=3, segment_length=4
    )
    data.num_segments = 3
    data[0][0]["token_ids"].shape  # (2, 12)
    ```
    """

    def __init__(
        self,
        make_batch,
        batch_size,
        num_batches,
        segment_length,
        num_segments=1,
        vary_n_segments=False,
        pad_to=None,
        seed=0,
        **kwargs,
    ):
        super().__init__(**kwargs)
        for name, value in [
            ("batch_size", batch_size),
            ("num_batches", num_batches),
            ("segment_length", segment_length),
            ("num_segments", num_segments),
        ]:
            check_positive_integer(name, value)
        if pad_to is not None and pad_to < num_segments:
            raise ValueError(
                "`pad_to` must be at least `num_segments`. "
                f"Received: pad_to={pad_to}, num_segments={num_segments}"
            )
        self.make_batch = make_batch
        self.batch_size = batch_size
        self._num_batches = num_batches
        self.segment_length = segment_length
        self._num_segments = num_segments
        self.vary_n_segments = vary_n_segments
        self.pad_to = pad_to
        self.seed = seed
        self.epoch = 0

    @property
    def num_batches(self):
        return self._num_batches

    @property
    def num_segments(self):
        return self._num_segments

    @num_segments.setter
    def num_segments(self, value):
        check_positive_integer("num_segments", value)
        if self.pad_to is not None and value > self.pad_to:
            raise ValueError(
                f"`num_segments` must be at most pad_to={self.pad_to}. "
                f"Received: num_segments={value}"
            )
        self._num_segments = value

    def __len__(self):
        return self._num_batches

    def __getitem__(self, index):
        rng = np.random.default_rng([self.seed, self.epoch, index])
        count = self._num_segments
        if self.vary_n_segments:
            count = int(rng.integers(1, count + 1))
        batch = self.make_batch(self.batch_size, count, rng)
        if self.pad_to is None:
            return batch
        return _pad_end(batch, (self.pad_to - count) * self.segment_length)

    def on_epoch_end(self):
        self.epoch += 1


def _pad_end(batch, width):
    """Puts `width` padding tokens after every row of a batch."""
    inputs, labels, *rest = batch
    length = inputs["token_ids"].shape[1]

    def pad(x):
        x = np.asarray(x)
        if x.ndim < 2 or x.shape[1] != length:
            return x
        widths = [(0, 0), (0, width)] + [(0, 0)] * (x.ndim - 2)
        return np.pad(x, widths)

    inputs = {name: pad(value) for name, value in inputs.items()}
    labels = np.asarray(labels)
    if labels.ndim < 2 or labels.shape[1] != length:
        return (inputs, labels, *rest)
    weight = rest[0] if rest else np.ones(labels.shape[:2], "float32")
    return inputs, pad(labels), pad(weight)


def vary_n_segments(batch, segment_length, rng=None, min_segments=1):
    """Shortens a batch to a random whole number of its last segments.

    The paper's `vary_n_segments`: a model that sees inputs of many lengths
    learns memory that works at each of them. The batch keeps its last `k`
    segments, `k` drawn uniformly from `min_segments` to the number it has,
    so whatever sits at the end (a question, an answer) stays. Segments are
    counted from the end (right alignment): a batch of 10 tokens with
    `segment_length=4` has 3 segments, of 2, 4 and 4 tokens, and keeps 4, 8
    or 10 tokens.

    Every array in the batch whose second axis has the length of
    `token_ids` (inputs, per-token labels, sample weights) is cut the same
    way; others (one label per row) are kept whole.

    Args:
        batch: `inputs`, or a tuple `(inputs, labels)` or
            `(inputs, labels, sample_weight)`, `inputs` a dict with
            `"token_ids"` of shape `(batch_size, tokens)`.
        segment_length: int. Tokens per segment.
        rng: `numpy.random.Generator`, int seed or None. Defaults to `None`:
            a fresh generator.
        min_segments: int. The fewest segments kept. Defaults to `1`.

    Returns:
        The batch, same structure, cut to its last `k` segments.

    Example:
    ```python
    inputs = {
        "token_ids": np.ones((2, 12), "int32"),
        "padding_mask": np.ones((2, 12), "int32"),
    }
    labels = np.array([0, 1])
    short, labels = keras_rmt.datasets.vary_n_segments(
        (inputs, labels), segment_length=4, rng=1
    )
    short["token_ids"].shape  # (2, 8)
    labels.shape  # (2,)
    ```
    """
    segment_length = check_positive_integer("segment_length", segment_length)
    is_tuple = isinstance(batch, tuple)
    inputs = batch[0] if is_tuple else batch
    length = np.shape(inputs["token_ids"])[1]
    count = -(-length // segment_length)
    if not isinstance(min_segments, int) or not 1 <= min_segments <= count:
        raise ValueError(
            f"`min_segments` must be an integer from 1 to the batch's {count} "
            f"segments. Received: min_segments={min_segments!r}"
        )
    rng = np.random.default_rng(rng)
    keep = int(rng.integers(min_segments, count + 1))
    start = max(length - keep * segment_length, 0)

    def cut(x):
        if np.ndim(x) >= 2 and np.shape(x)[1] == length:
            return x[:, start:]
        return x

    if not is_tuple:
        return {name: cut(value) for name, value in batch.items()}
    inputs = {name: cut(value) for name, value in inputs.items()}
    return (inputs, *[cut(x) for x in batch[1:]])
