"""The example scripts run (tiny settings) and report what they measured.

Each test runs a script as `python examples/NAME.py ...` would (`runpy`, in
this process to spare the imports) and checks the JSON it writes against
the table it prints.

The scripts run on one backend, torch (the streaming one on TensorFlow,
where its export needs no second process). What a smoke test pins is the
script: it runs, and what it writes is what it prints. The library calls
the scripts make (the tasks and their preprocessors, `fit`, `evaluate`,
`SegmentLosses`, `SegmentCurriculum`, export and the REST server) are
tested on every backend by the library's own tests. A script run again
under TensorFlow and JAX would pin nothing more, and costs most there:
each script traces and compiles its models (`tf.function`, XLA), where
torch runs the same code op by op in a fraction of the time. From torch
the streaming example would export through `python -m keras_rmt export`, a
TensorFlow process of its own whose imports cost more than the script: it
runs under TensorFlow, and the command's path is tested by
tests/test_export.py and tests/test_cli.py.
"""

import importlib
import json
import os
import pkgutil
import re
import runpy
import sys

import keras
import pytest

EXAMPLES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
EXAMPLES = os.path.join(EXAMPLES, "examples")
# See the module docstring.
ON_TORCH_ONLY = pytest.mark.skipif(
    keras.backend.backend() != "torch",
    reason="An example script runs once, on torch (the module docstring "
    "says why).",
)

# The streaming example exports its SavedModel: from TensorFlow in this
# process, where torch would start `python -m keras_rmt export` (a
# TensorFlow process of its own, whose path tests/test_export.py runs).
ON_TENSORFLOW_ONLY = pytest.mark.skipif(
    keras.backend.backend() != "tensorflow",
    reason="The streaming example runs once, on TensorFlow (it exports "
    "there in this process).",
)


def _run(script, tmp_path, capsys, monkeypatch, *arguments, smoke=True):
    flags = ["--smoke-test", "--verbose", "0"] if smoke else []
    argv = [script, *flags, "--output-dir", str(tmp_path), *arguments]
    monkeypatch.setattr(sys, "argv", argv)
    runpy.run_path(os.path.join(EXAMPLES, script), run_name="__main__")
    return capsys.readouterr().out


def _written(tmp_path, name):
    written = json.loads((tmp_path / f"{name}.json").read_text())
    assert (tmp_path / f"{name}.png").read_bytes()[:4] == b"\x89PNG"
    return written


def _printed_row(out, kind):
    """`{segments: accuracy}` as printed on the final table's `kind` row."""
    (line,) = [x for x in out.splitlines() if x.startswith(f"  {kind} ")]
    return {n: float(v) for n, v in re.findall(r"(\d+): ([\d.]+)", line)}


def _rounded(by_count):
    return {n: round(v, 3) for n, v in by_count.items()}


@ON_TORCH_ONLY
def test_demo_writes_results_and_plot(tmp_path, capsys, monkeypatch):
    out = _run(
        "first_token_recall.py", tmp_path, capsys, monkeypatch,
        "--epochs", "1", "--train-samples", "128", smoke=False,
    )  # fmt: skip
    written = json.loads((tmp_path / "results.json").read_text())
    assert set(written) == {"RMT", "no memory"}
    assert (tmp_path / "accuracy.png").read_bytes()[:4] == b"\x89PNG"
    for name, result in written.items():
        assert 0.0 <= result["test_accuracy"] <= 1.0
        assert f"{name:<10} {result['test_accuracy']:>14.3f}" in out


@ON_TORCH_ONLY
def test_copy_reverse_writes_accuracy_by_segments_and_plot(
    tmp_path, capsys, monkeypatch
):
    out = _run(
        "copy_reverse.py", tmp_path, capsys, monkeypatch,
        "--task", "copy", "--segments", "2",
    )  # fmt: skip
    written = _written(tmp_path, "copy4")
    accuracy = written["test_accuracy"]
    assert accuracy.keys() == {"RMT", "no memory", "full attention"}
    assert accuracy["RMT"].keys() == {"2"}
    assert accuracy["full attention"].keys() == {"1"}
    # 4 symbols read, 8 written: rows of 12 tokens, 6 a segment.
    assert written["runs"]["RMT"][0]["segment_length"] == 6
    assert written["runs"]["full attention"][0]["segment_length"] == 12
    # The smoke test's one epoch counts for every model, the quick mode's
    # `baseline_epochs` included.
    for kind in accuracy:
        assert written["runs"][kind][0]["epochs_run"] == 1
    for kind, by_count in accuracy.items():
        assert _printed_row(out, kind) == _rounded(by_count)


