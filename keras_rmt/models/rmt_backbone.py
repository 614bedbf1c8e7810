import keras
import keras_hub

from keras_rmt.export.saved_model_export import SavedModelExport
from keras_rmt.layers.associative_recurrent_segments import (
    AssociativeRecurrentSegments,
)
from keras_rmt.layers.memory_tokens import MemoryTokens
from keras_rmt.layers.recurrent_segments import RecurrentSegments
from keras_rmt.utils.keras_hub_internals import get_preset_loader

# `from_preset` keyword arguments that shape the recurrence, not the backbone.
RMT_ARGUMENTS = (
    "num_memory_tokens",
    "segment_length",
    "bptt_depth",
    "alignment",
    "memory_layout",
    "memory_attention",
    "carry_memory",
    "memory_initializer",
    "train_memory_only",
    "segment_loop",
    "scan_unroll",
    "remat",
    "associative_key_dim",
)
# How segments are run, not what the model learned: these may also be given
# when loading an RMT preset (a preset saved with `segment_loop="scan"` on
# JAX can be loaded with `segment_loop="auto"` on TensorFlow).
EXECUTION_ARGUMENTS = ("segment_loop", "scan_unroll", "remat")
# What a plain keras-hub preset cannot provide.
REQUIRED_ARGUMENTS = ("num_memory_tokens", "segment_length")


