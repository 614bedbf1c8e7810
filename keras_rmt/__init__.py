"""keras-rmt: Recurrent Memory Transformer layers for keras-hub backbones."""

from keras_rmt import (
    callbacks,
    datasets,
    distribution,
    export,
    layers,
    metrics,
    models,
)
from keras_rmt.version import __version__

__all__ = [
    "callbacks",
    "datasets",
    "distribution",
    "export",
    "layers",
    "metrics",
    "models",
    "__version__",
]
