import keras
from keras import ops

from keras_rmt.utils import segmentation
from keras_rmt.utils.checks import check_positive_integer


@keras.saving.register_keras_serializable(package="keras_rmt")
class SegmentLosses(keras.metrics.Metric):
    """Token-weighted cross-entropy of each segment, reported separately.

    Shows whether late segments, which can read memory of earlier ones, are
    predicted better than the first. The result is a dict
    `{"segment_1_loss": ..., "segment_2_loss": ...}` with one entry for each
    of the first `num_segments` segments; a segment that held no weighted
    token since the last reset reports NaN. Tokens in later segments are
    not counted here (they still count in the model's loss).

    `keras_rmt.models.RMTCausalLM` reports this metric in `fit()` and
    `evaluate()`; see its `compile()`.

    Args:
        segment_length: int. Tokens per segment.
        num_segments: int. How many segments to report.
        from_logits: bool. Whether `y_pred` holds logits. Defaults to `True`.
        alignment: `"left"` or `"right"`, as in
            `keras_rmt.layers.RecurrentSegments`. With `"right"`, pass the
            padding mask to `update_state`. Defaults to `"left"`.
        **kwargs: other keyword arguments passed to `keras.metrics.Metric`,
            including `name` and `dtype`.

    Call arguments (`update_state`):
        y_true: int tensor of shape `(batch_size, tokens)`.
        y_pred: tensor of shape `(batch_size, tokens, vocabulary_size)`.
        sample_weight: tensor of shape `(batch_size, tokens)`, or None.
        padding_mask: tensor of shape `(batch_size, tokens)`, or None. Needed
            with `alignment="right"`.

    Example:
    ```python
    metric = keras_rmt.metrics.SegmentLosses(segment_length=2, num_segments=2)
    y_true = np.array([[1, 0, 1, 0]])
    y_pred = np.zeros((1, 4, 3))
    metric.update_state(y_true, y_pred)
    result = metric.result()  # both segments: log(3), uniform predictions
    result["segment_2_loss"].shape  # ()
    ```
    """

    def __init__(
        self,
        segment_length,
        num_segments,
        from_logits=True,
        alignment="left",
        name="segment_losses",
        **kwargs,
    ):
        for arg, value in (
            ("segment_length", segment_length),
            ("num_segments", num_segments),
        ):
            check_positive_integer(arg, value)
        if alignment not in segmentation.ALIGNMENTS:
            raise ValueError(
                f"`alignment` must be one of {segmentation.ALIGNMENTS}. "
                f"Received: alignment={alignment!r}"
            )
        super().__init__(name=name, **kwargs)
        self.segment_length = segment_length
        self.num_segments = num_segments
        self.from_logits = from_logits
        self.alignment = alignment
        self.totals = self.add_variable(
            (num_segments,), initializer="zeros", name="totals"
        )
        self.counts = self.add_variable(
            (num_segments,), initializer="zeros", name="counts"
        )

    def update_state(
        self, y_true, y_pred, sample_weight=None, padding_mask=None
    ):
        y_true = ops.convert_to_tensor(y_true)
        y_pred = ops.cast(y_pred, self.dtype)
        losses = ops.sparse_categorical_crossentropy(
            y_true, y_pred, from_logits=self.from_logits
        )
        if sample_weight is None:
            sample_weight = ops.ones_like(losses)
        sample_weight = ops.cast(sample_weight, self.dtype)
        if self.alignment == "right" and padding_mask is None:
            raise ValueError(
                "SegmentLosses with alignment='right' needs the padding mask "
                "to find each row's segments. Received: padding_mask=None"
            )
        positions = ops.arange(ops.shape(losses)[1], dtype="int32")[None]
        offsets = segmentation.row_offsets(
            padding_mask, self.segment_length, self.alignment
        )
        if offsets is not None:
            positions = positions + offsets[:, None]
        # (batch, tokens, num_segments): which reported segment holds a token;
        # all zeros beyond the last one.
        membership = ops.equal(
            (positions // self.segment_length)[..., None],
            ops.arange(self.num_segments, dtype="int32"),
        )
        weights = ops.cast(membership, self.dtype) * sample_weight[..., None]
        self.totals.assign_add(
            ops.sum(weights * losses[..., None], axis=(0, 1))
        )
        self.counts.assign_add(ops.sum(weights, axis=(0, 1)))

    def result(self):
        means = self.totals / ops.maximum(self.counts, 1e-12)
        means = ops.where(self.counts > 0, means, float("nan"))
        return {
            f"segment_{index + 1}_loss": means[index]
            for index in range(self.num_segments)
        }

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "segment_length": self.segment_length,
                "num_segments": self.num_segments,
                "from_logits": self.from_logits,
                "alignment": self.alignment,
            }
        )
        return config
