"""keras_rmt.distribution: layouts, batch checks, input padding, and training
on simulated devices (in a process of its own, see
check_distributed_training.py)."""

import json
import os
import re
import subprocess
import sys

import keras
import keras_hub
import numpy as np
import pytest
import tensorflow as tf
from conftest import make_rmt

import keras_rmt

BACKEND = keras.backend.backend()


def only_on(*backends):
    return pytest.mark.skipif(
        BACKEND not in backends,
        reason=f"runs on {' and '.join(backends)} only",
    )


def not_on(backend):
    return pytest.mark.skipif(
        BACKEND == backend, reason=f"runs on backends other than {backend}"
    )


def one_device_mesh():
    return keras.distribution.DeviceMesh(
        (1, 1), ("batch", "model"), devices=["cpu:0"]
    )


# === Layout maps (backend-free) ===


@pytest.mark.backend_independent
@pytest.mark.parametrize("family", ["GemmaBackbone", "LlamaBackbone"])
def test_memory_is_laid_out_like_the_embedding_hidden_axis(family):
    backbone = getattr(keras_hub.models, family)
    layout_map = keras_rmt.distribution.get_layout_map(
        backbone, one_device_mesh()
    )
    own = backbone.get_layout_map(one_device_mesh())
    embeddings = own["token_embedding/embeddings"].axes
    assert embeddings == ("model", "batch")
    for path in ["memory_tokens/memory", "rmt/memory_tokens_12/memory"]:
        assert layout_map[path].axes == (None, embeddings[-1])
    for path in ["memory_tokens/kernel", "other/memory"]:
        assert layout_map[path] is None
    # Every layout of the backbone's own map is kept as it is.
    for key in own:
        assert layout_map[key].axes == own[key].axes
    assert len(layout_map) == len(own) + 1


@pytest.mark.backend_independent
def test_layout_map_from_a_layer_follows_its_backbone_and_axis_names():
    rmt = make_rmt("llama", memory_layout="decoder")
    mesh = keras.distribution.DeviceMesh(
        (1, 1), ("data", "shards"), devices=["cpu:0"]
    )
    layout_map = keras_rmt.distribution.get_layout_map(
        rmt,
        mesh,
        model_parallel_dim_name="shards",
        data_parallel_dim_name="data",
        memory_name="mem",
    )
    assert layout_map["mem/memory"].axes == (None, "data")
    assert layout_map["memory_tokens/memory"] is None
    query = "transformer_layer_0/self_attention/query/kernel"
    assert layout_map[query].axes == ("shards", "data", None)


@pytest.mark.backend_independent
def test_layout_map_names_the_family_without_one():
    message = (
        "GPT2Backbone has no `get_layout_map`: keras-hub declares "
        "model-parallel layouts only for "
    )
    with pytest.raises(ValueError, match=re.escape(message)) as error:
        keras_rmt.distribution.get_layout_map(
            keras_hub.models.GPT2Backbone, one_device_mesh()
        )
    assert "LlamaBackbone" in str(error.value)
    assert str(error.value).endswith("Received: backbone=GPT2Backbone")


@pytest.mark.backend_independent
def test_layout_map_refuses_what_is_not_a_backbone():
    with pytest.raises(ValueError, match="Received: backbone='gemma'"):
        keras_rmt.distribution.get_layout_map("gemma", one_device_mesh())


# === Batch sizes ===


def test_batch_size_without_distribution_is_whole():
    assert keras_rmt.distribution.data_parallel_size() == 1
    assert keras_rmt.distribution.check_batch_size(6) == 6
    with pytest.raises(ValueError, match="Received: batch_size=0"):
        keras_rmt.distribution.check_batch_size(0)
    with pytest.raises(ValueError, match="Received: distribution='tpu'"):
        keras_rmt.distribution.data_parallel_size("tpu")


# === Padding in the input pipeline ===


