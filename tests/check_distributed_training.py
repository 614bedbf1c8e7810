"""Trains the distributed-training example in a process of its own.

`python check_distributed_training.py OUTPUT_DIR` runs under KERAS_BACKEND:
jax, with XLA_FLAGS=--xla_force_host_platform_device_count=4 set by the
caller, or tensorflow, where it splits the CPU into 2 logical devices before
Keras starts. It trains the example's model on one device and under each
distribution on the same global batches, and writes to OUTPUT_DIR:
`report.json` (losses, where each weight lives, error messages), the model
saved under a distribution and its outputs on a batch.
"""

import json
import os
import sys

sys.path.insert(
    0,
    os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "examples"),
)

BATCH_SIZE = 8
EPOCHS = 3  # one step an epoch


def losses(model, dataset):
    history = model.fit(dataset, epochs=EPOCHS, verbose=0)
    return [float(loss) for loss in history.history["loss"]]


def build_causal_lm(ex, jit_compile="auto", run_eagerly=False):
    """The task: an RMTCausalLM over the example's Llama."""
    import keras

    keras.utils.set_random_seed(1)
    backbone = ex.keras_rmt.models.RMTBackbone(
        ex.llama_backbone(),
        num_memory_tokens=2,
        segment_length=ex.SEGMENT_LENGTH,
        memory_layout="decoder",
    )
    causal_lm = ex.keras_rmt.models.RMTCausalLM(backbone)
    causal_lm.compile(
        optimizer=keras.optimizers.SGD(0.5),
        weighted_metrics=[],
        segment_metrics=None,
        jit_compile=jit_compile,
        run_eagerly=run_eagerly,
    )
    return causal_lm


def causal_lm_losses(model, dataset, whole_rows=False):
    """Next-token training on the token ids of the first batch.

    `whole_rows` drops the padding: with `tf.distribute`, the task's
    token-weighted loss is a mean over each replica's own tokens, which
    equals the global mean only when replicas hold as many tokens.
    """
    import numpy as np

    inputs, _ = next(dataset.as_numpy_iterator())
    if whole_rows:
        inputs["padding_mask"] = np.ones_like(inputs["padding_mask"])
    history = model.fit(
        inputs,
        np.roll(inputs["token_ids"], -1, axis=1),
        sample_weight=inputs["padding_mask"],
        batch_size=BATCH_SIZE,
        epochs=EPOCHS,
        shuffle=False,
        verbose=0,
    )
    return [float(loss) for loss in history.history["loss"]]


def error_message(function, *args):
    try:
        function(*args)
    except ValueError as error:
        return str(error)
    return None


def jax_layouts(model, layout_map=None):
    """For each weight: its mesh, its sharding and the declared layout."""
    layouts = {}
    for variable in model.weights:
        sharding = variable.value.sharding
        spec = list(sharding.spec) + [None] * (
            len(variable.shape) - len(sharding.spec)
        )
        declared = None if layout_map is None else layout_map[variable.path]
        layouts[variable.path] = {
            "mesh": dict(sharding.mesh.shape),
            "spec": spec,
            "declared": None if declared is None else list(declared.axes),
        }
    return layouts


