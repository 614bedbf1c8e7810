"""How `RecurrentSegments` loops over segments: chosen and run in one place.

Every loop repeats the layer's one segment step,
`layer._segment_step(memory, initial, segment, training)`, and differs only
in how it is traced:

- `unrolled`: a Python loop, one traced copy of the backbone per segment;
  with `remat`, each segment is a stateless step under `keras.remat`.
- `threaded_scan`: a `keras.ops.scan` over a known number of segments,
  traced once, whose carry threads the seed states dropout advances (JAX
  would otherwise see traced values leak out of the loop); with
  `scan_unroll=k`, each iteration traces k segments.
- `scanned`: a scan for graphs traced before the length is known
  (TensorFlow), carrying the whole segment output, as TF's scan wants
  outputs shaped like the carry.

`choose_loop` picks one from the layer's `segment_loop`, the backend,
whether the segment count is known and, for `"auto"`, the `AUTO_LOOPS`
table, which also says where `remat="auto"` recomputes each segment. For
inference (`infer`, `stream`), `compiled_steps` runs the same step
compiled once, segment by segment.
Losses the backbone adds inside a stateless step or a scan (`add_loss`,
e.g. MoE routers) are collected and added to the layer once per call.
"""

import collections

import keras
from keras import ops

from keras_rmt.backend.compiled import (
    compile_for_inference,
    split_for_inference,
)
from keras_rmt.utils.checks import check_positive_integer
from keras_rmt.utils.keras_hub_internals import forget_losses

SEGMENT_LOOPS = ("auto", "unrolled", "scan")

# What `segment_loop="auto"` runs over a known number of segments: the first
# row whose backend (None: any), training flag (None: either) and least
# segment count match gives the loop and the segments each scan iteration
# traces. One segment is never looped. The rule: the fastest loop whose first
# call stays within 40 s. The measurements behind each row are in
# benchmarks/README.md ("What `segment_loop="auto"` runs");
# `benchmarks/gpu_segment_loops.sh` measures the candidates on a GPU.
AUTO_LOOPS = (
    # backend, training, least segments, loop, scan_unroll, remat
    # JAX (H200, GPT-2-small, 8 segments): the unrolled loop is faster but
    # its first call takes 50-108 s; 2 or 4 segments an iteration gain
    # nothing (within 3%) and compile longer. Training, the scan recomputes
    # each segment in the backward pass instead of stacking its activations
    # for it: as fast or faster (dropout 0: 272k against 242-254k tok/s;
    # 0.1: 174k against 173-176k) in a quarter to a fifth of the memory
    # (8 GiB against 30-43), and 32 segments fit the card.
    ("jax", True, 2, "scan", 1, True),
    ("jax", None, 2, "scan", 1, False),
    # TensorFlow cannot differentiate its scan through keras-hub layers
    # under XLA; torch runs any loop eagerly, one segment after another.
    (None, None, 2, "unrolled", 1, False),
)
REMAT_CHOICES = (True, False, "auto")

Loop = collections.namedtuple("Loop", ["name", "scan_unroll", "remat"])


def check_backend_allows(segment_loop, remat):
    """Refuses the loops the current backend cannot train through."""
    if keras.backend.backend() != "tensorflow":
        return
    if segment_loop == "scan":
        raise ValueError(
            "`segment_loop='scan'` is not available on the TensorFlow "
            "backend (its scan cannot differentiate through keras-hub "
            "layers under XLA); use 'auto' or 'unrolled'. "
            f"Received: segment_loop={segment_loop!r}"
        )
    if remat is True:
        raise ValueError(
            "`remat=True` is not available on the TensorFlow backend: "
            "`tf.recompute_grad` gave wrong gradients through dropout. "
            f"Received: remat={remat!r}"
        )


def check_scan_unroll(scan_unroll, segment_loop):
    """Returns `scan_unroll` as an int; it applies to `"scan"` only."""
    scan_unroll = check_positive_integer("scan_unroll", scan_unroll)
    if scan_unroll != 1 and segment_loop != "scan":
        raise ValueError(
            "`scan_unroll` applies to `segment_loop='scan'` only "
            "(`'auto'` takes its own from a table of measurements). "
            f"Received: scan_unroll={scan_unroll!r}, "
            f"segment_loop={segment_loop!r}"
        )
    return scan_unroll


