"""Shared checks every layer and task goes through.

In the spirit of keras-hub's `TestCase.run_layer_test` and `run_task_test`:
a test builds its object, then one call checks the ritual (build, call,
config round trip, `.keras` reload with equal outputs, one training step)
so that each test file writes only what is particular to its class.
"""

import keras
import numpy as np
from conftest import build_optimizer, numpy


def _shapes(tree):
    return keras.tree.map_structure(lambda x: tuple(np.shape(x)), tree)


def _symbolic_inputs(input_data):
    """`keras.Input`s shaped and typed like `input_data`, batch left open."""
    return keras.tree.map_structure(
        lambda x: keras.Input(np.shape(x)[1:], dtype=str(np.asarray(x).dtype)),
        input_data,
    )


def _assert_same(got, expected):
    keras.tree.map_structure(
        np.testing.assert_array_equal, numpy(got), numpy(expected)
    )


def _weight_values(model):
    return [numpy(w) for w in model.trainable_weights]


def assert_config_round_trip(instance):
    """`from_config(get_config())` and a serialization rebuild it alike.

    Returns the clone `from_config` built, for checks of its own.
    """
    cls = type(instance)
    config = instance.get_config()
    # A fresh config: keras-hub's `from_config` deserializes in place.
    clone = cls.from_config(instance.get_config())
    assert type(clone) is cls
    assert clone.get_config() == config
    restored = keras.saving.deserialize_keras_object(
        keras.saving.serialize_keras_object(instance)
    )
    assert type(restored) is cls
    assert restored.get_config() == config
    registered = keras.saving.get_registered_name(cls)
    assert registered == f"keras_rmt>{cls.__name__}", registered
    return clone


def assert_keras_file_round_trip(model, x, path):
    """Saves to a `.keras` file and reloads: same class, same outputs on `x`.

    Returns the reloaded model.
    """
    expected = numpy(model(x))
    model.save(path)
    restored = keras.saving.load_model(path)
    assert type(restored) is type(model)
    _assert_same(restored(x), expected)
    return restored


def one_train_step(model, x, y, learning_rate=1e-2):
    """One `train_on_batch` (SGD unless compiled): finite loss, weights move.

    Looser than `assert_trainable_weights_move` (some weight moves), for
    models whose untouched weights depend on the data.
    """
    if not model.compiled:
        model.compile(optimizer=keras.optimizers.SGD(learning_rate))
    build_optimizer(model)
    before = _weight_values(model)
    loss = model.train_on_batch(x, y, return_dict=True)["loss"]
    assert np.isfinite(loss)
    after = _weight_values(model)
    assert any(not np.array_equal(b, a) for b, a in zip(before, after))
    return loss


def assert_trainable_weights_move(model, train_step, expected_unchanged=()):
    """One `train_step()` changes every trainable weight but those named.

    A weight the loss does not reach keeps its value under SGD; naming the
    expected ones makes a lost gradient path fail here.
    """
    before = _weight_values(model)
    train_step()
    after = _weight_values(model)
    unchanged = sorted(
        weight.path
        for weight, old, new in zip(model.trainable_weights, before, after)
        if np.array_equal(old, new)
    )
    assert unchanged == sorted(expected_unchanged), unchanged


def run_layer_test(
    layer_cls,
    init_kwargs,
    input_data,
    expected_output_shape,
    tmp_path,
    expected_num_trainable_weights=None,
    expected_unchanged=(),
):
    """Builds, calls, serializes, reloads and trains a layer one step.

    Args:
        layer_cls: the layer class.
        init_kwargs: dict. Arguments of `layer_cls`.
        input_data: array or structure of arrays, with a batch axis.
        expected_output_shape: shape tuple, or structure of them, of the
            layer's output on `input_data`.
        tmp_path: folder for the `.keras` file.
        expected_num_trainable_weights: int. Checked when given.
        expected_unchanged: paths of trainable weights one SGD step on the
            outputs does not reach.

    Returns:
        The layer, built and called once.
    """
    layer = layer_cls(**init_kwargs)
    output = layer(input_data)
    assert layer.built
    assert _shapes(output) == expected_output_shape
    if expected_num_trainable_weights is not None:
        assert len(layer.trainable_weights) == expected_num_trainable_weights
    symbolic = _symbolic_inputs(input_data)
    spec = layer.compute_output_spec(symbolic)
    assert keras.tree.map_structure(lambda x: x.shape[1:], spec) == (
        keras.tree.map_shape_structure(lambda s: s[1:], expected_output_shape)
    )
    assert_config_round_trip(layer)

    model = keras.Model(symbolic, layer(symbolic))
    expected = model.predict(input_data, verbose=0)
    # Compiled (predict) against op by op (the call): equal up to rounding.
    keras.tree.map_structure(
        lambda got, want: np.testing.assert_allclose(
            got, want, rtol=1e-5, atol=1e-6
        ),
        expected,
        numpy(output),
    )
    path = tmp_path / f"{layer.name}.keras"
    model.save(path)
    restored = keras.saving.load_model(path)
    assert type(restored.layers[-1]) is layer_cls
    assert restored.layers[-1].get_config() == layer.get_config()
    _assert_same(restored.predict(input_data, verbose=0), expected)

    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
    build_optimizer(model)
    targets = keras.tree.map_structure(
        lambda x: np.ones(np.shape(x), "float32"), expected
    )
    assert_trainable_weights_move(
        model,
        lambda: model.train_on_batch(input_data, targets),
        expected_unchanged,
    )
    return layer


def run_task_test(
    task,
    train_data,
    expected_output_shape,
    tmp_path,
    expected_unchanged=(),
):
    """Serializes, predicts, reloads and trains a compiled task one step.

    Args:
        task: a built keras-hub style task (compiled or not: its own
            `compile()` defaults are used when it is not).
        train_data: `(x, y)` or `(x, y, sample_weight)`, arrays with a batch
            axis, in the form the task takes without its preprocessor.
        expected_output_shape: shape tuple, or structure of them, of
            `task.predict(x)`.
        tmp_path: folder for the `.keras` file.
        expected_unchanged: paths of trainable weights one step does not
            reach.

    Returns:
        The task reloaded from its `.keras` file.
    """
    x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(train_data)
    cls = type(task)
    assert_config_round_trip(task)

    output = task.predict(x, verbose=0)
    assert _shapes(output) == expected_output_shape
    path = tmp_path / f"{task.name}.keras"
    task.save(path)
    restored = keras.saving.load_model(path)
    assert type(restored) is cls
    assert restored.get_config() == task.get_config()
    # Run as the task ran (eagerly, or traced), so outputs compare exactly.
    restored.run_eagerly = task.run_eagerly
    _assert_same(restored.predict(x, verbose=0), output)

    if not task.compiled:
        task.compile()
    build_optimizer(task)
    logs = {}

    def train_step():
        logs.update(
            task.train_on_batch(
                x, y, sample_weight=sample_weight, return_dict=True
            )
        )

    assert_trainable_weights_move(task, train_step, expected_unchanged)
    assert np.isfinite(logs["loss"]), logs
    return restored