def check_jax(ex, report, output_dir):
    import keras

    dataset = ex.make_dataset(BATCH_SIZE, BATCH_SIZE)
    report["devices"] = keras.distribution.list_devices()
    report["single"] = losses(ex.build_model(), dataset)

    data_parallel = ex.make_distribution("jax-data")
    model = ex.build_distributed_model(data_parallel)
    report["data_parallel"] = losses(model, dataset)
    report["data_parallel_layouts"] = jax_layouts(model)

    model_parallel = ex.make_distribution("jax-model", model_parallel=2)
    model = ex.build_distributed_model(model_parallel)
    report["model_parallel"] = losses(model, dataset)
    report["model_parallel_layouts"] = jax_layouts(
        model, model_parallel._layout_map
    )
    # `predict`, not a call: eager JAX would compile each op on its own.
    inputs, _ = next(dataset.as_numpy_iterator())
    save_outputs(model, inputs, model.predict(inputs, verbose=0), output_dir)

    # A task, laid out by the map read from a task of the same kind.
    single_task = build_causal_lm(ex)
    report["task_single"] = causal_lm_losses(single_task, dataset)
    layout_map = ex.keras_rmt.distribution.get_layout_map(
        single_task, model_parallel.device_mesh
    )
    with keras.distribution.ModelParallel(
        layout_map=layout_map, batch_dim_name="batch"
    ).scope():
        task = build_causal_lm(ex)
    report["task_model_parallel"] = causal_lm_losses(task, dataset)
    report["task_layouts"] = jax_layouts(task, layout_map)

    rmt = ex.keras_rmt.distribution
    report["batch_error"] = error_message(
        rmt.check_batch_size, 6, data_parallel
    )
    report["mesh_error"] = error_message(rmt.device_mesh, (2, 4))


def check_tensorflow(ex, report, output_dir):
    import tensorflow as tf

    dataset = ex.make_dataset(BATCH_SIZE, BATCH_SIZE)
    report["devices"] = [d.name for d in tf.config.list_logical_devices()]
    # One device with XLA: the static-shape step compiles as on a TPU.
    single = ex.build_model(jit_compile=True)
    # Built before `fit`, or Keras creates the optimizer's variables in the
    # first trace of the step and TensorFlow traces it a second time (under
    # a strategy, Keras builds it before tracing).
    single.optimizer.build(single.trainable_variables)
    report["single"] = losses(single, dataset)

    strategy = ex.make_distribution("tf-mirrored")
    model = ex.build_distributed_model(strategy)
    report["mirrored"] = losses(model, dataset)
    report["replicas"] = strategy.num_replicas_in_sync
    report["jit_compile"] = model.jit_compile
    report["weight_devices"] = sorted(
        {value.device for value in model.weights[0].value.values}
    )
    # Called, not `predict`: the same outputs without tracing a predict
    # function under the strategy.
    inputs, _ = next(dataset.as_numpy_iterator())
    save_outputs(model, inputs, model(inputs), output_dir)

    # The task's one-device reference runs its 3 steps eagerly: tracing
    # them (and XLA) costs several times more on the CPU. The compiled paths
    # are the strategy's own below and the `single` model's XLA above.
    report["task_single"] = causal_lm_losses(
        build_causal_lm(ex, run_eagerly=True), dataset, whole_rows=True
    )
    with strategy.scope():
        task = build_causal_lm(ex, jit_compile=False)
    report["task_mirrored"] = causal_lm_losses(task, dataset, whole_rows=True)

    report["batch_error"] = error_message(
        ex.keras_rmt.distribution.check_batch_size, 3, strategy
    )


def save_outputs(model, inputs, logits, output_dir):
    """Saves `model` and its `logits` on `inputs`, for a reload to match."""
    import keras
    import numpy as np

    model.save(os.path.join(output_dir, "distributed.keras"))
    np.savez(
        os.path.join(output_dir, "outputs.npz"),
        logits=keras.ops.convert_to_numpy(logits),
        **inputs,
    )


if __name__ == "__main__":
    (output_dir,) = sys.argv[1:]
    backend = os.environ["KERAS_BACKEND"]
    if backend == "tensorflow":
        import tensorflow as tf

        tf.config.set_logical_device_configuration(
            tf.config.list_physical_devices("CPU")[0],
            [tf.config.LogicalDeviceConfiguration()] * 2,
        )
    import distributed_training

    report = {"keras_rmt": distributed_training.keras_rmt.__file__}
    check = check_jax if backend == "jax" else check_tensorflow
    check(distributed_training, report, output_dir)
    with open(os.path.join(output_dir, "report.json"), "w") as file:
        json.dump(report, file, indent=1)
