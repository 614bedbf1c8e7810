"""Compiling a function of a layer's weights once, on each backend.

The one place where the layers call a backend's own API (`jax.jit`,
`tf.function`, `torch.no_grad`): Keras has no public way to compile a
function outside a `Model`, and `Model.predict_on_batch` would bring every
segment's outputs back to the host.
"""

import keras


def compile_for_inference(layer, function):
    """Returns `function` compiled once per input shapes and dtypes.

    `function(*args)` may read `layer`'s variables (it must not change
    them). On JAX it is jitted with the variables' current values passed as
    arguments, so later weight updates are seen without recompiling; on
    TensorFlow it becomes a `tf.function` compiled with XLA; on torch it runs
    eagerly under `torch.no_grad()`, so that no autograd graph is kept from
    one call to the next.
    """
    backend = keras.backend.backend()
    if backend == "jax":
        return jax_jit_reading_weights(layer, function)
    if backend == "tensorflow":
        import tensorflow as tf

        return tf.function(function, jit_compile=True, reduce_retracing=True)
    if backend == "torch":
        import torch

        return torch.no_grad()(function)
    return function


def split_for_inference(layer, function):
    """`function`, the light work before a compiled step, made one call.

    On JAX every eager op is dispatched from Python (about 0.1 ms each), so
    the few dozen small ops that cut an input into segments would keep the
    accelerator waiting for the first segment; there they are jitted into
    one call (compiled once per input shape; `function` may read `layer`'s
    variables). TensorFlow's eager ops cost microseconds, so there `function`
    runs as it is, with nothing to trace; torch runs it as
    `compile_for_inference` does, eagerly under `torch.no_grad()`.
    """
    if keras.backend.backend() == "tensorflow":
        return function
    return compile_for_inference(layer, function)


def jax_jit_reading_weights(layer, function):
    """`function`, which reads `layer`'s variables, jitted on JAX.

    The variables' current values are passed in at every call, so later
    weight updates are seen without recompiling.
    """
    import jax

    variables = layer.variables

    @jax.jit
    def pure(values, *args):
        with keras.StatelessScope(state_mapping=zip(variables, values)):
            return function(*args)

    return lambda *args: pure([v.value for v in variables], *args)
