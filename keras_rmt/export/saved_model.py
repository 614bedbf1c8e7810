"""Writing an RMT model as a TF SavedModel, for whole inputs and streams.

Backend-specific by its nature (see `keras_rmt/backend/__init__.py`):
SavedModels are TensorFlow graphs, written from Keras on the TensorFlow
backend directly and from JAX through `jax2tf`.
"""

import os
import shutil
import tempfile
from functools import partial

import keras

from keras_rmt.export.streaming import (
    MemoryFeed,
    _named,
    carried_shape,
    find_recurrent_segments,
)
from keras_rmt.version import __version__

EXPORT_BACKENDS = ("tensorflow", "jax")
COMMAND = "python -m keras_rmt export MODEL.keras OUT_DIR"


def export_saved_model(model, path, overwrite=False, verbose=False):
    """Writes `model` as a TF SavedModel with whole-input and stream serving.

    The SavedModel has four signatures (also callable by name on the object
    `tf.saved_model.load` returns):

    - `serve`: every input of the model (`token_ids`, `padding_mask`, and
      `segment_ids` for BERT-family backbones), int32 of shape
      `(batch_size, length)`, any batch size and length -> the model's
      outputs, plus `memory`, the memory after the last segment. Also the
      `serving_default`.
    - `serve_segment`: one segment's inputs, at most `segment_length` tokens,
      and `memory`, `(batch_size, num_memory_tokens, hidden_dim)` -> the
      outputs for that segment and the new `memory`. The caller keeps the
      memory between calls, so a stream of any length is served at the cost
      of one segment. With `keras_rmt.layers.AssociativeRecurrentSegments`
      (ARMT) `memory` is the associative state of every layer,
      `(batch_size, *layer.state_shape)`, and starts at zero. Refused (with
      a message saying so) for models with `alignment="right"`, whose
      segments depend on each row's whole length.
    - `initial_memory`: `batch_size`, an int32 scalar -> `memory`, the
      memory that starts a stream (the model's learned memory, one copy per
      row).
    - `metadata`: no inputs -> `segment_length`, `num_memory_tokens`,
      `hidden_dim`, `vocabulary_size` (int32 scalars), `alignment`,
      `memory_layout` and `keras_rmt_version` (strings). The loaded object
      holds the same values as variables of these names.

    Outputs are named for what they are: a model with a dict of outputs
    serves them under its keys; a single output is `logits`, or
    `sequence_output` when it is the RecurrentSegments layer's token outputs.

    Streaming a whole input through `serve_segment`, `segment_length` tokens
    at a time from `initial_memory`, gives the same token outputs and final
    memory as one `serve` call (a head that pools over the sequence pools per
    segment).

    Inputs are checked inside the served functions, with messages that name
    the input: ranks, empty batches or inputs, inputs of different batch
    sizes or lengths, a memory of the wrong shape, token ids outside the
    vocabulary, a segment longer than `segment_length`. A wrong dtype is
    refused when the call is bound to the signature. The model's token ids
    must come in an input named `token_ids`, and every input must be of
    shape `(batch_size, length)`: anything else is refused before writing.

    The folder is written atomically: the SavedModel is written to a
    temporary sibling folder (`<path>.XXXX.tmp`) and renamed to `path` once
    complete, so that a reader of `path` never sees a mix of an old and a
    new export, and the temporary folder is removed if writing fails.

    Keras writes SavedModels from the TensorFlow and JAX backends only (JAX
    through `jax2tf`, with the batch size and the length left symbolic, and
    without gradients: the SavedModel serves, it is not trained further). A
    model trained with PyTorch is saved as `.keras` and exported with the
    command `python -m keras_rmt export MODEL.keras OUT_DIR`, which reloads it
    under TensorFlow (or `--backend jax`) in place of the current process.

    The tokenizer is not part of the SavedModel: serve token ids.

    Args:
        model: `keras.Model`. A functional model (or keras-hub style task)
            holding exactly one `keras_rmt.layers.RecurrentSegments` layer.
        path: str or `pathlib.Path`. The folder to write.
        overwrite: bool. Whether to replace `path` when it exists and is not
            empty; otherwise that is refused. Defaults to `False`.
        verbose: bool. Whether to print the signatures written, one line
            each. Defaults to `False`.

    Example:
    ```python
    import os, tempfile

    backbone = keras_hub.models.GPT2Backbone(
        vocabulary_size=100, num_layers=1, num_heads=2, hidden_dim=16,
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
        int(served.metadata()["segment_length"])  # 4
    ```
    """
    backend = keras.backend.backend()
    if backend not in EXPORT_BACKENDS:
        raise RuntimeError(
            "Keras writes TF SavedModels from the TensorFlow and JAX backends "
            f"only. Received: model on the {backend!r} backend. Save the "
            f"model (`model.save('MODEL.keras')`) and run `{COMMAND}`, which "
            "reloads it under TensorFlow (or `--backend jax`) and exports "
            "it there."
        )
    import tensorflow as tf

    path = os.path.abspath(os.fspath(path))
    _check_target(path, overwrite)
    root, signatures, outputs = _saveable(tf, model)
    _write_atomically(
        lambda folder: tf.saved_model.save(root, folder, signatures=signatures),
        path,
        overwrite,
    )
    if verbose:
        for name, function in signatures.items():
            print(_describe(name, function, outputs[function]))


