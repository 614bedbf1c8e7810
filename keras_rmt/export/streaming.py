"""A functional RMT model rebuilt to take and return the memory."""

import keras

from keras_rmt.layers.associative_recurrent_segments import (
    AssociativeRecurrentSegments,
)
from keras_rmt.layers.recurrent_segments import RecurrentSegments
from keras_rmt.utils.keras_hub_internals import (
    is_functional,
    producing_layer,
    run_graph,
)


def streaming_model(model, memory_input=True):
    """Rebuilds a functional RMT model to run one stretch of a stream.

    An RMT model reads its learned initial memory and keeps the memory it
    writes to itself. Serving a stream needs both ends open: the caller holds
    the memory between calls, passes it in with the next segment and gets the
    new memory back. This function replays `model`'s functional graph, layer
    by layer, and feeds its `keras_rmt.layers.RecurrentSegments` call an extra
    `"memory"` input; the memory that call returns becomes an extra
    `"memory"` output. Nested functional models (a task around a backbone)
    are replayed too. The rebuilt model shares every layer, and so every
    weight, with `model`; nothing is copied or retrained. What is replayed
    is the graph: a subclass whose `call` changes the graph's outputs
    (`keras_rmt.models.RMTTextClassifier` picks each row's last segment)
    gets the graph's outputs here; `keras_rmt.export.export_saved_model`
    serves the model's own `call`.

    With the initial memory as `"memory"`, the rebuilt model's other outputs
    equal `model`'s. Feeding each call's `"memory"` output into the next call
    continues the stream: the outputs equal those `model` gives for the
    segments of a whole input that they are part of (the outputs of a head
    that pools over the sequence are, of course, pooled per call).

    Args:
        model: `keras.Model`. A functional model (built with `keras.Input`
            and layer calls, or a keras-hub style task) holding exactly one
            `keras_rmt.layers.RecurrentSegments` layer.
        memory_input: bool. Whether the rebuilt model takes `"memory"`. With
            `False` the layer reads its initial memory as in `model`, and the
            rebuilt model only adds the final memory to the outputs.
            Defaults to `True`.

    Returns:
        A `keras.Model` taking a dict of `model`'s inputs, by name, with the
        token axis of unknown length (optional inputs, and an input named
        `"memory"`, left out), plus `"memory"` of shape
        `(batch_size, num_tokens, hidden_dim)` (an associative model's
        state, `(batch_size, *layer.state_shape)`) when `memory_input` is
        true;
        and returning a dict of `model`'s outputs plus `"memory"`: a dict
        of outputs keeps its keys; a single output is named `"logits"`, or
        `"sequence_output"` when it is the RecurrentSegments layer's token
        outputs. Several outputs must come as a dict.

    Example:
    ```python
    backbone = keras_hub.models.GPT2Backbone(
        vocabulary_size=100, num_layers=2, num_heads=2, hidden_dim=16,
        intermediate_dim=32, max_sequence_length=16,
    )
    rmt = keras_rmt.layers.RecurrentSegments(
        backbone,
        memory=keras_rmt.layers.MemoryTokens(num_tokens=2),
        segment_length=4,
    )
    token_ids = keras.Input((None,), dtype="int32", name="token_ids")
    padding_mask = keras.Input((None,), dtype="int32", name="padding_mask")
    inputs = {"token_ids": token_ids, "padding_mask": padding_mask}
    logits = keras.layers.Dense(5, name="logits")(
        rmt(inputs)["sequence_output"]
    )
    model = keras.Model(inputs, logits)

    stream = keras_rmt.export.streaming_model(model)
    memory = np.zeros((1, 2, 16), "float32")
    outputs = stream({
        "token_ids": np.ones((1, 4), "int32"),
        "padding_mask": np.ones((1, 4), "int32"),
        "memory": memory,
    })
    sorted(outputs)  # ['logits', 'memory']
    outputs["memory"].shape  # (1, 2, 16)
    ```
    """
    rmt = find_recurrent_segments(model)
    # Optional inputs (as `keras_rmt.models.RMTBackbone`'s `"memory"` and
    # `"segment_ids"`) are left out: the replay feeds them None.
    replayed = {
        name: None
        if name == "memory" or _is_optional(tensor)
        else keras.Input(
            (None, *tensor.shape[2:]), dtype=tensor.dtype, name=name
        )
        for name, tensor in _named(model.input, model.inputs)
    }
    inputs = {k: v for k, v in replayed.items() if v is not None}
    memory = None
    if memory_input:
        memory = keras.Input(
            carried_shape(rmt),
            dtype=rmt.memory_dtype,
            name="memory",
        )
    feed = MemoryFeed(rmt, memory)

    def call(layer, *args, **kwargs):
        if layer is rmt:
            return feed(layer, *args, **kwargs)
        if is_functional(layer) and _holds(layer, rmt):
            return run_graph(layer, args[0], call)
        return layer(*args, **kwargs)

    # The graph replayed, not a model built from it: that model would lack
    # the memory input, which is not one of `model`'s inputs.
    outputs = run_graph(model, _in_structure(model.input, replayed), call)
    outputs = feed.served(model, outputs)
    if memory is not None:
        inputs["memory"] = memory
    return keras.Model(inputs, outputs, name=f"{model.name}_streaming")


