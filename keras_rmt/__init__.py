"""keras-rmt: Recurrent Memory Transformer layers for keras-hub backbones."""

from keras_rmt import callbacks, datasets, layers
from keras_rmt.version import __version__

__all__ = ["callbacks", "datasets", "layers", "__version__"]
