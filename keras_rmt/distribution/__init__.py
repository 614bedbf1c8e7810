"""Helpers for training keras-rmt models on many devices.

Backend-specific by its nature (see `keras_rmt/backend/__init__.py`):
`keras.distribution` device meshes on JAX, `tf.distribute` strategies on
TensorFlow. `pad_to_segments` is input-pipeline code and, like keras-hub's
preprocessors, uses `tf.data` on every backend.
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
