"""Training the paper examples' models: data, curriculum, stopping, scoring."""

import time

import keras
import numpy as np

import keras_rmt


class StopAt(keras.callbacks.Callback):
    """Stops training once `monitor` reaches `target` or time runs out."""

    def __init__(self, monitor="val_accuracy", target=None, seconds=None):
        super().__init__()
        self.monitor = monitor
        self.target = target
        self.seconds = seconds
        self.reason = "epochs"

    def on_train_begin(self, logs=None):
        self.start = time.time()

    def on_epoch_end(self, epoch, logs=None):
        value = (logs or {}).get(self.monitor)
        if self.target is not None and value is not None:
            if value >= self.target:
                self.reason = f"{self.monitor} reached {self.target}"
                self.model.stop_training = True
        if self.seconds is not None and time.time() - self.start > self.seconds:
            self.reason = f"time budget of {self.seconds:.0f} s"
            self.model.stop_training = True


def keep_best(epochs, monitor="val_loss"):
    """Keras' `EarlyStopping` set never to stop, only to keep the best.

    When training ends it restores the weights of the epoch with the
    lowest `monitor` (ties keep the earlier epoch); `best_epoch` names it.
    `epochs` is the most that training can run, so patience never ends it.
    """
    return keras.callbacks.EarlyStopping(
        monitor=monitor, mode="min", patience=epochs, restore_best_weights=True
    )


def train(
    model,
    data,
    validation,
    epochs,
    target=None,
    seconds=None,
    callbacks=(),
    verbose=1,
):
    """Fits with Keras' progress bars; returns the history and timings."""
    stop = StopAt("val_accuracy", target, seconds)
    start = time.time()
    history = model.fit(
        data,
        validation_data=validation,
        epochs=epochs,
        callbacks=[stop, *callbacks],
        verbose=verbose,
    )
    return {
        "history": {
            k: [float(v) for v in vs] for k, vs in history.history.items()
        },
        "epochs_run": len(history.history["loss"]),
        "stopped_because": stop.reason,
        "train_seconds": time.time() - start,
    }


def accuracy(model, data, batch_size=128):
    """Weighted token accuracy of `model` on `(inputs, labels, weight)`."""
    inputs, labels, weight = data
    logits = model.predict(inputs, batch_size=batch_size, verbose=0)
    right = np.argmax(logits, axis=-1) == labels
    return float(np.sum(right * weight) / np.sum(weight))


def curriculum_data(generate, num_segments, length, config, seed):
    """Training data growing from 1 segment's share of the task to all.

    Returns `(data, callbacks)`: a `keras_rmt.datasets.SegmentedDataset`
    whose batch for `k` segments holds `generate(..., share=k /
    num_segments)` rows, each batch drawing `k` from 1 to the current stage
    (`vary_n_segments`), left-padded to `length` so that every batch has one
    shape and the task ends in the last segment; and the
    `keras_rmt.callbacks.SegmentCurriculum` that grows the stage (none for
    one segment).
    """

    def make_batch(size, stage, rng):
        seed = int(rng.integers(2**31))
        rows = generate(size, seed, share=stage / num_segments)
        return left_pad(rows, length)

    data = keras_rmt.datasets.SegmentedDataset(
        make_batch,
        batch_size=config["batch_size"],
        num_batches=config["steps_per_epoch"],
        segment_length=1,
        vary_n_segments=True,
        seed=seed,
    )
    if num_segments == 1:
        return data, []
    grow = keras_rmt.callbacks.SegmentCurriculum(
        data,
        max_segments=num_segments,
        monitor="accuracy",
        target=config.get("grow_at", 0.95),
        patience=config.get("patience", 5),
        verbose=1,
    )
    return data, [grow]


def left_pad(rows, length):
    """`(inputs, labels, sample_weight)` with padding put before each row."""
    inputs, *targets = rows
    width = length - inputs["token_ids"].shape[1]

    def pad(x):
        return np.pad(x, [(0, 0), (width, 0)])

    return ({k: pad(v) for k, v in inputs.items()}, *map(pad, targets))
