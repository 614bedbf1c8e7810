import sys

import keras
import numpy as np

from keras_rmt.models.segmented_preprocessor import SegmentedPreprocessor
from keras_rmt.utils import segment_packing

# Backbone families by the class their tokenizer names (`backbone_cls`).
ENCODER_BACKBONES = (
    "AlbertBackbone",
    "BertBackbone",
    "DebertaV3Backbone",
    "DistilBertBackbone",
    "ElectraBackbone",
    "ESMBackbone",
    "FNetBackbone",
    "RobertaBackbone",
    "RoformerV2Backbone",
    "XLMRobertaBackbone",
)
DECODER_BACKBONES = (
    "BloomBackbone",
    "FalconBackbone",
    "GemmaBackbone",
    "Gemma3Backbone",
    "GPT2Backbone",
    "GPTNeoXBackbone",
    "GptOssBackbone",
    "LlamaBackbone",
    "Llama3Backbone",
    "MistralBackbone",
    "MixtralBackbone",
    "OPTBackbone",
    "Phi3Backbone",
    "QwenBackbone",
    "Qwen3Backbone",
    "QwenMoeBackbone",
    "Qwen3MoeBackbone",
    "SmolLM3Backbone",
)
MEMORY_LAYOUTS = ("auto", "encoder", "decoder")


def layout_for_backbone(backbone_cls):
    """`"encoder"`, `"decoder"`, or None for a family not known here."""
    name = getattr(backbone_cls, "__name__", None)
    if name in ENCODER_BACKBONES:
        return "encoder"
    if name in DECODER_BACKBONES:
        return "decoder"
    return None


