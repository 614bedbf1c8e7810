"""keras-rmt: Recurrent Memory Transformer layers for keras-hub backbones."""

from keras_rmt import datasets, layers, models
from keras_rmt.version import __version__

__all__ = ["datasets", "layers", "models", "__version__"]