def choose_loop(layer, count, training):
    """The loop `run_segments` runs, as a `Loop(name, scan_unroll, remat)`.

    `name` is `"unrolled"`, `"scan"` or `"graph_scan"` (a scan in a graph
    traced before the segment count is known: TensorFlow's only choice
    there); `scan_unroll` is how many segments each scan iteration traces;
    `remat` whether each segment is recomputed in the backward pass. The
    layer's `remat="auto"` takes the table's choice under
    `segment_loop="auto"` and is off with a loop the layer names.
    """
    remat = layer.remat is True
    if not isinstance(count, int):
        return Loop("graph_scan", 1, remat)
    if count < 2 or layer.segment_loop == "unrolled":
        return Loop("unrolled", 1, remat)
    if layer.segment_loop == "scan":
        return Loop("scan", layer.scan_unroll, remat)
    backend = keras.backend.backend()
    for row_backend, row_training, least, *choice in AUTO_LOOPS:
        if (
            row_backend in (None, backend)
            and row_training in (None, bool(training))
            and count >= least
        ):
            name, unroll, row_remat = choice
            auto_remat = layer.remat == "auto" and row_remat
            return Loop(name, unroll, remat or auto_remat)
    return Loop("unrolled", 1, remat)


def run_segments(layer, streams, memory, last, count, training):
    """Runs every segment of `streams` through `layer`'s segment step.

    Args:
        layer: the `RecurrentSegments` layer.
        streams: dict of aligned inputs, `(batch_size, count *
            segment_length)` each.
        memory: the memory read by the first segment (and by every
            segment when `carry_memory=False`).
        last: `(batch_size,)`, each row's last segment holding a token.
        count: the number of segments, an int or, in graphs traced before
            the length is known, a tensor.
        training: bool. Whether dropout is active.

    Returns:
        `(tokens, memory)`: the token outputs of every segment, joined,
        `(batch_size, count * segment_length, hidden_dim)`, and the memory
        after the last segment.
    """
    loop = choose_loop(layer, count, training)
    if loop.name == "graph_scan":
        return scanned(layer, streams, memory, last, count, training)
    if loop.name == "scan":
        return threaded_scan(
            layer,
            streams,
            memory,
            last,
            count,
            training,
            unroll=loop.scan_unroll,
            remat=loop.remat,
        )
    return unrolled(
        layer, streams, memory, last, count, training, remat=loop.remat
    )


def compiled_steps(layer, token_ids, padding_mask, extras, memory):
    """Yields `(tokens, memory)` for each segment, at inference.

    Every segment runs through one compiled step, compiled once per batch
    size and kept on the layer, so a long input costs one compilation and
    the memory of one segment. The input is cut into segments first, in one
    call (`split_for_inference`), so the first segment starts without a
    string of small ops before it. `memory` (None: the learned memory) is
    also what every segment reads when `carry_memory=False`, as in
    `run_segments`.
    """
    if layer._inference_functions is None:

        def split(token_ids, padding_mask, extras, memory):
            memory = layer._start_memory(token_ids, memory)
            streams, _, count = layer._aligned_streams(
                token_ids, padding_mask, extras
            )
            L = layer.segment_length
            segments = [
                {k: v[:, i * L : (i + 1) * L] for k, v in streams.items()}
                for i in range(count)
            ]
            return memory, segments

        def step(memory, initial, segment):
            return layer._segment_step(memory, initial, segment, False)

        layer._inference_functions = (
            split_for_inference(layer, split),
            compile_for_inference(layer, step),
        )
    split, step = layer._inference_functions
    memory, segments = split(token_ids, padding_mask, extras, memory)
    initial = memory
    for segment in segments:
        tokens, memory = step(memory, initial, segment)
        yield tokens, memory


