from .copy_sequence import copy_sequence


def reverse_sequence(num_samples, source_length=24, num_symbols=10, seed=0):
    """The paper's reverse task: read a sequence, then write it reversed.

    `copy_sequence` with `reverse=True` and a target as long as the source
    (reverse 24/24). Rows are `source ; separator ; reversed source`, labels
    the next token, weight 1 on the reversed tokens.

    Args:
        num_samples: int. How many rows.
        source_length: int. Symbols to read and to write.
        num_symbols: int. Distinct symbols (ids 2 and up).
        seed: int. Seed of the random generator. Defaults to `0`.

    Returns:
        `(inputs, labels, sample_weight)` as `copy_sequence` gives them, of
        length `2 * source_length`.

    Example:
    ```python
    from tasks.reverse_sequence import reverse_sequence

    inputs, labels, weight = reverse_sequence(
        1, source_length=3
    )
    inputs["token_ids"].shape  # (1, 6)
    reversed_source = inputs["token_ids"][0, 2::-1]
    tuple(labels[0, 3:] - reversed_source)  # (0, 0, 0)
    ```
    """
    return copy_sequence(
        num_samples,
        source_length=source_length,
        target_length=source_length,
        num_symbols=num_symbols,
        reverse=True,
        seed=seed,
    )
