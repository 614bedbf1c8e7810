"""What the RMT preprocessors share: strings in, whole segments out.

Input-pipeline code, like keras-hub's own preprocessors: eager calls run in
NumPy, and inside `tf.data` the same packing runs in TensorFlow, whatever
the Keras backend (see `keras_rmt/backend/__init__.py`).
"""

import os
import sys

import keras
import keras_hub
import numpy as np

from keras_rmt.models.preset_loader import load_tokenizer, rmt_backbone_config
from keras_rmt.utils import segment_packing
from keras_rmt.utils.checks import check_positive_integer
from keras_rmt.utils.keras_hub_internals import (
    PREPROCESSOR_CONFIG_FILE,
    TOKENIZER_CONFIG_FILE,
    check_file_exists,
    get_preset_loader,
    load_json,
)


def _short_repr(x, limit=200):
    text = repr(x)
    return text if len(text) <= limit else text[:limit] + "..."


def _tensorflow():
    """TensorFlow if it is already imported (a `tf.Tensor` can exist)."""
    return sys.modules.get("tensorflow")


class SegmentedPreprocessor(keras_hub.models.Preprocessor):
    """Base class: tokenizes strings and packs them into whole segments.

    Subclasses say where special tokens go and pack rows through `_run`.
    This class handles the input checks, the truncation policy, the NumPy
    path for eager calls and the TensorFlow path for `tf.data`,
    configuration and presets.
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
        check_positive_integer("segment_length", segment_length)
        check_positive_integer(
            "sequence_length", sequence_length, allow_none=True
        )
        check_positive_integer("max_length", max_length, allow_none=True)
        if sequence_length is not None and sequence_length % segment_length:
            raise ValueError(
                "`sequence_length` must be a whole number of segments (a "
                f"multiple of segment_length={segment_length}). "
                f"Received: sequence_length={sequence_length}"
            )
        if (
            sequence_length is not None
            and max_length is not None
            and max_length > sequence_length
        ):
            raise ValueError(
                "`max_length` cannot exceed the fixed `sequence_length`="
                f"{sequence_length}. Received: max_length={max_length}"
            )
        if truncate not in segment_packing.TRUNCATIONS:
            raise ValueError(
                f"`truncate` must be one of {segment_packing.TRUNCATIONS}. "
                f"Received: truncate={truncate!r}"
            )
        super().__init__(**kwargs)
        self.tokenizer = tokenizer
        self.segment_length = segment_length
        self.sequence_length = sequence_length
        self.max_length = max_length
        self.truncate = truncate
        self.add_start_token = add_start_token
        self.add_end_token = add_end_token
        # Nothing to build. Unbuilt, Keras would trace a first call in a
        # scratch graph to infer shapes: seconds lost to tokenizer tracing.
        self.built = True

    @property
    def length_limit(self):
        """The most positions a row may use: `max_length`, else the fixed
        `sequence_length`, else None (no limit)."""
        if self.max_length is not None:
            return self.max_length
        return self.sequence_length

    def _limit_name(self):
        if self.max_length is not None:
            return f"max_length={self.max_length}"
        return f"sequence_length={self.sequence_length}"

    # === Special tokens ===

    def _token_id(self, kind, flag):
        token_id = getattr(self.tokenizer, f"{kind}_token_id", None)
        if token_id is None:
            raise ValueError(
                f"`{flag}=True` needs a tokenizer with a {kind} token, but "
                f"{type(self.tokenizer).__name__} has {kind}_token_id=None. "
                f"Pass `{flag}=False` or a tokenizer that defines one."
            )
        return int(token_id)

    def _start_ids(self):
        if not self.add_start_token:
            return []
        return [self._token_id("start", "add_start_token")]

    def _end_ids(self):
        if not self.add_end_token:
            return []
        return [self._token_id("end", "add_end_token")]

    def _pad_id(self):
        pad_id = getattr(self.tokenizer, "pad_token_id", None)
        return 0 if pad_id is None else int(pad_id)

    # === Inputs ===

    def _strings_python(self, x):
        """A batch of Python strings and whether the input was one string."""
        tf = _tensorflow()
        if (
            tf is not None
            and isinstance(x, tf.Tensor)
            and (x.dtype == tf.string)
        ):
            x = x.numpy()
        if isinstance(x, np.ndarray) and x.dtype.kind in "USO":
            x = x.tolist() if x.ndim else x.item()
        if isinstance(x, (str, bytes)):
            return [_decode(x)], True
        if (
            isinstance(x, (list, tuple))
            and x
            and all(isinstance(text, (str, bytes)) for text in x)
        ):
            return [_decode(text) for text in x], False
        self._raise_not_strings(x)

    def _raise_not_strings(self, x):
        detail = ""
        if isinstance(x, (list, tuple)) and x:
            bad = next(
                (i, t) for i, t in enumerate(x) if not isinstance(t, str)
            )
            detail = f" (element {bad[0]} has type {type(bad[1]).__name__})"
        elif isinstance(x, (list, tuple)):
            detail = " (an empty batch)"
        raise ValueError(
            f"{type(self).__name__} takes a string or a batch (list or 1-D "
            f"tensor) of strings. Received: x={_short_repr(x)}{detail}"
        )

    def _tokens_python(self, texts):
        """Dense `(batch, width + 1)` ids and `(batch,)` lengths, in NumPy."""
        token_lists = self.tokenizer(texts)
        token_lists = [np.asarray(t, "int32").reshape(-1) for t in token_lists]
        lengths = np.array([len(t) for t in token_lists], "int32")
        ids = np.zeros((len(token_lists), int(lengths.max()) + 1), "int32")
        for row, tokens in enumerate(token_lists):
            ids[row, : len(tokens)] = tokens
        return ids, lengths

    def _tokens_tf(self, x):
        tf = _tensorflow()
        if isinstance(x, tf.RaggedTensor) or x.dtype != tf.string:
            raise ValueError(
                f"{type(self).__name__} takes a string or a batch of strings. "
                f"Received: x={x!r}"
            )
        if x.shape.rank not in (0, 1):
            raise ValueError(
                f"{type(self).__name__} takes one string per example: a "
                f"scalar or a 1-D batch. Received: x with shape {x.shape}"
            )
        unbatched = x.shape.rank == 0
        tokens = self.tokenizer(x[None] if unbatched else x)
        if isinstance(tokens, tf.RaggedTensor):
            lengths = tf.cast(tokens.row_lengths(), "int32")
            ids = tf.cast(tokens.to_tensor(), "int32")
        else:
            ids = tf.cast(tokens, "int32")
            lengths = tf.fill(tf.shape(ids)[:1], tf.shape(ids)[1])
        ids = tf.pad(ids, [[0, 0], [0, 1]])
        return ids, lengths, unbatched

    # === Truncation ===

    def _budget(self, overhead):
        """Content tokens a row may keep when it uses `overhead` more
        positions than it has content tokens; None: no limit."""
        if self.length_limit is None:
            return None
        return max(self.length_limit - overhead, 0)

    def _too_long_message(self, positions):
        return (
            f"{type(self).__name__}: an input needs {positions} positions "
            f"(special tokens included), more than {self._limit_name()}, "
            f"and truncate='error'. Pass truncate='keep_first' or "
            f"'keep_last' to cut long inputs, or allow more positions."
        )

    def _check_python(self, lengths, budget, positions):
        if budget is None or self.truncate != "error":
            return
        too_long = np.flatnonzero(lengths > budget)
        if too_long.size:
            row = int(too_long[0])
            message = self._too_long_message(positions(int(lengths[row])))
            raise ValueError(message.replace("an input", f"row {row}", 1))

    def _check_tf(self, lengths, budget):
        tf = _tensorflow()
        if budget is None or self.truncate != "error":
            return lengths
        message = (
            f"{type(self).__name__}: an input is longer than "
            f"{self._limit_name()} (special tokens included) and "
            "truncate='error'. Pass truncate='keep_first' or 'keep_last' to "
            "cut long inputs, or allow more positions."
        )
        check = tf.debugging.Assert(
            tf.reduce_all(lengths <= budget),
            [
                message,
                "Content tokens of the longest input (special tokens not "
                f"counted; at most {budget} fit):",
                tf.reduce_max(lengths),
            ],
        )
        with tf.control_dependencies([check]):
            return tf.identity(lengths)

    # === Calls ===

    def _run(self, x, budget, positions, pack, fixed_length=None):
        """Tokenizes `x`, checks lengths, and calls `pack(ids, lengths, xp)`.

        `budget` is the most content tokens a row may keep (None: no limit)
        and `positions(count)` the positions a row of `count` content tokens
        uses, for error messages. `fixed_length` says whether every output
        has one length whatever the text (default: `sequence_length` set).
        """
        if fixed_length is None:
            fixed_length = self.sequence_length is not None
        if self._use_tf_workflow():
            return self._run_tf(x, budget, pack, fixed_length)
        texts, unbatched = self._strings_python(x)
        ids, lengths = self._tokens_python(texts)
        self._check_python(lengths, budget, positions)
        outputs = pack(ids, lengths, segment_packing.NumpyOps())
        if unbatched:
            outputs = keras.tree.map_structure(lambda t: t[0], outputs)
        return keras.tree.map_structure(keras.ops.convert_to_tensor, outputs)

    def _run_tf(self, x, budget, pack, fixed_length):
        tf = _tensorflow()
        with tf.device("cpu"):
            if not isinstance(x, (tf.Tensor, tf.RaggedTensor)):
                x = tf.convert_to_tensor(x)
            ids, lengths, unbatched = self._tokens_tf(x)
            if unbatched and not fixed_length and not tf.executing_eagerly():
                self._raise_unbatched_map()
            lengths = self._check_tf(lengths, budget)
            outputs = pack(ids, lengths, segment_packing.TFOps())
            if unbatched:
                outputs = tf.nest.map_structure(lambda t: t[0], outputs)
        if tf.executing_eagerly():
            return keras.tree.map_structure(
                lambda t: keras.ops.convert_to_tensor(t.numpy()), outputs
            )
        return outputs

    def _raise_unbatched_map(self):
        raise ValueError(
            f"{type(self).__name__} was mapped over one string at a time "
            "(`ds.map(preprocessor)` before `.batch()`) with no fixed "
            "length: every example would get its own length (whole segments "
            "of its own text), which `.batch()` cannot stack. Batch first, "
            "`ds.batch(n).map(preprocessor)` (rows are padded to the "
            "longest of each batch, as in eager calls), or set "
            "`sequence_length` (one fixed length, as keras-hub "
            "preprocessors). Received: sequence_length=None"
        )

    # === Config and presets ===

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "segment_length": self.segment_length,
                "sequence_length": self.sequence_length,
                "max_length": self.max_length,
                "truncate": self.truncate,
                "add_start_token": self.add_start_token,
                "add_end_token": self.add_end_token,
            }
        )
        return config

    @classmethod
    def from_config(cls, config):
        # keras-hub's from_config deserializes the tokenizer in place.
        return super().from_config(dict(config))

    @classmethod
    def from_preset(cls, preset, **kwargs):
        """Builds the preprocessor from a preset's tokenizer.

        `preset` is a keras-hub preset name or handle, or a local folder
        (e.g. written by `save_to_preset`, from keras-hub or keras-rmt). If
        the preset holds a saved preprocessor of this class (an RMT task
        preset), it is loaded with `kwargs` overriding its configuration.
        Otherwise the preset's tokenizer is loaded (as the RMT tasks'
        `from_preset` load it, also from another RMT task's preset or an
        `RMTBackbone`'s) and `kwargs` configure a new preprocessor. They
        must include `segment_length`, unless the preset is an RMT one: then
        its backbone's `segment_length` (and, for a classifier, its
        `memory_layout`) are the defaults, as the tasks' `from_preset` take
        them.
        """
        loader = get_preset_loader(preset)
        if check_file_exists(preset, PREPROCESSOR_CONFIG_FILE):
            config = load_json(preset, PREPROCESSOR_CONFIG_FILE)
            registered = keras.saving.get_registered_name(cls)
            if config.get("registered_name") == registered:
                return loader.load_preprocessor(
                    cls, PREPROCESSOR_CONFIG_FILE, **kwargs
                )
        rmt_config = rmt_backbone_config(loader)
        if rmt_config is not None:
            kwargs.setdefault("segment_length", rmt_config["segment_length"])
        if "segment_length" not in kwargs:
            raise ValueError(
                f"{cls.__name__}.from_preset needs `segment_length` (tokens "
                f"per segment). Received: kwargs={sorted(kwargs)}"
            )
        if "tokenizer" not in kwargs:
            if not check_file_exists(preset, TOKENIZER_CONFIG_FILE):
                raise ValueError(
                    f"{cls.__name__}.from_preset needs a tokenizer, but "
                    f"preset {preset!r} has no {TOKENIZER_CONFIG_FILE}"
                    f"{_listing(preset)}. Save one into the preset with "
                    "`tokenizer.save_to_preset(preset)`, or pass "
                    "`tokenizer=...`."
                )
            kwargs["tokenizer"] = load_tokenizer(preset)
        kwargs = cls._preset_defaults(loader, rmt_config, kwargs)
        return cls(**kwargs)

    @classmethod
    def _preset_defaults(cls, loader, rmt_config, kwargs):
        """`kwargs` with the defaults a subclass takes from the preset;
        `rmt_config` is its saved `RMTBackbone` configuration, or None."""
        return kwargs


def _decode(text):
    return text.decode("utf-8") if isinstance(text, bytes) else text


def _listing(preset):
    if isinstance(preset, str) and os.path.isdir(preset):
        return f" (it holds {sorted(os.listdir(preset))})"
    return ""