@pytest.mark.backend_independent
def test_pad_to_segments_pads_to_a_static_length():
    rows = [[5, 6, 7], [8, 9, 10, 11, 12]]
    dataset = tf.data.Dataset.from_generator(
        lambda: (
            ({"token_ids": r, "padding_mask": [1] * len(r), "id": 0}, r)
            for r in rows
        ),
        output_signature=(
            {
                "token_ids": tf.TensorSpec((None,), tf.int32),
                "padding_mask": tf.TensorSpec((None,), tf.int32),
                "id": tf.TensorSpec((), tf.int32),
            },
            tf.TensorSpec((None,), tf.int32),
        ),
    )
    padded = keras_rmt.distribution.pad_to_segments(
        dataset, segment_length=3, max_segments=2, pad_labels=True
    ).batch(2, drop_remainder=True)
    features, labels = padded.element_spec
    assert features["token_ids"].shape == (2, 6)
    assert labels.shape == (2, 6)
    (got, got_labels), *_ = padded.as_numpy_iterator()
    expected = [[5, 6, 7, 0, 0, 0], [8, 9, 10, 11, 12, 0]]
    np.testing.assert_array_equal(got["token_ids"], expected)
    np.testing.assert_array_equal(got_labels, expected)
    np.testing.assert_array_equal(
        got["padding_mask"], [[1, 1, 1, 0, 0, 0], [1, 1, 1, 1, 1, 0]]
    )
    np.testing.assert_array_equal(got["id"], [0, 0])

    too_long = "token_ids is longer than max_segments * segment_length = "
    short = keras_rmt.distribution.pad_to_segments(dataset, 2, 2)
    with pytest.raises(
        tf.errors.InvalidArgumentError,
        match=re.escape(too_long + "2 * 2 = 4 tokens"),
    ):
        list(short)
    static = tf.data.Dataset.from_tensor_slices(
        {"token_ids": [[1, 2, 3, 4, 5]], "padding_mask": [[1, 1, 1, 1, 1]]}
    )
    with pytest.raises(
        ValueError, match=re.escape(too_long + "2 * 2 = 4 tokens")
    ):
        keras_rmt.distribution.pad_to_segments(static, 2, 2)


