import keras
from keras import ops

# Added to every denominator, as in the paper's code.
EPSILON = 1e-5


def dpfp(x, nu=3):
    """The deterministic parameter-free projection (DPFP) feature map.

    `x` of size `d` becomes `r = [relu(x), relu(-x)]` (size `2d`) and then
    `2 * nu * d` non-negative products `r[i] * r[i - j]`, `j = 1..nu`
    (indices modulo `2d`), the `j`-th product block after the `(j-1)`-th.
    """
    r = ops.concatenate([ops.relu(x), ops.relu(-x)], axis=-1)
    rolled = [ops.roll(r, shift=j, axis=-1) for j in range(1, nu + 1)]
    return ops.concatenate([r * shifted for shifted in rolled], axis=-1)


@keras.saving.register_keras_serializable(package="keras_rmt")
class AssociativeMemory(keras.layers.Layer):
    """One layer's associative memory, written with the delta rule.

    The memory of one transformer layer in the Associative Recurrent Memory
    Transformer (ARMT): a matrix `A` of shape `(key_features, hidden_dim)`
    and a normalizer `z` of shape `(key_features,)`, both zero at the start,
    with `key_features = 2 * nu * key_dim`. This layer holds the projections
    that read and write them; the state itself is passed in and returned,
    so that the caller can carry it from segment to segment.

    Reading, for every hidden state `x` of a segment (`phi` is `dpfp`):
    `q = phi(x W_q)` and `read = q A / (q . z + eps)`, which the caller adds
    to the layer's input. With `A = 0` the read is exactly zero.

    Writing, from the hidden states `m` that the layer gives at the memory
    token positions: keys `k = phi(m W_k)`, values `v = m W_v`, write
    strengths `beta = sigmoid(m w_b + b)`. What the memory already returns
    for each key, `v_bar = k A / (k . z + eps)`, is replaced:
    `A += sum_j beta_j k_j (x) (v_j - v_bar_j)`, and the normalizer grows by
    the part of each key that is new,
    `z += sum_j gamma_j k_j`,
    `gamma = clip(1 - (k . z + eps) / (|k|^2 + eps), 0, 1)`, taken as a
    constant for gradients. A key that meets an empty normalizer
    (`k . z = 0`) is all new: `gamma = 1`, as the paper's code sets it in
    the first segment.

    The value projection starts at zero, as in the paper's code, so a fresh
    memory reads zero and a model starts as its backbone; the other
    projections are drawn as PyTorch's `Linear` draws them.

    Args:
        key_dim: int. Size of the keys and queries before the feature map.
            Keep it well above 2: DPFP features of two vectors overlap only
            where their projections share signs, so with `key_dim=2` most
            reads are exactly zero and some weights may get no gradient.
            Defaults to `64`, the paper's BABILong setting.
        nu: int. Order of the DPFP feature map. Defaults to `3`, the paper's.
        correction: bool. Whether the normalizer grows by `gamma * k`
            (the paper's correction) rather than by `k`. Defaults to `True`.
        **kwargs: other keyword arguments passed to `keras.layers.Layer`,
            including `name` and `dtype`.

    Call arguments:
        hidden: tensor `(batch_size, tokens, hidden_dim)`. States to read
            for.
        matrix: tensor `(batch_size, key_features, hidden_dim)`. `A`.
        normalizer: tensor `(batch_size, key_features)`. `z`.

    Returns:
        The read, `(batch_size, tokens, hidden_dim)`.

    Example:
    ```python
    layer = keras_rmt.layers.AssociativeMemory(key_dim=4)
    layer.build((None, None, 16))
    matrix = np.zeros((2, layer.key_features, 16), "float32")
    normalizer = np.zeros((2, layer.key_features), "float32")
    memory_states = keras.random.normal((2, 3, 16))
    layer.value.kernel.assign(keras.random.normal((16, 16)))
    matrix, normalizer = layer.write(memory_states, matrix, normalizer)
    queries = keras.random.normal((2, 5, 16))
    layer(queries, matrix, normalizer).shape  # (2, 5, 16)
    ```

    Reference:
     - [Rodkin et al., 2024](https://arxiv.org/abs/2407.04841)
    """

    def __init__(self, key_dim=64, nu=3, correction=True, **kwargs):
        for name, value in (("key_dim", key_dim), ("nu", nu)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(
                    f"`{name}` must be a positive integer. "
                    f"Received: {name}={value!r}"
                )
        super().__init__(**kwargs)

        # === Layers ===
        def projection(units, name, initializer, use_bias=False):
            return keras.layers.Dense(
                units,
                use_bias=use_bias,
                kernel_initializer=initializer,
                bias_initializer="zeros",
                name=name,
                dtype=self.dtype_policy,
            )

        # U(-1/sqrt(fan_in), 1/sqrt(fan_in)), PyTorch's default.
        torch_like = keras.initializers.VarianceScaling(
            scale=1.0 / 3.0, mode="fan_in", distribution="uniform"
        )
        self.query = projection(key_dim, "query", torch_like)
        self.key = projection(key_dim, "key", torch_like)
        # Its size is the hidden size, known in `build`.
        self.value = None
        self.strength = projection(1, "strength", torch_like, use_bias=True)

        # === Config ===
        self.key_dim = key_dim
        self.nu = nu
        self.correction = correction

    @property
    def key_features(self):
        return 2 * self.nu * self.key_dim

    def build(self, hidden_shape, matrix_shape=None, normalizer_shape=None):
        hidden_dim = hidden_shape[-1]
        self.value = keras.layers.Dense(
            hidden_dim,
            use_bias=False,
            kernel_initializer="zeros",
            name="value",
            dtype=self.dtype_policy,
        )
        for layer in (self.query, self.key, self.value, self.strength):
            layer.build(hidden_shape)
        self.built = True

    def _features(self, projection, hidden):
        return dpfp(ops.cast(projection(hidden), "float32"), self.nu)

    def call(self, hidden, matrix, normalizer):
        query = self._features(self.query, hidden)
        # Read in float32, as `write` does: under a 16-bit policy the call
        # gets the state autocast to the compute dtype.
        matrix = ops.cast(matrix, "float32")
        normalizer = ops.cast(normalizer, "float32")
        read = _lookup(query, matrix, normalizer)
        return ops.cast(read, self.compute_dtype)

    def write(self, memory_states, matrix, normalizer):
        """The state after writing `memory_states`, `(batch, slots, hidden)`.

        Returns:
            A tuple `(matrix, normalizer)`, float32.
        """
        if not self.built:
            self.build(memory_states.shape)
        matrix = ops.cast(matrix, "float32")
        normalizer = ops.cast(normalizer, "float32")
        keys = self._features(self.key, memory_states)
        values = ops.cast(self.value(memory_states), "float32")
        strengths = ops.sigmoid(
            ops.cast(self.strength(memory_states), "float32")
        )[..., 0]
        known = ops.einsum("bmk,bk->bm", keys, normalizer)
        recalled = _lookup(keys, matrix, normalizer)
        matrix = matrix + ops.einsum(
            "bmk,bmh,bm->bkh", keys, values - recalled, strengths
        )
        if self.correction:
            norms = ops.sum(ops.square(keys), axis=-1)
            new_part = ops.clip(
                1.0 - (known + EPSILON) / (norms + EPSILON), 0.0, 1.0
            )
            new_part = ops.stop_gradient(
                ops.where(known > 0, new_part, ops.ones_like(new_part))
            )
            keys = keys * new_part[..., None]
        normalizer = normalizer + ops.sum(keys, axis=1)
        return matrix, normalizer

    def compute_output_shape(self, hidden_shape, *args):
        return hidden_shape

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "key_dim": self.key_dim,
                "nu": self.nu,
                "correction": self.correction,
            }
        )
        return config


def _lookup(features, matrix, normalizer):
    numerator = ops.einsum("btk,bkh->bth", features, matrix)
    denominator = ops.einsum("btk,bk->bt", features, normalizer) + EPSILON
    return numerator / denominator[..., None]
