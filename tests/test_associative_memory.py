import keras
import numpy as np
import pytest
from conftest import HIDDEN_DIM
from test_docstrings import (
    test_docstring_example_runs_and_gives_the_shapes_it_shows as run_example,
)

import keras_rmt

EPS = 1e-5


# === The paper's equations in NumPy, one memory slot at a time ===


def np_features(x, nu):
    """DPFP: products of [relu(x), relu(-x)] with its copies rolled by j."""
    r = np.concatenate([np.maximum(x, 0), np.maximum(-x, 0)])
    n = len(r)
    return np.array(
        [r[i] * r[(i - j) % n] for j in range(1, nu + 1) for i in range(n)]
    )


def np_write(slots, A, z, weights, nu, correction=True):
    """Delta rule for one row: every slot looks up the state before it."""
    w_k, w_v, w_b, b_b = weights["key"], weights["value"], *weights["beta"]
    new_A, new_z = A.copy(), z.copy()
    for m in slots:
        k = np_features(m @ w_k, nu)
        v = m @ w_v
        beta = 1.0 / (1.0 + np.exp(-(m @ w_b[:, 0] + b_b[0])))
        v_bar = (k @ A) / (z @ k + EPS)
        new_A += beta * np.outer(k, v - v_bar)
        if not correction or z @ k == 0:
            gamma = 1.0
        else:
            gamma = np.clip(1 - (z @ k + EPS) / (k @ k + EPS), 0, 1)
        new_z += gamma * k
    return new_A, new_z


def np_read(x, A, z, weights, nu):
    q = np_features(x @ weights["query"], nu)
    return (q @ A) / (q @ z + EPS)


def layer_weights(layer):
    return {
        "query": keras.ops.convert_to_numpy(layer.query.kernel),
        "key": keras.ops.convert_to_numpy(layer.key.kernel),
        "value": keras.ops.convert_to_numpy(layer.value.kernel),
        "beta": [
            keras.ops.convert_to_numpy(layer.strength.kernel),
            keras.ops.convert_to_numpy(layer.strength.bias),
        ],
    }


def randomize(layer, seed):
    """Draws every projection, the zero-initialised value one included."""
    rng = np.random.default_rng(seed)
    for variable in layer.weights:
        variable.assign(rng.normal(size=variable.shape).astype("float32"))


@pytest.mark.parametrize("correction", [True, False])
def test_two_writes_and_a_read_equal_numpy_equations(correction):
    nu, batch, slots = 3, 2, 3
    layer = keras_rmt.layers.AssociativeMemory(
        key_dim=4, nu=nu, correction=correction
    )
    layer.build((None, None, HIDDEN_DIM))
    randomize(layer, seed=1)
    weights = layer_weights(layer)
    rng = np.random.default_rng(2)
    first, second = rng.normal(size=(2, batch, slots, HIDDEN_DIM))
    queries = rng.normal(size=(batch, 5, HIDDEN_DIM)).astype("float32")
    A = np.zeros((batch, layer.key_features, HIDDEN_DIM), "float32")
    z = np.zeros((batch, layer.key_features), "float32")

    matrix, normalizer = layer.write(first.astype("float32"), A, z)
    matrix, normalizer = layer.write(
        second.astype("float32"), matrix, normalizer
    )
    read = keras.ops.convert_to_numpy(layer(queries, matrix, normalizer))

    for row in range(batch):
        ref_A, ref_z = np_write(first[row], A[row], z[row], weights, nu)
        ref_A, ref_z = np_write(
            second[row], ref_A, ref_z, weights, nu, correction
        )
        np.testing.assert_allclose(
            keras.ops.convert_to_numpy(matrix)[row], ref_A, rtol=1e-4
        )
        np.testing.assert_allclose(
            keras.ops.convert_to_numpy(normalizer)[row], ref_z, rtol=1e-4
        )
        reference = [
            np_read(x, ref_A, ref_z, weights, nu) for x in queries[row]
        ]
        np.testing.assert_allclose(read[row], reference, rtol=1e-4, atol=1e-6)


def test_empty_memory_reads_exactly_zero_and_value_starts_at_zero():
    layer = keras_rmt.layers.AssociativeMemory(key_dim=4)
    layer.build((None, None, HIDDEN_DIM))
    np.testing.assert_array_equal(
        keras.ops.convert_to_numpy(layer.value.kernel), 0.0
    )
    read = layer(
        keras.random.normal((2, 3, HIDDEN_DIM)),
        np.zeros((2, layer.key_features, HIDDEN_DIM), "float32"),
        np.zeros((2, layer.key_features), "float32"),
    )
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(read), 0.0)


def test_features_have_two_nu_key_dim_entries():
    layer = keras_rmt.layers.AssociativeMemory(key_dim=5, nu=2)
    assert layer.key_features == 20
    x = np.random.default_rng(0).normal(size=(5,)).astype("float32")
    got = keras.ops.convert_to_numpy(
        keras_rmt.layers.associative_memory.dpfp(x[None], nu=2)
    )[0]
    np.testing.assert_allclose(got, np_features(x, 2), rtol=1e-6)


def test_key_dim_must_be_positive():
    with pytest.raises(ValueError, match="Received: key_dim=0"):
        keras_rmt.layers.AssociativeMemory(key_dim=0)


def test_config_round_trip():
    layer = keras_rmt.layers.AssociativeMemory(
        key_dim=8, nu=2, correction=False
    )
    clone = keras_rmt.layers.AssociativeMemory.from_config(layer.get_config())
    assert clone.get_config() == layer.get_config()


@pytest.mark.parametrize(
    "documented",
    [
        keras_rmt.layers.AssociativeMemory,
        keras_rmt.layers.AssociativeRecurrentSegments,
    ],
    ids=lambda x: x.__name__,
)
def test_docstring_example_gives_the_shapes_it_shows(documented):
    run_example(documented)


def test_a_bfloat16_layer_reads_in_float32_like_numpy():
    # Under a bfloat16 policy the state reaches `call` autocast to bfloat16;
    # the layer reads it in float32, as it writes (torch refused the mixed
    # einsum). Every input holds bfloat16 values, so only the bfloat16
    # query projection separates it from NumPy's float32 equations.
    layer = keras_rmt.layers.AssociativeMemory(key_dim=4, dtype="bfloat16")
    layer.build((None, None, HIDDEN_DIM))
    randomize(layer, seed=1)
    weights = layer_weights(layer)
    weights = {
        "query": weights["query"].astype("float32"),
        "key": weights["key"].astype("float32"),
    }

    def bfloat16_values(x):
        x = keras.ops.cast(keras.ops.cast(x, "bfloat16"), "float32")
        return keras.ops.convert_to_numpy(x)

    rng = np.random.default_rng(2)
    queries = bfloat16_values(rng.normal(size=(2, 5, HIDDEN_DIM)))
    A = bfloat16_values(rng.normal(size=(2, layer.key_features, HIDDEN_DIM)))
    z = bfloat16_values(rng.uniform(0.5, 1.0, size=(2, layer.key_features)))
    read = layer(queries, A, z)
    assert keras.backend.standardize_dtype(read.dtype) == "bfloat16"
    expected = [
        [np_read(q, A[row], z[row], weights, layer.nu) for q in queries[row]]
        for row in range(2)
    ]
    np.testing.assert_allclose(
        bfloat16_values(read), expected, rtol=3e-2, atol=3e-2
    )
