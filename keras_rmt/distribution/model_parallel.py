"""Device meshes and model-parallel layouts for `keras.distribution` (JAX)."""

import math
import re

import keras

MEMORY_WEIGHT = "memory"


def _require_jax(function_name):
    backend = keras.backend.backend()
    if backend != "jax":
        raise ValueError(
            f"`keras_rmt.distribution.{function_name}` builds a "
            "`keras.distribution` setup, which keras-rmt supports on the JAX "
            "backend. On TensorFlow use a `tf.distribute` strategy "
            "(docs/distributed.md); the torch backend has no "
            f"`keras.distribution` support. Received: backend={backend!r}"
        )


def device_mesh(shape, axis_names=("batch", "model"), devices=None):
    """A `keras.distribution.DeviceMesh` that checks it fits the devices.

    Same as `keras.distribution.DeviceMesh`, with an error that says how many
    devices the mesh needs, which ones there are, and how to simulate more on
    a CPU. JAX backend only.

    Args:
        shape: tuple of ints. The mesh shape, e.g. `(2, 4)` for 2-way data
            parallel and 4-way model parallel.
        axis_names: tuple of strings, one per axis of `shape`. Defaults to
            `("batch", "model")`, the names keras-hub layouts use.
        devices: list of devices, or None for all of
            `keras.distribution.list_devices()`. Defaults to `None`.

    Returns:
        A `keras.distribution.DeviceMesh`.

    Example:
    ```python
    # On JAX with 4 devices (on a CPU: XLA_FLAGS=
    # --xla_force_host_platform_device_count=4 before JAX starts).
    mesh = keras_rmt.distribution.device_mesh((2, 2), ("batch", "model"))
    mesh.shape  # (2, 2)
    keras_rmt.distribution.device_mesh((2, 4))  # ValueError: needs 8 devices
    ```
    """
    _require_jax("device_mesh")
    shape = tuple(shape)
    if devices is None:
        devices = keras.distribution.list_devices()
    if math.prod(shape) != len(devices):
        raise ValueError(
            f"A mesh of shape {shape} needs {math.prod(shape)} devices, but "
            f"{len(devices)} are given: {list(devices)}. Choose a shape whose "
            "product is the device count. On a CPU, simulate devices by "
            "setting XLA_FLAGS=--xla_force_host_platform_device_count=N "
            f"before JAX starts. Received: shape={shape}"
        )
    return keras.distribution.DeviceMesh(shape, tuple(axis_names), devices)


def _backbone_class(backbone):
    """The class of the keras-hub backbone that `backbone` is or wraps."""
    from keras_hub.models import Backbone

    if isinstance(backbone, type) and issubclass(backbone, Backbone):
        return backbone
    wrapped = backbone
    # RecurrentSegments, and models around it, keep it as `.backbone`.
    while isinstance(getattr(wrapped, "backbone", None), Backbone):
        wrapped = wrapped.backbone
    if isinstance(wrapped, Backbone):
        return type(wrapped)
    raise ValueError(
        "`backbone` must be a keras-hub backbone class or instance, or a "
        "keras-rmt layer or model that wraps one (as `.backbone`). "
        f"Received: backbone={backbone!r}"
    )


def _has_layout(family):
    return callable(getattr(family, "get_layout_map", None))


def _families_with_layouts():
    import keras_hub

    return sorted(
        name
        for name in dir(keras_hub.models)
        if name.endswith("Backbone")
        and _has_layout(getattr(keras_hub.models, name))
    )


def get_layout_map(
    backbone,
    device_mesh,
    model_parallel_dim_name="model",
    data_parallel_dim_name="batch",
    memory_name="memory_tokens",
):
    """The backbone's model-parallel layout, extended with the RMT memory.

    Calls the keras-hub backbone's own `get_layout_map` and adds the
    `keras_rmt.layers.MemoryTokens` weight, of shape `(num_tokens,
    hidden_dim)`: its rows are few and stay whole, and its hidden axis is
    split like the hidden axis of the token embeddings it sits among (left
    whole where they are). Weights the map does not name, such as a task
    head, are replicated by `keras.distribution.ModelParallel`.

    Only some keras-hub families declare a layout (Gemma, Llama, Qwen...);
    for the others this raises an error naming the family: use
    `keras.distribution.DataParallel`, or write a `LayoutMap` by hand.

    Build the model inside the distribution's scope, so that every weight is
    created with its layout.

    Args:
        backbone: a keras-hub `Backbone` class or instance, or a keras-rmt
            layer or model wrapping one as `.backbone`, such as
            `keras_rmt.layers.RecurrentSegments`: the wrapped one is used.
        device_mesh: `keras.distribution.DeviceMesh`. See
            `keras_rmt.distribution.device_mesh`.
        model_parallel_dim_name: string. The mesh axis weights are split on.
            Defaults to `"model"`.
        data_parallel_dim_name: string. The mesh axis the batch is split on.
            Defaults to `"batch"`.
        memory_name: string. The name of the `MemoryTokens` layer. Keras'
            numbered names (`memory_tokens_1`) match too. Defaults to
            `"memory_tokens"`, the layer's default name.

    Returns:
        A `keras.distribution.LayoutMap`.

    Example:
    ```python
    mesh = keras.distribution.DeviceMesh(
        (1, 1), ("batch", "model"), devices=["cpu:0"]
    )
    layout_map = keras_rmt.distribution.get_layout_map(
        keras_hub.models.LlamaBackbone, mesh
    )
    layout_map["memory_tokens/memory"].axes  # (None, 'batch')
    layout_map["token_embedding/embeddings"].axes  # ('model', 'batch')
    # Then, on JAX:
    # distribution = keras.distribution.ModelParallel(
    #     layout_map=layout_map, batch_dim_name="batch")
    # with distribution.scope():
    #     ... build the backbone, the RecurrentSegments layer and the model
    ```
    """
    family = _backbone_class(backbone)
    if not _has_layout(family):
        raise ValueError(
            f"{family.__name__} has no `get_layout_map`: keras-hub declares "
            "model-parallel layouts only for "
            f"{', '.join(_families_with_layouts())}. Train "
            f"{family.__name__} with keras.distribution.DataParallel, or "
            "write a keras.distribution.LayoutMap for its weights. "
            f"Received: backbone={family.__name__}"
        )
    layout_map = family.get_layout_map(
        device_mesh,
        model_parallel_dim_name=model_parallel_dim_name,
        data_parallel_dim_name=data_parallel_dim_name,
    )
    embeddings = layout_map["token_embedding/embeddings"]
    hidden_axis = None if embeddings is None else embeddings.axes[-1]
    memory_path = rf"(.*/)?{re.escape(memory_name)}(_\d+)?/{MEMORY_WEIGHT}"
    layout_map[memory_path] = (None, hidden_axis)
    return layout_map
