"""Associative retrieval with more pairs than memory tokens: ARMT vs RMT.

The capacity experiment of the ARMT paper (Rodkin et al., 2024): a row
lists key-value pairs, one pair per segment, then a segment holding a query
marker and one of the keys; the model answers the key's value. Both models
have the same few memory tokens. The RMT must squeeze every pair into those
tokens; the ARMT writes each segment into every layer's associative matrix,
which holds far more pairs than it has memory tokens. Chance is
1 / values.

Usage: `python examples/associative_capacity.py --quick` (CPU, minutes).
Prints one line per (pairs, model): accuracy on fresh rows.
"""

import argparse
import time

import keras
import keras_hub
import numpy as np

import keras_rmt

QUICK = {
    "pairs": [4, 8], "num_memory_tokens": 2, "key_dim": 16,
    "hidden_dim": 64, "num_layers": 2, "num_heads": 4, "batch_size": 32,
    "steps": 300, "learning_rate": 2e-3, "test_samples": 256,
}  # fmt: skip
FULL = {
    "pairs": [8, 16, 32, 64], "num_memory_tokens": 4, "key_dim": 32,
    "hidden_dim": 128, "num_layers": 4, "num_heads": 4, "batch_size": 128,
    "steps": 5000, "learning_rate": 1e-3, "test_samples": 1024,
}  # fmt: skip


def build(config, num_pairs, associative, seed):
    keras.utils.set_random_seed(seed)
    gpt2 = keras_hub.models.GPT2Backbone(
        vocabulary_size=2 + 2 * num_pairs + num_pairs,
        num_layers=config["num_layers"],
        num_heads=config["num_heads"],
        hidden_dim=config["hidden_dim"],
        intermediate_dim=4 * config["hidden_dim"],
        max_sequence_length=2 + 2 * config["num_memory_tokens"],
        dropout=0.0,
    )
    backbone = keras_rmt.models.RMTBackbone(
        gpt2,
        num_memory_tokens=config["num_memory_tokens"],
        segment_length=2,
        associative_key_dim=config["key_dim"] if associative else None,
    )
    model = keras_rmt.models.RMTCausalLM(backbone)
    model.compile(
        optimizer=keras.optimizers.Adam(config["learning_rate"]),
        segment_metrics=None,
    )
    return model


def data(config, num_pairs, samples, seed):
    # Twice as many keys as pairs; as many values as pairs.
    return keras_rmt.datasets.associative_retrieval(
        samples,
        num_pairs=num_pairs,
        num_keys=2 * num_pairs,
        num_values=num_pairs,
        seed=seed,
    )


def accuracy(model, inputs, labels):
    logits = model.predict(inputs, batch_size=128, verbose=0)
    return float(np.mean(logits[:, -1].argmax(-1) == labels[:, -1]))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", type=int, default=None)
    args = parser.parse_args(argv)
    config = dict(QUICK if args.quick else FULL)
    if args.steps is not None:
        config["steps"] = args.steps
    results = []
    for num_pairs in config["pairs"]:
        samples = config["batch_size"] * config["steps"]
        inputs, labels, weight = data(config, num_pairs, samples, args.seed)
        test = data(config, num_pairs, config["test_samples"], args.seed + 1)
        for name, associative in (("RMT", False), ("ARMT", True)):
            model = build(config, num_pairs, associative, args.seed)
            start = time.time()
            model.fit(
                inputs,
                labels,
                sample_weight=weight,
                batch_size=config["batch_size"],
                epochs=1,
                verbose=0,
            )
            score = accuracy(model, test[0], test[1])
            seconds = time.time() - start
            results.append((num_pairs, name, score))
            print(
                f"pairs={num_pairs:3d} memory_tokens="
                f"{config['num_memory_tokens']} {name:4s} "
                f"accuracy={score:.3f} chance={1 / num_pairs:.3f} "
                f"({seconds:.0f} s)",
                flush=True,
            )
    return results


if __name__ == "__main__":
    main()
