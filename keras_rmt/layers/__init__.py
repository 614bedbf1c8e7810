from keras_rmt.layers.memory_tokens import MemoryTokens
from keras_rmt.layers.recurrent_segments import RecurrentSegments

__all__ = ["MemoryTokens", "RecurrentSegments"]
