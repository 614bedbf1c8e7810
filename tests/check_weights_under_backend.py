"""Checks weights saved under another backend, in a process of its own.

`python check_weights_under_backend.py WEIGHTS EXPECTED.npz` rebuilds
`recall_model()`, loads the weights and compares its logits with the saved
ones. The tests import `recall_model` from here too.
"""

import os
import sys

import numpy as np

# This checkout's keras_rmt, wherever the script is started from.
sys.path.insert(
    0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
)


def recall_model(carry_memory=True, seed=1):
    """A Functional RMT classifier of first-token recall, any input length.

    A 1-layer GPT-2 read in segments of 4 tokens with 2 memory tokens; a
    dense head reads the last token and gives 8 logits.
    """
    import keras
    import keras_hub

    import keras_rmt

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
    logits = keras.layers.Dense(8, name="head")(last_token)
    model = keras.Model(inputs, logits)
    model.compile(
        optimizer=keras.optimizers.Adam(3e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    return model


if __name__ == "__main__":
    import keras

    weights, expected = sys.argv[1:]
    data = np.load(expected)
    model = recall_model()
    model.load_weights(weights)
    inputs = {name: data[name] for name in ("token_ids", "padding_mask")}
    got = keras.ops.convert_to_numpy(model(inputs))
    error = float(np.abs(got - data["logits"]).max())
    print(f"max abs difference under {keras.backend.backend()}: {error:.2e}")
    sys.exit(0 if error < 1e-4 else 1)
