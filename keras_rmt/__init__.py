"""keras-rmt: Recurrent Memory Transformer layers for keras-hub backbones.

The public API is what this module and each package's `__init__` export
(`keras_rmt.layers.RecurrentSegments`, `keras_rmt.models.RMTCausalLM`...).
`keras_rmt.adapters`, `keras_rmt.backend`, `keras_rmt.utils` and the modules
no `__init__` re-exports are internal and may change in any release.
"""

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
