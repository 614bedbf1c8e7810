import functools
import inspect
import math
import sys
import warnings

import keras
import keras_hub
import numpy as np
from keras import ops

from keras_rmt.export.saved_model_export import SavedModelExport
from keras_rmt.layers.associative_recurrent_segments import (
    AssociativeRecurrentSegments,
)
from keras_rmt.metrics.segment_losses import SegmentLosses
from keras_rmt.models.preset_loader import load_rmt_task
from keras_rmt.models.rmt_backbone import RMTBackbone
from keras_rmt.models.rmt_causal_lm_preprocessor import RMTCausalLMPreprocessor
from keras_rmt.models.segment_cache import segment_cache_for
from keras_rmt.models.token_dataset_inputs import TokenDatasetInputs

# Per-segment losses reported when neither compile() nor a preprocessor's
# sequence length says how many segments the data has.
DEFAULT_SEGMENT_METRICS = 4


@keras.saving.register_keras_serializable(package="keras_rmt")
class RMTCausalLM(
    TokenDatasetInputs, SavedModelExport, keras_hub.models.CausalLM
):
    """A Recurrent Memory Transformer language model over inputs of any length.

    Predicts the next token at every position of an input of any length,
    read segment by segment by a `keras_rmt.models.RMTBackbone` whose memory
    carries what earlier segments held. The logits reuse the wrapped
    backbone's token embedding in reverse (`token_embedding(x,
    reverse=True)`), which is a tied output layer where the backbone ties it
    (GPT-2, OPT, Gemma) and the backbone's own output layer where it does not
    (Llama, Mistral).

    Training: `compile()` defaults to Adam and a token-weighted
    cross-entropy over all segments: the sum of per-token losses weighted by
    `sample_weight`, divided by the sum of the weights. `sample_weight` is
    the labels mask: zero it outside the answer tokens, or outside the last
    segment, to train on those alone. Besides the loss and weighted accuracy,
    `fit()` and `evaluate()` report `segment_1_loss`, `segment_2_loss`...,
    the loss of each segment on its own (see `keras_rmt.metrics
    .SegmentLosses`), so one can see whether late segments gain from memory.

    Generation: `generate()` reads the prompt segment by segment to build the
    memory, then samples with the sampler given to `compile()` (any
    keras-hub sampler: greedy, top-k, top-p, random, beam and contrastive
    search, with the memory carried per beam). When the current segment
    fills up, its memory is written and generation goes on in a new
    segment, so the generated length is not bounded by the backbone's
    position table. Generation reads the stream in segments that start at
    its first token, whatever the backbone's `alignment`. Within a segment,
    every keras-hub decoder whose CausalLM has a key/value cache (GPT-2,
    OPT, Llama, Mistral, Gemma, Qwen, Phi-3, Falcon, Bloom, GPT-NeoX...)
    runs one token a step through that family's own cache code; other
    backbones, and `memory_attention="bidirectional"`, run the segment again
    at each step (with a warning). `generate(..., return_memory=True)` and
    `generate(..., memory=m)` carry a conversation across calls; `score()`
    gives per-token logits or losses over any length.

    Args:
        backbone: `keras_rmt.models.RMTBackbone` over a causal (decoder)
            backbone.
        preprocessor: a preprocessor that turns strings into the
            `token_ids` / `padding_mask` the task takes (for instance
            `keras_rmt.models.RMTCausalLMPreprocessor`), or None to feed
            token ids directly. Defaults to `None`.
        **kwargs: other keyword arguments passed to
            `keras_hub.models.CausalLM`, including `name`.

    Example:
    ```python
    gpt2 = keras_hub.models.GPT2Backbone(
        vocabulary_size=100, num_layers=2, num_heads=2, hidden_dim=16,
        intermediate_dim=32, max_sequence_length=16,
    )
    backbone = keras_rmt.models.RMTBackbone(
        gpt2, num_memory_tokens=2, segment_length=8
    )
    causal_lm = keras_rmt.models.RMTCausalLM(backbone)
    x = {
        "token_ids": np.ones((2, 24), "int32"),
        "padding_mask": np.ones((2, 24), "int32"),
    }
    causal_lm.predict(x, verbose=0).shape  # (2, 24, 100)
    causal_lm.compile(sampler="greedy")
    prompt = {
        "token_ids": np.ones((1, 12), "int32"),
        "padding_mask": (np.arange(12) < 5)[None].astype("int32"),
    }
    output = causal_lm.generate(prompt, stop_token_ids=None)
    output["token_ids"].shape  # (1, 12)
    ```

    Reference:
     - [Bulatov et al., 2022](https://arxiv.org/abs/2207.06881)
    """

    backbone_cls = RMTBackbone
    preprocessor_cls = RMTCausalLMPreprocessor

    def __init__(self, backbone, preprocessor=None, **kwargs):
        _check_decoder_backbone(backbone)
        # === Layers ===
        self.backbone = backbone
        self.preprocessor = preprocessor

        # === Functional Model ===
        inputs = {
            name: keras.Input(shape=(None,), dtype="int32", name=name)
            for name in ("token_ids", "padding_mask")
        }
        # The backbone's layer, not the backbone: a functional model cannot be
        # called symbolically with its optional memory input left out.
        hidden = backbone.recurrent_segments(inputs)["sequence_output"]
        logits = backbone.token_embedding(hidden, reverse=True)
        super().__init__(inputs=inputs, outputs=logits, **kwargs)

    def compile(
        self,
        optimizer="auto",
        loss="auto",
        *,
        weighted_metrics="auto",
        sampler="top_k",
        segment_metrics="auto",
        **kwargs,
    ):
        """Configures the task for training and generation.

        Args:
            optimizer: `"auto"` (Adam, learning rate 2e-5, as keras-hub), an
                optimizer name or a `keras.optimizers.Optimizer`.
            loss: `"auto"` (token-weighted sparse cross-entropy from logits)
                or any Keras loss.
            weighted_metrics: `"auto"` (weighted sparse categorical
                accuracy) or a list of metrics.
            sampler: a sampler name or a `keras_hub.samplers.Sampler`, used
                by `generate()`. Defaults to `"top_k"`.
            segment_metrics: int, `"auto"` or None. How many per-segment
                losses to report. `"auto"`: as many segments as the
                preprocessor's `sequence_length` holds when it has one, else
                4. None or 0: none.
            **kwargs: other arguments of `keras.Model.compile`.
        """
        if loss == "auto":
            loss = keras.losses.SparseCategoricalCrossentropy(
                from_logits=True, reduction="mean_with_sample_weight"
            )
        super().compile(
            optimizer=optimizer,
            loss=loss,
            weighted_metrics=weighted_metrics,
            sampler=sampler,
            **kwargs,
        )
        count = self._segment_metrics_count(segment_metrics)
        segment_losses = None
        if count:
            segment_losses = SegmentLosses(
                self.backbone.segment_length,
                count,
                alignment=self.backbone.alignment,
            )
        # Not tracked as an attribute: a second compile() must replace it.
        object.__setattr__(self, "_segment_losses", segment_losses)

    def _segment_metrics_count(self, segment_metrics):
        if segment_metrics is None:
            return 0
        if segment_metrics == "auto":
            length = getattr(self.preprocessor, "sequence_length", None)
            if not isinstance(length, int):
                return DEFAULT_SEGMENT_METRICS
            return math.ceil(length / self.backbone.segment_length)
        if not isinstance(segment_metrics, int) or segment_metrics < 0:
            raise ValueError(
                "`segment_metrics` must be a non-negative integer, 'auto' or "
                f"None. Received: segment_metrics={segment_metrics!r}"
            )
        return segment_metrics

    @property
    def metrics(self):
        metrics = super().metrics
        segment_losses = getattr(self, "_segment_losses", None)
        if getattr(self, "compiled", False) and segment_losses is not None:
            metrics.append(segment_losses)
        return metrics

    def compute_metrics(self, x, y, y_pred, sample_weight=None):
        segment_losses = getattr(self, "_segment_losses", None)
        if segment_losses is not None and y is not None:
            segment_losses.update_state(
                y, y_pred, sample_weight, padding_mask=x["padding_mask"]
            )
        return super().compute_metrics(x, y, y_pred, sample_weight)

    @classmethod
    def from_preset(cls, preset, load_weights=True, **kwargs):
        """Builds the task from a preset.

        `preset` is a preset saved from an `RMTCausalLM` (loaded whole), or
        any keras-hub decoder preset with a tokenizer (a built-in name, a
        Kaggle or Hugging Face handle, or a local folder), whose backbone is
        wrapped in an `RMTBackbone`.

        Args:
            preset: string. A preset name, handle or local folder.
            load_weights: bool. Whether to load the saved weights.
            **kwargs: `RMTBackbone` arguments (`num_memory_tokens`,
                `segment_length`, `bptt_depth`, ..., for a plain keras-hub
                preset only), `dtype`, and arguments of the task, such as
                `preprocessor=None` to load no tokenizer.

        Example:
        ```python
        causal_lm = keras_rmt.models.RMTCausalLM.from_preset(
            "gpt2_base_en", num_memory_tokens=10, segment_length=512
        )
        ```
        """
        return load_rmt_task(cls, preset, load_weights=load_weights, **kwargs)

    @classmethod
    def preprocessor_kwargs_for(cls, backbone):
        """Preprocessor arguments that `from_preset` takes from `backbone`."""
        return {}

    # === Prediction ===

    def predict(self, x=None, batch_size=None, **kwargs):
        """As `keras.Model.predict`: the logits of every token, one array.

        A preprocessor without a `sequence_length` pads each batch of
        strings to its own whole number of segments, and batches of
        different widths cannot be joined into one array (Keras raises on
        JAX and torch, and gives a `tf.RaggedTensor` on TensorFlow). For raw
        strings (a list, an array, or a `tf.data.Dataset` of batches) it
        therefore pads every batch to the widest one's segments, found by
        tokenizing the strings once more first. Positions past a row's
        tokens are padding, as past a keras-hub preprocessor's
        `sequence_length`.
        """
        width = self._widest_batch_of_strings(x, kwargs.get("steps"))
        if width is None:
            return super().predict(x, batch_size=batch_size, **kwargs)
        self.preprocessor.sequence_length = width
        try:
            return super().predict(x, batch_size=batch_size, **kwargs)
        finally:
            self.preprocessor.sequence_length = None

    def _widest_batch_of_strings(self, x, steps):
        """The width the widest batch of strings in `x` (its first `steps`
        batches) is padded to, or None if no common width is needed."""
        preprocessor = self.preprocessor
        if preprocessor is None or preprocessor.sequence_length is not None:
            return None
        tf = sys.modules.get("tensorflow")
        if tf is not None and isinstance(x, tf.data.Dataset):
            if getattr(x.element_spec, "dtype", None) != tf.string:
                return None
            batches = x if steps is None else x.take(steps)
        elif _is_strings(x, tf):
            # All the strings as one batch: as wide as the widest batch.
            batches = [x]
        else:
            return None
        widths = []
        for batch in batches:
            inputs = keras.utils.unpack_x_y_sample_weight(preprocessor(batch))
            widths.append(ops.shape(inputs[0]["token_ids"])[-1])
        return max(widths, default=None)

    # === Generation ===

    def generate(
        self,
        inputs,
        max_length=None,
        stop_token_ids="auto",
        strip_prompt=False,
        memory=None,
        return_memory=False,
    ):
        """Generates text after prompts, optionally going on from a memory.

        As `keras_hub.models.CausalLM.generate`, with two more arguments to
        carry a conversation or a stream across calls: `return_memory=True`
        returns the memory after the output, and `memory=` starts the next
        call's prompts from it. A call reads only its own prompt and output,
        whatever came before.

        Args:
            inputs: strings (with a preprocessor) or a dict of `"token_ids"`
                and `"padding_mask"`, or a `tf.data.Dataset` of them.
            max_length: int. The length of the outputs, prompt included.
                Defaults to the preprocessor's `sequence_length` (else its
                `max_length`); without a preprocessor the inputs' padded
                length is used.
            stop_token_ids: `"auto"`, None or a list of token ids, as in
                keras-hub. Defaults to `"auto"`: the tokenizer's end token.
            strip_prompt: bool. Return only the generated text. Defaults to
                `False`.
            memory: optional tensor `(batch_size, num_memory_tokens,
                hidden_dim)`, for instance one returned with
                `return_memory=True`. The prompts are read as the text that
                follows it, from the start of a new segment. All inputs must
                then be one batch. Defaults to `None`: the learned memory.
            return_memory: bool. If True, returns `(outputs, memory)`: the
                memory after each row's whole output (prompt and generated
                text up to its stop token; a last, partial segment is
                written as it stands). Defaults to `False`.

        Returns:
            The outputs as keras-hub's `generate()` returns them, and with
            `return_memory=True` the memory as a NumPy array.
        """
        if max_length is None and self.preprocessor is not None:
            max_length = self._default_max_length()
        if memory is None and not return_memory:
            return super().generate(
                inputs,
                max_length=max_length,
                stop_token_ids=stop_token_ids,
                strip_prompt=strip_prompt,
            )
        if memory is not None:
            memory = self._check_memory(memory)
        function = self.make_generate_function()
        memories = []

        def generate_with_memory(x, stop_token_ids=None):
            if memory is not None and memories:
                raise ValueError(
                    "generate(memory=...) takes its inputs as one batch, "
                    "whose rows the memory's rows continue. Received: inputs "
                    "of more than one batch"
                )
            start = memory
            if start is None:
                start = self.backbone.recurrent_segments.initial_memory(
                    ops.shape(x["token_ids"])[0]
                )
            outputs = dict(function({**x, "memory": start}, stop_token_ids))
            memories.append(ops.convert_to_numpy(outputs.pop("memory")))
            return outputs

        # keras-hub's generate() does the rest (preprocessing, batches,
        # strip_prompt, detokenizing) around the compiled function.
        self.generate_function = generate_with_memory
        try:
            outputs = super().generate(
                inputs,
                max_length=max_length,
                stop_token_ids=stop_token_ids,
                strip_prompt=strip_prompt,
            )
        finally:
            self.generate_function = function
        return outputs, np.concatenate(memories, axis=0)

    def _default_max_length(self):
        for name in ("sequence_length", "max_length"):
            length = getattr(self.preprocessor, name, None)
            if length is not None:
                return length
        raise ValueError(
            "generate() needs `max_length` when the preprocessor has neither "
            "a `sequence_length` nor a `max_length` to default to. Received: "
            "max_length=None"
        )

    def _check_memory(self, memory):
        memory = ops.convert_to_tensor(memory)
        expected = (self.backbone.num_memory_tokens, self.backbone.hidden_dim)
        if self._is_associative():
            expected = self.backbone.recurrent_segments.state_shape
        if len(memory.shape) != 3 or tuple(memory.shape[1:]) != expected:
            raise ValueError(
                "`memory` must have shape (batch_size, "
                f"{expected[0]}, {expected[1]}). "
                f"Received: memory.shape={tuple(memory.shape)}"
            )
        return memory

    def make_generate_function(self):
        # The cache decision (and its warning) comes before any tracing.
        self._segment_cache()
        return super().make_generate_function()

    def generate_step(self, inputs, stop_token_ids=None):
        """Generates for one batch of `token_ids` / `padding_mask`.

        Rows hold their prompt at the start, padding after it; the padded
        length is the length generated up to. With `inputs["memory"]`, the
        prompts follow that memory, and the outputs hold the memory after
        each row's output under `"memory"`.
        """
        token_ids, padding_mask = inputs["token_ids"], inputs["padding_mask"]
        memory = inputs.get("memory")
        cache, index, hidden_states = self.start_generation(
            token_ids, padding_mask, memory
        )
        prompt_memory = cache[0]
        token_ids = self.sampler(
            next=self.next_logits,
            prompt=token_ids,
            cache=cache,
            index=index,
            mask=padding_mask,
            stop_token_ids=stop_token_ids,
            hidden_states=hidden_states,
            model=self,
        )
        if stop_token_ids is not None:
            # Keep each row up to and including its first generated stop.
            generated = ops.logical_not(padding_mask)
            ends = ops.logical_and(
                _holds_any(token_ids, stop_token_ids), generated
            )
            ends = ops.cast(ends, "int32")
            after_end = ops.cumsum(ends, axis=-1) - ends
            padding_mask = ops.logical_not(ops.cast(after_end, "bool"))
        else:
            padding_mask = ops.ones_like(token_ids, dtype="bool")
        outputs = {"token_ids": token_ids, "padding_mask": padding_mask}
        if memory is not None:
            outputs["memory"] = self._memory_after(
                token_ids, padding_mask, index, prompt_memory
            )
        return outputs

    def start_generation(self, token_ids, padding_mask, memory=None):
        """Reads the prompts up to the first position to generate.

        Whole segments before it are read to build their memory; the
        segment holding the last position before it is run once, into the
        key/value cache where the backbone has one.

        Returns the sampler's cache (every entry with the batch first, so
        beam samplers can copy and reorder it), the first index to generate
        at (the shortest prompt's length) and the hidden states of the
        prompt positions up to the end of that segment, `(batch, length,
        hidden_dim)`, as contrastive search wants them.
        """
        batch, total = ops.shape(token_ids)[0], ops.shape(token_ids)[1]
        length = self.backbone.segment_length
        lengths = ops.sum(ops.cast(padding_mask, "int32"), axis=-1)
        index = ops.min(lengths)
        current = ops.maximum(index - 1, 0) // length
        if memory is None:
            memory = self.backbone.recurrent_segments.initial_memory(batch)
        memory = ops.cast(memory, self.backbone.recurrent_segments.memory_dtype)
        padded = ops.concatenate(
            [token_ids, ops.zeros((batch, length), token_ids.dtype)], axis=1
        )
        # In the dtype of the steps' hidden states, which samplers write into
        # it (an associative state stays float32 under a mixed policy).
        hidden = ops.zeros(
            (batch, total + length, self.backbone.hidden_dim),
            self.backbone.recurrent_segments.sequence_output_dtype,
        )
        memory, hidden = self._read_segments(
            padded, ops.ones_like(padded), 0, current, memory, hidden
        )
        segment = ops.slice(padded, [0, current * length], [batch, length])
        segment_cache = self._segment_cache()
        if segment_cache is None:
            outputs = self.backbone.recurrent_segments.segment(
                {"token_ids": segment, "padding_mask": ops.ones_like(segment)},
                memory,
            )
            tokens = outputs["sequence_output"]
            cache = (memory, memory)
        else:
            tokens, _, kv_cache = segment_cache.prefill(memory, segment)
            cache = (memory, kv_cache)
        hidden = ops.slice_update(
            hidden, [0, current * length, 0], ops.cast(tokens, hidden.dtype)
        )
        return cache, index, hidden[:, :total]

    def next_logits(self, prompt, cache, index):
        """The sampler's step: logits for the token at `index`.

        Runs the token at `index - 1` in its segment. At the first position
        of a segment, the memory written at the end of the previous one
        becomes the memory to read.
        """
        if self._segment_cache() is not None:
            return self._next_logits_cached(prompt, cache, index)
        memory, written = cache
        length = self.backbone.segment_length
        batch = ops.shape(prompt)[0]
        position = ops.maximum(index - 1, 0)
        start = (position // length) * length
        offset = position - start
        entering = ops.logical_and(position % length == 0, position > 0)
        memory = ops.where(entering, written, memory)
        padded = ops.concatenate(
            [prompt, ops.zeros((batch, length), prompt.dtype)], axis=1
        )
        segment = ops.slice(padded, [0, start], [batch, length])
        seen = ops.arange(length, dtype="int32")[None] <= offset
        mask = ops.cast(ops.broadcast_to(seen, (batch, length)), "int32")
        outputs = self.backbone.recurrent_segments.segment(
            {"token_ids": segment, "padding_mask": mask}, memory
        )
        hidden = ops.slice(
            outputs["sequence_output"],
            [0, offset, 0],
            [batch, 1, self.backbone.hidden_dim],
        )[:, 0]
        logits = self.backbone.token_embedding(hidden, reverse=True)
        return logits, hidden, (memory, outputs["memory"])

    def _next_logits_cached(self, prompt, cache, index):
        """`next_logits` with a key/value cache inside the segment.

        The cache always holds the segment of the token to run, from its
        read memory on: after a segment's last token, the same step writes
        its memory and reads that memory into the cache for the next one,
        so every other step runs one token and nothing else.
        """
        segment_cache = self._segment_cache()
        memory, kv_cache = cache
        length = self.backbone.segment_length
        batch = ops.shape(prompt)[0]
        position = ops.maximum(index - 1, 0)
        offset = position % length
        token = ops.slice(prompt, [0, position], [batch, 1])
        hidden, kv_cache = segment_cache.step(token, offset, kv_cache)
        logits = self.backbone.token_embedding(hidden, reverse=True)

        def next_segment():
            written = memory
            if self.backbone.carry_memory:
                written = segment_cache.write(memory, kv_cache)
                written = ops.cast(written, memory.dtype)
            return written, segment_cache.read(written, kv_cache)

        memory, kv_cache = ops.cond(
            offset == length - 1, next_segment, lambda: (memory, kv_cache)
        )
        return logits, hidden, (memory, kv_cache)

    def _segment_cache(self):
        """The key/value cache generation steps with, or None (recompute)."""
        decided = getattr(self, "_segment_cache_decision", None)
        if decided is None:
            segment_cache, reason = segment_cache_for(self.backbone)
            if segment_cache is None:
                warnings.warn(
                    f"RMTCausalLM generates without a key/value cache "
                    f"({reason}): each new token runs its segment again.",
                    stacklevel=3,
                )
            decided = (segment_cache,)
            object.__setattr__(self, "_segment_cache_decision", decided)
        return decided[0]

    def _read_segments(
        self, token_ids, padding_mask, first, count, memory, hidden=None
    ):
        """Memory after segments `first...count - 1` of `token_ids`.

        A segment of all padding leaves a row's memory as it was. With
        `hidden`, the segments' token outputs are also written into it.
        Returns `(memory, hidden)`.
        """
        length = self.backbone.segment_length
        batch = ops.shape(token_ids)[0]
        layer = self.backbone.recurrent_segments

        def body(segment_index, memory, *hidden):
            start = segment_index * length
            outputs = layer.segment(
                {
                    "token_ids": ops.slice(
                        token_ids, [0, start], [batch, length]
                    ),
                    "padding_mask": ops.slice(
                        padding_mask, [0, start], [batch, length]
                    ),
                },
                memory,
            )
            memory = ops.cast(outputs["memory"], memory.dtype)
            # No None among loop variables: torch's loop converts them all.
            if hidden:
                tokens = ops.cast(outputs["sequence_output"], hidden[0].dtype)
                hidden = (ops.slice_update(hidden[0], [0, start, 0], tokens),)
            return segment_index + 1, memory, *hidden

        extra = () if hidden is None else (hidden,)
        _, memory, *extra = ops.while_loop(
            lambda segment_index, memory, *hidden: segment_index < count,
            body,
            (ops.convert_to_tensor(first, "int32"), memory, *extra),
        )
        return memory, (extra[0] if extra else None)

    def _memory_after(self, token_ids, padding_mask, index, prompt_memory):
        """The memory after each row's output, from the prompt's memory."""
        length = self.backbone.segment_length
        batch, total = ops.shape(token_ids)[0], ops.shape(token_ids)[1]
        first = ops.maximum(index - 1, 0) // length
        count = (total + length - 1) // length
        padding = ops.zeros((batch, length), "int32")
        token_ids = ops.concatenate(
            [token_ids, ops.cast(padding, token_ids.dtype)], axis=1
        )
        padding_mask = ops.concatenate(
            [ops.cast(padding_mask, "int32"), padding], axis=1
        )
        memory, _ = self._read_segments(
            token_ids, padding_mask, first, count, prompt_memory
        )
        return memory

    def _is_associative(self):
        layer = self.backbone.recurrent_segments
        return isinstance(layer, AssociativeRecurrentSegments)

    # === Scoring ===

    def score(
        self,
        token_ids,
        padding_mask=None,
        scoring_mode="logits",
        layer_intercept_fn=None,
        target_ids=None,
    ):
        """Scores token ids of any length: logits or loss per token.

        As keras-hub's `score()` (for instance
        `keras_hub.models.GPT2CausalLM.score`), read segment by segment with
        memory: the logits are those of `predict()`, in the compute dtype
        (bfloat16 under `mixed_bfloat16`, where `predict()` gives float32,
        as in keras-hub). Runs for inference, one compiled segment step at a
        time, so any length fits in memory; in `"loss"` mode the logits are
        never held for more than one segment.

        Args:
            token_ids: int tensor `(batch_size, num_tokens)`.
            padding_mask: tensor `(batch_size, num_tokens)`, true on real
                tokens (rows padded at the end). Defaults to all ones.
            scoring_mode: `"logits"` (returns `(batch_size, num_tokens,
                vocabulary_size)`) or `"loss"` (returns the cross-entropy of
                each position's `target_ids`, `(batch_size, num_tokens)`).
                Defaults to `"logits"`.
            layer_intercept_fn: must be None: the layers of a recurrent
                model run once per segment, which keras-hub's intercept
                (one call per layer) cannot express.
            target_ids: int tensor `(batch_size, num_tokens)`, the token
                expected at each position. Needed in `"loss"` mode.
        """
        if scoring_mode not in ("logits", "loss"):
            raise ValueError(
                "`scoring_mode` must be 'logits' or 'loss'. "
                f"Received: scoring_mode={scoring_mode!r}"
            )
        if scoring_mode == "loss" and target_ids is None:
            raise ValueError(
                "scoring_mode='loss' needs the expected tokens as "
                "`target_ids`. Received: target_ids=None"
            )
        if layer_intercept_fn is not None:
            raise ValueError(
                "RMTCausalLM.score() cannot intercept layer activations: its "
                "layers run once per segment. "
                f"Received: layer_intercept_fn={layer_intercept_fn!r}"
            )
        token_ids = ops.convert_to_tensor(token_ids)
        if padding_mask is None:
            padding_mask = ops.ones_like(token_ids)
        hidden = self.backbone.recurrent_segments.infer(
            {"token_ids": token_ids, "padding_mask": padding_mask}
        )["sequence_output"]
        embedding = self.backbone.token_embedding
        if scoring_mode == "logits":
            return embedding(hidden, reverse=True)
        target_ids = ops.convert_to_tensor(target_ids)
        length = self.backbone.segment_length
        losses = []
        for start in range(0, int(ops.shape(token_ids)[1]), length):
            logits = embedding(hidden[:, start : start + length], reverse=True)
            losses.append(
                keras.losses.sparse_categorical_crossentropy(
                    target_ids[:, start : start + length],
                    logits,
                    from_logits=True,
                )
            )
        return ops.concatenate(losses, axis=1)


def _check_decoder_backbone(backbone):
    if not isinstance(backbone, RMTBackbone):
        raise ValueError(
            "`backbone` must be a keras_rmt.models.RMTBackbone; wrap a "
            "keras-hub backbone with RMTBackbone(backbone, "
            "num_memory_tokens=..., segment_length=...). "
            f"Received: backbone={type(backbone).__name__}"
        )
    if backbone.memory_layout != "decoder":
        raise ValueError(
            "RMTCausalLM needs a causal (decoder) backbone. Received: "
            f"backbone over {type(backbone.backbone).__name__} with "
            f"memory_layout={backbone.memory_layout!r}"
        )
    embedding = backbone.token_embedding
    if "reverse" not in inspect.signature(embedding.call).parameters:
        raise ValueError(
            "RMTCausalLM computes logits with the backbone's token embedding "
            "in reverse, which needs a reversible embedding "
            "(keras.layers.ReversibleEmbedding). "
            f"Received: token_embedding={type(embedding).__name__}"
        )


def _holds_any(token_ids, values):
    """Where `token_ids` holds any of the ids `values`."""
    return functools.reduce(
        ops.logical_or, [ops.equal(token_ids, value) for value in values]
    )


def _is_strings(x, tf=None):
    """Whether `x` is a batch of text: a list, tuple, NumPy array or (with
    TensorFlow imported, as `tf`) tensor of strings."""
    if isinstance(x, (list, tuple)):
        return len(x) > 0 and all(isinstance(v, (str, bytes)) for v in x)
    if isinstance(x, np.ndarray):
        return x.dtype.kind in ("U", "S", "O")
    return tf is not None and isinstance(x, tf.Tensor) and x.dtype == tf.string
