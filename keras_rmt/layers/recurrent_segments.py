import keras
import numpy as np
from keras import ops

from keras_rmt.backbones.backbone_body import BackboneBody
from keras_rmt.backbones.decoder_stack import TransformerDecoderStack
from keras_rmt.backbones.inference_attention import fuse_attention_at_inference
from keras_rmt.backbones.memory_layout import LAYOUTS
from keras_rmt.layers.memory_tokens import MemoryTokens
from keras_rmt.utils import segmentation
from keras_rmt.utils.checks import (
    check_choice,
    check_non_negative_integer,
    check_positive_integer,
)
from keras_rmt.utils.compiled_step import compile_for_inference

MEMORY_ATTENTIONS = ("backbone", "bidirectional")
SEGMENT_LOOPS = ("auto", "unrolled", "scan")
KEEP_OUTPUTS = ("all", "last_segment")


@keras.saving.register_keras_serializable(package="keras_rmt")
class RecurrentSegments(keras.layers.Layer):
    """Runs a keras-hub backbone over any length, segment by segment.

    The Recurrent Memory Transformer: the input is cut into segments of
    `segment_length` tokens; learned memory vectors are placed among each
    segment's token embeddings, the backbone runs on the segment, and its
    outputs at the memory positions become the memory of the next segment.
    Cost grows linearly with length and attention never spans more than one
    segment. Memory positions are removed from `sequence_output`.

    Where memory goes depends on the backbone (`memory_layout`):
    - `"decoder"` (causal backbones: GPT-2, OPT, Llama, Mistral, Gemma...):
      `[read memory ; segment ; write memory]`. Tokens read the memory that
      comes first; the block at the end, which sees the whole segment, is
      written. Uses `segment_length + 2 * num_tokens` positions.
    - `"encoder"` (bidirectional backbones: BERT, RoBERTa, DistilBERT...):
      `[first token ; memory ; rest of segment]`: one block right after each
      segment's first token (`[CLS]` when the preprocessor puts one at the
      start of every segment). Uses `segment_length + num_tokens` positions.
    - `"auto"` (default) picks one by checking whether the backbone's first
      output depends on later tokens. The encoder layout is refused on a
      causal backbone (its memory would see only the first token) and with
      `alignment="right"` (the memory would sit after a pad).

    Backbones with factorized embeddings (ALBERT, ELECTRA with
    `embedding_dim != hidden_dim`) are joined with the memory after their
    embedding projection, at the hidden width; there the memory takes no
    position of the position table.

    Losses the backbone adds with `add_loss` (the router losses of MoE
    families: Mixtral, QwenMoe, Qwen3Moe) are added to this layer's
    `losses`, summed over segments, with every `segment_loop` and `remat`.

    Rows of a batch may hold inputs of different lengths (padding at the
    end): a segment that is all padding leaves that row's memory unchanged,
    so a short row gives the same outputs and memory as it would alone.

    The layer does not hold the backbone's weights twice: it opens the given
    backbone at its token embedding and reuses its layers.

    Args:
        backbone: `keras_hub.models.Backbone`. A text backbone taking
            `token_ids` and `padding_mask` (and optionally `segment_ids`).
        memory: `keras_rmt.layers.MemoryTokens`. The learned initial memory.
        segment_length: int. Tokens per segment (memory not counted).
        bptt_depth: int or None. Gradients flow back through at most this
            many memory hand-offs (truncated backprop through time), counted
            back from each row's own last segment, so a row's gradients do
            not depend on the other rows; 0 stops all of them. Defaults to
            `None`: through every segment.
        alignment: `"left"` or `"right"`. With `"left"`, segments start at
            the first token and the last one is padded; with `"right"`, each
            row's last token ends a segment and its first segment is padded.
            Defaults to `"left"`.
        memory_layout: `"auto"`, `"decoder"` or `"encoder"`. See above.
            Defaults to `"auto"`.
        memory_attention: `"backbone"` or `"bidirectional"`. With
            `"backbone"`, memory positions follow the backbone's own mask
            (causal backbones: read token i sees read tokens up to i), which
            works with any backbone. With `"bidirectional"`, each memory block
            also sees itself whole, as in the paper; this needs blocks that
            take an attention mask (keras-hub `TransformerDecoder`: GPT-2,
            OPT). Defaults to `"backbone"`.
        carry_memory: bool. If False, every segment reads the initial memory
            instead of the previous segment's: the memory-less baseline.
            Defaults to `True`.
        segment_loop: `"auto"`, `"unrolled"` or `"scan"`. How a known number
            of segments is run. `"unrolled"` traces the backbone once per
            segment, so compile time grows with the segment count; `"scan"`
            traces it once and loops (`keras.ops.scan`), threading dropout
            seed states through the loop, and is not available on
            TensorFlow. `"auto"` scans on JAX and unrolls elsewhere. Both
            compute the same numbers. Defaults to `"auto"`.
        remat: bool. If True, each segment's activations are recomputed in
            the backward pass instead of kept (gradient checkpointing,
            `keras.remat`): training memory stops growing with the segment
            count at the cost of about one more forward pass. Dropout masks
            are the same in both passes. JAX and torch only. Defaults to
            `False`.
        **kwargs: other keyword arguments passed to `keras.layers.Layer`,
            including `name` and `dtype`.

    Call arguments:
        inputs: dict with `"token_ids"` and `"padding_mask"`, each of shape
            `(batch_size, tokens)` and any length, `"segment_ids"` for
            backbones that take them, and optionally `"memory"`, of shape
            `(batch_size, num_tokens, hidden_dim)`, to continue from the
            memory of an earlier call.
        training: bool. Whether dropout is active.

    Inputs are checked (see `docs/bad_inputs.md`): shapes and dtypes always,
    token ids against the vocabulary and mask values against {0, 1} only in
    eager calls, where their values are known.

    For inference over long inputs, `infer()` runs one compiled segment step
    per segment (compiled once per batch size, whatever the length) and can
    keep only the last segment's outputs, so memory stays that of one
    segment; `stream()` yields the segments' outputs one by one.

    Returns:
        A dict with `"sequence_output"`, `(batch_size, tokens, hidden_dim)`,
        and `"memory"`, `(batch_size, num_tokens, hidden_dim)`: the memory
        after the last segment.

    Example:
    ```python
    backbone = keras_hub.models.GPT2Backbone(
        vocabulary_size=100, num_layers=2, num_heads=2, hidden_dim=16,
        intermediate_dim=32, max_sequence_length=16,
    )
    rmt = keras_rmt.layers.RecurrentSegments(
        backbone,
        memory=keras_rmt.layers.MemoryTokens(num_tokens=2),
        segment_length=8,
    )
    outputs = rmt({
        "token_ids": np.ones((1, 20), "int32"),
        "padding_mask": np.ones((1, 20), "int32"),
    })
    outputs["sequence_output"].shape  # (1, 20, 16)
    outputs["memory"].shape  # (1, 2, 16)
    last = rmt.infer({
        "token_ids": np.ones((1, 40), "int32"),
        "padding_mask": np.ones((1, 40), "int32"),
    }, keep="last_segment")
    last["sequence_output"].shape  # (1, 8, 16)
    ```

    Reference:
     - [Bulatov et al., 2022](https://arxiv.org/abs/2207.06881)
    """

    def __init__(
        self,
        backbone,
        memory,
        segment_length,
        bptt_depth=None,
        alignment="left",
        memory_layout="auto",
        memory_attention="backbone",
        carry_memory=True,
        segment_loop="auto",
        remat=False,
        **kwargs,
    ):
        if not isinstance(memory, MemoryTokens):
            raise ValueError(
                "`memory` must be a keras_rmt.layers.MemoryTokens. "
                f"Received: memory={memory!r}"
            )
        segment_length = check_positive_integer(
            "segment_length", segment_length
        )
        bptt_depth = check_non_negative_integer(
            "bptt_depth", bptt_depth, allow_none=True
        )
        check_choice("alignment", alignment, segmentation.ALIGNMENTS)
        check_choice("memory_layout", memory_layout, ("auto", *LAYOUTS))
        check_choice("memory_attention", memory_attention, MEMORY_ATTENTIONS)
        check_choice("segment_loop", segment_loop, SEGMENT_LOOPS)
        _check_backend_allows(segment_loop, remat)
        body = BackboneBody(backbone)
        fuse_attention_at_inference(backbone)
        if memory_layout == "auto":
            memory_layout = "decoder" if body.is_causal() else "encoder"
        elif memory_layout == "encoder":
            _check_not_causal(body)
        _check_alignment_fits_layout(alignment, memory_layout)
        layout = LAYOUTS[memory_layout](memory.num_tokens)
        _check_memory_width(memory, body)
        _check_fits_positions(body, layout, segment_length, memory.num_tokens)
        kwargs.setdefault("dtype", backbone.dtype_policy)
        super().__init__(**kwargs)

        # === Layers ===
        self.backbone = backbone
        self.memory = memory
        self._body = body
        self._layout = layout
        self._decoder_stack = None
        if memory_attention == "bidirectional" and memory_layout == "decoder":
            self._decoder_stack = TransformerDecoderStack(body)
            self._block_mask = _block_attention_mask(layout, segment_length)

        if not memory.built:
            if memory.initializer is None:
                memory.match_embedding_scale(body.token_embedding.embeddings)
            memory.build((None, None, body.hidden_dim))
        self.built = True

        # === Config ===
        self.segment_length = segment_length
        self.bptt_depth = bptt_depth
        self.alignment = alignment
        self.memory_layout = memory_layout
        self.memory_attention = memory_attention
        self.carry_memory = carry_memory
        self.segment_loop = segment_loop
        self.remat = remat
        self._inference_step = None

    @property
    def num_memory_tokens(self):
        return self.memory.num_tokens

    @property
    def hidden_dim(self):
        return self._body.hidden_dim

    def call(self, inputs, training=None):
        token_ids, padding_mask, extras, memory = self._unpack(inputs)
        if memory is None:
            batch = ops.shape(token_ids)[0]
            memory = self.memory(ops.zeros((batch, 1, self.hidden_dim)))
        memory = ops.cast(memory, self._body.compute_dtype)
        length = ops.shape(token_ids)[1]
        streams, offsets, count = self._aligned_streams(
            token_ids, padding_mask, extras
        )
        last = segmentation.last_real_segments(
            streams["padding_mask"], self.segment_length
        )
        if isinstance(count, int) and self._scans(count):
            loop = self._threaded_scan
        elif isinstance(count, int):
            loop = self._unrolled
        else:
            loop = self._scanned
        tokens, memory = loop(streams, memory, last, count, training)
        sequence_output = segmentation.unalign(tokens, offsets, length)
        return {"sequence_output": sequence_output, "memory": memory}

    def _scans(self, count):
        if count < 2 or self.segment_loop == "unrolled":
            return False
        return self.segment_loop == "scan" or keras.backend.backend() == "jax"

    def _unrolled(self, streams, memory, last, count, training):
        """A Python loop: one traced copy of the backbone per segment."""
        initial, outputs = memory, []
        L = self.segment_length
        if self.remat:
            step, weights, states = self._stateless_step(
                initial, last, training
            )
            weight_values = [ops.convert_to_tensor(v.value) for v in weights]
        for index in range(count):
            segment = {
                k: v[:, index * L : (index + 1) * L] for k, v in streams.items()
            }
            if self.remat:
                state_values = [ops.convert_to_tensor(v.value) for v in states]
                tokens, memory, state_values, loss = step(
                    weight_values, memory, index, state_values, segment
                )
                _write_back(states, state_values, training)
                self._add_segment_losses(step, loss)
            else:
                memory = self._hand_off(memory, index, last)
                tokens, memory = self._segment_step(
                    memory, initial, segment, training
                )
            outputs.append(tokens)
        return ops.concatenate(outputs, axis=1), memory

    def _stateless_step(self, initial, last, training):
        """One segment as a function of the variables' values.

        Variables are read through a `StatelessScope` and the seed states
        that dropout advances are returned, not assigned. Inside a scan this
        keeps values traced in the loop from escaping it (on JAX that raises
        `UnexpectedTracerError`); under `remat` the recomputation sees the
        same seeds, so the same dropout masks, as the first pass. Losses the
        backbone adds (`add_loss`, e.g. MoE routers) are returned summed, for
        `_add_segment_losses` to add outside the loop.
        """
        variables = self.variables
        weights = [v for v in variables if v.trainable]
        states = [v for v in variables if not v.trainable]

        def step(weight_values, memory, index, state_values, segment):
            mapping = [*zip(weights, weight_values), *zip(states, state_values)]
            with _LossCollectingScope(self, step, mapping) as scope:
                memory = self._hand_off(memory, index, last)
                tokens, memory = self._segment_step(
                    memory, initial, segment, training
                )
            state_values = [scope.get_current_value(v) for v in states]
            return tokens, memory, state_values, scope.total_loss

        step.adds_losses = False
        if self.remat:
            remat_step = keras.remat(step)
            # `keras.remat` wraps the function; the flag stays on `step`.
            return _RematStep(remat_step, step), weights, states
        return step, weights, states

    def _add_segment_losses(self, step, total):
        """Adds the losses a stateless step collected, once for the loop."""
        if getattr(step, "adds_losses", False):
            self.add_loss(total)

    def _threaded_scan(self, streams, memory, last, count, training):
        """A scan over a known number of segments, traced once."""
        initial, L = memory, self.segment_length
        step, weights, states = self._stateless_step(initial, last, training)
        weight_values = [ops.convert_to_tensor(v.value) for v in weights]
        batch = ops.shape(streams["token_ids"])[0]

        def loop_body(carry, segment):
            memory, index, state_values, total = carry
            tokens, memory, state_values, loss = step(
                weight_values, memory, index, state_values, segment
            )
            return (memory, index + 1, state_values, total + loss), tokens

        segments = {
            name: ops.moveaxis(ops.reshape(value, (batch, count, L)), 1, 0)
            for name, value in streams.items()
        }
        start = (
            memory,
            ops.convert_to_tensor(0, "int32"),
            [v.value for v in states],
            ops.zeros((), "float32"),
        )
        (memory, _, state_values, total), tokens = ops.scan(
            loop_body, start, segments
        )
        _write_back(states, state_values, training)
        self._add_segment_losses(step, total)
        tokens = ops.reshape(
            ops.moveaxis(tokens, 0, 1), (batch, count * L, self.hidden_dim)
        )
        return tokens, memory

    def _scanned(self, streams, memory, last, count, training):
        """A scan: for graphs traced before the length is known (TF)."""
        initial, names = memory, list(streams)
        states = [v for v in self.variables if not v.trainable]

        def step(carry, segment):
            memory, _, index, total = carry
            segment = {name: segment[..., i] for i, name in enumerate(names)}
            # Variables are read as they are; only the losses are collected
            # (tensors of the loop body cannot be read after the loop).
            with _LossCollectingScope(self, step) as scope:
                memory = self._hand_off(memory, index, last)
                tokens, memory = self._segment_step(
                    memory, initial, segment, training
                )
            _write_back(
                states, [scope.get_current_value(v) for v in states], training
            )
            # TF's scan wants outputs shaped like the carry.
            carry = (memory, tokens, index + 1, total + scope.total_loss)
            return carry, carry

        step.adds_losses = False
        batch = ops.shape(streams["token_ids"])[0]
        shape = (batch, count, self.segment_length)
        # One stacked input: Keras' TF scan cannot check several of unknown
        # length.
        segments = ops.stack(
            [ops.cast(ops.reshape(streams[n], shape), "int32") for n in names],
            axis=-1,
        )
        first_tokens = ops.zeros(
            (batch, self.segment_length, self.hidden_dim), memory.dtype
        )
        start = (
            memory,
            first_tokens,
            ops.convert_to_tensor(0, "int32"),
            ops.zeros((), "float32"),
        )
        (memory, _, _, total), (_, tokens, _, _) = ops.scan(
            step, start, ops.transpose(segments, (1, 0, 2, 3))
        )
        self._add_segment_losses(step, total)
        tokens = ops.reshape(
            ops.transpose(tokens, (1, 0, 2, 3)),
            (batch, count * self.segment_length, self.hidden_dim),
        )
        return tokens, memory

    def _hand_off(self, memory, index, last):
        """Stops gradients through hand-offs older than `bptt_depth`.

        Counted back from each row's own last real segment (`last`), so that
        a row's gradients do not depend on the other rows of the batch.
        """
        if self.bptt_depth is None:
            return memory
        truncated = ops.logical_and(
            ops.greater_equal(index, 1),
            ops.less_equal(index, last - self.bptt_depth),
        )
        return ops.where(
            truncated[:, None, None], ops.stop_gradient(memory), memory
        )

    def _segment_step(self, memory, initial, segment, training):
        """One segment: join memory, run the backbone, split the outputs."""
        mask = segment["padding_mask"]
        read = memory if self.carry_memory else initial
        embeddings = self._body.embed(segment["token_ids"], segment, training)
        joined = self._layout.join(ops.cast(read, embeddings.dtype), embeddings)
        memory_slots = ops.ones(
            (ops.shape(mask)[0], self.num_memory_tokens), mask.dtype
        )
        joined_mask = self._layout.join(memory_slots, mask)
        if self._decoder_stack is not None:
            hidden = self._decoder_stack(
                self._body.embeddings_for_body(joined),
                joined_mask,
                ops.broadcast_to(
                    self._block_mask[None],
                    (ops.shape(mask)[0], *self._block_mask.shape),
                ),
                training=training,
            )
        else:
            extras = {
                name: self._layout.join(
                    ops.zeros_like(memory_slots), segment[name]
                )
                for name in self._body.body_extra_names
            }
            hidden = self._body(joined, joined_mask, extras, training=training)
        tokens, written = self._layout.split(hidden)
        has_tokens = ops.any(mask != 0, axis=1)[:, None, None]
        return tokens, ops.where(
            has_tokens, ops.cast(written, memory.dtype), memory
        )

    def stream(self, inputs, memory=None):
        """Yields the outputs of each segment, one compiled step at a time.

        Inference only (no dropout). Every segment runs through the same
        compiled one-segment step (compiled once per batch size), so a long
        input costs one compilation and the memory of one segment.

        Args:
            inputs: dict, as for `call`, without `"memory"`.
            memory: optional tensor `(batch_size, num_tokens, hidden_dim)`
                to continue from; defaults to the learned initial memory.

        Yields:
            dicts with `"sequence_output"`, `(batch_size, segment_length,
            hidden_dim)`, the outputs of one aligned segment (rows shifted by
            right alignment keep their padding), and `"memory"` after it.
        """
        token_ids, padding_mask, extras, given = self._unpack(
            {**inputs, **({} if memory is None else {"memory": memory})}
        )
        if given is None:
            batch = ops.shape(token_ids)[0]
            given = self.memory(ops.zeros((batch, 1, self.hidden_dim)))
        # As in `call`: the memory given is also what `carry_memory=False`
        # reads in every segment.
        initial = memory = ops.cast(given, self._body.compute_dtype)
        streams, _, count = self._aligned_streams(
            token_ids, padding_mask, extras
        )
        step = self._compiled_inference_step()
        L = self.segment_length
        for index in range(int(count)):
            segment = {
                k: v[:, index * L : (index + 1) * L] for k, v in streams.items()
            }
            tokens, memory = step(memory, initial, segment)
            yield {"sequence_output": tokens, "memory": memory}

    def infer(self, inputs, memory=None, keep="all"):
        """`call(inputs, training=False)` through one compiled segment step.

        Gives the numbers of `call` while compiling only one segment, once
        per batch size, whatever the input length (`call` inside a compiled
        function traces every segment, or a scan of them).

        Args:
            inputs: dict, as for `call`; may hold `"memory"`.
            memory: optional memory to continue from (or `inputs["memory"]`).
            keep: `"all"` returns the whole `sequence_output`, as `call`;
                `"last_segment"` returns only the last segment's aligned
                outputs, `(batch_size, segment_length, hidden_dim)`, so that
                memory use does not grow with the input length.

        Returns:
            A dict with `"sequence_output"` and `"memory"`.
        """
        check_choice("keep", keep, KEEP_OUTPUTS)
        inputs = dict(inputs)
        if memory is None:
            memory = inputs.pop("memory", None)
        outputs, last = [], None
        for last in self.stream(inputs, memory):
            if keep == "all":
                outputs.append(last["sequence_output"])
        if keep == "last_segment":
            return last
        _, padding_mask, _, _ = self._unpack(inputs)
        offsets = segmentation.row_offsets(
            padding_mask, self.segment_length, self.alignment
        )
        length = ops.shape(padding_mask)[1]
        sequence_output = segmentation.unalign(
            ops.concatenate(outputs, axis=1), offsets, length
        )
        return {"sequence_output": sequence_output, "memory": last["memory"]}

    def _aligned_streams(self, token_ids, padding_mask, extras):
        length = ops.shape(token_ids)[1]
        count = segmentation.num_segments(length, self.segment_length)
        offsets = segmentation.row_offsets(
            padding_mask, self.segment_length, self.alignment
        )
        total = count * self.segment_length
        streams = {
            "token_ids": segmentation.align(token_ids, offsets, total),
            "padding_mask": segmentation.align(padding_mask, offsets, total),
            **{
                name: segmentation.align(value, offsets, total)
                for name, value in extras.items()
            },
        }
        return streams, offsets, count

    def _compiled_inference_step(self):
        if self._inference_step is None:

            def step(memory, initial, segment):
                return self._segment_step(memory, initial, segment, False)

            self._inference_step = compile_for_inference(self, step)
        return self._inference_step

    def _unpack(self, inputs):
        if not isinstance(inputs, dict):
            raise ValueError(
                "RecurrentSegments takes a dict with 'token_ids' and "
                f"'padding_mask'. Received: inputs={inputs!r}"
            )
        allowed = {
            "token_ids",
            "padding_mask",
            "memory",
            *self._body.extra_input_names,
        }
        for key in ("token_ids", "padding_mask"):
            if key not in inputs:
                raise ValueError(
                    f"RecurrentSegments needs inputs['{key}']. "
                    f"Received keys: {sorted(inputs)}"
                )
        unknown = set(inputs) - allowed
        if unknown:
            raise ValueError(
                f"RecurrentSegments takes inputs {sorted(allowed)}. "
                f"Received unknown keys: {sorted(unknown)}"
            )
        token_ids = inputs["token_ids"]
        padding_mask = inputs["padding_mask"]
        _check_integer("token_ids", token_ids)
        _check_token_ids_shape(token_ids)
        _check_same_shape(token_ids, padding_mask, "padding_mask")
        _check_values(token_ids, padding_mask, self._body.vocabulary_size)
        # keras-hub preprocessors give bool masks; segments are padded with 0.
        padding_mask = ops.cast(padding_mask, "int32")
        extras = {}
        for name in self._body.extra_input_names:
            value = inputs.get(name)
            if value is None:
                value = ops.zeros_like(token_ids)
            else:
                _check_integer(name, value)
                _check_same_shape(token_ids, value, name)
            extras[name] = value
        memory = inputs.get("memory")
        if memory is not None:
            expected = (self.num_memory_tokens, self.hidden_dim)
            if len(memory.shape) != 3 or tuple(memory.shape[1:]) != expected:
                raise ValueError(
                    "inputs['memory'] must have shape (batch_size, "
                    f"{expected[0]}, {expected[1]}). "
                    f"Received: memory.shape={tuple(memory.shape)}"
                )
            batches = (memory.shape[0], token_ids.shape[0])
            if None not in batches and batches[0] != batches[1]:
                raise ValueError(
                    "inputs['memory'] must have the batch size of "
                    "inputs['token_ids']. Received: "
                    f"memory.shape={tuple(memory.shape)}, "
                    f"token_ids.shape={tuple(token_ids.shape)}"
                )
        return token_ids, padding_mask, extras, memory

    def compute_output_spec(self, inputs, training=None):
        self._unpack(inputs)
        batch, length = inputs["token_ids"].shape
        dtype = self.compute_dtype
        return {
            "sequence_output": keras.KerasTensor(
                (batch, length, self.hidden_dim), dtype
            ),
            "memory": keras.KerasTensor(
                (batch, self.num_memory_tokens, self.hidden_dim), dtype
            ),
        }

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "backbone": keras.layers.serialize(self.backbone),
                "memory": keras.layers.serialize(self.memory),
                "segment_length": self.segment_length,
                "bptt_depth": self.bptt_depth,
                "alignment": self.alignment,
                "memory_layout": self.memory_layout,
                "memory_attention": self.memory_attention,
                "carry_memory": self.carry_memory,
                "segment_loop": self.segment_loop,
                "remat": self.remat,
            }
        )
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["backbone"] = keras.layers.deserialize(config["backbone"])
        config["memory"] = keras.layers.deserialize(config["memory"])
        return cls(**config)


