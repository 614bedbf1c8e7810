"""How many ways the global batch is split, on either engine."""

import keras

from keras_rmt.utils.checks import check_positive_integer


def data_parallel_size(distribution=None):
    """How many ways a global batch is split across model replicas.

    Args:
        distribution: a `keras.distribution.Distribution` (JAX), a
            `tf.distribute.Strategy` (TensorFlow), or None for the one in
            effect: `keras.distribution.distribution()` on JAX, the current
            `tf.distribute` strategy on TensorFlow, else no split.
            Defaults to `None`.

    Returns:
        int. The size of the mesh's batch axis
        (`keras.distribution.DataParallel`, `ModelParallel`), or the
        strategy's `num_replicas_in_sync`; 1 without distribution.

    Example:
    ```python
    import tensorflow as tf

    strategy = tf.distribute.MirroredStrategy(["/cpu:0"])
    keras_rmt.distribution.data_parallel_size(strategy)  # 1
    ```
    """
    if distribution is None:
        distribution = _current_distribution()
    if distribution is None:
        return 1
    batch_axis = getattr(distribution, "batch_dim_name", None)
    if batch_axis is not None:
        # keras.distribution.DataParallel or ModelParallel.
        mesh = distribution.device_mesh
        return mesh.shape[list(mesh.axis_names).index(batch_axis)]
    replicas = getattr(distribution, "num_replicas_in_sync", None)
    if replicas is None:
        raise ValueError(
            "`distribution` must be a keras.distribution.Distribution, a "
            "tf.distribute.Strategy or None. "
            f"Received: distribution={distribution!r}"
        )
    return int(replicas)


def check_batch_size(batch_size, distribution=None):
    """Raises a clear error if `batch_size` does not split evenly.

    Every replica must get the same number of rows, so the global batch must
    be a multiple of `keras_rmt.distribution.data_parallel_size()`. Keras
    with JAX fails at the first uneven batch with a sharding error, and TPUs
    need static, equal shards. Batch datasets with `drop_remainder=True` so
    that the last batch is whole too.

    Args:
        batch_size: int. The global batch size.
        distribution: see `keras_rmt.distribution.data_parallel_size`.
            Defaults to `None`: the one in effect.

    Returns:
        int. The batch size of each replica.

    Example:
    ```python
    distribution = keras.distribution.DataParallel()  # JAX, 4 devices
    keras_rmt.distribution.check_batch_size(32, distribution)  # 8
    keras_rmt.distribution.check_batch_size(6, distribution)  # ValueError
    ```
    """
    replicas = data_parallel_size(distribution)
    batch_size = check_positive_integer("batch_size", batch_size)
    if batch_size % replicas:
        below = batch_size - batch_size % replicas
        raise ValueError(
            f"The global batch size must be a multiple of the data-parallel "
            f"size, {replicas}, so that each replica gets the same number of "
            f"rows. Use batch_size={below or replicas} or "
            f"{below + replicas}. Received: batch_size={batch_size}"
        )
    return batch_size // replicas


def _current_distribution():
    backend = keras.backend.backend()
    if backend == "jax":
        return keras.distribution.distribution()
    if backend == "tensorflow":
        import tensorflow as tf

        if tf.distribute.has_strategy():
            return tf.distribute.get_strategy()
    return None
