"""Checks of `RecurrentSegments`' arguments and inputs, with messages.

Internal to `keras_rmt.layers`: each names the argument or input and the
value received (see `docs/bad_inputs.md`).
"""

import keras
import numpy as np
from keras import ops


def check_integer(name, tensor):
    dtype = keras.backend.standardize_dtype(tensor.dtype)
    if "int" not in dtype and dtype != "bool":
        raise ValueError(
            f"inputs['{name}'] must hold integers. "
            f"Received: {name} with dtype {dtype}"
        )


def check_token_ids_shape(token_ids):
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


def check_values(token_ids, padding_mask, vocabulary_size):
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


def check_same_shape(token_ids, other, name):
    if tuple(token_ids.shape) != tuple(other.shape) and None not in (
        *token_ids.shape,
        *other.shape,
    ):
        raise ValueError(
            f"inputs['{name}'] must have the shape of inputs['token_ids']. "
            f"Received: token_ids.shape={tuple(token_ids.shape)}, "
            f"{name}.shape={tuple(other.shape)}"
        )


def check_not_causal(body):
    if body.is_causal():
        raise ValueError(
            "`memory_layout='encoder'` needs a bidirectional backbone: on a "
            "causal one the memory, placed after the first token, would see "
            "only that token and write nothing of the segment. Use "
            "memory_layout='decoder' (or 'auto'). Received: "
            f"memory_layout='encoder', backbone={type(body.backbone).__name__}"
        )


def check_alignment_fits_layout(alignment, memory_layout):
    if memory_layout == "encoder" and alignment == "right":
        raise ValueError(
            "`alignment='right'` cannot be used with the encoder memory "
            "layout: right alignment pads the start of a row's first "
            "segment, so the memory would sit after a pad instead of after "
            "the segment's first token. Use alignment='left'. Received: "
            "alignment='right', memory_layout='encoder'"
        )


def check_memory_width(memory, body):
    if memory.built and int(memory.memory.shape[-1]) != body.hidden_dim:
        raise ValueError(
            "`memory` was built for vectors of width "
            f"{int(memory.memory.shape[-1])}, but the backbone's hidden "
            f"width is {body.hidden_dim}. Pass an unbuilt MemoryTokens (it "
            "is built at the backbone's width). Received: memory with "
            f"weight shape {tuple(memory.memory.shape)}"
        )


def check_fits_positions(body, layout, segment_length, num_tokens):
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


def check_memory(memory, token_ids, expected):
    """`inputs["memory"]` must be `(batch_size, *expected)`, rows as given."""
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
