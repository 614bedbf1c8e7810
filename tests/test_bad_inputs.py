"""Walks the table of docs/bad_inputs.md: each bad input gets its error.

Every row names a case below; the test feeds that input and checks that a
`ValueError` whose message holds the table's text is raised.
"""

import functools
import os
import re

import keras
import numpy as np
import pytest
from conftest import make_rmt_on_shared, random_batch, shared_backbone

import keras_rmt

TABLE = os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "..", "docs", "bad_inputs.md"
)


@functools.cache
def _gpt2():
    return make_rmt_on_shared("gpt2", segment_length=4)


def _call(**changes):
    rmt = _gpt2()
    batch = {**random_batch(2, 8), **changes}
    return lambda: rmt(batch)


def _with_mask(values):
    batch = random_batch(2, 8)
    mask = batch["padding_mask"].astype("float32")
    mask[0, -1] = values
    return _call(padding_mask=mask)


def _with_id(value):
    ids = random_batch(2, 8)["token_ids"]
    ids[1, 3] = value
    return _call(token_ids=ids)


def _prebuilt_memory():
    memory = keras_rmt.layers.MemoryTokens(2)
    memory.build((None, None, 8))
    return lambda: keras_rmt.layers.RecurrentSegments(
        shared_backbone("gpt2"), memory, segment_length=4
    )


def _segments(**kwargs):
    return lambda: make_rmt_on_shared("gpt2", **kwargs)


CASES = {
    "segment_length_zero": lambda: _segments(segment_length=0),
    "segment_length_bool": lambda: _segments(segment_length=True),
    "segment_length_float": lambda: _segments(segment_length=4.0),
    "num_tokens_zero": lambda: lambda: keras_rmt.layers.MemoryTokens(0),
    "num_tokens_bool": lambda: lambda: keras_rmt.layers.MemoryTokens(True),
    "bptt_depth_negative": lambda: _segments(bptt_depth=-1),
    "bptt_depth_bool": lambda: _segments(bptt_depth=False),
    "alignment": lambda: _segments(alignment="middle"),
    "segment_loop": lambda: _segments(segment_loop="fast"),
    "encoder_layout_on_causal": lambda: _segments(memory_layout="encoder"),
    "encoder_layout_right": lambda: (
        lambda: make_rmt_on_shared("bert", alignment="right")
    ),
    "segment_too_long": lambda: _segments(segment_length=30),
    "memory_alone_too_long": lambda: _segments(num_tokens=16, segment_length=4),
    "memory_prebuilt_width": _prebuilt_memory,
    "backbone_not_keras_hub": lambda: (
        lambda: keras_rmt.layers.RecurrentSegments(
            keras.layers.Dense(4),
            keras_rmt.layers.MemoryTokens(2),
            segment_length=4,
        )
    ),
    "bidirectional_on_llama": lambda: (
        lambda: make_rmt_on_shared("llama", memory_attention="bidirectional")
    ),
    "inputs_not_dict": lambda: (lambda rmt: lambda: rmt(np.ones((2, 8))))(
        _gpt2()
    ),
    "missing_padding_mask": lambda: (
        lambda rmt: lambda: rmt({"token_ids": np.ones((2, 8), "int32")})
    )(_gpt2()),
    "unknown_key": lambda: _call(segment_ids=np.zeros((2, 8), "int32")),
    "length_zero": lambda: _call(
        token_ids=np.zeros((2, 0), "int32"),
        padding_mask=np.zeros((2, 0), "int32"),
    ),
    "token_ids_rank_1": lambda: _call(
        token_ids=np.ones((8,), "int32"), padding_mask=np.ones((8,), "int32")
    ),
    "token_ids_rank_3": lambda: _call(
        token_ids=np.ones((2, 8, 1), "int32"),
        padding_mask=np.ones((2, 8, 1), "int32"),
    ),
    "token_ids_float": lambda: _call(token_ids=np.ones((2, 8), "float32")),
    "token_ids_negative": lambda: _with_id(-1),
    "token_ids_too_large": lambda: _with_id(64),
    "padding_mask_shape": lambda: _call(padding_mask=np.ones((2, 7), "int32")),
    "padding_mask_half": lambda: _with_mask(0.5),
    "padding_mask_two": lambda: _with_mask(2.0),
    "memory_width": lambda: _call(memory=np.zeros((2, 2, 8), "float32")),
    "memory_batch": lambda: _call(memory=np.zeros((3, 2, 16), "float32")),
    "infer_keep": lambda: (
        lambda rmt: lambda: rmt.infer(random_batch(2, 8), keep="first")
    )(_gpt2()),
}


def _unquote(cell):
    cell = cell.strip()
    if cell.startswith("``"):
        return cell[2:-2].strip()
    return cell.strip("`")


def _table_rows():
    """(case, message) for each row of the table."""
    rows = []
    with open(TABLE) as file:
        for line in file:
            cells = [c.strip() for c in line.strip().strip("|").split(" | ")]
            if len(cells) != 3 or not cells[0].startswith("`"):
                continue
            rows.append((_unquote(cells[0]), _unquote(cells[2])))
    return rows


ROWS = _table_rows()


def test_table_lists_every_case_once():
    names = [name for name, _ in ROWS]
    assert sorted(names) == sorted(CASES)


@pytest.mark.parametrize("case, message", ROWS, ids=[r[0] for r in ROWS])
def test_bad_input_gets_the_tables_error(case, message):
    run = CASES[case]()
    with pytest.raises(ValueError, match=re.escape(message)):
        run()


def test_numpy_integers_are_accepted():
    rmt = make_rmt_on_shared(
        "gpt2", num_tokens=np.int64(2), segment_length=np.int64(4)
    )
    rmt_depth = make_rmt_on_shared("gpt2", bptt_depth=np.int32(1))
    assert (rmt.segment_length, rmt.num_memory_tokens) == (4, 2)
    assert type(rmt.segment_length) is int
    assert rmt_depth.bptt_depth == 1
