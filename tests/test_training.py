import json

import first_token_recall
import keras
import numpy as np
from conftest import random_batch
from first_token_recall import build_model


def test_fit_learns_recall_with_memory_and_not_without(tmp_path):
    # The demo script as `make demo` runs it (2,048 samples, 6 epochs), so
    # the same run checks what it learns and what it writes.
    results = first_token_recall.main(["--output-dir", str(tmp_path)])
    assert results["RMT"]["test_accuracy"] >= 0.95
    # 8 keys: chance is 0.125.
    assert results["no memory"]["test_accuracy"] <= 0.25
    written = json.loads((tmp_path / "results.json").read_text())
    assert set(written) == {"RMT", "no memory"}
    for name, result in results.items():
        assert written[name]["test_accuracy"] == result["test_accuracy"]
    assert (tmp_path / "accuracy.png").read_bytes()[:4] == b"\x89PNG"


class _VaryingLengths(keras.utils.PyDataset):
    """Batches of 6, 9 and 13 tokens: the model sees a new length each step."""

    def __init__(self):
        super().__init__()
        self.batches = []
        for index, length in enumerate([6, 9, 13] * 4):
            batch = random_batch(8, length, seed=index, lengths=[length - 2])
            batch["token_ids"] = batch["token_ids"] % 16
            self.batches.append((batch, batch["token_ids"][:, 0] % 8))

    def __len__(self):
        return len(self.batches)

    def __getitem__(self, index):
        return self.batches[index]


def test_fit_and_predict_on_batches_of_different_lengths():
    model = build_model()
    history = model.fit(_VaryingLengths(), epochs=3, verbose=0)
    losses = history.history["loss"]
    assert losses[-1] < losses[0]
    for batch, _ in _VaryingLengths().batches[:3]:
        np.testing.assert_allclose(
            model.predict(batch, verbose=0),
            keras.ops.convert_to_numpy(model(batch)),
            atol=1e-5,
        )
