"""Helpers for training keras-rmt models on many devices.

The only package, with `export`, that reads the backend: `keras.distribution`
is used on JAX and `tf.distribute` on TensorFlow.
"""

from keras_rmt.distribution.batch_size import (
    check_batch_size,
    data_parallel_size,
)
from keras_rmt.distribution.model_parallel import device_mesh, get_layout_map
from keras_rmt.distribution.segment_padding import pad_to_segments

__all__ = [
    "check_batch_size",
    "data_parallel_size",
    "device_mesh",
    "get_layout_map",
    "pad_to_segments",
]