# === Training on simulated devices, one process per backend ===


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Runs check_distributed_training.py; returns its report and folder."""
    folder = tmp_path_factory.mktemp("distributed")
    # Quick, unoptimised XLA compiles: both sides of each comparison use them.
    # The older elemental emitters compile these graphs about twice as fast
    # as XLA's CPU fusion emitters (see FAST_XLA_FLAGS in conftest.py).
    flags = "--xla_backend_optimization_level=0 "
    flags += "--xla_llvm_disable_expensive_passes=true "
    flags += "--xla_cpu_use_fusion_emitters=false"
    if BACKEND == "jax":
        flags += " --xla_force_host_platform_device_count=4"
    # The keras_rmt of this process, not another one installed.
    paths = [os.path.dirname(os.path.dirname(keras_rmt.__file__))]
    paths += [os.environ["PYTHONPATH"]] if "PYTHONPATH" in os.environ else []
    env = {
        **os.environ,
        "KERAS_BACKEND": BACKEND,
        "XLA_FLAGS": flags,
        "PYTHONPATH": os.pathsep.join(paths),
    }
    script = os.path.join(
        os.path.dirname(__file__), "check_distributed_training.py"
    )
    result = subprocess.run(
        [sys.executable, script, str(folder)],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout + result.stderr[-5000:]
    with open(folder / "report.json") as file:
        return json.load(file), folder


def assert_trains_like_one_device(report, engine, single="single"):
    single = report[single]
    assert single[-1] < single[0] - 0.1  # the steps did train
    np.testing.assert_allclose(report[engine], single, rtol=1e-5)


@only_on("jax", "tensorflow")
def test_check_trains_the_keras_rmt_under_test(trained):
    report, _ = trained
    assert report["keras_rmt"] == keras_rmt.__file__


@only_on("jax", "tensorflow")
def test_saved_under_distribution_reloads_on_one_device(trained):
    _, folder = trained
    assert len(tf.config.list_logical_devices("CPU")) == 1
    if BACKEND == "jax":
        assert len(keras.distribution.list_devices()) == 1
    expected = np.load(folder / "outputs.npz")
    model = keras.saving.load_model(folder / "distributed.keras")
    inputs = {name: expected[name] for name in ("token_ids", "padding_mask")}
    # Called, not `predict`: the same outputs without tracing a predict
    # function for this one batch.
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(model(inputs)), expected["logits"], atol=1e-5
    )


@only_on("jax")
def test_data_parallel_over_4_devices_trains_like_one(trained):
    report, _ = trained
    assert report["devices"] == ["cpu:0", "cpu:1", "cpu:2", "cpu:3"]
    assert_trains_like_one_device(report, "data_parallel")
    for layout in report["data_parallel_layouts"].values():
        assert layout["mesh"] == {"batch": 4}
        assert layout["spec"] == [None] * len(layout["spec"])


@only_on("jax")
def test_model_parallel_on_2x2_mesh_trains_like_one(trained):
    report, _ = trained
    assert_trains_like_one_device(report, "model_parallel")


@only_on("jax")
def test_model_parallel_lays_weights_out_as_declared(trained):
    report, _ = trained
    layouts = report["model_parallel_layouts"]
    for path, layout in layouts.items():
        assert layout["mesh"] == {"batch": 2, "model": 2}
        declared = layout["declared"] or [None] * len(layout["spec"])
        assert layout["spec"] == declared, path
    (memory,) = [p for p in layouts if p.endswith("/memory")]
    assert layouts[memory]["spec"] == [None, "batch"]
    assert layouts["token_embedding/embeddings"]["spec"] == [
        "model",
        "batch",
    ]
    assert layouts["head/kernel"]["spec"] == [None, None]


@only_on("jax")
def test_causal_lm_task_under_model_parallel_trains_like_one(trained):
    report, _ = trained
    assert_trains_like_one_device(
        report, "task_model_parallel", single="task_single"
    )
    layouts = report["task_layouts"]
    for path, layout in layouts.items():
        declared = layout["declared"] or [None] * len(layout["spec"])
        assert layout["spec"] == declared, path
    assert layouts["memory_tokens/memory"]["spec"] == [None, "batch"]
    query = "transformer_layer_0/self_attention/query/kernel"
    assert layouts[query]["spec"] == ["model", "batch", None]


@only_on("jax")
def test_clear_errors_for_batch_and_mesh(trained):
    report, _ = trained
    assert report["batch_error"] == (
        "The global batch size must be a multiple of the data-parallel "
        "size, 4, so that each replica gets the same number of rows. "
        "Use batch_size=4 or 8. Received: batch_size=6"
    )
    assert report["mesh_error"].startswith(
        "A mesh of shape (2, 4) needs 8 devices, but 4 are given: "
        "['cpu:0', 'cpu:1', 'cpu:2', 'cpu:3']."
    )
    assert "xla_force_host_platform_device_count" in report["mesh_error"]


@only_on("jax")
def test_mesh_larger_than_this_process_is_refused():
    with pytest.raises(ValueError, match=r"needs 4 devices, but 1 are"):
        keras_rmt.distribution.device_mesh((2, 2))


@only_on("tensorflow")
def test_mirrored_strategy_on_2_devices_trains_like_one(trained):
    report, _ = trained
    assert report["replicas"] == 2
    assert report["weight_devices"] == [
        "/job:localhost/replica:0/task:0/device:CPU:0",
        "/job:localhost/replica:0/task:0/device:CPU:1",
    ]
    assert_trains_like_one_device(report, "mirrored")


@only_on("tensorflow")
def test_causal_lm_task_under_mirrored_strategy_trains_like_one(trained):
    report, _ = trained
    assert_trains_like_one_device(report, "task_mirrored", single="task_single")


@only_on("tensorflow")
def test_clear_error_for_batch_under_strategy(trained):
    report, _ = trained
    assert report["batch_error"] == (
        "The global batch size must be a multiple of the data-parallel "
        "size, 2, so that each replica gets the same number of rows. "
        "Use batch_size=2 or 4. Received: batch_size=3"
    )


@not_on("jax")
def test_device_mesh_needs_keras_distribution_on_jax():
    message = (
        "`keras_rmt.distribution.device_mesh` builds a "
        "`keras.distribution` setup, which keras-rmt supports on the JAX "
        "backend. On TensorFlow use a `tf.distribute` strategy "
        "(docs/distributed.md); the torch backend has no "
        f"`keras.distribution` support. Received: backend='{BACKEND}'"
    )
    with pytest.raises(ValueError, match=re.escape(message)):
        keras_rmt.distribution.device_mesh((1, 1))
