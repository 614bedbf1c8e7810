"""A Functional RMT classifier on the last token, shared by several tests.

Run as a script, it checks weights saved under another backend:
`python recall_model.py WEIGHTS EXPECTED.npz`.
"""

import sys

import keras
import keras_hub
import numpy as np

import keras_rmt


def build_recall_model(carry_memory=True, num_keys=8, seed=1):
    keras.utils.set_random_seed(seed)
    backbone = keras_hub.models.GPT2Backbone(
        vocabulary_size=16,
        num_layers=1,
        num_heads=2,
        hidden_dim=32,
        intermediate_dim=64,
        dropout=0.0,
        max_sequence_length=16,
    )
    rmt = keras_rmt.layers.RecurrentSegments(
        backbone,
        memory=keras_rmt.layers.MemoryTokens(num_tokens=2),
        segment_length=4,
        carry_memory=carry_memory,
    )
    inputs = {
        "token_ids": keras.Input((None,), dtype="int32", name="token_ids"),
        "padding_mask": keras.Input(
            (None,), dtype="int32", name="padding_mask"
        ),
    }
    last_token = rmt(inputs)["sequence_output"][:, -1]
    logits = keras.layers.Dense(num_keys, name="head")(last_token)
    return keras.Model(inputs, logits)


if __name__ == "__main__":
    weights, expected = sys.argv[1:]
    data = np.load(expected)
    model = build_recall_model()
    model.load_weights(weights)
    got = model.predict(
        {"token_ids": data["token_ids"], "padding_mask": data["padding_mask"]},
        verbose=0,
    )
    error = float(np.abs(got - data["logits"]).max())
    print(f"max abs difference under {keras.backend.backend()}: {error:.2e}")
    sys.exit(0 if error < 1e-4 else 1)
