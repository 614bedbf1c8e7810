import numpy as np

QUERY = 1
FIRST_KEY = 2


def associative_retrieval(
    num_samples, num_pairs=4, num_keys=16, num_values=10, seed=0
):
    """The paper's associative retrieval task: recall a value by its key.

    Each row lists `num_pairs` key-value pairs with distinct keys, then a
    query marker and one of the keys: `k1 v1 k2 v2 ... ? k`. The answer is
    the value paired with `k`, predicted at the last position. With 4 pairs
    the input is 10 tokens and the answer 1 (the paper's 10/1). When the
    input is cut into segments, the last one holds only the query: the pairs
    must come from memory. Chance is `1 / num_values`.

    Ids: 0 padding, 1 the query marker, keys `2 ... num_keys + 1`, values
    after the keys.

    Args:
        num_samples: int. How many rows.
        num_pairs: int. Key-value pairs per row.
        num_keys: int. Distinct keys (at least `num_pairs`).
        num_values: int. Distinct values.
        seed: int. Seed of the random generator. Defaults to `0`.

    Returns:
        `(inputs, labels, sample_weight)`: `inputs` a dict with `"token_ids"`
        and `"padding_mask"` (int32, `(num_samples, 2 * num_pairs + 2)`);
        `labels` (int32, same shape) hold the answer's id at the last
        position, where alone `sample_weight` is 1.

    Example:
    ```python
    from tasks.associative_retrieval import associative_retrieval

    inputs, labels, weight = associative_retrieval(2)
    inputs["token_ids"].shape  # (2, 10)
    tuple(weight[0])  # (0, 0, 0, 0, 0, 0, 0, 0, 0, 1)
    ```
    """
    if num_keys < num_pairs:
        raise ValueError(
            "`num_keys` must be at least `num_pairs` (keys are distinct). "
            f"Received: num_keys={num_keys}, num_pairs={num_pairs}"
        )
    rng = np.random.default_rng(seed)
    keys = np.argsort(rng.random((num_samples, num_keys)), axis=1)
    keys = keys[:, :num_pairs] + FIRST_KEY
    values = rng.integers(0, num_values, (num_samples, num_pairs))
    values = values + FIRST_KEY + num_keys
    asked = rng.integers(0, num_pairs, num_samples)
    rows = np.arange(num_samples)
    pairs = np.stack([keys, values], axis=2).reshape(num_samples, -1)
    token_ids = np.concatenate(
        [pairs, np.full((num_samples, 1), QUERY), keys[rows, asked, None]],
        axis=1,
    ).astype("int32")
    labels = np.zeros_like(token_ids)
    labels[:, -1] = values[rows, asked]
    weight = np.zeros(token_ids.shape, "float32")
    weight[:, -1] = 1.0
    inputs = {"token_ids": token_ids, "padding_mask": np.ones_like(token_ids)}
    return inputs, labels, weight
