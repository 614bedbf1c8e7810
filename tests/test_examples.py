import json

import first_token_recall
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


def test_streaming_example_matches_one_serve_call(tmp_path):
    report = serve_streaming.main(
        ["--segments", "6", "--samples", "4", "--epochs", "1"]
        + ["--train-samples", "64", "--output-dir", str(tmp_path)]
    )
    assert report["segments"] == 6
    assert report["max_logits_difference"] <= 1e-5
    assert report["max_memory_difference"] <= 1e-5
    assert (tmp_path / "saved_model" / "saved_model.pb").exists()
