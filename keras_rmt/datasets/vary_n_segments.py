import numpy as np

from keras_rmt.utils.checks import check_positive_integer


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
    inputs, labels = keras_rmt.datasets.first_token_recall(2, num_segments=3)
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
