import keras
from keras import ops

from keras_rmt.utils.checks import check_positive_integer


@keras.saving.register_keras_serializable(package="keras_rmt")
class MemoryTokens(keras.layers.Layer):
    """A learned block of memory vectors, the RMT's initial memory.

    Holds a `(num_tokens, hidden_dim)` weight and returns it broadcast over
    the batch of its input. `keras_rmt.layers.RecurrentSegments` places these
    vectors among each segment's token embeddings and replaces them, segment
    after segment, with what the backbone wrote into them. On its own the
    layer does nothing else.

    When no `initializer` is given, the rows are drawn from a normal
    distribution with the standard deviation of the token embeddings they sit
    among (`RecurrentSegments` measures it from the backbone), so memory
    starts at the scale of a token and no two rows are alike.

    Args:
        num_tokens: int. The number of memory vectors.
        initializer: string or `keras.initializers.Initializer`, or None.
            How to draw the memory. Defaults to `None`: a normal distribution
            at the token embeddings' scale (stddev 0.02 until measured).
        **kwargs: other keyword arguments passed to `keras.layers.Layer`,
            including `name` and `dtype`.

    Call arguments:
        inputs: a tensor of shape `(batch_size, ..., hidden_dim)`, usually the
            token embeddings. Only its batch size and last axis are read.

    Returns:
        The memory, of shape `(batch_size, num_tokens, hidden_dim)`.

    Example:
    ```python
    memory = keras_rmt.layers.MemoryTokens(num_tokens=4)
    embeddings = keras.random.normal((2, 10, 16))
    memory(embeddings).shape  # (2, 4, 16)
    ```

    Reference:
     - [Bulatov et al., 2022](https://arxiv.org/abs/2207.06881)
    """

    def __init__(self, num_tokens, initializer=None, **kwargs):
        num_tokens = check_positive_integer("num_tokens", num_tokens)
        super().__init__(**kwargs)
        self.num_tokens = num_tokens
        self.initializer = (
            None if initializer is None else keras.initializers.get(initializer)
        )
        self.embedding_stddev = 0.02

    def match_embedding_scale(self, embedding_matrix):
        """Draw the default memory at the scale of `embedding_matrix`."""
        matrix = ops.convert_to_numpy(embedding_matrix).astype("float32")
        self.embedding_stddev = float(matrix.std())

    def build(self, inputs_shape):
        initializer = self.initializer or keras.initializers.RandomNormal(
            stddev=self.embedding_stddev
        )
        self.memory = self.add_weight(
            shape=(self.num_tokens, inputs_shape[-1]),
            initializer=initializer,
            name="memory",
        )

    def call(self, inputs):
        memory = ops.cast(self.memory, self.compute_dtype)
        return ops.broadcast_to(
            memory[None], (ops.shape(inputs)[0], *memory.shape)
        )

    def compute_output_shape(self, inputs_shape):
        return (inputs_shape[0], self.num_tokens, inputs_shape[-1])

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "num_tokens": self.num_tokens,
                "initializer": None
                if self.initializer is None
                else keras.initializers.serialize(self.initializer),
            }
        )
        return config
