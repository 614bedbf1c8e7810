"""The packing arithmetic against plain-list references, in NumPy and TF."""

import numpy as np
import pytest
import tensorflow as tf

from keras_rmt.utils import segment_packing as packing

pytestmark = pytest.mark.backend_independent

OPS = {"numpy": packing.NumpyOps, "tensorflow": packing.TFOps}


def random_rows(seed, batch=6, longest=23):
    rng = np.random.default_rng(seed)
    lengths = rng.integers(0, longest + 1, batch)
    lengths[0] = 0  # Always one empty row.
    rows = [list(rng.integers(10, 99, n)) for n in lengths]
    ids = np.zeros((batch, longest + 1), "int32")
    for i, row in enumerate(rows):
        ids[i, : len(row)] = row
    return rows, ids, lengths.astype("int32")


def kept(row, budget, truncate):
    if budget is None or len(row) <= budget:
        return row
    return (
        row[:budget] if truncate == "keep_first" else row[len(row) - budget :]
    )


def run(ops_name, fn, ids, lengths, *args):
    xp = OPS[ops_name]()
    if ops_name == "tensorflow":
        ids, lengths = tf.constant(ids), tf.constant(lengths)
    outputs = fn(ids, lengths, xp, *args)
    return [np.asarray(t) for t in outputs]


def pack_stream(ids, lengths, xp, budget, truncate, prefix, suffix, width):
    start, count = packing.kept_span(lengths, budget, truncate, xp)
    return packing.stream(ids, start, count, prefix, suffix, width, 1, xp)


def pack_segments(ids, lengths, xp, budget, truncate, length, prefix, suffix):
    start, count = packing.kept_span(lengths, budget, truncate, xp)
    needed = packing.segments_needed(count, length - len(prefix + suffix), xp)
    width = xp.max(needed) * length
    return packing.wrapped_segments(
        ids, start, count, length, prefix, suffix, width, 1, xp
    )


@pytest.mark.parametrize("ops_name", OPS)
@pytest.mark.parametrize("seed", range(4))
def test_stream_matches_a_list_reference(ops_name, seed):
    rows, ids, lengths = random_rows(seed)
    truncate = ("keep_first", "keep_last")[seed % 2]
    budget = (None, 5, 11, 0)[seed]
    prefix, suffix = ([7], [8, 9]) if seed < 2 else ([], [8])
    width = 30
    tokens, used = run(
        ops_name,
        pack_stream,
        ids,
        lengths,
        budget,
        truncate,
        prefix,
        suffix,
        width,
    )
    want = [prefix + kept(r, budget, truncate) + suffix for r in rows]
    np.testing.assert_array_equal(used, [len(r) for r in want])
    np.testing.assert_array_equal(
        tokens, [r + [1] * (width - len(r)) for r in want]
    )


@pytest.mark.parametrize("ops_name", OPS)
@pytest.mark.parametrize("seed", range(4))
def test_wrapped_segments_match_a_list_reference(ops_name, seed):
    rows, ids, lengths = random_rows(seed)
    truncate = ("keep_first", "keep_last")[seed % 2]
    budget = (None, 5, 11, None)[seed]
    segment_length = (4, 5, 3, 6)[seed]
    prefix, suffix = ([7], [8]) if seed != 2 else ([7], [])
    tokens, mask = run(
        ops_name,
        pack_segments,
        ids,
        lengths,
        budget,
        truncate,
        segment_length,
        prefix,
        suffix,
    )
    per_segment = segment_length - len(prefix) - len(suffix)
    want = []
    for row in rows:
        row = kept(row, budget, truncate)
        chunks = [
            row[i : i + per_segment] for i in range(0, len(row), per_segment)
        ] or [[]]
        # Only the last chunk can be short: no padding inside a row.
        want.append([t for c in chunks for t in prefix + c + suffix])
    width = tokens.shape[1]
    assert width == max(-(-len(w) // segment_length) for w in want) * (
        segment_length
    )
    np.testing.assert_array_equal(
        tokens, [w + [1] * (width - len(w)) for w in want]
    )
    np.testing.assert_array_equal(
        mask, [[1] * len(w) + [0] * (width - len(w)) for w in want]
    )