@ON_TORCH_ONLY
def test_associative_retrieval_writes_accuracy_and_plot(
    tmp_path, capsys, monkeypatch
):
    out = _run(
        "associative_retrieval.py", tmp_path, capsys, monkeypatch,
        "--segments", "3",
    )  # fmt: skip
    written = _written(tmp_path, "associative_retrieval")
    assert written["input_length"] == 6  # 2 pairs, "?", the key asked
    assert written["test_accuracy"]["no memory"].keys() == {"3"}
    assert written["runs"]["RMT"][0]["segment_length"] == 2
    for kind, by_count in written["test_accuracy"].items():
        assert _printed_row(out, kind) == _rounded(by_count)


@ON_TORCH_ONLY
def test_facts_in_noise_reads_past_training_length(
    tmp_path, capsys, monkeypatch
):
    out = _run(
        "facts_in_noise.py", tmp_path, capsys, monkeypatch,
        "--epochs", "2", "--train-segments", "2", "--select-segments", "3",
        "--eval-segments", "1", "4",
    )  # fmt: skip
    written = _written(tmp_path, "facts_in_noise")
    assert written["test_accuracy"].keys() == {"RMT", "no memory"}
    assert written["test_accuracy"]["RMT"].keys() == {"1", "4"}
    run = written["runs"]["RMT"]
    assert run["segments_by_epoch"] == [1, 1]  # 2 epochs, no growth yet
    # The weights kept are the epoch's with the lowest validation loss.
    assert run["val_loss"][run["kept_epoch"] - 1] == min(run["val_loss"])
    for kind, by_count in written["test_accuracy"].items():
        assert _printed_row(out, kind) == _rounded(by_count)


@ON_TORCH_ONLY
def test_language_modelling_writes_perplexity_by_segment(
    tmp_path, capsys, monkeypatch
):
    out = _run("language_modelling.py", tmp_path, capsys, monkeypatch)
    written = _written(tmp_path, "language_modelling")
    by_segment = written["perplexity_by_segment"]
    assert by_segment.keys() == {"RMT", "no memory", "full attention"}
    for kind, values in by_segment.items():
        # One perplexity per segment index, from SegmentLosses.
        assert values.keys() == {"1", "2", "3", "4"}
        assert all(1.0 < v < 256.0 for v in values.values())
        line = [x for x in out.splitlines() if x.startswith(f"  {kind} ")]
        assert line[0].split()[-6:-2] == [f"{v:.2f}" for v in values.values()]


@ON_TORCH_ONLY
def test_text_classification_fits_raw_strings_through_a_local_preset(
    tmp_path, capsys, monkeypatch
):
    out = _run(
        "text_classification.py", tmp_path, capsys, monkeypatch,
        "--set", "segment_length=8", "num_segments=2",
    )  # fmt: skip
    written = _written(tmp_path, "text_classification")
    accuracy = written["test_accuracy"]
    kinds = ["RMT", "no memory", "full attention"]
    assert list(accuracy) == kinds
    assert written["test_articles"] == 8  # the smoke test's test_samples
    assert written["chance"] == 0.2  # five categories
    cells = " | ".join(f"{accuracy[kind]:.3f}" for kind in kinds)
    assert f"| test accuracy | {cells} |" in out.splitlines()
    # The classifiers came from a preset holding a BERT and the WordPiece
    # vocabulary built from the articles: reserved tokens, then pieces.
    preset = tmp_path / "bert_preset"
    assert json.loads((preset / "config.json").read_text())["class_name"] == (
        "BertBackbone"
    )
    vocabulary = preset / "assets" / "tokenizer" / "vocabulary.txt"
    words = vocabulary.read_text().split()
    assert len(words) == written["vocabulary_size"] == 2000
    assert words[:5] == ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    assert "##e" in words and "the" in words


@pytest.mark.backend_independent
def test_set_names_a_setting_the_example_does_not_have(
    tmp_path, capsys, monkeypatch
):
    with pytest.raises(SystemExit, match="Received: nope=1; settings: "):
        _run(
            "associative_capacity.py", tmp_path, capsys, monkeypatch,
            "--quick", "--set", "nope=1", smoke=False,
        )  # fmt: skip