def hand_off(layer, memory, index, last):
    """Stops gradients through hand-offs older than `bptt_depth`.

    Counted back from each row's own last real segment (`last`), so that
    a row's gradients do not depend on the other rows of the batch.
    """
    if layer.bptt_depth is None:
        return memory
    truncated = ops.logical_and(
        ops.greater_equal(index, 1),
        ops.less_equal(index, last - layer.bptt_depth),
    )
    return ops.where(
        truncated[:, None, None], ops.stop_gradient(memory), memory
    )


def unrolled(layer, streams, memory, last, count, training, remat=False):
    """A Python loop: one traced copy of the backbone per segment."""
    initial, outputs = memory, []
    L = layer.segment_length
    if remat:
        step, weights, states = stateless_step(
            layer, initial, last, training, remat=True
        )
        weight_values = [ops.convert_to_tensor(v.value) for v in weights]
    for index in range(count):
        segment = {
            k: v[:, index * L : (index + 1) * L] for k, v in streams.items()
        }
        if remat:
            state_values = [ops.convert_to_tensor(v.value) for v in states]
            tokens, memory, state_values, loss = step(
                weight_values, memory, index, state_values, segment
            )
            _write_back(states, state_values, training)
            _add_segment_losses(layer, step, loss)
        else:
            memory = hand_off(layer, memory, index, last)
            tokens, memory = layer._segment_step(
                memory, initial, segment, training
            )
        outputs.append(tokens)
    return ops.concatenate(outputs, axis=1), memory


def threaded_scan(
    layer, streams, memory, last, count, training, unroll=1, remat=False
):
    """A scan over a known number of segments, `unroll` traced together.

    Each iteration of the loop runs `unroll` segments (the last one runs
    what is left), traced as one program that the compiler can schedule
    and fuse across segments; compile time grows with `unroll`.
    """
    initial, L = memory, layer.segment_length
    step, weights, states = stateless_step(
        layer, initial, last, training, remat=remat
    )
    weight_values = [ops.convert_to_tensor(v.value) for v in weights]
    batch = ops.shape(streams["token_ids"])[0]

    def loop_body(carry, segment):
        memory, index, state_values, total = carry
        tokens, memory, state_values, loss = step(
            weight_values, memory, index, state_values, segment
        )
        return (memory, index + 1, state_values, total + loss), tokens

    segments = {
        name: ops.moveaxis(ops.reshape(value, (batch, count, L)), 1, 0)
        for name, value in streams.items()
    }
    start = (
        memory,
        ops.convert_to_tensor(0, "int32"),
        [v.value for v in states],
        ops.zeros((), "float32"),
    )
    (memory, _, state_values, total), tokens = ops.scan(
        loop_body, start, segments, unroll=unroll
    )
    _write_back(states, state_values, training)
    _add_segment_losses(layer, step, total)
    tokens = ops.reshape(
        ops.moveaxis(tokens, 0, 1), (batch, count * L, layer.hidden_dim)
    )
    return tokens, memory


def scanned(layer, streams, memory, last, count, training):
    """A scan: for graphs traced before the length is known (TF)."""
    initial, names = memory, list(streams)
    states = [v for v in layer.variables if not v.trainable]

    def step(carry, segment):
        memory, _, index, total = carry
        segment = {name: segment[..., i] for i, name in enumerate(names)}
        # Variables are read as they are; only the losses are collected
        # (tensors of the loop body cannot be read after the loop).
        with _LossCollectingScope(layer, step) as scope:
            memory = hand_off(layer, memory, index, last)
            tokens, memory = layer._segment_step(
                memory, initial, segment, training
            )
        _write_back(
            states, [scope.get_current_value(v) for v in states], training
        )
        # TF's scan wants outputs shaped like the carry.
        carry = (memory, tokens, index + 1, total + scope.total_loss)
        return carry, carry

    step.adds_losses = False
    batch = ops.shape(streams["token_ids"])[0]
    shape = (batch, count, layer.segment_length)
    # One stacked input: Keras' TF scan cannot check several of unknown
    # length.
    segments = ops.stack(
        [ops.cast(ops.reshape(streams[n], shape), "int32") for n in names],
        axis=-1,
    )
    # In the segment's output dtype, which is the memory's only for memory
    # tokens (an associative state stays float32 under a mixed policy).
    first_tokens = ops.zeros(
        (batch, layer.segment_length, layer.hidden_dim),
        layer.sequence_output_dtype,
    )
    start = (
        memory,
        first_tokens,
        ops.convert_to_tensor(0, "int32"),
        ops.zeros((), "float32"),
    )
    (memory, _, _, total), (_, tokens, _, _) = ops.scan(
        step, start, ops.transpose(segments, (1, 0, 2, 3))
    )
    _add_segment_losses(layer, step, total)
    tokens = ops.reshape(
        ops.transpose(tokens, (1, 0, 2, 3)),
        (batch, count * layer.segment_length, layer.hidden_dim),
    )
    return tokens, memory