def _write_back(states, values, training):
    # Only dropout advances seed states; writing them back outside training
    # would only risk storing traced values where no scope expects them.
    if training:
        for variable, value in zip(states, values):
            if value is not None:
                variable.assign(value)


class _LossCollectingScope(keras.StatelessScope):
    """A `StatelessScope` that collects the losses added inside it.

    `total_loss` is their float32 sum (0 if none); when there are any,
    `step.adds_losses` is set, at trace time, so that the loop adds the
    total once outside. The layers that added them forget the tensors' ids
    (they are not losses of the outer scope, and a freed id may be reused).
    """

    def __init__(self, layer, step, state_mapping=None):
        super().__init__(state_mapping=state_mapping, collect_losses=True)
        self.layer = layer
        self.step = step
        self.total_loss = None

    def __exit__(self, *args, **kwargs):
        super().__exit__(*args, **kwargs)
        losses = list(self.losses)
        self.total_loss = ops.zeros((), "float32")
        if not losses:
            return
        self.step.adds_losses = True
        for loss in losses:
            self.total_loss = self.total_loss + ops.cast(
                ops.sum(loss), "float32"
            )
        ids = {id(loss) for loss in losses}
        for layer in self.layer._flatten_layers():
            layer._loss_ids.difference_update(ids)


