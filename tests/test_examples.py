import json

import first_token_recall


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
