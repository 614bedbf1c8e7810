import inspect
import math

import keras
import keras_hub
from keras import ops
from keras_hub.src.utils.tensor_utils import any_equal

from keras_rmt.layers.recurrent_segments import RecurrentSegments
from keras_rmt.metrics.segment_losses import SegmentLosses
from keras_rmt.models.gpt2_segment_cache import (
    GPT2SegmentCache,
    supports_segment_cache,
)
from keras_rmt.models.rmt_backbone import RMTBackbone
from keras_rmt.models.rmt_causal_lm_preprocessor import RMTCausalLMPreprocessor
from keras_rmt.models.rmt_presets import load_rmt_task
from keras_rmt.models.saved_model_export import SavedModelExport

# Per-segment losses reported when neither compile() nor a preprocessor's
# sequence length says how many segments the data has.
DEFAULT_SEGMENT_METRICS = 4


@keras.saving.register_keras_serializable(package="keras_rmt")
class RMTCausalLM(SavedModelExport, keras_hub.models.CausalLM):
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
    keras-hub sampler that takes one token at a time: `"greedy"`,
    `"top_k"`, `"top_p"`, `"random"`). When the current segment fills up,
    its memory is written and generation goes on in a new segment, so the
    generated length is not bounded by the backbone's position table.
    Generation reads the stream in segments that start at its first token,
    whatever the backbone's `alignment`. Within a segment, GPT-2 backbones
    (with `memory_attention="backbone"`) keep a key/value cache, so a step
    runs one token; other backbones run the segment again at each step.

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

    # === Generation ===

    def make_generate_function(self):
        # The stepping layer must exist before any tracing starts.
        self._generation_layer()
        return super().make_generate_function()

    def generate_step(self, inputs, stop_token_ids=None):
        """Generates for one batch of `token_ids` / `padding_mask`.

        Rows hold their prompt at the start, padding after it; the padded
        length is the length generated up to.
        """
        token_ids, padding_mask = inputs["token_ids"], inputs["padding_mask"]
        cache, index = self.start_generation(token_ids, padding_mask)
        token_ids = self.sampler(
            next=self.next_logits,
            prompt=token_ids,
            cache=cache,
            index=index,
            mask=padding_mask,
            stop_token_ids=stop_token_ids,
            model=self,
        )
        if stop_token_ids is not None:
            # Keep each row up to and including its first generated stop.
            ends = any_equal(
                token_ids, stop_token_ids, ops.logical_not(padding_mask)
            )
            ends = ops.cast(ends, "int32")
            after_end = ops.cumsum(ends, axis=-1) - ends
            padding_mask = ops.logical_not(ops.cast(after_end, "bool"))
        else:
            padding_mask = ops.ones_like(token_ids, dtype="bool")
        return {"token_ids": token_ids, "padding_mask": padding_mask}

    def start_generation(self, token_ids, padding_mask):
        """Reads the whole segments before the first generated position.

        Returns the sampler's cache and the first index to generate at: the
        shortest prompt's length. The cache holds the memory to read in the
        current segment and the memory written last (both the same here),
        plus, with a key/value cache, that cache and the segment it holds.
        """
        lengths = ops.sum(ops.cast(padding_mask, "int32"), axis=-1)
        index = ops.min(lengths)
        length = self.backbone.segment_length
        full_segments = ops.maximum(index - 1, 0) // length
        memory = self._read_segments(token_ids, full_segments)
        segment_cache = self._segment_cache()
        if segment_cache is None:
            return (memory, memory), index
        batch = ops.shape(token_ids)[0]
        no_segment = ops.convert_to_tensor(-1, "int32")
        return (memory, memory, segment_cache.empty(batch), no_segment), index

    def next_logits(self, prompt, cache, index):
        """The sampler's step: logits for the token at `index`.

        Runs the segment holding position `index - 1` on the tokens up to
        it. At the first position of a segment, the memory written by the
        run that ended the previous segment becomes the memory to read.
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
        outputs = self._generation_layer()(
            {"token_ids": segment, "padding_mask": mask, "memory": memory}
        )
        hidden = ops.slice(
            outputs["sequence_output"],
            [0, offset, 0],
            [batch, 1, self.backbone.hidden_dim],
        )[:, 0]
        logits = self.backbone.token_embedding(hidden, reverse=True)
        written = outputs["memory"]
        if not self.backbone.carry_memory:
            written = self._initial_memory(batch)
        return logits, hidden, (memory, written)

    def _next_logits_cached(self, prompt, cache, index):
        """`next_logits` with a key/value cache inside the segment."""
        segment_cache = self._segment_cache()
        memory, written, kv_cache, cached_segment = cache
        length = self.backbone.segment_length
        batch = ops.shape(prompt)[0]
        position = ops.maximum(index - 1, 0)
        segment_index = position // length
        start = segment_index * length
        offset = position - start
        entering = segment_index != cached_segment
        memory = ops.where(entering, written, memory)

        def enter():
            padded = ops.concatenate(
                [prompt, ops.zeros((batch, length), prompt.dtype)], axis=1
            )
            segment = ops.slice(padded, [0, start], [batch, length])
            outputs, new_cache = segment_cache.enter(
                memory, segment, segment_cache.empty(batch)
            )
            hidden = ops.slice(
                outputs, [0, offset, 0], [batch, 1, self.backbone.hidden_dim]
            )
            return hidden[:, 0], new_cache

        def step():
            token = ops.slice(prompt, [0, position], [batch, 1])
            outputs, new_cache = segment_cache.step(token, offset, kv_cache)
            return outputs[:, 0], new_cache

        hidden, kv_cache = ops.cond(entering, enter, step)
        logits = self.backbone.token_embedding(hidden, reverse=True)
        if self.backbone.carry_memory:
            written = ops.cond(
                offset == length - 1,
                lambda: ops.cast(
                    segment_cache.write(memory, kv_cache), written.dtype
                ),
                lambda: written,
            )
        else:
            written = self._initial_memory(batch)
        return logits, hidden, (memory, written, kv_cache, segment_index)

    def _segment_cache(self):
        if not supports_segment_cache(self.backbone):
            return None
        return GPT2SegmentCache(self.backbone)

    def _read_segments(self, token_ids, count):
        """Memory after the first `count` segments, all holding tokens."""
        length = self.backbone.segment_length
        batch = ops.shape(token_ids)[0]
        initial = self._initial_memory(batch)
        layer = self._generation_layer()

        def body(segment_index, memory):
            segment = ops.slice(
                token_ids, [0, segment_index * length], [batch, length]
            )
            outputs = layer(
                {
                    "token_ids": segment,
                    "padding_mask": ops.ones_like(segment),
                    "memory": memory,
                }
            )
            written = outputs["memory"]
            if not self.backbone.carry_memory:
                written = initial
            return segment_index + 1, written

        _, memory = ops.while_loop(
            lambda segment_index, memory: segment_index < count,
            body,
            (ops.convert_to_tensor(0, "int32"), initial),
        )
        return memory

    def _initial_memory(self, batch):
        hidden = ops.zeros((batch, 1, self.backbone.hidden_dim))
        memory = self.backbone.memory(hidden)
        return ops.cast(memory, self.backbone.recurrent_segments.compute_dtype)

    def _generation_layer(self):
        """A one-segment, left-aligned `RecurrentSegments` sharing weights."""
        layer = self.backbone.recurrent_segments
        if layer.alignment == "left":
            return layer
        stepper = getattr(self, "_left_aligned_segments", None)
        if stepper is None:
            stepper = RecurrentSegments(
                self.backbone.backbone,
                memory=self.backbone.memory,
                segment_length=layer.segment_length,
                memory_layout=layer.memory_layout,
                memory_attention=layer.memory_attention,
                dtype=layer.dtype_policy,
                name="left_aligned_segments",
            )
            # Shares every weight with the backbone: not tracked twice.
            object.__setattr__(self, "_left_aligned_segments", stepper)
        return stepper


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