class _RematStep:
    """`keras.remat(step)`, keeping `step.adds_losses` readable."""

    def __init__(self, remat_step, step):
        self.remat_step = remat_step
        self.step = step

    @property
    def adds_losses(self):
        return self.step.adds_losses

    def __call__(self, *args):
        return self.remat_step(*args)


def _block_attention_mask(layout, segment_length):
    """Causal, except that each memory block sees itself whole."""
    blocks = np.array(layout.block_ids(segment_length))
    causal = np.tril(np.ones((len(blocks), len(blocks)), "int32"))
    same_block = (blocks[:, None] == blocks[None, :]) & (blocks[:, None] > 0)
    return np.maximum(causal, same_block.astype("int32"))


def _check_backend_allows(segment_loop, remat):
    if keras.backend.backend() != "tensorflow":
        return
    if segment_loop == "scan":
        raise ValueError(
            "`segment_loop='scan'` is not available on the TensorFlow "
            "backend (its scan cannot differentiate through keras-hub "
            "layers under XLA); use 'auto' or 'unrolled'. "
            f"Received: segment_loop={segment_loop!r}"
        )
    if remat:
        raise ValueError(
            "`remat=True` is not available on the TensorFlow backend: "
            "`tf.recompute_grad` gave wrong gradients through dropout. "
            f"Received: remat={remat!r}"
        )


