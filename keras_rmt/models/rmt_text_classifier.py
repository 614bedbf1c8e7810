import keras
import keras_hub
from keras import ops

from keras_rmt.export.saved_model_export import SavedModelExport
from keras_rmt.models.preset_loader import load_rmt_task
from keras_rmt.models.rmt_backbone import RMTBackbone
from keras_rmt.models.rmt_text_classifier_preprocessor import (
    RMTTextClassifierPreprocessor,
)
from keras_rmt.models.token_dataset_inputs import TokenDatasetInputs
from keras_rmt.utils import segmentation
from keras_rmt.utils.checks import check_positive_integer

SEGMENT_LOSSES = ("last", "mean")


@keras.saving.register_keras_serializable(package="keras_rmt")
class RMTTextClassifier(
    TokenDatasetInputs, SavedModelExport, keras_hub.models.TextClassifier
):
    """Classifies documents of any length with a Recurrent Memory Transformer.

    A `keras_rmt.models.RMTBackbone` reads the document segment by segment.
    Each segment gives one feature: with an encoder backbone (BERT,
    RoBERTa, DistilBERT...) the output at the segment's first token (the
    `[CLS]` that the preprocessor puts at the start of every segment, with
    the memory right after it), passed through the backbone's own pooler
    where it has one (BERT's `pooled_dense`); with a decoder backbone (GPT-2,
    Llama...) the output at the segment's last real token. A dropout and a
    dense layer turn features into logits.

    The task's output is the logits of each document's last segment, which
    has read the whole document through memory. `segment_loss` chooses what
    training minimises: the loss of those logits (`"last"`), or the loss of
    every segment's logits averaged over the segments that hold tokens
    (`"mean"`), which also asks early segments to guess the class. With
    `"mean"`, calling the task with `training=True` returns the per-segment
    logits, `(batch_size, segments, num_classes)`, and `evaluate()` reports
    the last-segment loss, which is what predictions use.

    Args:
        backbone: `keras_rmt.models.RMTBackbone`.
        num_classes: int. Number of classes.
        preprocessor: a preprocessor that turns strings into the task's
            inputs (for instance `keras_rmt.models
            .RMTTextClassifierPreprocessor`), or None to feed token ids.
            Defaults to `None`.
        activation: None, string or callable. Activation of the logits
            layer; `"softmax"` makes `compile()`'s default loss expect
            probabilities. Defaults to `None`.
        dropout: float. Dropout before the logits layer. Defaults to `0.0`.
        segment_loss: `"last"` or `"mean"`. See above. Defaults to `"last"`.
        **kwargs: other keyword arguments passed to
            `keras_hub.models.TextClassifier`, including `name`.

    Example:
    ```python
    bert = keras_hub.models.BertBackbone(
        vocabulary_size=100, num_layers=1, num_heads=2, hidden_dim=16,
        intermediate_dim=32, max_sequence_length=16,
    )
    backbone = keras_rmt.models.RMTBackbone(
        bert, num_memory_tokens=2, segment_length=8
    )
    classifier = keras_rmt.models.RMTTextClassifier(backbone, num_classes=3)
    x = {
        "token_ids": np.ones((2, 16), "int32"),
        "padding_mask": np.ones((2, 16), "int32"),
    }
    classifier.predict(x, verbose=0).shape  # (2, 3)
    classifier.fit(x, np.array([0, 2]), verbose=0)
    ```

    Reference:
     - [Bulatov et al., 2022](https://arxiv.org/abs/2207.06881)
    """

    backbone_cls = RMTBackbone
    preprocessor_cls = RMTTextClassifierPreprocessor

    def __init__(
        self,
        backbone,
        num_classes,
        preprocessor=None,
        activation=None,
        dropout=0.0,
        segment_loss="last",
        **kwargs,
    ):
        _check_backbone(backbone)
        if segment_loss not in SEGMENT_LOSSES:
            raise ValueError(
                f"`segment_loss` must be one of {SEGMENT_LOSSES}. "
                f"Received: segment_loss={segment_loss!r}"
            )
        num_classes = check_positive_integer("num_classes", num_classes)
        encoder = backbone.memory_layout == "encoder"
        # === Layers ===
        self.backbone = backbone
        self.preprocessor = preprocessor
        self.segment_features = _SegmentFeatures(
            backbone.segment_length,
            alignment=backbone.alignment,
            token="first" if encoder else "last",
            dtype=backbone.dtype_policy,
            name="segment_features",
        )
        self.pooler = getattr(backbone.backbone, "pooled_dense", None)
        if not encoder:
            self.pooler = None
        self.output_dropout = keras.layers.Dropout(
            dropout, dtype=backbone.dtype_policy, name="output_dropout"
        )
        self.output_dense = keras.layers.Dense(
            num_classes,
            activation=activation,
            dtype=backbone.dtype_policy,
            name="logits",
        )

        # === Functional Model ===
        inputs = {
            name: keras.Input(
                shape=(None,),
                dtype="int32",
                name=name,
                optional=name in backbone.extra_input_names,
            )
            for name in (
                "token_ids",
                "padding_mask",
                *backbone.extra_input_names,
            )
        }
        # The backbone's layer: see RMTCausalLM.
        outputs = backbone.recurrent_segments(inputs)
        x = self.segment_features(
            outputs["sequence_output"], inputs["padding_mask"]
        )
        if self.pooler is not None:
            x = self.pooler(x)
        x = self.output_dropout(x)
        segment_logits = self.output_dense(x)
        super().__init__(inputs=inputs, outputs=segment_logits, **kwargs)

        # === Config ===
        self.num_classes = num_classes
        self.activation = keras.activations.get(activation)
        self.dropout = dropout
        self.segment_loss = segment_loss

    def __call__(self, inputs, *args, **kwargs):
        return super().__call__(self._fill_optional(inputs), *args, **kwargs)

    def _fill_optional(self, inputs):
        """Keras wants optional inputs passed as None; let callers omit them."""
        if not isinstance(inputs, dict):
            return inputs
        names = self.backbone.extra_input_names
        return {**{name: None for name in names}, **inputs}

    def call(self, inputs, training=None, mask=None):
        inputs = self._fill_optional(inputs)
        segment_logits = super().call(inputs, training=training, mask=mask)
        if training and self.segment_loss == "mean":
            return segment_logits
        return self.segment_features.last_segment(
            segment_logits, inputs["padding_mask"]
        )

    def compute_output_spec(self, inputs, training=None, mask=None):
        spec = super().compute_output_spec(inputs, training=training)
        if training and self.segment_loss == "mean":
            return spec
        return keras.KerasTensor((spec.shape[0], spec.shape[2]), spec.dtype)

    def compute_loss(
        self, x=None, y=None, y_pred=None, sample_weight=None, training=True
    ):
        if y_pred is None or len(y_pred.shape) != 3:
            return super().compute_loss(
                x, y, y_pred, sample_weight, training=training
            )
        # Mean over each row's segments that hold tokens: every segment's
        # loss, weighted by segments / (segments with tokens), so that a
        # per-element mean of the (batch, segments) losses gives the mean
        # over rows of each row's mean over segments.
        valid = self.segment_features.valid_segments(
            x["padding_mask"], ops.shape(y_pred)[1]
        )
        valid = ops.cast(valid, y_pred.dtype)
        weights = (
            valid
            * ops.cast(ops.shape(y_pred)[1], y_pred.dtype)
            / ops.maximum(ops.sum(valid, axis=1, keepdims=True), 1.0)
        )
        if sample_weight is not None:
            sample_weight = ops.cast(sample_weight, y_pred.dtype)
            weights = weights * ops.reshape(sample_weight, (-1, 1))
        y = ops.expand_dims(y, 1)
        y = ops.broadcast_to(
            y, (ops.shape(y)[0], ops.shape(y_pred)[1], *ops.shape(y)[2:])
        )
        return super().compute_loss(x, y, y_pred, weights, training=training)

    def compute_metrics(self, x, y, y_pred, sample_weight=None):
        if len(y_pred.shape) == 3:
            y_pred = self.segment_features.last_segment(
                y_pred, x["padding_mask"]
            )
        return super().compute_metrics(x, y, y_pred, sample_weight)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "num_classes": self.num_classes,
                "activation": keras.activations.serialize(self.activation),
                "dropout": self.dropout,
                "segment_loss": self.segment_loss,
            }
        )
        return config

    @classmethod
    def preprocessor_kwargs_for(cls, backbone):
        """Preprocessor arguments that `from_preset` takes from `backbone`."""
        return {"memory_layout": backbone.memory_layout}

    @classmethod
    def from_preset(cls, preset, load_weights=True, **kwargs):
        """Builds the task from a preset.

        `preset` is a preset saved from an `RMTTextClassifier` (loaded
        whole; passing `num_classes` skips its head's weights), or any
        keras-hub text preset with a tokenizer, whose backbone is wrapped in
        an `RMTBackbone`.

        Args:
            preset: string. A preset name, handle or local folder.
            load_weights: bool. Whether to load the saved weights.
            **kwargs: `RMTBackbone` arguments (`num_memory_tokens`,
                `segment_length`, ..., for a plain keras-hub preset only),
                `dtype`, and arguments of the task (`num_classes`...).

        Example:
        ```python
        classifier = keras_rmt.models.RMTTextClassifier.from_preset(
            "bert_base_en",
            num_classes=2,
            num_memory_tokens=10,
            segment_length=499,
        )
        ```
        """
        return load_rmt_task(cls, preset, load_weights=load_weights, **kwargs)


