import keras
import numpy as np

from keras_rmt.models.segmented_preprocessor import (
    SegmentedPreprocessor,
    _tensorflow,
)
from keras_rmt.utils import segment_packing
from keras_rmt.utils.checks import check_positive_integer


@keras.saving.register_keras_serializable(package="keras_rmt")
class RMTCausalLMPreprocessor(SegmentedPreprocessor):
    """Turns raw strings of any length into next-token training data.

    Like `keras_hub.models.CausalLMPreprocessor`, but with no fixed length:
    each string is tokenized, the tokenizer's start token is put before it
    and its end token after it (`add_start_token`, `add_end_token`), and the
    rows are padded at the end to a whole number of segments: as many as the
    longest row of the batch needs, or exactly `sequence_length` tokens when
    it is set (static shapes, e.g. for XLA or TPUs). There are no special
    tokens between segments: this is the layout of decoder (causal)
    backbones, whose memory goes around each segment.

    The layer returns `(x, y, sample_weight)`: `x` is a dict of
    `"token_ids"` and `"padding_mask"` (`(batch, tokens)`), `y` holds the
    next token of every position and `sample_weight` is 1 where that label
    is real. A row too short to hold one token and its successor (an empty
    string when no start or end token is added) is all padding, with zero
    sample weight.

    Lengths are bounded only when asked. `max_length` (or a fixed
    `sequence_length`) is the most positions a row may take in `x`, start
    and end tokens included. A longer input follows `truncate`:
    - `"error"` (default): raise an error naming the length. Inside
      `tf.data` the error is raised when the element is produced.
    - `"keep_first"`: keep the first tokens of the text (a long document's
      beginning); the end token, if any, still closes the row.
    - `"keep_last"`: keep the last tokens (the most recent context); the
      start token, if any, still opens the row.

    Call it eagerly on a string or a list of strings, or map it over a
    `tf.data.Dataset` of strings with any Keras backend.

    Args:
        tokenizer: A `keras_hub.tokenizers.Tokenizer` (WordPiece, byte-pair,
            SentencePiece...).
        segment_length: int. Tokens per segment, as given to
            `keras_rmt.layers.RecurrentSegments`.
        sequence_length: int or None. If set, every output has exactly this
            many positions (a multiple of `segment_length`), and no row may
            hold more. Defaults to `None`: the longest row of each batch,
            rounded up to whole segments.
        max_length: int or None. The most positions a row may hold, without
            fixing the output length. Defaults to `None`: no limit, unless
            `sequence_length` is set.
        truncate: `"error"`, `"keep_first"` or `"keep_last"`. What to do
            with an input longer than the limit (see above). Defaults to
            `"error"`.
        add_start_token: bool. Put the tokenizer's start token before each
            text. Defaults to `True`.
        add_end_token: bool. Put the tokenizer's end token after each text.
            Defaults to `True`.
        **kwargs: other keyword arguments passed to
            `keras_hub.models.Preprocessor`, e.g. `name`.

    Call arguments:
        x: a string, a list of strings, or a string tensor (scalar or 1-D).
        y: must be `None`: the labels are made from `x`.
        sample_weight: must be `None`.

    Example:
    ```python
    tokenizer = keras_hub.models.BertTokenizer(
        vocabulary=["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "b"],
    )
    preprocessor = keras_rmt.models.RMTCausalLMPreprocessor(
        tokenizer, segment_length=4
    )
    x, y, sample_weight = preprocessor(["a b a b a", "b"])
    x["token_ids"].shape  # (2, 8)
    # x["token_ids"]: [[2, 5, 6, 5, 6, 5, 0, 0], [2, 6, 0, 0, 0, 0, 0, 0]]
    # y:              [[5, 6, 5, 6, 5, 3, 0, 0], [6, 3, 0, 0, 0, 0, 0, 0]]
    # sample_weight: True on the first 6 and 2 positions.
    ```
    """

    def __init__(
        self,
        tokenizer,
        segment_length,
        sequence_length=None,
        max_length=None,
        truncate="error",
        add_start_token=True,
        add_end_token=True,
        **kwargs,
    ):
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

    def _specials(self):
        return int(self.add_start_token) + int(self.add_end_token)

    def call(self, x, y=None, sample_weight=None):
        if y is not None or sample_weight is not None:
            raise ValueError(
                "RMTCausalLMPreprocessor makes its own labels (the next "
                "token) and weights. Received: "
                f"y={_short(y)}, sample_weight={_short(sample_weight)}"
            )
        # `x` holds every token of a row but the last.
        overhead = self._specials() - 1
        return self._run(
            x,
            self._budget(overhead),
            lambda count: max(count + overhead, 0),
            self._pack_training,
        )

    def _pack_training(self, ids, lengths, xp):
        start_ids, end_ids = self._start_ids(), self._end_ids()
        budget = self._budget(self._specials() - 1)
        first, count = segment_packing.kept_span(
            lengths, budget, self.truncate, xp
        )
        inputs = xp.maximum(count + len(start_ids) + len(end_ids) - 1, 0)
        width = segment_packing.padded_length(
            xp.max(inputs), self.segment_length, self.sequence_length, xp
        )
        tokens, _ = segment_packing.stream(
            ids, first, count, start_ids, end_ids, width + 1, self._pad_id(), xp
        )
        mask = xp.arange(width)[None, :] < inputs[:, None]
        # A row's last token is only a label: not an input position.
        token_ids = xp.where(mask, tokens[:, :-1], self._pad_id())
        x = {"token_ids": token_ids, "padding_mask": mask}
        return x, tokens[:, 1:], mask

    def generate_preprocess(self, x, sequence_length=None):
        """Tokenizes prompts for generation: no end token, no labels.

        Each prompt gets the start token (if `add_start_token`) and is
        padded at the end to whole segments, or to `sequence_length`
        positions when given (room for the tokens to generate; `generate()`
        passes its `max_length`). The length limit and `truncate` apply to
        the prompt, and so does `sequence_length`: a prompt longer than it
        is cut by the `truncate` policy, or refused with `"error"`. Returns
        a dict of `"token_ids"` and `"padding_mask"`.
        """
        overhead = int(self.add_start_token)
        budget = self._budget(overhead)
        if sequence_length is not None:
            check_positive_integer("sequence_length", sequence_length)
            if self.truncate != "error":
                room = max(sequence_length - overhead, 0)
                budget = room if budget is None else min(budget, room)

        def pack(ids, lengths, xp):
            first, count = segment_packing.kept_span(
                lengths, budget, self.truncate, xp
            )
            width = sequence_length
            if width is None:
                width = segment_packing.padded_length(
                    xp.max(count + overhead), self.segment_length, None, xp
                )
            else:
                width = self._check_room(xp.max(count + overhead), width, xp)
            tokens, used = segment_packing.stream(
                ids,
                first,
                count,
                self._start_ids(),
                [],
                width,
                self._pad_id(),
                xp,
            )
            mask = xp.arange(width)[None, :] < used[:, None]
            return {"token_ids": tokens, "padding_mask": mask}

        return self._run(
            x,
            budget,
            lambda count: count + overhead,
            pack,
            fixed_length=sequence_length is not None,
        )

    def _check_room(self, longest, width, xp):
        """`width`, once checked to hold the longest prompt."""
        if isinstance(xp, segment_packing.NumpyOps):
            if longest > width:
                raise ValueError(
                    "`sequence_length` (`max_length` in `generate()`) must "
                    f"leave room for the prompt, which takes {longest} "
                    "positions, and truncate='error'. Pass a larger one, or "
                    "truncate='keep_first' or 'keep_last' to cut prompts. "
                    f"Received: sequence_length={width}"
                )
            return width
        tf = _tensorflow()
        check = tf.debugging.assert_less_equal(
            longest,
            width,
            message="`sequence_length` (`max_length` in `generate()`) is "
            "shorter than a prompt, and truncate='error'. Received: "
            f"sequence_length={width}",
        )
        with tf.control_dependencies([check]):
            return tf.identity(width)

    def generate_postprocess(self, x):
        """Turns generated `{"token_ids", "padding_mask"}` back to strings.

        Padding and the tokenizer's special tokens are dropped.
        """
        token_ids = keras.ops.convert_to_numpy(x["token_ids"])
        mask = keras.ops.convert_to_numpy(x["padding_mask"]).astype(bool)
        special = list(getattr(self.tokenizer, "special_token_ids", []) or [])
        keep = mask & ~np.isin(token_ids, special)
        if token_ids.ndim == 1:
            return self.tokenizer.detokenize(token_ids[keep].tolist())
        rows = [ids[k].tolist() for ids, k in zip(token_ids, keep)]
        return self.tokenizer.detokenize(rows)


def _short(value, limit=100):
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."