def _check_integer(name, tensor):
    dtype = keras.backend.standardize_dtype(tensor.dtype)
    if "int" not in dtype and dtype != "bool":
        raise ValueError(
            f"inputs['{name}'] must hold integers. "
            f"Received: {name} with dtype {dtype}"
        )


def _check_token_ids_shape(token_ids):
    shape = tuple(token_ids.shape)
    if len(shape) != 2:
        raise ValueError(
            "inputs['token_ids'] must have shape (batch_size, tokens). "
            f"Received: token_ids.shape={shape}"
        )
    if shape[1] == 0:
        raise ValueError(
            "inputs['token_ids'] must hold at least one token per row. "
            f"Received: token_ids.shape={shape}"
        )


def _concrete(tensor):
    """The values of `tensor` as NumPy, or None while it is being traced."""
    if isinstance(tensor, np.ndarray):
        return tensor
    if isinstance(tensor, keras.KerasTensor):
        return None
    try:
        return np.asarray(ops.convert_to_numpy(tensor))
    except Exception:  # Each backend raises its own type for traced values.
        return None


def _check_values(token_ids, padding_mask, vocabulary_size):
    """Checks token ids and mask values where they are known (eager calls).

    Inside compiled functions (`jit`, `tf.function`, `fit` on JAX and
    TensorFlow) the values are unknown while tracing and are not checked.
    """
    mask = _concrete(padding_mask)
    if mask is not None and mask.size and not np.isin(mask, (0, 1)).all():
        bad = np.unique(mask[~np.isin(mask, (0, 1))])[:5].tolist()
        raise ValueError(
            "inputs['padding_mask'] must hold only 0 and 1 (or booleans). "
            f"Received: padding_mask with values {bad}"
        )
    ids = _concrete(token_ids)
    if ids is None or not ids.size or vocabulary_size is None:
        return
    low, high = int(ids.min()), int(ids.max())
    if low < 0 or high >= vocabulary_size:
        raise ValueError(
            "inputs['token_ids'] must be in [0, vocabulary_size) with the "
            f"backbone's vocabulary_size={vocabulary_size}. Received: "
            f"token_ids from {low} to {high}"
        )


