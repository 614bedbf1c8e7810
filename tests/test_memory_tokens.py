import keras
import numpy as np
from conftest import make_rmt, numpy

import keras_rmt


def test_memory_matches_token_embedding_scale_with_distinct_rows():
    rmt = make_rmt("gpt2", num_tokens=8)
    memory = keras.ops.convert_to_numpy(rmt.memory.memory)
    table = keras.ops.convert_to_numpy(rmt.backbone.token_embedding.embeddings)
    assert memory.shape == (8, table.shape[1])
    assert 0.5 < memory.std() / table.std() < 2.0
    distances = np.abs(memory[:, None] - memory[None]).sum(-1)
    assert (distances + np.eye(8) > 0).all()


def test_memory_is_broadcast_over_the_batch():
    layer = keras_rmt.layers.MemoryTokens(3, initializer="ones")
    out = numpy(layer(np.zeros((2, 5, 4), "float32")))
    np.testing.assert_array_equal(out, np.ones((2, 3, 4)))


def test_config_round_trip():
    layer = keras_rmt.layers.MemoryTokens(3, initializer="zeros", name="mem")
    clone = keras_rmt.layers.MemoryTokens.from_config(layer.get_config())
    assert clone.get_config() == layer.get_config()
