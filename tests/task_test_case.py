"""The ritual every RMT task test repeats: config, `.keras` reload, a step.

Each helper asserts what it checks and returns what the test may check
further, so a test reads as the facts it pins.
"""

import keras
import numpy as np
from conftest import numpy


def config_round_trip(model):
    """`from_config(get_config())`: same class and same config; the clone."""
    clone = type(model).from_config(model.get_config())
    assert type(clone) is type(model)
    assert clone.get_config() == model.get_config()
    return clone


def keras_file_round_trip(model, x, path):
    """Saves to a `.keras` file, reloads; the same outputs on `x`."""
    expected = numpy(model(x))
    model.save(path)
    restored = keras.saving.load_model(path)
    assert type(restored) is type(model)
    keras.tree.map_structure(
        np.testing.assert_array_equal, numpy(restored(x)), expected
    )
    return restored


def one_train_step(model, x, y, learning_rate=1e-2):
    """One `train_on_batch`: a finite loss, and weights that moved."""
    if not model.compiled:
        model.compile(optimizer=keras.optimizers.SGD(learning_rate))
    before = [numpy(w) for w in model.trainable_weights]
    loss = model.train_on_batch(x, y, return_dict=True)["loss"]
    assert np.isfinite(loss)
    moved = [
        not np.array_equal(numpy(w), b)
        for w, b in zip(model.trainable_weights, before)
    ]
    assert any(moved)
    return loss
