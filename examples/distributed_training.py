"""Train an RMT on several devices, with JAX or TensorFlow.

Engines:
- `jax-data`: `keras.distribution.DataParallel`, the batch split over all
  devices, weights replicated.
- `jax-model`: `keras.distribution.ModelParallel` on a (batch, model) mesh,
  weights laid out by `keras_rmt.distribution.get_layout_map` (the Llama
  backbone's own layout plus the memory).
- `tf-mirrored`: `tf.distribute.MirroredStrategy`, XLA-compiled steps on
  static shapes (inputs padded to whole segments in the `tf.data`
  pipeline), the same code a `TPUStrategy` runs.

Without an accelerator, `--devices N` simulates N CPU devices. The task is
first-token recall with inputs of 9 to 12 tokens (3 segments of 4); the head
reads the memory after the last segment.

    python examples/distributed_training.py --engine jax-model --devices 4
"""

import argparse
import os

ENGINES = {"jax-data": "jax", "jax-model": "jax", "tf-mirrored": "tensorflow"}
SEGMENT_LENGTH = 4
MAX_SEGMENTS = 3
NUM_KEYS = 8


def simulate_devices(engine, devices):
    """Picks the backend and simulates CPU devices, before Keras starts."""
    backend = ENGINES[engine]
    chosen = os.environ.setdefault("KERAS_BACKEND", backend)
    if chosen != backend:
        raise SystemExit(
            f"--engine {engine} runs on the {backend} backend. "
            f"Received: KERAS_BACKEND={chosen}"
        )
    if backend == "jax":
        # Only affects the CPU platform: accelerators are used when present.
        os.environ["XLA_FLAGS"] = (
            os.environ.get("XLA_FLAGS", "")
            + f" --xla_force_host_platform_device_count={devices}"
        )
    else:
        import tensorflow as tf

        if not tf.config.list_physical_devices("GPU"):
            cpu = tf.config.list_physical_devices("CPU")[0]
            tf.config.set_logical_device_configuration(
                cpu, [tf.config.LogicalDeviceConfiguration()] * devices
            )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--engine", choices=sorted(ENGINES), required=True)
    parser.add_argument("--devices", type=int, default=2)
    parser.add_argument("--model-parallel", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--train-samples", type=int, default=1024)
    ARGS = parser.parse_args()
    simulate_devices(ARGS.engine, ARGS.devices)

# Imported after the devices are simulated: the backend starts with Keras.
import keras  # noqa: E402
import keras_hub  # noqa: E402
import numpy as np  # noqa: E402
from tasks.first_token_recall import first_token_recall  # noqa: E402

import keras_rmt  # noqa: E402


def llama_backbone():
    """A tiny Llama whose split axes divide evenly over a 2x2 mesh."""
    return keras_hub.models.LlamaBackbone(
        vocabulary_size=16,
        num_layers=1,
        num_query_heads=2,
        num_key_value_heads=2,
        hidden_dim=16,
        intermediate_dim=32,
    )


def build_model(seed=1, jit_compile="auto"):
    """A Llama-style RMT classifier whose head reads the final memory.

    Build it inside the distribution's or strategy's scope.
    """
    keras.utils.set_random_seed(seed)
    rmt = keras_rmt.layers.RecurrentSegments(
        llama_backbone(),
        memory=keras_rmt.layers.MemoryTokens(num_tokens=2),
        segment_length=SEGMENT_LENGTH,
        memory_layout="decoder",
    )
    inputs = {
        "token_ids": keras.Input((None,), dtype="int32", name="token_ids"),
        "padding_mask": keras.Input(
            (None,), dtype="int32", name="padding_mask"
        ),
    }
    memory = keras.layers.Flatten(name="flat_memory")(rmt(inputs)["memory"])
    logits = keras.layers.Dense(NUM_KEYS, name="head")(memory)
    model = keras.Model(inputs, logits)
    model.compile(
        optimizer=keras.optimizers.Adam(3e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        jit_compile=jit_compile,
    )
    return model


def make_dataset(num_samples, batch_size, seed=0):
    """First-token recall rows of 9 to 12 tokens, padded to 3 segments."""
    import tensorflow as tf

    inputs, labels = first_token_recall(
        num_samples,
        segment_length=SEGMENT_LENGTH,
        num_segments=MAX_SEGMENTS,
        num_keys=NUM_KEYS,
        seed=seed,
    )
    lengths = np.random.default_rng(seed).integers(9, 13, num_samples)

    def rows():
        for ids, label, length in zip(inputs["token_ids"], labels, lengths):
            yield (
                {
                    "token_ids": ids[:length],
                    "padding_mask": np.ones(length, "int32"),
                },
                label,
            )

    dataset = tf.data.Dataset.from_generator(
        rows,
        output_signature=(
            {
                "token_ids": tf.TensorSpec((None,), tf.int32),
                "padding_mask": tf.TensorSpec((None,), tf.int32),
            },
            tf.TensorSpec((), tf.int32),
        ),
    )
    dataset = dataset.apply(
        tf.data.experimental.assert_cardinality(num_samples)
    )
    dataset = keras_rmt.distribution.pad_to_segments(
        dataset, SEGMENT_LENGTH, MAX_SEGMENTS
    )
    # Whole batches only: every step has the same static shape.
    return dataset.batch(batch_size, drop_remainder=True).cache()


def make_distribution(engine, model_parallel=2):
    """The `keras.distribution` or `tf.distribute` object for `engine`."""
    if engine == "jax-data":
        return keras.distribution.DataParallel()
    if engine == "jax-model":
        devices = keras.distribution.list_devices()
        mesh = keras_rmt.distribution.device_mesh(
            (len(devices) // model_parallel, model_parallel),
            ("batch", "model"),
        )
        layout_map = keras_rmt.distribution.get_layout_map(
            keras_hub.models.LlamaBackbone, mesh
        )
        return keras.distribution.ModelParallel(
            layout_map=layout_map, batch_dim_name="batch"
        )
    import tensorflow as tf

    if tf.config.list_physical_devices("GPU"):
        return tf.distribute.MirroredStrategy()
    cpus = tf.config.list_logical_devices("CPU")
    return tf.distribute.MirroredStrategy([device.name for device in cpus])


def build_distributed_model(distribution):
    """Builds the model in the distribution's or strategy's scope."""
    jit_compile = "auto"  # JAX always compiles with XLA.
    if keras.backend.backend() == "tensorflow":
        # XLA on static shapes, as a TPUStrategy runs it. XLA cannot reach
        # variables mirrored on logical CPU devices (see "tf.Variable on a
        # different device" in tensorflow.org/xla/known_issues), so the
        # simulated devices run the same graph without it.
        devices = distribution.extended.worker_devices
        jit_compile = not all("CPU" in device for device in devices)
    with distribution.scope():
        return build_model(jit_compile=jit_compile)


def main(args):
    distribution = make_distribution(args.engine, args.model_parallel)
    per_replica = keras_rmt.distribution.check_batch_size(
        args.batch_size, distribution
    )
    replicas = keras_rmt.distribution.data_parallel_size(distribution)
    print(f"{args.engine}: {replicas} replicas, {per_replica} rows each")
    model = build_distributed_model(distribution)
    train = make_dataset(args.train_samples, args.batch_size, seed=0)
    test = make_dataset(256, args.batch_size, seed=1)
    model.fit(train, epochs=args.epochs, verbose=2)
    predictions = np.argmax(model.predict(test, verbose=0), axis=-1)
    labels = np.concatenate([label for _, label in test.as_numpy_iterator()])
    accuracy = float(np.mean(predictions == labels))
    print(f"test accuracy {accuracy:.3f} (chance {1 / NUM_KEYS:.3f})")
    return accuracy


if __name__ == "__main__":
    main(ARGS)