@keras.saving.register_keras_serializable(package="keras_rmt")
class RMTTextClassifierPreprocessor(SegmentedPreprocessor):
    """Turns documents of any length into segments for classification.

    Each string is tokenized and cut into segments of `segment_length`
    positions; rows are padded at the end to a whole number of segments (as
    many as the longest row of the batch needs, or exactly
    `sequence_length`). Where special tokens go depends on the backbone the
    segments feed (`memory_layout`):

    - `"encoder"` (BERT, RoBERTa, DistilBERT...): every segment is
      `[start] content [end]` - `[CLS] ... [SEP]` for BERT, `<s> ... </s>`
      for RoBERTa - because an encoder reads each segment as a sentence
      and `keras_rmt.layers.RecurrentSegments` puts its memory right after
      each segment's first token. A segment holds `segment_length - 2`
      content tokens (`- 1` with `add_end_token=False`); only the last
      segment of a row is short. Use these segments with the layer's
      default `alignment="left"`: right alignment would move the `[CLS]`
      tokens off the segment starts.
    - `"decoder"` (GPT-2, Llama, Gemma...): no special tokens between
      segments; the start token opens the document and the end token
      closes it (`add_start_token`, `add_end_token`), so the last real
      position of a row reads the whole document.
    - `"auto"` (default): `"encoder"` or `"decoder"` from the tokenizer's
      backbone family (`tokenizer.backbone_cls`); an error for a family not
      listed here or a bare tokenizer, asking for an explicit choice.

    An empty string still gets its special tokens (`[CLS] [SEP]`, one
    segment). A row with no position at all (an empty string with the
    decoder layout and no start or end token) is an error: there would be
    nothing to classify.

    Lengths are bounded only when asked. `max_length` (or a fixed
    `sequence_length`) is the most positions a row may take, special tokens
    included. A longer document follows `truncate`:
    - `"error"` (default): raise an error naming the length. Inside
      `tf.data` the error is raised when the element is produced.
    - `"keep_first"`: keep the first tokens of the document.
    - `"keep_last"`: keep the last tokens (e.g. a question at the end).
    Special tokens are always kept.

    Returns `x` (a dict of `"token_ids"` and `"padding_mask"`), `(x, y)` or
    `(x, y, sample_weight)`; labels and weights pass through unchanged.

    Args:
        tokenizer: A `keras_hub.tokenizers.Tokenizer`.
        segment_length: int. Positions per segment (special tokens
            included, memory not), as given to
            `keras_rmt.layers.RecurrentSegments`.
        memory_layout: `"auto"`, `"encoder"` or `"decoder"`. See above.
            Defaults to `"auto"`.
        sequence_length: int or None. If set, every output has exactly this
            many positions (a multiple of `segment_length`), and no row may
            hold more. Defaults to `None`: the longest row of each batch,
            rounded up to whole segments.
        max_length: int or None. The most positions a row may hold, without
            fixing the output length. Defaults to `None`: no limit, unless
            `sequence_length` is set.
        truncate: `"error"`, `"keep_first"` or `"keep_last"`. See above.
            Defaults to `"error"`.
        add_start_token: bool. The start token opens every segment
            (encoder; required there) or the document (decoder). Defaults
            to `True`.
        add_end_token: bool. The end token closes every segment (encoder)
            or the document (decoder). Defaults to `True`.
        **kwargs: other keyword arguments passed to
            `keras_hub.models.Preprocessor`, e.g. `name`.

    Call arguments:
        x: a string, a list of strings, or a string tensor (scalar or 1-D).
        y: labels, passed through. Defaults to `None`.
        sample_weight: weights, passed through. Defaults to `None`.

    Example:
    ```python
    tokenizer = keras_hub.models.BertTokenizer(
        vocabulary=["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "b"],
    )
    preprocessor = keras_rmt.models.RMTTextClassifierPreprocessor(
        tokenizer, segment_length=4,
    )
    x, y = preprocessor(["a b a", "b"], [1, 0])
    x["token_ids"].shape  # (2, 8)
    # x["token_ids"]: [[2, 5, 6, 3, 2, 5, 3, 0], [2, 6, 3, 0, 0, 0, 0, 0]]
    ```
    """

    def __init__(
        self,
        tokenizer,
        segment_length,
        memory_layout="auto",
        sequence_length=None,
        max_length=None,
        truncate="error",
        add_start_token=True,
        add_end_token=True,
        **kwargs,
    ):
        if memory_layout not in MEMORY_LAYOUTS:
            raise ValueError(
                f"`memory_layout` must be one of {MEMORY_LAYOUTS}. "
                f"Received: memory_layout={memory_layout!r}"
            )
        if memory_layout == "auto":
            memory_layout = _layout_of_tokenizer(tokenizer)
        if memory_layout == "encoder":
            _check_encoder_segment(
                segment_length, add_start_token, add_end_token
            )
        super().__init__(
            tokenizer,
            segment_length,
            sequence_length=sequence_length,
            max_length=max_length,
            truncate=truncate,
            add_start_token=add_start_token,
            add_end_token=add_end_token,
            **kwargs,
        )
        self.memory_layout = memory_layout
        if self.length_limit is not None:
            self._check_limit_fits_specials()

    def _specials(self):
        return int(self.add_start_token) + int(self.add_end_token)

    def _per_segment(self):
        return self.segment_length - self._specials()

    def _check_limit_fits_specials(self):
        if self.length_limit < self._specials():
            raise ValueError(
                f"The length limit leaves no room for the {self._specials()} "
                f"special tokens of a row. Received: {self._limit_name()}"
            )

    # === Lengths ===

    def _content_budget(self):
        limit = self.length_limit
        if limit is None:
            return None
        if self.memory_layout == "decoder":
            return self._budget(self._specials())
        whole, rest = divmod(limit, self.segment_length)
        return whole * self._per_segment() + max(rest - self._specials(), 0)

    def _positions(self, count):
        if self.memory_layout == "decoder":
            return count + self._specials()
        segments = max(-(-count // self._per_segment()), 1)
        return count + segments * self._specials()

    # === Calls ===

    def call(self, x, y=None, sample_weight=None):
        x = _single_text_feature(x)
        _check_labels_not_text(y)
        x = self._run(x, self._content_budget(), self._positions, self._pack)
        if y is not None and not self._use_tf_workflow():
            y = keras.ops.convert_to_tensor(y)
        if sample_weight is not None and not self._use_tf_workflow():
            sample_weight = keras.ops.convert_to_tensor(sample_weight)
        return keras.utils.pack_x_y_sample_weight(x, y, sample_weight)

    def _pack(self, ids, lengths, xp):
        self._check_not_empty(lengths, xp)
        first, count = segment_packing.kept_span(
            lengths, self._content_budget(), self.truncate, xp
        )
        start_ids, end_ids = self._start_ids(), self._end_ids()
        if self.memory_layout == "decoder":
            used = count + len(start_ids) + len(end_ids)
            width = segment_packing.padded_length(
                xp.max(used), self.segment_length, self.sequence_length, xp
            )
            tokens, _ = segment_packing.stream(
                ids,
                first,
                count,
                start_ids,
                end_ids,
                width,
                self._pad_id(),
                xp,
            )
            mask = xp.arange(width)[None, :] < used[:, None]
            return {"token_ids": tokens, "padding_mask": mask}
        segments = segment_packing.segments_needed(
            count, self._per_segment(), xp
        )
        width = self.sequence_length
        if width is None:
            width = xp.max(segments) * self.segment_length
        tokens, mask = segment_packing.wrapped_segments(
            ids,
            first,
            count,
            self.segment_length,
            start_ids,
            end_ids,
            width,
            self._pad_id(),
            xp,
        )
        return {"token_ids": tokens, "padding_mask": mask}

    def _check_not_empty(self, lengths, xp):
        if self._specials():
            return
        if isinstance(xp, segment_packing.NumpyOps):
            empty = [i for i, n in enumerate(lengths) if n == 0]
            if empty:
                raise ValueError(
                    f"RMTTextClassifierPreprocessor: row {empty[0]} has no "
                    "tokens (an empty string?) and no special token is "
                    "added, so there is nothing to classify. Received: "
                    "add_start_token=False, add_end_token=False"
                )
            return
        xp.tf.debugging.assert_positive(
            lengths,
            message="RMTTextClassifierPreprocessor: an input has no tokens "
            "(an empty string?) and no special token is added, so there is "
            "nothing to classify.",
        )

    def get_config(self):
        config = super().get_config()
        config["memory_layout"] = self.memory_layout
        return config

    @classmethod
    def _preset_defaults(cls, loader, rmt_config, kwargs):
        if kwargs.get("memory_layout", "auto") == "auto":
            if rmt_config is not None:
                # The layout the RMT backbone resolved and saved.
                layout = rmt_config["memory_layout"]
            else:
                layout = layout_for_backbone(loader.check_backbone_class())
            if layout is not None:
                kwargs["memory_layout"] = layout
        return kwargs


def _single_text_feature(x):
    """`x`, or its only feature; an error for sentence pairs.

    As keras-hub's classifier preprocessors do, a tuple holds the features
    of an example (a batch is a list or a tensor).
    """
    if not isinstance(x, tuple):
        return x
    if len(x) == 1:
        return x[0]
    raise ValueError(
        "RMTTextClassifierPreprocessor reads one text per example. A tuple "
        "is read, as by keras-hub's classifier preprocessors, as the "
        f"{len(x)} texts of a sentence pair, which it does not pack: join "
        "each pair into one text (e.g. `first + ' ' + second`), or pass a "
        "batch of texts as a list or a tensor, not a tuple. "
        f"Received: x=tuple of {len(x)} elements"
    )


def _check_labels_not_text(y):
    """Labels of strings: most likely a sentence pair, mapped unpacked."""
    tf = sys.modules.get("tensorflow")
    if tf is not None and isinstance(y, tf.Tensor):
        is_text = y.dtype == tf.string
    else:
        is_text = isinstance(y, (str, bytes)) or (
            isinstance(y, (list, np.ndarray))
            and np.asarray(y).dtype.kind in "USO"
        )
    if is_text:
        raise ValueError(
            "RMTTextClassifierPreprocessor takes labels that are numbers, "
            "and received texts: a sentence pair `(first, second)` mapped "
            "over a dataset arrives unpacked as `(x, y)`. Sentence pairs "
            "are not packed: join each pair into one text. "
            "Received: y with text values"
        )


def _layout_of_tokenizer(tokenizer):
    backbone_cls = getattr(tokenizer, "backbone_cls", None)
    layout = layout_for_backbone(backbone_cls)
    if layout is None:
        family = getattr(backbone_cls, "__name__", None)
        raise ValueError(
            "memory_layout='auto' cannot tell whether "
            f"{type(tokenizer).__name__} (backbone family: {family}) feeds an "
            "encoder or a decoder backbone. Pass memory_layout='encoder' "
            "([CLS]-style start token in every segment) or 'decoder' (no "
            "special tokens between segments)."
        )
    return layout


def _check_encoder_segment(segment_length, add_start_token, add_end_token):
    if not add_start_token:
        raise ValueError(
            "The encoder layout puts the start token ([CLS], <s>) at the "
            "start of every segment: the memory follows it. "
            "Received: add_start_token=False"
        )
    specials = 1 + int(add_end_token)
    if isinstance(segment_length, int) and segment_length <= specials:
        raise ValueError(
            f"`segment_length` must leave room for content beside the "
            f"{specials} special tokens of every segment. "
            f"Received: segment_length={segment_length}"
        )
