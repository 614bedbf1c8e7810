import numpy as np


def first_token_recall(
    num_samples,
    segment_length=4,
    num_segments=3,
    num_keys=8,
    vocabulary_size=16,
    seed=0,
):
    """Inputs whose label is their first token: a task that needs memory.

    Each input holds `segment_length * num_segments` tokens. The first is a
    key, one of `num_keys` ids starting at 2; the rest are noise, ids from
    `num_keys + 2` up to `vocabulary_size`. A model that reads the last
    segment must recall the key seen in the first: with memory carried
    between segments it can; without, it is at chance (`1 / num_keys`).

    Args:
        num_samples: int. How many inputs.
        segment_length: int. Tokens per segment.
        num_segments: int. Segments per input.
        num_keys: int. How many distinct keys (classes).
        vocabulary_size: int. Token ids stay below this.
        seed: int. Seed of the random generator.

    Returns:
        `(inputs, labels)`: a dict with `"token_ids"` and `"padding_mask"`
        (int32, `(num_samples, segment_length * num_segments)`) and the
        keys as class indices (int32, `(num_samples,)`).

    Example:
    ```python
    from tasks.first_token_recall import first_token_recall

    inputs, labels = first_token_recall(4)
    inputs["token_ids"].shape  # (4, 12)
    labels.shape  # (4,)
    ```
    """
    if vocabulary_size <= num_keys + 2:
        raise ValueError(
            "`vocabulary_size` must leave room for noise tokens after the "
            f"keys (more than num_keys + 2 = {num_keys + 2}). "
            f"Received: vocabulary_size={vocabulary_size}"
        )
    rng = np.random.default_rng(seed)
    length = segment_length * num_segments
    token_ids = rng.integers(
        num_keys + 2, vocabulary_size, (num_samples, length)
    ).astype("int32")
    labels = rng.integers(0, num_keys, num_samples).astype("int32")
    token_ids[:, 0] = labels + 2
    inputs = {"token_ids": token_ids, "padding_mask": np.ones_like(token_ids)}
    return inputs, labels
