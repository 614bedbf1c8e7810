"""Padding to whole segments in a `tf.data` input pipeline.

Input-pipeline code: it uses TensorFlow on every Keras backend, as
keras-hub's preprocessors do.
"""

from keras_rmt.utils.checks import check_positive_integer

TOKEN_FEATURES = ("token_ids", "padding_mask", "segment_ids")


def pad_to_segments(dataset, segment_length, max_segments, pad_labels=False):
    """Pads every row of a `tf.data.Dataset` to `max_segments` segments.

    `keras_rmt.layers.RecurrentSegments` pads inputs to whole segments
    itself, but then each new length traces a new graph. Padding in the input
    pipeline to one fixed length gives every batch the same static shape:
    what XLA (`jit_compile=True`) and TPUs want, and what lets a
    `tf.distribute` strategy compile the step once. The padding is zeros, so
    `padding_mask` marks it; rows longer than `max_segments` segments raise
    an error when read rather than being cut.

    Works on batched or unbatched datasets whose elements are a features
    dict, or a tuple `(features, labels[, sample_weight])`. The features
    `"token_ids"`, `"padding_mask"` and `"segment_ids"` are padded along
    their last axis; other features are left alone.

    Args:
        dataset: `tf.data.Dataset`.
        segment_length: int. The `segment_length` of the RMT layer.
        max_segments: int. Every row is padded to
            `max_segments * segment_length` tokens.
        pad_labels: bool. Also pad the labels and sample weights along their
            last axis (token-level labels, e.g. language modelling).
            Defaults to `False`.

    Returns:
        The padded `tf.data.Dataset`.

    Example:
    ```python
    import tensorflow as tf

    dataset = tf.data.Dataset.from_tensor_slices(
        {"token_ids": [[5, 6, 7]], "padding_mask": [[1, 1, 1]]}
    ).batch(1, drop_remainder=True)
    padded = keras_rmt.distribution.pad_to_segments(
        dataset, segment_length=4, max_segments=2
    )
    padded.element_spec["token_ids"].shape  # (1, 8)
    ```
    """
    import tensorflow as tf

    for name, value in (
        ("segment_length", segment_length),
        ("max_segments", max_segments),
    ):
        check_positive_integer(name, value)
    length = segment_length * max_segments

    def pad(tensor, name):
        tensor = tf.convert_to_tensor(tensor)
        too_long = (
            f"pad_to_segments: {name} is longer than max_segments * "
            f"segment_length = {max_segments} * {segment_length} = {length} "
            "tokens. Raise max_segments or cut the inputs before."
        )
        if tensor.shape[-1] is not None and tensor.shape[-1] > length:
            raise ValueError(
                f"{too_long} Received: {name}.shape={tuple(tensor.shape)}"
            )
        received = tf.shape(tensor)[-1]
        check = tf.debugging.assert_less_equal(
            received, length, message=too_long
        )
        with tf.control_dependencies([check]):
            paddings = [[0, 0]] * (tensor.shape.rank - 1)
            padded = tf.pad(tensor, paddings + [[0, length - received]])
        return tf.ensure_shape(padded, [*tensor.shape[:-1], length])

    def pad_features(features):
        if not isinstance(features, dict) or "token_ids" not in features:
            raise ValueError(
                "pad_to_segments takes datasets of feature dicts with "
                "'token_ids', alone or first in a tuple. "
                f"Received: features={features!r}"
            )
        return {
            key: pad(value, key) if key in TOKEN_FEATURES else value
            for key, value in features.items()
        }

    def pad_element(*element):
        features, *rest = element
        if pad_labels:
            rest = [
                tf.nest.map_structure(lambda t: pad(t, "labels"), part)
                for part in rest
            ]
        padded = (pad_features(features), *rest)
        return padded if len(padded) > 1 else padded[0]

    return dataset.map(pad_element)