@keras.saving.register_keras_serializable(package="keras_rmt")
class RMTBackbone(SavedModelExport, keras_hub.models.Backbone):
    """A keras-hub text backbone made recurrent over segments, with memory.

    Wraps any keras-hub text backbone (GPT-2, OPT, Llama, Mistral, Gemma,
    BERT, RoBERTa, DistilBERT...) in `keras_rmt.layers.RecurrentSegments` and
    `keras_rmt.layers.MemoryTokens`, as a functional `keras_hub.models.Backbone`
    that the RMT tasks build on. It reads inputs of any length and returns
    the token outputs and the memory after the last segment.

    The memory is also an input, and an optional one: leave it out to start
    from the learned memory, or pass the `"memory"` returned by an earlier
    call to go on reading a stream where that call stopped. Reading a stream
    in pieces this way gives the same outputs as reading it at once, as long
    as the pieces are cut at segment boundaries.

    Args:
        backbone: `keras_hub.models.Backbone`. The text backbone to run on
            every segment. Its weights are used, not copied.
        num_memory_tokens: int. The number of memory vectors.
        segment_length: int. Tokens per segment, memory not counted.
        bptt_depth: int or None. See `keras_rmt.layers.RecurrentSegments`.
            Defaults to `None`.
        alignment: `"left"` or `"right"`. See
            `keras_rmt.layers.RecurrentSegments`. Defaults to `"left"`.
        memory_layout: `"auto"`, `"decoder"` or `"encoder"`. See
            `keras_rmt.layers.RecurrentSegments`. Defaults to `"auto"`.
        memory_attention: `"backbone"` or `"bidirectional"`. See
            `keras_rmt.layers.RecurrentSegments`. Defaults to `"backbone"`.
        carry_memory: bool. See `keras_rmt.layers.RecurrentSegments`.
            Defaults to `True`.
        memory_initializer: initializer or None. How to draw the initial
            memory. Defaults to `None`: at the token embeddings' scale.
        train_memory_only: bool. If True, the wrapped backbone is frozen and
            only the memory (and a task's own head) is trained. Can be
            changed later through the attribute of the same name (compile
            again afterwards, as for any change of `trainable`). Defaults to
            `False`.
        segment_loop: `"auto"`, `"unrolled"` or `"scan"`. How segments are
            looped; see `keras_rmt.layers.RecurrentSegments` (`"scan"` is
            refused on TensorFlow). Defaults to `"auto"`.
        scan_unroll: int. With `segment_loop="scan"`, how many segments each
            iteration of the scan runs; see
            `keras_rmt.layers.RecurrentSegments`. Defaults to `1`.
        remat: bool or `"auto"`. Recompute each segment's activations in
            the backward pass; see `keras_rmt.layers.RecurrentSegments`
            (`True` is refused on TensorFlow). Defaults to `"auto"`.
        associative_key_dim: int or None. If given, the memory is
            associative (ARMT, `keras_rmt.layers.AssociativeRecurrentSegments`
            with keys of this size; the paper uses 64): the memory tokens
            are placed after every segment and what passes between segments
            is every layer's associative state. Decoders only;
            `memory_layout` and `memory_attention` stay at their defaults.
            Defaults to `None`: the RMT's recurrent memory tokens.
        dtype: string or `keras.mixed_precision.DTypePolicy`. Defaults to the
            wrapped backbone's.
        **kwargs: other keyword arguments passed to
            `keras_hub.models.Backbone`, including `name`.

    Inputs:
        `"token_ids"` and `"padding_mask"`, `(batch_size, tokens)`; where the
        wrapped backbone takes them, `"segment_ids"` (optional, zeros when
        left out); and the optional `"memory"`,
        `(batch_size, num_memory_tokens, hidden_dim)` (with associative
        memory, the layer's `state_shape`).

    Outputs:
        A dict with `"sequence_output"`, `(batch_size, tokens, hidden_dim)`,
        and `"memory"`, `(batch_size, num_memory_tokens, hidden_dim)`.

    Example:
    ```python
    gpt2 = keras_hub.models.GPT2Backbone(
        vocabulary_size=100, num_layers=2, num_heads=2, hidden_dim=16,
        intermediate_dim=32, max_sequence_length=16,
    )
    backbone = keras_rmt.models.RMTBackbone(
        gpt2, num_memory_tokens=2, segment_length=8
    )
    ids = keras.ops.ones((1, 24), "int32")
    first = backbone({"token_ids": ids[:, :16], "padding_mask": ids[:, :16]})
    rest = backbone({
        "token_ids": ids[:, 16:],
        "padding_mask": ids[:, 16:],
        "memory": first["memory"],
    })
    rest["sequence_output"].shape  # (1, 8, 16)
    ```

    Reference:
     - [Bulatov et al., 2022](https://arxiv.org/abs/2207.06881)
    """

    def __init__(
        self,
        backbone,
        num_memory_tokens,
        segment_length,
        bptt_depth=None,
        alignment="left",
        memory_layout="auto",
        memory_attention="backbone",
        carry_memory=True,
        memory_initializer=None,
        train_memory_only=False,
        segment_loop="auto",
        scan_unroll=1,
        remat="auto",
        associative_key_dim=None,
        dtype=None,
        **kwargs,
    ):
        if isinstance(backbone, RMTBackbone):
            raise ValueError(
                "`backbone` must be a keras-hub text backbone, not an "
                f"RMTBackbone. Received: backbone={backbone.name}"
            )
        # === Layers ===
        self.backbone = backbone
        self.memory = MemoryTokens(
            num_memory_tokens,
            initializer=memory_initializer,
            dtype=backbone.dtype_policy,
            name="memory_tokens",
        )
        options = {"memory_layout": memory_layout}
        options["memory_attention"] = memory_attention
        segments_class = RecurrentSegments
        if associative_key_dim is not None:
            _check_defaults(memory_layout, memory_attention)
            options = {"key_dim": associative_key_dim}
            segments_class = AssociativeRecurrentSegments
        self.recurrent_segments = segments_class(
            backbone,
            memory=self.memory,
            segment_length=segment_length,
            bptt_depth=bptt_depth,
            alignment=alignment,
            carry_memory=carry_memory,
            segment_loop=segment_loop,
            scan_unroll=scan_unroll,
            remat=remat,
            dtype=backbone.dtype_policy,
            name="recurrent_segments",
            **options,
        )
        self.token_embedding = backbone.token_embedding

        # === Functional Model ===
        hidden_dim = self.recurrent_segments.hidden_dim
        inputs = {
            name: keras.Input(
                shape=(None,),
                dtype="int32",
                name=name,
                optional=name not in ("token_ids", "padding_mask"),
            )
            for name in ("token_ids", "padding_mask", *_extra_inputs(backbone))
        }
        memory_shape = (num_memory_tokens, hidden_dim)
        if associative_key_dim is not None:
            memory_shape = self.recurrent_segments.state_shape
        inputs["memory"] = keras.Input(
            shape=memory_shape,
            name="memory",
            optional=True,
        )
        outputs = self.recurrent_segments(inputs)
        super().__init__(
            inputs=inputs,
            outputs=outputs,
            dtype=dtype or backbone.dtype_policy,
            **kwargs,
        )

        # === Config ===
        self.num_memory_tokens = num_memory_tokens
        self.segment_length = segment_length
        self.bptt_depth = bptt_depth
        self.alignment = alignment
        self.memory_layout = self.recurrent_segments.memory_layout
        self.memory_attention = memory_attention
        self.carry_memory = carry_memory
        self.memory_initializer = memory_initializer
        self.hidden_dim = hidden_dim
        self.train_memory_only = train_memory_only
        self.segment_loop = segment_loop
        self.scan_unroll = scan_unroll
        self.remat = remat
        self.associative_key_dim = associative_key_dim

    def __call__(self, inputs, *args, **kwargs):
        return super().__call__(self._fill_optional(inputs), *args, **kwargs)

    def call(self, inputs, *args, **kwargs):
        return super().call(self._fill_optional(inputs), *args, **kwargs)

    def _fill_optional(self, inputs):
        """Keras wants optional inputs passed as None; let callers omit them."""
        if not isinstance(inputs, dict):
            return inputs
        optional = ("memory", *self.extra_input_names)
        return {**{name: None for name in optional}, **inputs}

    @property
    def train_memory_only(self):
        """Whether the wrapped backbone is frozen (memory trains alone)."""
        return not self.backbone.trainable

    @train_memory_only.setter
    def train_memory_only(self, value):
        self.backbone.trainable = not value

    @property
    def extra_input_names(self):
        """Backbone inputs beyond token ids and padding mask."""
        return _extra_inputs(self.backbone)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "backbone": keras.layers.serialize(self.backbone),
                "num_memory_tokens": self.num_memory_tokens,
                "segment_length": self.segment_length,
                "bptt_depth": self.bptt_depth,
                "alignment": self.alignment,
                "memory_layout": self.memory_layout,
                "memory_attention": self.memory_attention,
                "carry_memory": self.carry_memory,
                "memory_initializer": None
                if self.memory_initializer is None
                else keras.initializers.serialize(
                    keras.initializers.get(self.memory_initializer)
                ),
                "train_memory_only": self.train_memory_only,
                "segment_loop": self.segment_loop,
                "scan_unroll": self.scan_unroll,
                "remat": self.remat,
                "associative_key_dim": self.associative_key_dim,
            }
        )
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["backbone"] = keras.layers.deserialize(config["backbone"])
        if isinstance(config.get("dtype"), dict):
            config["dtype"] = keras.dtype_policies.get(config["dtype"])
        return cls(**config)

    @classmethod
    def from_preset(cls, preset, load_weights=True, **kwargs):
        """Builds an `RMTBackbone` from a preset.

        `preset` is either a preset saved from an `RMTBackbone` or an RMT
        task (its own config is used; the RMT arguments that shape what it
        learned cannot be given again, but `segment_loop` and `remat` can)
        or any keras-hub text backbone preset (a built-in name, a Kaggle or
        Hugging Face handle, or a local folder), which is wrapped using the
        RMT arguments given here (`num_memory_tokens` and `segment_length`
        at least: a plain backbone has no memory to size them from).

        Args:
            preset: string. A preset name, handle or local folder.
            load_weights: bool. Whether to load the saved weights.
            **kwargs: the RMT arguments of `RMTBackbone` (for a plain
                backbone preset) and arguments of the backbone's
                `from_preset`, such as `dtype`.
        """
        rmt_kwargs, backbone_kwargs = split_rmt_kwargs(kwargs)
        loader = get_preset_loader(preset)
        if issubclass(loader.check_backbone_class(), RMTBackbone):
            execution = check_no_rmt_kwargs(preset, rmt_kwargs)
            return loader.load_backbone(
                cls, load_weights, **execution, **backbone_kwargs
            )
        check_required_rmt_kwargs(cls, preset, rmt_kwargs)
        backbone = keras_hub.models.Backbone.from_preset(
            preset, load_weights=load_weights, **backbone_kwargs
        )
        return cls(backbone, **rmt_kwargs)


