"""Writing an RMT model as a TF SavedModel, for whole inputs and streams.

The one module of keras-rmt that imports TensorFlow: SavedModels are
TensorFlow graphs, written from Keras on the TensorFlow backend directly and
from JAX through `jax2tf`.
"""

from functools import partial

import keras

from keras_rmt.export.streaming_model import (
    _is_optional,
    _named,
    find_recurrent_segments,
)

EXPORT_BACKENDS = ("tensorflow", "jax")
COMMAND = "python -m keras_rmt export MODEL.keras OUT_DIR"


def export_saved_model(model, path, verbose=False):
    """Writes `model` as a TF SavedModel with whole-input and stream serving.

    The SavedModel has three signatures (also callable by name on the object
    `tf.saved_model.load` returns):

    - `serve`: the model's inputs (`token_ids`, `padding_mask`, ...) of any
      batch size and length -> the model's outputs, plus `memory`, the
      memory after the last segment. Also the `serving_default`.
    - `serve_segment`: one segment's inputs, at most `segment_length` tokens,
      and `memory`, `(batch_size, num_tokens, hidden_dim)` -> the outputs for
      that segment and the new `memory`. The caller keeps the memory between
      calls, so a stream of any length is served at the cost of one segment.
    - `initial_memory`: `batch_size`, an int32 scalar -> `memory`, the
      memory that starts a stream (the model's learned memory, one copy per
      row).

    The loaded object also holds `segment_length`, an int32 variable.

    Streaming a whole input through `serve_segment`, `segment_length` tokens
    at a time from `initial_memory`, gives the same token outputs and final
    memory as one `serve` call (with the layer's default `"left"`
    alignment; a head that pools over the sequence pools per segment).

    Inputs are checked inside the served functions: a wrong dtype or a
    memory of the wrong shape is refused when the call is bound to the
    signature, and inputs of different batch sizes or lengths, or a segment
    longer than `segment_length`, fail an assertion that says so.

    Keras writes SavedModels from the TensorFlow and JAX backends only (JAX
    through `jax2tf`, with the batch size and the length left symbolic). A
    model trained with PyTorch is saved as `.keras` and exported with the
    command `python -m keras_rmt export MODEL.keras OUT_DIR`, which reloads it
    under TensorFlow (or `--backend jax`) in a new process.

    The tokenizer is not part of the SavedModel: serve token ids.

    Args:
        model: `keras.Model`. A functional model (or keras-hub style task)
            holding exactly one `keras_rmt.layers.RecurrentSegments` layer.
        path: str or `pathlib.Path`. The folder to write.
        verbose: bool. Whether to print the signatures written. Defaults
            to `False`.

    Example:
    ```python
    import os, tempfile

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
    if keras.backend.backend() in ("tensorflow", "jax"):
        path = os.path.join(tempfile.mkdtemp(), "rmt")
        keras_rmt.export.export_saved_model(model, path)

        # Then, in any TensorFlow process:
        import tensorflow as tf

        served = tf.saved_model.load(path)
        memory = served.initial_memory(batch_size=1)["memory"]
        for segment in range(3):
            outputs = served.serve_segment({
                "token_ids": tf.ones((1, 4), "int32"),
                "padding_mask": tf.ones((1, 4), "int32"),
                "memory": memory,
            })
            memory = outputs["memory"]
        outputs["logits"].shape  # (1, 4, 5)
    ```
    """
    backend = keras.backend.backend()
    if backend not in EXPORT_BACKENDS:
        raise RuntimeError(
            "Keras writes TF SavedModels from the TensorFlow and JAX backends "
            f"only. Received: model on the {backend!r} backend. Save the "
            f"model (`model.save('MODEL.keras')`) and run `{COMMAND}`, which "
            "reloads it under TensorFlow (or `--backend jax`) in a new "
            "process and exports it there."
        )
    import tensorflow as tf

    rmt = find_recurrent_segments(model)
    specs = _input_specs(model)
    segment_specs = {
        **specs,
        "memory": keras.KerasTensor(
            (None, rmt.num_memory_tokens, rmt.hidden_dim), rmt.compute_dtype
        ),
    }
    archive = keras.export.ExportArchive()
    archive.track(model)
    served_whole = _endpoint(
        archive, "serve", partial(_serve, model, rmt), specs
    )
    served_stream = _endpoint(
        archive, "serve_segment", partial(_serve, model, rmt), segment_specs
    )

    initial = keras.ops.convert_to_numpy(
        rmt.memory(keras.ops.zeros((1, 1, rmt.hidden_dim)))
    )[0]
    root = tf.Module()
    root.model_variables = list(archive.variables)
    root.initial_memory_value = tf.Variable(
        initial.astype(rmt.compute_dtype), trainable=False, name="memory"
    )
    limit = rmt.segment_length
    root.segment_length = tf.Variable(
        limit, trainable=False, dtype=tf.int32, name="segment_length"
    )

    @tf.function(input_signature=[_specs(tf, specs)])
    def serve(inputs):
        return served_whole(_checked(tf, inputs))

    @tf.function(input_signature=[_specs(tf, segment_specs)])
    def serve_segment(inputs):
        return served_stream(_checked(tf, inputs, limit))

    @tf.function(
        input_signature=[tf.TensorSpec((), tf.int32, name="batch_size")]
    )
    def initial_memory(batch_size):
        value = root.initial_memory_value
        return {"memory": tf.tile(value[None], [batch_size, 1, 1])}

    root.serve = serve
    root.serve_segment = serve_segment
    root.initial_memory = initial_memory
    signatures = {
        "serve": serve.get_concrete_function(),
        "serve_segment": serve_segment.get_concrete_function(),
        "initial_memory": initial_memory.get_concrete_function(),
    }
    signatures["serving_default"] = signatures["serve"]
    tf.saved_model.save(root, str(path), signatures=signatures)
    if verbose:
        for name, function in signatures.items():
            print(name, function.pretty_printed_signature())


