import keras
import numpy as np
from keras import ops

from keras_rmt.adapters.backbone_body import BackboneBody
from keras_rmt.adapters.decoder_stack import TransformerDecoderStack
from keras_rmt.adapters.inference_attention import fuse_attention_at_inference
from keras_rmt.adapters.memory_layout import LAYOUTS
from keras_rmt.layers import segment_checks, segment_loops
from keras_rmt.layers.memory_tokens import MemoryTokens
from keras_rmt.utils import segmentation
from keras_rmt.utils.checks import (
    check_choice,
    check_non_negative_integer,
    check_positive_integer,
)

MEMORY_ATTENTIONS = ("backbone", "bidirectional")
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
            The `"memory"` output is then that initial memory, what a next
            segment reads, so going on from it (`stream`, `segment`, a
            SavedModel's `serve_segment`) equals one call. Defaults to
            `True`.
        segment_loop: `"auto"`, `"unrolled"` or `"scan"`. How a known number
            of segments is run. `"unrolled"` traces the backbone once per
            segment, so compile time grows with the segment count; `"scan"`
            traces it once and loops (`keras.ops.scan`), threading dropout
            seed states through the loop, and is not available on
            TensorFlow. `"auto"` scans on JAX and unrolls elsewhere (its
            rule is a table of measurements, `AUTO_LOOPS` in
            `keras_rmt/layers/segment_loops.py`). All compute the same
            numbers. Defaults to `"auto"`.
        remat: bool or `"auto"`. If True, each segment's activations are
            recomputed in the backward pass instead of kept (gradient
            checkpointing, `keras.remat`): training memory stops growing
            with the segment count at the cost of about one more forward
            pass. Dropout masks are the same in both passes. JAX and torch
            only. `"auto"` recomputes where `segment_loop="auto"`'s table
            says it pays: JAX's training scan, which then needs no stacked
            activations and ran as fast or faster in a quarter of the
            memory; it is off with a `segment_loop` named by the caller.
            Defaults to `"auto"`.
        scan_unroll: int. With `segment_loop="scan"`, how many segments
            each iteration of the scan traces (`keras.ops.scan`'s
            `unroll`): between the scan (1) and the unrolled loop, compile
            time grows with it and the compiler can schedule and fuse
            across the segments of an iteration. Torch runs its scan
            eagerly, so there it changes nothing. Defaults to `1`.
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
    segment; `stream()` yields the segments' outputs one by one, and
    `segment()` runs one segment from a memory the caller holds.

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
        remat="auto",
        scan_unroll=1,
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
        check_choice("segment_loop", segment_loop, segment_loops.SEGMENT_LOOPS)
        check_choice("remat", remat, segment_loops.REMAT_CHOICES)
        segment_loops.check_backend_allows(segment_loop, remat)
        scan_unroll = segment_loops.check_scan_unroll(scan_unroll, segment_loop)
        body = BackboneBody(backbone)
        fuse_attention_at_inference(backbone)
        if memory_layout == "auto":
            memory_layout = "decoder" if body.is_causal() else "encoder"
        elif memory_layout == "encoder":
            segment_checks.check_not_causal(body)
        segment_checks.check_alignment_fits_layout(alignment, memory_layout)
        layout = self._make_layout(memory_layout, memory.num_tokens)
        segment_checks.check_memory_width(memory, body)
        segment_checks.check_fits_positions(
            body, layout, segment_length, memory.num_tokens
        )
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
        self.scan_unroll = scan_unroll
        self._inference_functions = None

    @property
    def num_memory_tokens(self):
        return self.memory.num_tokens

    @property
    def hidden_dim(self):
        return self._body.hidden_dim

    def call(self, inputs, training=None):
        token_ids, padding_mask, extras, memory = self._unpack(inputs)
        memory = self._start_memory(token_ids, memory)
        length = ops.shape(token_ids)[1]
        streams, offsets, count = self._aligned_streams(
            token_ids, padding_mask, extras
        )
        last = segmentation.last_real_segments(
            streams["padding_mask"], self.segment_length
        )
        tokens, memory = segment_loops.run_segments(
            self, streams, memory, last, count, training
        )
        sequence_output = segmentation.unalign(tokens, offsets, length)
        return {"sequence_output": sequence_output, "memory": memory}

    def segment(self, inputs, memory=None, training=False):
        """Runs one segment from a given memory.

        The step that every path repeats: `call`'s loops, `infer` and
        `stream` run each of their segments through the same one-segment
        function, and so does generation with `keras_rmt.models.RMTCausalLM`
        where no key/value cache applies. Here it runs on its own: with the
        memory after segment `i` of a stream, it gives the outputs and the
        memory of segment `i + 1`. Inputs shorter than `segment_length`
        are padded at the end, as the last segment of a left-aligned input.

        Args:
            inputs: dict with `"token_ids"` and `"padding_mask"` (and
                `"segment_ids"` for backbones that take them), each of shape
                `(batch_size, tokens)` with at most `segment_length` tokens.
            memory: optional tensor, `(batch_size, num_tokens, hidden_dim)`,
                the memory to read (whatever `carry_memory` says); defaults
                to the learned initial memory.
            training: bool. Whether dropout is active. Defaults to `False`.

        Returns:
            A dict with `"sequence_output"`, `(batch_size, tokens,
            hidden_dim)`, and `"memory"`, the memory written by the segment
            (the memory read, for rows whose segment is all padding and
            with `carry_memory=False`).

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
        ids = np.ones((1, 8), "int32")
        first = rmt.segment({"token_ids": ids, "padding_mask": ids})
        second = rmt.segment(
            {"token_ids": ids, "padding_mask": ids}, first["memory"]
        )
        second["sequence_output"].shape  # (1, 8, 16)
        ```
        """
        token_ids, padding_mask, extras, memory = self._unpack(
            {**inputs, **({} if memory is None else {"memory": memory})}
        )
        memory = self._start_memory(token_ids, memory)
        length = token_ids.shape[1]
        L = self.segment_length
        if length is not None and length > L:
            raise ValueError(
                f"`segment()` runs at most segment_length={L} tokens. "
                f"Received: token_ids.shape={tuple(token_ids.shape)}"
            )
        segment = {"token_ids": token_ids, "padding_mask": padding_mask}
        segment.update(extras)
        if length is not None and length < L:
            segment = {
                name: ops.pad(value, [[0, 0], [0, L - length]])
                for name, value in segment.items()
            }
        tokens, memory = self._segment_step(memory, memory, segment, training)
        if length is not None and length < L:
            tokens = tokens[:, :length]
        return {"sequence_output": tokens, "memory": memory}

    def _segment_step(self, memory, initial, segment, training):
        """One segment: join memory, run the backbone, split the outputs.

        The one function that runs a segment: `segment()`, the loops of
        `keras_rmt.layers.segment_loops` and the compiled step of
        `infer`/`stream` all call it, and a subclass that changes what a
        segment does overrides it. `memory` is carried from the previous
        segment, `initial` is the memory the call started from (read instead
        when `carry_memory=False`); `segment` holds the aligned inputs.
        Returns `(tokens, memory)`.
        """
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
        if not self.carry_memory:
            # The next segment reads what this one read: the memory to go on
            # from (a stream, a served segment, a later call's `memory`).
            return tokens, read
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
        for tokens, memory in segment_loops.compiled_steps(
            self, token_ids, padding_mask, extras, given
        ):
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

    @property
    def memory_dtype(self):
        """The dtype of the carried memory: the backbone's compute dtype."""
        return self._body.compute_dtype

    @property
    def sequence_output_dtype(self):
        """The dtype of `"sequence_output"`: the backbone's compute dtype,
        whatever this layer's own policy."""
        return self._body.compute_dtype

    def initial_memory(self, batch_size):
        """The memory a stream starts from, for `batch_size` rows.

        The learned memory tokens, `(batch_size, num_memory_tokens,
        hidden_dim)` in `memory_dtype`: what `call`, `stream` and `infer`
        read first when given no memory, and what generation and the
        exported `initial_memory` signature start from.
        """
        hidden = ops.zeros((batch_size, 1, self.hidden_dim))
        return ops.cast(self.memory(hidden), self.memory_dtype)

    def _start_memory(self, token_ids, memory):
        """The memory given, else `initial_memory`, in `memory_dtype`."""
        if memory is None:
            return self.initial_memory(ops.shape(token_ids)[0])
        return ops.cast(memory, self.memory_dtype)

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
        segment_checks.check_integer("token_ids", token_ids)
        segment_checks.check_token_ids_shape(token_ids)
        segment_checks.check_same_shape(token_ids, padding_mask, "padding_mask")
        segment_checks.check_values(
            token_ids, padding_mask, self._body.vocabulary_size
        )
        # keras-hub preprocessors give bool masks; segments are padded with 0.
        padding_mask = ops.cast(padding_mask, "int32")
        extras = {}
        for name in self._body.extra_input_names:
            value = inputs.get(name)
            if value is None:
                value = ops.zeros_like(token_ids)
            else:
                segment_checks.check_integer(name, value)
                segment_checks.check_same_shape(token_ids, value, name)
            extras[name] = value
        memory = inputs.get("memory")
        if memory is not None:
            segment_checks.check_memory(
                memory, token_ids, (self.num_memory_tokens, self.hidden_dim)
            )
        return token_ids, padding_mask, extras, memory

    def compute_output_spec(self, inputs, training=None):
        self._unpack(inputs)
        batch, length = inputs["token_ids"].shape
        return {
            "sequence_output": keras.KerasTensor(
                (batch, length, self.hidden_dim), self.sequence_output_dtype
            ),
            "memory": keras.KerasTensor(
                (batch, self.num_memory_tokens, self.hidden_dim),
                self.memory_dtype,
            ),
        }

    def _make_layout(self, memory_layout, num_tokens):
        """Where memory sits in a segment; overridden by layers that read
        memory another way (`AssociativeRecurrentSegments`)."""
        return LAYOUTS[memory_layout](num_tokens)

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
                "scan_unroll": self.scan_unroll,
            }
        )
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["backbone"] = keras.layers.deserialize(config["backbone"])
        config["memory"] = keras.layers.deserialize(config["memory"])
        return cls(**config)


def _block_attention_mask(layout, segment_length):
    """Causal, except that each memory block sees itself whole."""
    blocks = np.array(layout.block_ids(segment_length))
    causal = np.tril(np.ones((len(blocks), len(blocks)), "int32"))
    same_block = (blocks[:, None] == blocks[None, :]) & (blocks[:, None] > 0)
    return np.maximum(causal, same_block.astype("int32"))