def export_task(task, filepath, format, verbose, **kwargs):
    """`export()` of the RMT tasks: keras-rmt's SavedModel, or Keras'."""
    if format != "tf_saved_model":
        return keras.Model.export(
            task, filepath, format=format, verbose=verbose, **kwargs
        )
    overwrite = kwargs.pop("overwrite", False)
    if kwargs:
        raise ValueError(
            "With format='tf_saved_model', export() takes no other "
            f"arguments than overwrite. Received: {sorted(kwargs)}"
        )
    export_saved_model(
        task, filepath, overwrite=overwrite, verbose=bool(verbose)
    )


def metadata(model):
    """What a client needs to stream through `model`'s SavedModel."""
    rmt = find_recurrent_segments(model)
    return {
        "segment_length": rmt.segment_length,
        "num_memory_tokens": rmt.num_memory_tokens,
        "hidden_dim": rmt.hidden_dim,
        "vocabulary_size": _vocabulary_size(rmt),
        "alignment": rmt.alignment,
        "memory_layout": rmt.memory_layout,
        "keras_rmt_version": __version__,
    }


def _vocabulary_size(rmt):
    return int(rmt.backbone.token_embedding.input_dim)


def _saveable(tf, model):
    """The module to save, its signatures, and their outputs' specs.

    The signatures are the `tf.function`s (with input signatures) that are
    also the module's attributes, not concrete functions traced here:
    `tf.saved_model.save` traces each function again within its save context
    (another key of the function's cache) to save the attributes, so that
    concrete functions traced before it would be a second copy of each graph
    in the SavedModel and a second trace of the model for each (on
    TensorFlow, about half the time of an export). Signatures given as
    functions are traced within that context too, once each. The specs of
    their outputs are noted while they are traced (`_Outputs`), for
    `verbose`: `get_concrete_function()` after the save would trace again.
    """
    rmt = find_recurrent_segments(model)
    specs = _input_specs(model)
    _check_servable(specs)
    segment_specs = {
        **specs,
        "memory": keras.KerasTensor(
            (None, *carried_shape(rmt)), rmt.memory_dtype
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

    initial = keras.ops.convert_to_numpy(rmt.initial_memory(1))[0]
    root = tf.Module()
    root.model_variables = list(archive.variables)
    root.initial_memory_value = tf.Variable(
        initial.astype(rmt.memory_dtype), trainable=False, name="memory"
    )
    # Attributes of the loaded object, and the `metadata` signature.
    described = metadata(model)
    for name, value in described.items():
        dtype = tf.string if isinstance(value, str) else tf.int32
        setattr(root, name, tf.Variable(value, trainable=False, dtype=dtype))
    checks = _Checks(tf, rmt)
    outputs = _Outputs(tf)

    @tf.function(input_signature=[_specs(tf, specs)])
    def serve(inputs):
        return outputs(serve, served_whole(checks(inputs, "serve")))

    @tf.function(input_signature=[_specs(tf, segment_specs)])
    def serve_segment(inputs):
        inputs = checks(inputs, "serve_segment")
        return outputs(serve_segment, served_stream(inputs))

    @tf.function(
        input_signature=[tf.TensorSpec((), tf.int32, name="batch_size")]
    )
    def initial_memory(batch_size):
        batch_size = checks.batch_size(batch_size)
        value = root.initial_memory_value
        memory = tf.tile(value[None], [batch_size, 1, 1])
        return outputs(initial_memory, {"memory": memory})

    @tf.function(input_signature=[])
    def read_metadata():
        values = {name: tf.identity(getattr(root, name)) for name in described}
        return outputs(read_metadata, values)

    root.serve = serve
    root.serve_segment = serve_segment
    root.initial_memory = initial_memory
    root.metadata = read_metadata
    signatures = {
        "serve": serve,
        "serve_segment": serve_segment,
        "initial_memory": initial_memory,
        "metadata": read_metadata,
    }
    signatures["serving_default"] = signatures["serve"]
    return root, signatures, outputs


def _check_target(path, overwrite):
    if overwrite or not os.path.lexists(path):
        return
    if os.path.isdir(path) and not os.listdir(path):
        return
    raise FileExistsError(
        f"{path} exists and is not empty. Pass overwrite=True to replace it: "
        "the new SavedModel is written next to it and renamed into place "
        f"once complete. Received: path={path!r}, overwrite=False"
    )


def _write_atomically(write, path, overwrite):
    """Runs `write(folder)` on a temporary sibling of `path`, then renames
    that folder to `path`.

    A reader of `path` sees the old SavedModel, or (for an instant while the
    old one is moved aside) none, never a mix of old and new files. Nothing
    is left behind when `write` fails.
    """
    parent, name = os.path.split(path)
    os.makedirs(parent, exist_ok=True)
    temporary = tempfile.mkdtemp(prefix=f"{name}.", suffix=".tmp", dir=parent)
    try:
        # `mkdtemp` makes a private folder; a SavedModel folder gets the
        # permissions of `os.mkdir`, so that a model server can read it.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(temporary, 0o777 & ~umask)
        write(temporary)
        _check_target(path, overwrite)  # Again: writing took a while.
        if os.path.isdir(path) and not os.listdir(path):
            os.rmdir(path)
        if not os.path.lexists(path):
            os.rename(temporary, path)
            return
        old = tempfile.mkdtemp(prefix=f"{name}.old.", suffix=".tmp", dir=parent)
        os.rename(path, os.path.join(old, name))
        try:
            os.rename(temporary, path)
        except BaseException:
            os.rename(os.path.join(old, name), path)
            raise
        finally:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(temporary, ignore_errors=True)
        raise


def _describe(name, function, outputs):
    """One line for a signature: its inputs and outputs, dtypes and shapes.

    `function` is a `tf.function` with an input signature; `outputs`, the
    specs of its outputs by name.
    """

    def listed(specs):
        return ", ".join(
            f"{key}: {spec.dtype.name} {_shape(spec.shape)}"
            for key, spec in sorted(specs)
        )

    flat = keras.tree.flatten(function.input_signature)
    inputs = [(spec.name, spec) for spec in flat]
    return f"{name}({listed(inputs)}) -> {listed(outputs.items())}"


class _Outputs:
    """The specs of each served function's outputs, noted as it is traced.

    `outputs(function, values)` notes the specs of `values` (a dict of
    tensors) under `function` and returns `values`; `outputs[function]`
    reads them back.
    """

    def __init__(self, tf):
        self.tf = tf
        self.specs = {}

    def __call__(self, function, values):
        self.specs[function] = {
            name: self.tf.TensorSpec.from_tensor(x)
            for name, x in values.items()
        }
        return values

    def __getitem__(self, function):
        return self.specs[function]


def _shape(shape):
    dims = ["-1" if dim is None else str(dim) for dim in shape.as_list()]
    return "(" + ", ".join(dims) + ")"


def _serve(model, rmt, inputs):
    """`model`'s outputs and the memory its RecurrentSegments layer wrote.

    Runs `model`'s own call, so that tasks that pick their outputs in `call`
    (`keras_rmt.models.RMTTextClassifier`: the last segment's logits) serve
    what they predict. While the call is traced, the layer's `call` is
    wrapped on the instance: it reads `inputs["memory"]` when given and
    hands its outputs out. (`keras_rmt.export.streaming_model` does the
    same by replaying the functional graph, which skips such a `call`.)
    """
    inputs = dict(inputs)
    feed = MemoryFeed(rmt, inputs.pop("memory", None))
    # `object.__setattr__`: a plain attribute, outside Keras' tracking.
    object.__setattr__(rmt, "call", partial(feed, rmt.call))
    try:
        outputs = model(_arranged(model, inputs), training=False)
    finally:
        object.__delattr__(rmt, "call")
    return feed.served(model, outputs)


def _named_inputs(model):
    return _named(model.input, model.inputs)


def _input_specs(model):
    """The inputs to serve: every input of the model (optional ones as
    `segment_ids` included) but the layer's `"memory"`, with batch size and
    length unknown."""
    return {
        name: keras.KerasTensor((None, None, *x.shape[2:]), x.dtype)
        for name, x in _named_inputs(model)
        if name != "memory"
    }


def _check_servable(specs):
    """Served inputs are token-aligned `(batch_size, length)` tensors,
    checked against the one named `token_ids`."""
    if "token_ids" not in specs:
        raise ValueError(
            "export_saved_model serves a model whose token ids come in an "
            "input named 'token_ids' (the others are checked against it): "
            "name that `keras.Input` 'token_ids', or wrap the model in one "
            "whose inputs are named so. "
            f"Received: model inputs {sorted(specs)}"
        )
    for name, spec in specs.items():
        if len(spec.shape) != 2:
            raise ValueError(
                "export_saved_model serves inputs of shape (batch_size, "
                f"length), one value per token. Received: input {name!r} "
                f"with {len(spec.shape)} dimensions"
            )


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
        # input, so that shapes agree inside the traced graph. No gradient:
        # the SavedModel serves, and `tf.saved_model.save` would otherwise
        # trace and serialize each function's VJP, two thirds of the time
        # of an export.
        options["jax2tf_kwargs"] = {
            "polymorphic_shapes": [
                {key: _symbols(key, x) for key, x in specs.items()}
            ],
            "with_gradient": False,
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


class _Checks:
    """Serving inputs checked in the graph, with messages that name them.

    Signature callers (TF Serving, `signatures[...]`) can pass tensors of any
    shape: the signature's shapes are not enforced. Ranks are checked first,
    from the shape seen at run time (the graph's own rank would be folded
    to the signature's), and everything else waits for those checks, so
    that a bad input meets a message rather than a graph-internal error.
    """

    def __init__(self, tf, rmt):
        self.tf = tf
        self.segment_length = rmt.segment_length
        self.vocabulary_size = _vocabulary_size(rmt)
        self.alignment = rmt.alignment
        self.memory_shape = carried_shape(rmt)

    def __call__(self, inputs, signature):
        tf = self.tf
        # Token ids first, so that messages compare the other inputs to them.
        names = sorted(
            (name for name in inputs if name != "memory"),
            key=lambda name: name != "token_ids",
        )
        ranks = [
            self._rank(inputs[name], name, "(batch_size, length)")
            for name in names
        ]
        if "memory" in inputs:
            ranks.append(
                self._rank(inputs["memory"], "memory", self._memory_text())
            )
        with tf.control_dependencies(ranks):
            inputs = {name: tf.identity(x) for name, x in inputs.items()}
        checks = self._shapes(inputs, names, signature)
        checks += self._token_ids(inputs["token_ids"])
        with tf.control_dependencies(checks):
            return {name: tf.identity(x) for name, x in inputs.items()}

    def batch_size(self, batch_size):
        check = self.tf.debugging.assert_greater_equal(
            batch_size, 1, message="`batch_size` must be at least 1"
        )
        with self.tf.control_dependencies([check]):
            return self.tf.identity(batch_size)

    def _memory_text(self):
        tokens, hidden = self.memory_shape
        return f"(batch_size, {tokens}, {hidden})"

    def _rank(self, x, name, expected):
        tf = self.tf
        dims = expected.count(",") + 1
        # The number of dimensions, computed so that it cannot be folded.
        rank = tf.shape(tf.where(tf.shape(x) >= 0))[0]
        return tf.debugging.assert_equal(
            rank,
            dims,
            message=f"`{name}` must have {dims} dimensions, {expected}",
        )

    def _shapes(self, inputs, names, signature):
        tf = self.tf
        first = names[0]
        shape = tf.shape(inputs[first])[:2]
        checks = [
            tf.debugging.assert_greater_equal(
                shape[0],
                1,
                message=f"`{first}` must hold at least one row "
                "(batch_size >= 1)",
            ),
            tf.debugging.assert_greater_equal(
                shape[1],
                1,
                message=f"`{first}` must hold at least one token (length >= 1)",
            ),
        ]
        checks += [
            tf.debugging.assert_equal(
                tf.shape(inputs[name]),
                shape,
                message=(
                    f"`{name}` must have the batch size and length of `{first}`"
                ),
            )
            for name in names[1:]
        ]
        if "memory" in inputs:
            expected = tf.concat([shape[:1], self.memory_shape], axis=0)
            checks.append(
                tf.debugging.assert_equal(
                    tf.shape(inputs["memory"]),
                    expected,
                    message=(
                        f"`memory` must have shape {self._memory_text()}, "
                        f"with the batch size of `{first}`"
                    ),
                )
            )
        if signature == "serve_segment":
            checks.append(self._segment_length(shape[1]))
        if signature == "serve_segment" and self.alignment != "left":
            # Always fails when run (a batch size is never negative), in a
            # form that cannot be decided while the graph is built.
            checks.append(
                tf.debugging.assert_less(
                    shape[0],
                    0,
                    message=(
                        "serve_segment is not available for this model: it "
                        f"aligns segments to the {self.alignment} "
                        f"(alignment={self.alignment}: the short segment "
                        "of each row comes first, where the length of the "
                        "row puts it), so a stream cut into segments of "
                        f"{self.segment_length} tokens would not give the "
                        "outputs of serve. Call serve with whole inputs"
                    ),
                )
            )
        return checks

    def _segment_length(self, length):
        limit = self.segment_length
        return self.tf.debugging.assert_less_equal(
            length,
            limit,
            message=(
                f"serve_segment takes at most {limit} tokens per call "
                f"(segment_length={limit}): cut longer inputs into "
                f"segments of {limit} tokens, or call serve"
            ),
        )

    def _token_ids(self, token_ids):
        tf = self.tf
        size = self.vocabulary_size
        message = f"`token_ids` must be in [0, {size}) (vocabulary_size={size})"
        return [
            tf.debugging.assert_non_negative(token_ids, message=message),
            tf.debugging.assert_less(token_ids, size, message=message),
        ]