def export_task(task, filepath, format, verbose, **kwargs):
    """`export()` of the RMT tasks: keras-rmt's SavedModel, or Keras'."""
    if format != "tf_saved_model":
        return keras.Model.export(
            task, filepath, format=format, verbose=verbose, **kwargs
        )
    if kwargs:
        raise ValueError(
            "With format='tf_saved_model', export() takes no other "
            f"arguments. Received: {sorted(kwargs)}"
        )
    export_saved_model(task, filepath, verbose=bool(verbose))


def _serve(model, rmt, inputs):
    """`model`'s outputs and the memory its RecurrentSegments layer wrote.

    Runs `model`'s own call, so that tasks that pick their outputs in `call`
    (`keras_rmt.models.RMTTextClassifier`: the last segment's logits) serve
    what they predict. While the call is traced, the layer's `call` is
    wrapped on the instance: it reads `inputs["memory"]` when given and
    hands its new memory out. (`keras_rmt.export.streaming_model` does the
    same by replaying the functional graph, which skips such a `call`.)
    """
    inputs = dict(inputs)
    memory = inputs.pop("memory", None)
    layer_call, written = rmt.call, []

    def call(layer_inputs, training=None):
        if memory is not None:
            layer_inputs = {**layer_inputs, "memory": memory}
        outputs = layer_call(layer_inputs, training=training)
        written.append(outputs["memory"])
        return outputs

    # `object.__setattr__`: a plain attribute, outside Keras' tracking.
    object.__setattr__(rmt, "call", call)
    try:
        outputs = model(_arranged(model, inputs), training=False)
    finally:
        object.__delattr__(rmt, "call")
    if len(written) != 1:
        raise ValueError(
            "Export needs a model that calls its RecurrentSegments layer "
            f"once per call. Received: {len(written)} calls of "
            f"{rmt.name!r} in model {model.name!r}"
        )
    outputs = _named_outputs(model, outputs)
    if "memory" in outputs and outputs["memory"] is not written[0]:
        raise ValueError(
            "The model already has an output named 'memory' that is not the "
            "memory of its RecurrentSegments layer. Rename that output. "
            f"Received: model outputs {sorted(outputs)}"
        )
    return {**outputs, "memory": written[0]}