def stateless_step(layer, initial, last, training, remat=False):
    """One segment as a function of the variables' values.

    Variables are read through a `StatelessScope` and the seed states
    that dropout advances are returned, not assigned. Inside a scan this
    keeps values traced in the loop from escaping it (on JAX that raises
    `UnexpectedTracerError`); under `remat` the recomputation sees the
    same seeds, so the same dropout masks, as the first pass. Losses the
    backbone adds (`add_loss`, e.g. MoE routers) are returned summed, for
    `_add_segment_losses` to add outside the loop.

    Returns:
        `(step, weights, states)`: `step(weight_values, memory, index,
        state_values, segment)` gives `(tokens, memory, state_values,
        loss)`; `weights` and `states` are the layer's trainable and
        non-trainable variables, in the order `step` takes their values.
    """
    variables = layer.variables
    weights = [v for v in variables if v.trainable]
    states = [v for v in variables if not v.trainable]

    def step(weight_values, memory, index, state_values, segment):
        mapping = [*zip(weights, weight_values), *zip(states, state_values)]
        with _LossCollectingScope(layer, step, mapping) as scope:
            memory = hand_off(layer, memory, index, last)
            tokens, memory = layer._segment_step(
                memory, initial, segment, training
            )
        state_values = [scope.get_current_value(v) for v in states]
        return tokens, memory, state_values, scope.total_loss

    step.adds_losses = False
    if remat:
        remat_step = keras.remat(step)
        # `keras.remat` wraps the function; the flag stays on `step`.
        return _RematStep(remat_step, step), weights, states
    return step, weights, states


def _add_segment_losses(layer, step, total):
    """Adds the losses a stateless step collected, once for the loop."""
    if getattr(step, "adds_losses", False):
        layer.add_loss(total)


def _write_back(states, values, training):
    # Only dropout advances seed states; writing them back outside training
    # would only risk storing traced values where no scope expects them.
    if training:
        for variable, value in zip(states, values):
            if value is not None:
                variable.assign(value)


class _LossCollectingScope(keras.StatelessScope):
    """A `StatelessScope` that collects the losses added inside it.

    `total_loss` is their float32 sum (0 if none); when there are any,
    `step.adds_losses` is set, at trace time, so that the loop adds the
    total once outside. The layers that added them forget the tensors' ids
    (they are not losses of the outer scope, and a freed id may be reused).
    """

    def __init__(self, layer, step, state_mapping=None):
        super().__init__(state_mapping=state_mapping, collect_losses=True)
        self.layer = layer
        self.step = step
        self.total_loss = None

    def __exit__(self, *args, **kwargs):
        super().__exit__(*args, **kwargs)
        losses = list(self.losses)
        self.total_loss = ops.zeros((), "float32")
        if not losses:
            return
        self.step.adds_losses = True
        for loss in losses:
            self.total_loss = self.total_loss + ops.cast(
                ops.sum(loss), "float32"
            )
        forget_losses(self.layer, losses)


class _RematStep:
    """`keras.remat(step)`, keeping `step.adds_losses` readable."""

    def __init__(self, remat_step, step):
        self.remat_step = remat_step
        self.step = step

    @property
    def adds_losses(self):
        return self.step.adds_losses

    def __call__(self, *args):
        return self.remat_step(*args)
