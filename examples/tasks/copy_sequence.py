import numpy as np

from .checks import check_positive_integer

SEPARATOR = 1
FIRST_SYMBOL = 2


def copy_sequence(
    num_samples,
    source_length=24,
    target_length=48,
    num_symbols=10,
    reverse=False,
    seed=0,
):
    """The paper's copy task: read a sequence, then write it out again.

    Each row is `source ; separator ; target`, read left to right as a
    language-modelling problem (labels are the next token). The target
    repeats the source until it is `target_length` long (copy 24/48 writes
    it twice); with `reverse=True` it is the source reversed (reverse 24/24).
    Only target tokens carry weight, so accuracy is the share of target
    tokens predicted right; chance is `1 / num_symbols`. When the input is
    cut into segments, later segments must recall the source from memory.

    Ids: 0 is padding, 1 the separator, symbols are `2 ... num_symbols + 1`.

    Args:
        num_samples: int. How many rows.
        source_length: int. Symbols to read.
        target_length: int. Symbols to write.
        num_symbols: int. Distinct symbols.
        reverse: bool. Write the source reversed. Defaults to `False`.
        seed: int. Seed of the random generator. Defaults to `0`.

    Returns:
        `(inputs, labels, sample_weight)`: `inputs` a dict with `"token_ids"`
        and `"padding_mask"` (int32, `(num_samples, source_length +
        target_length)`), next-token `labels` (int32, same shape) and
        `sample_weight` (float32, same shape, 1 on target tokens).

    Example:
    ```python
    from tasks.copy_sequence import copy_sequence

    inputs, labels, weight = copy_sequence(
        2, source_length=3, target_length=6
    )
    inputs["token_ids"].shape  # (2, 9)
    tuple(weight[0])  # (0, 0, 0, 1, 1, 1, 1, 1, 1)
    ```
    """
    for name, value in [
        ("num_samples", num_samples),
        ("source_length", source_length),
        ("target_length", target_length),
        ("num_symbols", num_symbols),
    ]:
        check_positive_integer(name, value)
    rng = np.random.default_rng(seed)
    source = rng.integers(
        FIRST_SYMBOL, FIRST_SYMBOL + num_symbols, (num_samples, source_length)
    )
    written = source[:, ::-1] if reverse else source
    repeats = -(-target_length // source_length)
    target = np.tile(written, (1, repeats))[:, :target_length]
    separator = np.full((num_samples, 1), SEPARATOR)
    row = np.concatenate([source, separator, target], axis=1).astype("int32")
    token_ids, labels = row[:, :-1], row[:, 1:]
    weight = np.zeros(labels.shape, "float32")
    weight[:, source_length:] = 1.0
    inputs = {"token_ids": token_ids, "padding_mask": np.ones_like(token_ids)}
    return inputs, labels, weight