def _check_same_shape(token_ids, other, name):
    if tuple(token_ids.shape) != tuple(other.shape) and None not in (
        *token_ids.shape,
        *other.shape,
    ):
        raise ValueError(
            f"inputs['{name}'] must have the shape of inputs['token_ids']. "
            f"Received: token_ids.shape={tuple(token_ids.shape)}, "
            f"{name}.shape={tuple(other.shape)}"
        )


def _check_not_causal(body):
    if body.is_causal():
        raise ValueError(
            "`memory_layout='encoder'` needs a bidirectional backbone: on a "
            "causal one the memory, placed after the first token, would see "
            "only that token and write nothing of the segment. Use "
            "memory_layout='decoder' (or 'auto'). Received: "
            f"memory_layout='encoder', backbone={type(body.backbone).__name__}"
        )


def _check_alignment_fits_layout(alignment, memory_layout):
    if memory_layout == "encoder" and alignment == "right":
        raise ValueError(
            "`alignment='right'` cannot be used with the encoder memory "
            "layout: right alignment pads the start of a row's first "
            "segment, so the memory would sit after a pad instead of after "
            "the segment's first token. Use alignment='left'. Received: "
            "alignment='right', memory_layout='encoder'"
        )


def _check_memory_width(memory, body):
    if memory.built and int(memory.memory.shape[-1]) != body.hidden_dim:
        raise ValueError(
            "`memory` was built for vectors of width "
            f"{int(memory.memory.shape[-1])}, but the backbone's hidden "
            f"width is {body.hidden_dim}. Pass an unbuilt MemoryTokens (it "
            "is built at the backbone's width). Received: memory with "
            f"weight shape {tuple(memory.memory.shape)}"
        )


def _check_fits_positions(body, layout, segment_length, num_tokens):
    limit = body.max_sequence_length
    if limit is None:
        return
    needed = segment_length
    if body.memory_takes_positions:
        needed = layout.positions_used(segment_length)
    if needed <= limit:
        return
    problem = (
        f"A segment and its memory need {needed} positions "
        f"({layout.name} layout), more than the backbone's position table "
        f"holds (max_sequence_length={limit}). "
        f"Received: segment_length={segment_length}, num_tokens={num_tokens}."
    )
    longest = segment_length - (needed - limit)
    if longest >= 1:
        raise ValueError(f"{problem} Use segment_length <= {longest}.")
    memory_positions = needed - segment_length
    raise ValueError(
        f"{problem} The memory alone takes {memory_positions} positions and "
        "leaves no room for a segment: use fewer memory tokens."
    )