@pytest.mark.backend_independent
def test_plot_draws_an_earlier_run_and_trains_nothing(
    tmp_path, capsys, monkeypatch
):
    earlier = {
        "name": "earlier", "title": "t", "xlabel": "x", "ylabel": "y",
        "curves": {"RMT": {"2": 0.5, "4": 0.25}}, "chance": 0.1,
        "log_x": True, "marks": {"trained length": 2},
    }  # fmt: skip
    (tmp_path / "earlier.json").write_text(json.dumps(earlier))
    with pytest.raises(SystemExit) as exit:
        _run(
            "associative_extrapolation.py", tmp_path, capsys, monkeypatch,
            "--plot", str(tmp_path / "earlier.json"), smoke=False,
        )  # fmt: skip
    assert exit.value.code == 0
    assert (tmp_path / "earlier.png").read_bytes()[:4] == b"\x89PNG"
    assert not (tmp_path / "associative_extrapolation.json").exists()


@ON_TENSORFLOW_ONLY
def test_streaming_example_matches_one_serve_call(tmp_path):
    import serve_streaming

    report = serve_streaming.main(
        # No training: the test is about serving.
        ["--segments", "6", "--samples", "4", "--epochs", "0"]
        + ["--train-samples", "64", "--output-dir", str(tmp_path)]
    )
    assert report["segments"] == 6
    assert report["max_logits_difference"] <= 1e-5
    assert report["max_memory_difference"] <= 1e-5
    assert (tmp_path / "saved_model" / "saved_model.pb").exists()


TINY = [
    "hidden_dim=16", "num_layers=1", "num_heads=2", "batch_size=8",
    "steps_per_epoch=2", "steps=2", "seconds=null", "key_dim=4",
]  # fmt: skip


def _table_rows(output):
    return [line for line in output.splitlines() if line.startswith("| ")]


@ON_TORCH_ONLY
def test_associative_capacity_prints_a_row_per_pair_count(tmp_path, capsys):
    import associative_capacity

    summary = associative_capacity.main(
        ["--quick", "--output-dir", str(tmp_path), "--set", *TINY]
        + ["pairs=1,2", "test_samples=16"]
    )
    rows = _table_rows(capsys.readouterr().out)
    assert [row.split(" | ")[0] for row in rows[2:]] == ["| 1", "| 2"]
    written = json.loads((tmp_path / "associative_capacity.json").read_text())
    assert written["accuracy"] == summary["accuracy"]
    assert set(written["accuracy"]) == {"RMT", "ARMT"}
    for by_pairs in written["accuracy"].values():
        assert set(by_pairs) == {"1", "2"}
        assert all(0.0 <= value <= 1.0 for value in by_pairs.values())
    assert written["runs"]["ARMT 2"]["steps"] == 2
    assert (tmp_path / "associative_capacity.png").read_bytes()[:4] == (
        b"\x89PNG"
    )


@ON_TORCH_ONLY
def test_associative_extrapolation_reads_multiples_of_trained_length(
    tmp_path, capsys
):
    import associative_extrapolation

    summary = associative_extrapolation.main(
        ["--quick", "--output-dir", str(tmp_path), "--set", *TINY]
        + ["segment_length=12", "num_facts=1", "train_segments=1"]
        + ["lengths=1,3", "test_samples=8", "eval_batch=8"]
    )
    rows = _table_rows(capsys.readouterr().out)
    assert [row.split(" | ")[0] for row in rows[2:]] == [
        "| 1x (12 words)",
        "| 3x (36 words)",
    ]
    name = "associative_extrapolation"
    written = json.loads((tmp_path / f"{name}.json").read_text())
    assert written["accuracy"] == summary["accuracy"]
    assert set(written["accuracy"]) == {"ARMT", "RMT", "no memory"}
    for by_length in written["accuracy"].values():
        assert set(by_length) == {"1", "3"}
        assert all(0.0 <= value <= 1.0 for value in by_length.values())
    assert (tmp_path / f"{name}.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.backend_independent
@pytest.mark.parametrize(
    "package",
    [
        f"keras_rmt.{module.name}"
        for module in pkgutil.iter_modules(
            [os.path.join(EXAMPLES, "..", "keras_rmt")]
        )
        if module.ispkg
    ]
    + ["tasks"],
)
def test_importing_a_submodule_gives_the_module_not_a_function(package):
    parent = importlib.import_module(package)
    names = [m.name for m in pkgutil.iter_modules(parent.__path__)]
    assert names  # segmented_dataset; the tasks
    for name in names:
        module = importlib.import_module(f"{package}.{name}")
        assert getattr(parent, name, module) is module, name
    # The shape of the old defect, spelt out.
    import tasks.facts_in_noise as m

    assert m.__name__ == "tasks.facts_in_noise"
