import json

import first_token_recall
import pytest
import serve_streaming


def test_demo_writes_results_and_plot(tmp_path):
    results = first_token_recall.main(
        [
            "--epochs",
            "1",
            "--train-samples",
            "128",
            "--output-dir",
            str(tmp_path),
        ]
    )
    written = json.loads((tmp_path / "results.json").read_text())
    assert set(written) == {"RMT", "no memory"}
    assert written["RMT"]["test_accuracy"] == results["RMT"]["test_accuracy"]
    assert (tmp_path / "accuracy.png").read_bytes()[:4] == b"\x89PNG"


def _smoke(module, tmp_path, *extra):
    return module.main(
        ["--smoke-test", "--verbose", "0", "--output-dir", str(tmp_path)]
        + list(extra)
    )


def _written(tmp_path, name):
    written = json.loads((tmp_path / f"{name}.json").read_text())
    assert (tmp_path / f"{name}.png").read_bytes()[:4] == b"\x89PNG"
    return written


def test_copy_reverse_writes_accuracy_by_segments_and_plot(tmp_path):
    import copy_reverse

    results = _smoke(
        copy_reverse, tmp_path, "--task", "copy", "--segments", "2"
    )
    written = _written(tmp_path, "copy4")
    assert set(written["test_accuracy"]) == {
        "RMT",
        "no memory",
        "full attention",
    }
    assert set(written["test_accuracy"]["RMT"]) == {"2"}
    assert written["test_accuracy"] == results["copy"]["test_accuracy"]
    assert written["runs"]["RMT"][0]["segment_length"] == 6