class MemoryFeed:
    """Gives a model's RecurrentSegments layer the caller's memory.

    The one way streaming and export reach into a model: each call of the
    layer made through the feed (`feed(call, layer_inputs, ...)`, `call`
    being the layer or its `call`) reads `memory` when it is not None, and
    the feed keeps what the call returns. `served` then gives the model's
    outputs by name plus `"memory"`, the memory the layer wrote.
    """

    def __init__(self, rmt, memory=None):
        self.rmt = rmt
        self.memory = memory
        self.written = []

    def __call__(self, call, layer_inputs, *args, **kwargs):
        if self.memory is not None:
            layer_inputs = {**layer_inputs, "memory": self.memory}
        outputs = call(layer_inputs, *args, **kwargs)
        self.written.append(outputs)
        return outputs

    def served(self, model, outputs):
        """`model`'s outputs by name, plus the memory the layer wrote."""
        if len(self.written) != 1:
            raise ValueError(
                "Streaming and export need a model that calls its "
                "RecurrentSegments layer once per call. Received: "
                f"{len(self.written)} calls of {self.rmt.name!r} in model "
                f"{model.name!r}"
            )
        (written,) = self.written
        outputs = named_outputs(model, outputs, written["sequence_output"])
        if "memory" in outputs and outputs["memory"] is not written["memory"]:
            raise ValueError(
                "The model already has an output named 'memory' that is not "
                "the memory of its RecurrentSegments layer. Rename that "
                f"output. Received: model outputs {sorted(outputs)}"
            )
        return {**outputs, "memory": written["memory"]}


def find_recurrent_segments(model):
    """The one `RecurrentSegments` layer of `model`, nested models included."""
    found = list(_recurrent_segments(model))
    if len(found) != 1 or not is_functional(model):
        raise ValueError(
            "Streaming and export need a functional keras.Model holding "
            "exactly one keras_rmt.layers.RecurrentSegments layer. Received: "
            f"model={model.name!r} of type {type(model).__name__} with "
            f"{len(found)} RecurrentSegments layers "
            f"{[layer.name for layer in found]}"
        )
    return found[0]


def _recurrent_segments(layer):
    if isinstance(layer, RecurrentSegments):
        yield layer
        return
    for child in getattr(layer, "layers", ()):
        yield from _recurrent_segments(child)


def _holds(layer, rmt):
    return any(found is rmt for found in _recurrent_segments(layer))


def _is_optional(tensor):
    return getattr(producing_layer(tensor), "optional", False)


def _named(structure, flat):
    """(name, tensor) pairs: dict keys, else the tensors' names."""
    if isinstance(structure, dict):
        return list(structure.items())
    return [(tensor.name, tensor) for tensor in flat]


def named_outputs(model, outputs, sequence_output):
    """`model`'s outputs by the names they are served under.

    A dict of outputs keeps its keys. A single output is `"sequence_output"`
    when it is the RecurrentSegments layer's token outputs, else `"logits"`:
    never the name of the layer that made it, which Keras numbers by how
    many layers the process built.
    """
    if isinstance(outputs, dict):
        return dict(outputs)
    flat = keras.tree.flatten(outputs)
    if len(flat) == 1:
        name = "sequence_output" if flat[0] is sequence_output else "logits"
        return {name: flat[0]}
    raise ValueError(
        "Streaming and export name the served outputs by the keys of a "
        "dict: build the model with a dict of outputs, e.g. "
        "`keras.Model(inputs, {'logits': ..., 'scores': ...})`. Received: "
        f"model {model.name!r} with {len(flat)} outputs in a "
        f"{type(outputs).__name__}"
    )


def _in_structure(structure, by_name):
    """`by_name` arranged like a model's input structure."""
    if isinstance(structure, dict):
        return {name: by_name[name] for name in structure}
    tensors = [by_name[tensor.name] for tensor in keras.tree.flatten(structure)]
    if isinstance(structure, (list, tuple)):
        return tensors
    return tensors[0]


def carried_shape(rmt):
    """One row's memory between segments, without the batch dimension.

    `(num_memory_tokens, hidden_dim)` for `RecurrentSegments`; the
    associative state, `rmt.state_shape`, for
    `AssociativeRecurrentSegments`.
    """
    if isinstance(rmt, AssociativeRecurrentSegments):
        return tuple(rmt.state_shape)
    return (rmt.num_memory_tokens, rmt.hidden_dim)
