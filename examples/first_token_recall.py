"""Train a small RMT to recall a token it saw segments ago.

Every input is 3 segments of 4 tokens; its label is its first token. A
`keras_rmt.models.RMTTextClassifier` reads the input segment by segment
through a small GPT-2 (built from its config, no download) and classifies
from the last segment's last token. With memory carried between segments
the model recalls the key; without (the memory-less baseline,
`carry_memory=False`) it can only guess.

Prints both accuracies, writes `results.json` and `accuracy.png` to
`--output-dir`. Runs on the CPU in about a minute with any Keras backend
(`KERAS_BACKEND=tensorflow|jax|torch`).
"""

import argparse
import json
import os
import time

import keras
import keras_hub
from tasks.first_token_recall import first_token_recall

import keras_rmt

NUM_KEYS = 8


def build_model(carry_memory=True, seed=1):
    """A compiled `RMTTextClassifier` over inputs of any length."""
    keras.utils.set_random_seed(seed)
    gpt2 = keras_hub.models.GPT2Backbone(
        vocabulary_size=16,
        num_layers=1,
        num_heads=2,
        hidden_dim=32,
        intermediate_dim=64,
        dropout=0.0,
        max_sequence_length=16,
    )
    backbone = keras_rmt.models.RMTBackbone(
        gpt2,
        num_memory_tokens=2,
        segment_length=4,
        carry_memory=carry_memory,
    )
    classifier = keras_rmt.models.RMTTextClassifier(
        backbone, num_classes=NUM_KEYS
    )
    classifier.compile(
        optimizer=keras.optimizers.Adam(3e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    return classifier


def train_and_evaluate(carry_memory, epochs, train, test, verbose=1):
    model = build_model(carry_memory)
    start = time.time()
    history = model.fit(
        *train,
        validation_data=test,
        batch_size=64,
        epochs=epochs,
        verbose=verbose,
    )
    return {
        "test_accuracy": float(model.evaluate(*test, verbose=0)[1]),
        "val_accuracy_by_epoch": history.history["val_accuracy"],
        "seconds": time.time() - start,
    }


def plot(results, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(6, 4))
    for name, result in results.items():
        curve = result["val_accuracy_by_epoch"]
        axis.plot(range(1, len(curve) + 1), curve, marker="o", label=name)
    axis.axhline(1 / NUM_KEYS, color="gray", linestyle=":", label="chance")
    axis.set_xlabel("epoch")
    axis.set_ylabel("test accuracy")
    axis.set_ylim(0, 1.05)
    axis.set_title("Recall the first token from the last of 3 segments")
    axis.legend()
    figure.tight_layout()
    figure.savefig(path)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--train-samples", type=int, default=2048)
    parser.add_argument("--output-dir", default="demo_output")
    args = parser.parse_args(argv)

    train = first_token_recall(args.train_samples, seed=0)
    test = first_token_recall(512, seed=1)
    results = {}
    for name, carry_memory in [("RMT", True), ("no memory", False)]:
        print(f"== {name} ({keras.backend.backend()} backend) ==")
        results[name] = train_and_evaluate(
            carry_memory, args.epochs, train, test
        )
    os.makedirs(args.output_dir, exist_ok=True)
    with open(os.path.join(args.output_dir, "results.json"), "w") as file:
        json.dump(results, file, indent=2)
    plot(results, os.path.join(args.output_dir, "accuracy.png"))
    print(f"\n{'model':<10} {'test accuracy':>14} {'seconds':>8}")
    for name, result in results.items():
        print(
            f"{name:<10} {result['test_accuracy']:>14.3f} "
            f"{result['seconds']:>8.1f}"
        )
    print(f"chance     {1 / NUM_KEYS:>14.3f}")
    print(f"wrote {args.output_dir}/results.json and accuracy.png")
    return results


if __name__ == "__main__":
    main()