def _extra_inputs(backbone):
    return [name for name in ("segment_ids",) if name in backbone.input]


def _check_defaults(memory_layout, memory_attention):
    # A saved config holds the layout found: "decoder".
    if memory_layout not in ("auto", "decoder") or (
        memory_attention != "backbone"
    ):
        raise ValueError(
            "With `associative_key_dim`, memory_layout and memory_attention "
            "keep their defaults ('auto', 'backbone'). Received: "
            f"memory_layout={memory_layout!r}, "
            f"memory_attention={memory_attention!r}"
        )


def split_rmt_kwargs(kwargs):
    """(RMT arguments, all the others) from `from_preset` keywords."""
    rmt = {k: v for k, v in kwargs.items() if k in RMT_ARGUMENTS}
    rest = {k: v for k, v in kwargs.items() if k not in RMT_ARGUMENTS}
    return rmt, rest


def check_no_rmt_kwargs(preset, rmt_kwargs):
    """The execution arguments among `rmt_kwargs`; an error for others."""
    learned = {
        k: v for k, v in rmt_kwargs.items() if k not in EXECUTION_ARGUMENTS
    }
    if learned:
        raise ValueError(
            f"The preset {preset!r} already holds an RMT model, whose memory "
            "and segment settings are part of what it learned; they cannot "
            f"be given again (only {list(EXECUTION_ARGUMENTS)} can). "
            f"Received: {learned}"
        )
    return {k: v for k, v in rmt_kwargs.items() if k in EXECUTION_ARGUMENTS}


def check_required_rmt_kwargs(cls, preset, rmt_kwargs):
    """An error naming the RMT arguments a plain preset needs and lacks."""
    missing = [name for name in REQUIRED_ARGUMENTS if name not in rmt_kwargs]
    if missing:
        raise ValueError(
            f"{cls.__name__}.from_preset({preset!r}): the preset holds a "
            "plain keras-hub backbone, which is wrapped in an RMTBackbone; "
            f"pass {' and '.join(missing)} (e.g. num_memory_tokens=10, "
            "segment_length=512). "
            f"Received RMT arguments: {rmt_kwargs}"
        )