@keras.saving.register_keras_serializable(package="keras_rmt")
class _SegmentFeatures(keras.layers.Layer):
    """One output per segment: at its first token, or its last real one.

    Used by `RMTTextClassifier`. Finds the segments as
    `keras_rmt.layers.RecurrentSegments` cuts them (same `segment_length`
    and `alignment`) in a `(batch_size, tokens, hidden_dim)` output and
    returns `(batch_size, segments, hidden_dim)`. Rows shorter than the
    batch have trailing segments without tokens: see `valid_segments` and
    `last_segment`.
    """

    def __init__(self, segment_length, alignment="left", token="first", **kw):
        super().__init__(**kw)
        self.segment_length = segment_length
        self.alignment = alignment
        self.token = token

    def _lengths_and_offsets(self, padding_mask):
        padding_mask = ops.cast(padding_mask, "int32")
        lengths = ops.sum(padding_mask, axis=1)
        offsets = segmentation.row_offsets(
            padding_mask, self.segment_length, self.alignment
        )
        if offsets is None:
            offsets = ops.zeros_like(lengths)
        return lengths, offsets

    def call(self, sequence_output, padding_mask):
        length = ops.shape(sequence_output)[1]
        lengths, offsets = self._lengths_and_offsets(padding_mask)
        count = segmentation.num_segments(length, self.segment_length)
        starts = (
            ops.arange(count, dtype="int32")[None] * self.segment_length
            - offsets[:, None]
        )
        if self.token == "first":
            positions = starts
        else:
            ends = ops.minimum(starts + self.segment_length, lengths[:, None])
            positions = ends - 1
        positions = ops.clip(positions, 0, length - 1)
        return ops.take_along_axis(
            sequence_output, positions[:, :, None], axis=1
        )

    def valid_segments(self, padding_mask, count):
        """(batch, count) booleans: which segments hold tokens of the row."""
        lengths, offsets = self._lengths_and_offsets(padding_mask)
        starts = (
            ops.arange(count, dtype="int32")[None] * self.segment_length
            - offsets[:, None]
        )
        return (starts < lengths[:, None]) & (starts + self.segment_length > 0)

    def last_segment(self, per_segment, padding_mask):
        """(batch, segments, ...) -> (batch, ...): each row's last segment."""
        lengths, offsets = self._lengths_and_offsets(padding_mask)
        last = ops.maximum(lengths + offsets - 1, 0) // self.segment_length
        last = ops.minimum(last, ops.shape(per_segment)[1] - 1)
        index = ops.reshape(last, (-1, 1, 1))
        return ops.take_along_axis(per_segment, index, axis=1)[:, 0]

    def compute_output_shape(self, sequence_output_shape, padding_mask_shape):
        length = sequence_output_shape[1]
        count = (
            None
            if length is None
            else segmentation.num_segments(length, self.segment_length)
        )
        return (sequence_output_shape[0], count, sequence_output_shape[2])

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "segment_length": self.segment_length,
                "alignment": self.alignment,
                "token": self.token,
            }
        )
        return config


def _check_backbone(backbone):
    if not isinstance(backbone, RMTBackbone):
        raise ValueError(
            "`backbone` must be a keras_rmt.models.RMTBackbone; wrap a "
            "keras-hub backbone with RMTBackbone(backbone, "
            "num_memory_tokens=..., segment_length=...). "
            f"Received: backbone={type(backbone).__name__}"
        )
