"""keras-rmt: Recurrent Memory Transformer layers for keras-hub backbones."""

from keras_rmt import datasets, distribution, layers
from keras_rmt.version import __version__

__all__ = ["datasets", "distribution", "layers", "__version__"]
