import keras
from keras import ops

from keras_rmt.adapters.decoder_blocks import DecoderBlocks
from keras_rmt.adapters.memory_layout import WriteOnlyLayout
from keras_rmt.layers.associative_memory import AssociativeMemory
from keras_rmt.layers.recurrent_segments import RecurrentSegments


@keras.saving.register_keras_serializable(package="keras_rmt")
class AssociativeRecurrentSegments(RecurrentSegments):
    """A keras-hub decoder over any length, with associative memory.

    The Associative Recurrent Memory Transformer (ARMT): the input is cut
    into segments as by `keras_rmt.layers.RecurrentSegments`, and every
    transformer layer of the backbone gets a
    `keras_rmt.layers.AssociativeMemory`. Each segment runs as
    `[segment ; memory tokens]`, the memory tokens being the same learned
    vectors in every segment. In each layer, the hidden states at the memory
    token positions are written into that layer's associative matrix (delta
    rule), and every position of the next segment reads the matrix and adds
    what it reads to the layer's input. What passes from segment to segment
    is the associative state of all layers, not the memory tokens, so far
    more key-value pairs fit than there are memory tokens.

    A subclass of `RecurrentSegments` rather than one of its options: the
    segment loops (unrolled, scanned, `infer`, `stream`), truncated
    backpropagation and the handling of rows of different lengths are the
    parent's, unchanged; only what one segment does, and what is carried,
    differ. The carried state is one tensor, `"memory"`, of shape
    `(batch_size, num_layers * key_features, hidden_dim + 1)`: per layer,
    the matrix `A` (`key_features` rows) with the normalizer `z` as its last
    column; it starts at zero. A segment that is all padding leaves a row's
    state unchanged.

    Decoders only (GPT-2, OPT, Llama, Mistral, Gemma, Qwen): the backbone's
    blocks are run one by one (`backbone.transformer_layers`), each with the
    backbone's own graph around it.

    Args:
        backbone: `keras_hub.models.Backbone`. A decoder taking `token_ids`
            and `padding_mask`.
        memory: `keras_rmt.layers.MemoryTokens`. The memory tokens placed
            after every segment. The paper uses 10 for BABILong.
        segment_length: int. Tokens per segment (memory not counted).
        key_dim: int. Size of keys and queries before the DPFP feature map.
            Defaults to `64`, the paper's BABILong setting.
        nu: int. Order of the DPFP feature map. Defaults to `3`.
        correction: bool. The paper's normalizer correction (see
            `keras_rmt.layers.AssociativeMemory`). Defaults to `True`.
        bptt_depth: int or None. Gradients flow back through at most this
            many hand-offs of the associative state; 0 stops all of them.
            Defaults to `None`: through every segment (the paper's BABILong
            setting).
        alignment: `"left"` or `"right"`. See `RecurrentSegments`. Defaults
            to `"left"`.
        carry_memory: bool. If False, every segment reads the state the
            call started from (empty unless given): the memory-less
            baseline. The `"memory"` output is then that state. Defaults to
            `True`.
        segment_loop: `"auto"`, `"unrolled"` or `"scan"`. See
            `RecurrentSegments`. Defaults to `"auto"`.
        scan_unroll: int. Segments each scan iteration runs, with
            `segment_loop="scan"`. See `RecurrentSegments`. Defaults to `1`.
        remat: bool or `"auto"`. See `RecurrentSegments`. Defaults to
            `"auto"`.
        **kwargs: other keyword arguments passed to `keras.layers.Layer`,
            including `name` and `dtype`.

    Call arguments:
        inputs: dict with `"token_ids"` and `"padding_mask"`, each of shape
            `(batch_size, tokens)` and any length, and optionally
            `"memory"`, an associative state returned by an earlier call, to
            continue from it.
        training: bool. Whether dropout is active.

    Returns:
        A dict with `"sequence_output"`, `(batch_size, tokens, hidden_dim)`,
        and `"memory"`, the associative state after the last segment.

    Example:
    ```python
    backbone = keras_hub.models.GPT2Backbone(
        vocabulary_size=100, num_layers=2, num_heads=2, hidden_dim=16,
        intermediate_dim=32, max_sequence_length=16,
    )
    armt = keras_rmt.layers.AssociativeRecurrentSegments(
        backbone,
        memory=keras_rmt.layers.MemoryTokens(num_tokens=2),
        segment_length=8,
        key_dim=4,
    )
    outputs = armt({
        "token_ids": np.ones((1, 20), "int32"),
        "padding_mask": np.ones((1, 20), "int32"),
    })
    outputs["sequence_output"].shape  # (1, 20, 16)
    outputs["memory"].shape  # (1, 2 * 24, 17)
    ```

    Reference:
     - [Rodkin et al., 2024](https://arxiv.org/abs/2407.04841)
    """

    def __init__(
        self,
        backbone,
        memory,
        segment_length,
        key_dim=64,
        nu=3,
        correction=True,
        bptt_depth=None,
        alignment="left",
        carry_memory=True,
        segment_loop="auto",
        scan_unroll=1,
        remat="auto",
        **kwargs,
    ):
        super().__init__(
            backbone,
            memory,
            segment_length,
            bptt_depth=bptt_depth,
            alignment=alignment,
            memory_layout="decoder",
            memory_attention="backbone",
            carry_memory=carry_memory,
            segment_loop=segment_loop,
            scan_unroll=scan_unroll,
            remat=remat,
            **kwargs,
        )

        # === Layers ===
        self._blocks = DecoderBlocks(self._body)
        self.associative_memories = []
        for index in range(len(self._blocks)):
            layer = AssociativeMemory(
                key_dim=key_dim,
                nu=nu,
                correction=correction,
                name=f"associative_memory_{index}",
                dtype=self.memory_dtype,
            )
            layer.build((None, None, self.hidden_dim))
            self.associative_memories.append(layer)

        # === Config ===
        self.key_dim = key_dim
        self.nu = nu
        self.correction = correction

    @property
    def state_shape(self):
        """The associative state of one row: `(rows, hidden_dim + 1)`."""
        features = self.associative_memories[0].key_features
        return (len(self._blocks) * features, self.hidden_dim + 1)

    def initial_memory(self, batch_size):
        """An empty associative state for `batch_size` rows.

        The memory a stream starts from, `(batch_size, *state_shape)` in
        `memory_dtype`: zeros, the paper's start (the memory tokens are
        part of each segment's input instead).
        """
        return ops.zeros((batch_size, *self.state_shape), self.memory_dtype)

    @property
    def memory_dtype(self):
        """The associative state's dtype: the variables' (float32 under
        mixed precision).

        The state sums the writes of every segment so far; rounded to
        bfloat16 at each segment, the matrix and its normalizer drift apart
        and the delta rule no longer cancels what it has stored. The
        associative memories compute in this dtype too, and their reads are
        cast to the blocks' dtype.
        """
        return self.variable_dtype

    @property
    def input_dtype(self):
        # The only floating input is the state: keep it unrounded.
        return self.memory_dtype

    def _split_state(self, state):
        layers = len(self._blocks)
        per_layer = ops.reshape(
            ops.cast(state, "float32"), (-1, layers, *self._layer_shape())
        )
        return (
            [per_layer[:, i, :, :-1] for i in range(layers)],
            [per_layer[:, i, :, -1] for i in range(layers)],
        )

    def _layer_shape(self):
        features = self.associative_memories[0].key_features
        return (features, self.hidden_dim + 1)

    def _join_state(self, matrices, normalizers):
        per_layer = [
            ops.concatenate([a, z[..., None]], axis=-1)
            for a, z in zip(matrices, normalizers)
        ]
        return ops.reshape(
            ops.stack(per_layer, axis=1), (-1, *self.state_shape)
        )

    def _segment_step(self, memory, initial, segment, training):
        """One segment: read every layer's memory, then write it."""
        mask = segment["padding_mask"]
        state = memory if self.carry_memory else initial
        matrices, normalizers = self._split_state(state)
        embeddings = self._body.embed(segment["token_ids"], segment, training)
        slots = ops.cast(self.memory(embeddings), embeddings.dtype)
        joined = self._layout.join(slots, embeddings)
        slot_mask = ops.ones((ops.shape(mask)[0], self.num_memory_tokens))
        joined_mask = self._layout.join(ops.cast(slot_mask, mask.dtype), mask)

        def read(index, x):
            memory_layer = self.associative_memories[index]
            reading = memory_layer(x, matrices[index], normalizers[index])
            return x + ops.cast(reading, x.dtype)

        hidden, block_outputs = self._blocks(
            self._body.embeddings_for_body(joined),
            joined_mask,
            read,
            training=training,
        )
        tokens = self._layout.split(hidden)[0]
        if not self.carry_memory:
            # The next segment reads the state this one read.
            return tokens, state
        written = [
            layer.write(self._layout.split(output)[1], a, z)
            for layer, output, a, z in zip(
                self.associative_memories, block_outputs, matrices, normalizers
            )
        ]
        new_state = self._join_state(*zip(*written))
        has_tokens = ops.any(mask != 0, axis=1)[:, None, None]
        return tokens, ops.where(
            has_tokens, ops.cast(new_state, memory.dtype), memory
        )

    def _make_layout(self, memory_layout, num_tokens):
        # Memory is read through the associative state, not a read block.
        del memory_layout
        return WriteOnlyLayout(num_tokens)

    def _unpack(self, inputs):
        if not isinstance(inputs, dict):
            return super()._unpack(inputs)
        inputs = dict(inputs)
        memory = inputs.pop("memory", None)
        token_ids, padding_mask, extras, _ = super()._unpack(inputs)
        if memory is not None and tuple(memory.shape[1:]) != self.state_shape:
            raise ValueError(
                "inputs['memory'] must be an associative state of shape "
                f"(batch_size, {self.state_shape[0]}, {self.state_shape[1]}). "
                f"Received: memory.shape={tuple(memory.shape)}"
            )
        return token_ids, padding_mask, extras, memory

    def compute_output_spec(self, inputs, training=None):
        batch, length = inputs["token_ids"].shape
        return {
            "sequence_output": keras.KerasTensor(
                (batch, length, self.hidden_dim), self.sequence_output_dtype
            ),
            "memory": keras.KerasTensor(
                (batch, *self.state_shape), self.memory_dtype
            ),
        }

    def get_config(self):
        config = super().get_config()
        del config["memory_layout"], config["memory_attention"]
        config.update(
            {
                "key_dim": self.key_dim,
                "nu": self.nu,
                "correction": self.correction,
            }
        )
        return config