@pytest.mark.backend_independent
def test_curriculum_data_grows_the_task_share_inside_one_shape():
    import example_training
    import numpy as np

    import keras_rmt

    def generate(num_samples, seed, share=1.0):
        source = max(1, int(6 * share))
        return keras_rmt.datasets.copy_sequence(
            num_samples, source, 2 * source, seed=seed
        )

    config = {"batch_size": 4, "steps_per_epoch": 2}
    data, callbacks = example_training.curriculum_data(
        generate, 3, 18, config, 0
    )
    (grow,) = callbacks
    assert grow.max_segments == 3
    for stage, sources in [(1, {2}), (3, {2, 4, 6})]:
        data.num_segments = stage
        seen = set()
        for index in range(len(data)):
            inputs, labels, weight = data[index]
            assert inputs["token_ids"].shape == (4, 18)
            real = int(inputs["padding_mask"][0].sum())
            seen.add(real // 3)  # source + separator + 2 x source - 1
            # Left-padded: padding first, then one whole copy row.
            ids = inputs["token_ids"][0]
            np.testing.assert_array_equal(ids[: 18 - real], 0)
            assert ids[18 - real + real // 3] == 1  # the separator
            assert weight[0].sum() == 2 * (real // 3)
            assert (weight[:, : 18 - real] == 0).all()
        assert seen <= sources
    data, callbacks = example_training.curriculum_data(
        generate, 1, 18, config, 0
    )
    assert callbacks == []
    assert data[0][0]["padding_mask"].sum() == 4 * 18


def test_build_model_redraws_the_backbone_weights_at_the_scale_given():
    import example_models
    import keras_hub
    import numpy as np

    def backbone_weights(**scales):
        model = example_models.build_model(
            "full attention", 40, 8, 2, hidden_dim=32, num_layers=2,
            max_length=16, **scales,
        )  # fmt: skip
        (backbone,) = [
            layer
            for layer in model.layers
            if isinstance(layer, keras_hub.models.Backbone)
        ]
        found = {}
        for weight in backbone.weights:
            found.setdefault(weight.name, []).append(np.asarray(weight))
        return {
            k: np.concatenate([v.ravel() for v in vs])
            for k, vs in found.items()
        }

    redrawn = backbone_weights(kernel_stddev=0.5, embedding_stddev=1.0)
    kept = backbone_weights()
    np.testing.assert_allclose(redrawn["kernel"].std(), 0.5, rtol=0.05)
    np.testing.assert_allclose(redrawn["embeddings"].std(), 1.0, rtol=0.05)
    assert kept["kernel"].std() < 0.05  # keras-hub's GPT-2: 0.02
    # Biases and layer norms keep their initial values.
    np.testing.assert_array_equal(redrawn["bias"], kept["bias"])
    np.testing.assert_array_equal(redrawn["gamma"], kept["gamma"])


@pytest.mark.backend_independent
def test_facts_batches_hold_one_to_num_facts_facts_when_varied():
    import facts_in_noise
    import numpy as np

    import keras_rmt

    went = keras_rmt.datasets.facts_in_noise.VOCABULARY.index("went")

    def generate(num_samples, num_segments, seed, num_facts=None):
        return keras_rmt.datasets.facts_in_noise(
            num_samples, num_segments, segment_length=24,
            num_facts=num_facts or 3, num_people=1, seed=seed,
        )  # fmt: skip

    def facts_per_batch(vary):
        config = {"num_facts": 3, "vary_num_facts": vary}
        make_batch = facts_in_noise.batch_maker(config, generate)
        rng = np.random.default_rng(0)
        counts = []
        for _ in range(30):
            inputs, _, _ = make_batch(4, 2, rng)
            per_row = (inputs["token_ids"] == went).sum(axis=1)
            assert len(set(per_row)) == 1  # one count a batch
            counts.append(int(per_row[0]))
        return set(counts)

    assert facts_per_batch(vary=True) == {1, 2, 3}
    assert facts_per_batch(vary=False) == {3}


def test_associative_retrieval_writes_accuracy_and_plot(tmp_path):
    import associative_retrieval

    _smoke(associative_retrieval, tmp_path, "--segments", "3")
    written = _written(tmp_path, "associative_retrieval")
    assert written["input_length"] == 6  # 2 pairs, "?", the key asked
    assert set(written["test_accuracy"]["no memory"]) == {"3"}
    assert written["runs"]["RMT"][0]["segment_length"] == 2


def test_facts_in_noise_reads_past_training_length(tmp_path, monkeypatch):
    import facts_in_noise

    monkeypatch.setitem(facts_in_noise.QUICK, "select_segments", 3)
    _smoke(
        facts_in_noise, tmp_path, "--epochs", "2",
        "--train-segments", "2", "--eval-segments", "1", "4",
    )  # fmt: skip
    written = _written(tmp_path, "facts_in_noise")
    assert set(written["test_accuracy"]) == {"RMT", "no memory"}
    assert set(written["test_accuracy"]["RMT"]) == {"1", "4"}
    run = written["runs"]["RMT"]
    assert run["segments_by_epoch"] == [1, 1]  # 2 epochs, no growth yet
    losses = run["history"]["val_loss"]
    assert losses[run["kept_epoch"] - 1] == min(losses)


def test_keep_best_restores_the_lowest_loss_epoch_and_the_first_of_ties():
    import example_training
    import keras
    import numpy as np

    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    keep = example_training.keep_best(epochs=4)
    keep.set_model(model)
    keep.on_train_begin()
    seen = []
    for epoch, loss in enumerate([3.0, 1.0, 2.0, 1.0]):
        model.set_weights([w + 1.0 for w in model.get_weights()])
        seen.append(model.get_weights())
        keep.on_epoch_end(epoch, {"val_loss": loss})
    keep.on_train_end()
    assert keep.best_epoch == 1
    for kept, wanted in zip(model.get_weights(), seen[1]):
        np.testing.assert_array_equal(kept, wanted)


def test_language_modelling_writes_perplexity_by_segment(tmp_path):
    import language_modelling

    _smoke(language_modelling, tmp_path)
    written = _written(tmp_path, "language_modelling")
    by_segment = written["perplexity_by_segment"]
    assert set(by_segment) == {"RMT", "no memory", "full attention"}
    assert all(len(values) == 4 for values in by_segment.values())


def test_streaming_example_matches_one_serve_call(tmp_path):
    report = serve_streaming.main(
        # No training: the test is about serving.
        ["--segments", "6", "--samples", "4", "--epochs", "0"]
        + ["--train-samples", "64", "--output-dir", str(tmp_path)]
    )
    assert report["segments"] == 6
    assert report["max_logits_difference"] <= 1e-5
    assert report["max_memory_difference"] <= 1e-5
    assert (tmp_path / "saved_model" / "saved_model.pb").exists()


@pytest.mark.backend_independent
@pytest.mark.parametrize("package", ["keras_rmt.datasets", "tasks"])
def test_importing_a_submodule_gives_the_module_not_a_function(package):
    import importlib
    import pkgutil

    parent = importlib.import_module(package)
    names = [m.name for m in pkgutil.iter_modules(parent.__path__)]
    assert names  # segmented_dataset; the tasks
    for name in names:
        module = importlib.import_module(f"{package}.{name}")
        assert getattr(parent, name, module) is module, name
    # The shape of the old defect, spelt out.
    import tasks.facts_in_noise as m

    assert m.__name__ == "tasks.facts_in_noise"
