from keras_rmt.layers.associative_memory import AssociativeMemory
from keras_rmt.layers.associative_recurrent_segments import (
    AssociativeRecurrentSegments,
)
from keras_rmt.layers.memory_tokens import MemoryTokens
from keras_rmt.layers.recurrent_segments import RecurrentSegments

__all__ = [
    "AssociativeMemory",
    "AssociativeRecurrentSegments",
    "MemoryTokens",
    "RecurrentSegments",
]
