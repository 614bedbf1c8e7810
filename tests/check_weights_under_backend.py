"""Checks weights saved under another backend, in a process of its own.

`python check_weights_under_backend.py IN_PREFIX OUT_PREFIX SEED` rebuilds
`recall_model()`, loads the weights saved at IN_PREFIX and compares its
logits with the saved ones, then saves the weights and logits of a model
made with SEED. The tests import `recall_model` from here too.
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


def save_weights_and_logits(model, inputs, prefix):
    """Writes `PREFIX.weights.h5` and `PREFIX.npz` (the inputs and logits)."""
    import keras

    # Called, not `predict`: the first `predict` of a model traces it, which
    # costs more than the call on every backend.
    logits = keras.ops.convert_to_numpy(model(inputs))
    model.save_weights(f"{prefix}.weights.h5")
    np.savez(f"{prefix}.npz", logits=logits, **inputs)


def max_difference_after_loading(model, prefix):
    """Loads `PREFIX.weights.h5`; the largest difference from its logits."""
    import keras

    data = np.load(f"{prefix}.npz")
    model.load_weights(f"{prefix}.weights.h5")
    inputs = {name: data[name] for name in ("token_ids", "padding_mask")}
    got = keras.ops.convert_to_numpy(model(inputs))
    return float(np.abs(got - data["logits"]).max())


if __name__ == "__main__":
    # check_weights_under_backend.py IN_PREFIX OUT_PREFIX SEED: checks the
    # weights saved at IN_PREFIX, then saves those of a model made with
    # SEED, on the same inputs, at OUT_PREFIX.
    import keras

    source, target, seed = sys.argv[1:]
    error = max_difference_after_loading(recall_model(), source)
    print(f"max abs difference under {keras.backend.backend()}: {error:.2e}")
    if error >= 1e-4:
        sys.exit(1)
    inputs = dict(np.load(f"{source}.npz"))
    del inputs["logits"]
    save_weights_and_logits(recall_model(seed=int(seed)), inputs, target)