def _named_inputs(model):
    return _named(model.input, model.inputs)


def _named_outputs(model, outputs):
    return dict(_named(outputs, keras.tree.flatten(outputs), model))


def _input_specs(model):
    """The inputs to serve: the model's, optional ones (and the layer's
    `"memory"`) left out, with batch size and length unknown."""
    return {
        name: keras.KerasTensor((None, None, *x.shape[2:]), x.dtype)
        for name, x in _named_inputs(model)
        if name != "memory" and not _is_optional(x)
    }


def _arranged(model, inputs):
    """`inputs`, by name, in `model`'s input structure (None where absent)."""
    by_name = {name: inputs.get(name) for name, _ in _named_inputs(model)}
    if isinstance(model.input, dict):
        return by_name
    values = list(by_name.values())
    return values if isinstance(model.input, (list, tuple)) else values[0]


def _endpoint(archive, name, function, specs):
    """`function` of a dict of inputs as a TF function (jax2tf on JAX)."""
    signature = [
        {
            key: keras.InputSpec(shape=x.shape, dtype=x.dtype)
            for key, x in specs.items()
        }
    ]
    options = {}
    if keras.backend.backend() == "jax":
        # One symbol for the batch and one for the length, shared by every
        # input, so that shapes agree inside the traced graph.
        options["jax2tf_kwargs"] = {
            "polymorphic_shapes": [
                {key: _symbols(key, x) for key, x in specs.items()}
            ]
        }

    def call(inputs):
        return function(inputs)

    return archive.add_endpoint(name, call, signature, **options)


def _symbols(name, tensor):
    if name == "memory":
        dims = ["b", *map(str, tensor.shape[1:])]
    else:
        dims = ["b", "t", *map(str, tensor.shape[2:])]
    return "(" + ", ".join(dims) + ")"


def _specs(tf, specs):
    return {
        name: tf.TensorSpec(x.shape, x.dtype, name=name)
        for name, x in specs.items()
    }


def _checked(tf, inputs, limit=None):
    """`inputs`, once their shapes are checked against each other."""
    # Token ids first, so that messages compare the other inputs to them.
    names = sorted(
        (name for name in inputs if name != "memory"),
        key=lambda name: name != "token_ids",
    )
    first = names[0]
    shape = tf.shape(inputs[first])[:2]
    checks = [
        tf.debugging.assert_equal(
            tf.shape(inputs[name])[:2],
            shape,
            message=(
                f"`{name}` must have the batch size and length of `{first}`"
            ),
        )
        for name in names[1:]
    ]
    if "memory" in inputs:
        memory = inputs["memory"]
        # Signature callers (TF Serving, `signatures[...]`) can pass any
        # shape: the signature's own shape is not enforced.
        expected = tf.concat([shape[:1], memory.shape[1:]], axis=0)
        checks.append(
            tf.debugging.assert_equal(
                tf.shape(memory),
                expected,
                message=(
                    "`memory` must have shape (batch_size, "
                    f"{memory.shape[1]}, {memory.shape[2]}), with the batch "
                    f"size of `{first}`"
                ),
            )
        )
    if limit is not None:
        checks.append(
            tf.debugging.assert_less_equal(
                shape[1],
                limit,
                message=(
                    f"serve_segment takes at most {limit} tokens per call "
                    f"(segment_length={limit}): cut longer inputs into "
                    f"segments of {limit} tokens, or call serve"
                ),
            )
        )
    with tf.control_dependencies(checks):
        return {name: tf.identity(value) for name, value in inputs.items()}
