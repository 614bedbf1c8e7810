"""Checks weights saved under another backend, in a process of its own.

`python check_weights_under_backend.py WEIGHTS EXPECTED.npz` rebuilds the
example's model, loads the weights and compares its logits with the saved
ones.
"""

import os
import sys

import numpy as np

sys.path.insert(
    0,
    os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "examples"),
)
from first_token_recall import build_model  # noqa: E402

if __name__ == "__main__":
    import keras

    weights, expected = sys.argv[1:]
    data = np.load(expected)
    model = build_model()
    model.load_weights(weights)
    got = model.predict(
        {"token_ids": data["token_ids"], "padding_mask": data["padding_mask"]},
        verbose=0,
    )
    error = float(np.abs(got - data["logits"]).max())
    print(f"max abs difference under {keras.backend.backend()}: {error:.2e}")
    sys.exit(0 if error < 1e-4 else 1)
