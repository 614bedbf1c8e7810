import keras
import numpy as np
from conftest import make_rmt_on_shared, numpy
from test_case import run_layer_test

import keras_rmt


def test_memory_matches_token_embedding_scale_with_distinct_rows():
    rmt = make_rmt_on_shared("gpt2", num_tokens=8)
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


def test_builds_serializes_reloads_and_trains(tmp_path):
    run_layer_test(
        keras_rmt.layers.MemoryTokens,
        {"num_tokens": 3, "initializer": "random_normal", "name": "mem"},
        np.zeros((2, 5, 4), "float32"),
        (2, 3, 4),
        tmp_path,
        expected_num_trainable_weights=1,
    )
