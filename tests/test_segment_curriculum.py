import re

import keras
import numpy as np
import pytest
from conftest import build_optimizer, make_backbone, text_inputs, wrap_rmt

from keras_rmt.callbacks import SegmentCurriculum
from keras_rmt.datasets import SegmentedDataset


class _Recorded(SegmentedDataset):
    """Remembers the width of every batch made during `fit`, by epoch."""

    def __init__(self, **kwargs):
        super().__init__(self._make, **kwargs)
        self.widths = {}
        self.fit_epoch = None  # Set by _EpochOf; None before fit's epochs.

    def _make(self, batch_size, num_segments, rng):
        if self.fit_epoch is not None:
            self.widths.setdefault(self.fit_epoch, set()).add(num_segments)
        token_ids = rng.integers(3, 64, (batch_size, 4 * num_segments))
        token_ids = token_ids.astype("int32")
        inputs = {
            "token_ids": token_ids,
            "padding_mask": np.ones_like(token_ids),
        }
        return inputs, token_ids[:, :1] % 2


class _EpochOf(keras.callbacks.Callback):
    def __init__(self, data):
        super().__init__()
        self.data = data

    def on_epoch_begin(self, epoch, logs=None):
        self.data.fit_epoch = epoch


class _Data:
    num_segments = 1


def _model():
    # One block: what the curriculum changes is the data, not the model.
    rmt = wrap_rmt(make_backbone("gpt2", num_layers=1), segment_length=4)
    inputs = text_inputs()
    # Position 3 holds a real token in every batch: pad_to pads at the end.
    last = rmt(inputs)["sequence_output"][:, 3]
    model = keras.Model(inputs, keras.layers.Dense(2)(last))
    model.compile(
        "adam",
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    return build_optimizer(model)


# Compiled: the curriculum's path as users run it, one traced function for
# every epoch's batches on TensorFlow.
@pytest.mark.compiled
def test_fit_sees_the_scheduled_number_of_segments_each_epoch():
    # One input shape (TensorFlow's fit needs it; JAX compiles once); the
    # widths recorded are those made before padding.
    data = _Recorded(batch_size=2, num_batches=2, segment_length=4, pad_to=3)
    curriculum = SegmentCurriculum(data, max_segments=3, schedule=[1, 1, 2, 3])
    history = _model().fit(
        data, epochs=5, callbacks=[curriculum, _EpochOf(data)], verbose=0
    )
    assert data.widths == {0: {1}, 1: {1}, 2: {2}, 3: {3}, 4: {3}}
    assert history.history["num_segments"] == [1, 1, 2, 3, 3]
    assert curriculum.history == [1, 1, 2, 3, 3]


def test_grows_one_segment_after_a_plateau_of_patience_epochs():
    data = _Data()
    curriculum = SegmentCurriculum(
        data, max_segments=3, monitor="loss", patience=2, min_delta=0.01
    )
    losses = [1.0, 0.5, 0.499, 0.498, 0.4, 0.3, 0.3, 0.3, 0.3, 0.3, 0.3]
    seen = []
    curriculum.on_train_begin()
    for epoch, loss in enumerate(losses):
        curriculum.on_epoch_begin(epoch)
        seen.append(data.num_segments)
        curriculum.on_epoch_end(epoch, {"loss": loss})
    # Epochs 2 and 3 do not improve by more than 0.01: grow after epoch 3.
    # The count restarts: 0.4, 0.3 improve, 0.3, 0.3 do not: grow after 7.
    assert seen == [1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3]


def test_grows_as_soon_as_an_accuracy_reaches_its_target():
    data = _Data()
    curriculum = SegmentCurriculum(
        data, max_segments=4, monitor="val_accuracy", target=0.9, patience=9
    )
    accuracies = [0.5, 0.95, 0.6, 0.91, 0.99, 0.99]
    seen = []
    for epoch, value in enumerate(accuracies):
        curriculum.on_epoch_begin(epoch)
        seen.append(data.num_segments)
        curriculum.on_epoch_end(epoch, {"val_accuracy": value})
    assert curriculum.mode == "max"
    assert seen == [1, 1, 2, 2, 3, 4]


def test_callable_schedule_is_capped_at_max_segments():
    data = _Data()
    curriculum = SegmentCurriculum(
        data, max_segments=4, schedule=lambda epoch: 1 + epoch // 2
    )
    seen = []
    for epoch in range(10):
        curriculum.on_epoch_begin(epoch)
        seen.append(data.num_segments)
    assert seen == [1, 1, 2, 2, 3, 3, 4, 4, 4, 4]


def test_missing_metric_and_bad_arguments_are_named():
    curriculum = SegmentCurriculum(_Data(), max_segments=2, monitor="val_loss")
    with pytest.raises(
        ValueError,
        match=r"SegmentCurriculum watches monitor='val_loss', which the logs "
        r"do not hold. Logged: \['loss'\]",
    ):
        curriculum.on_epoch_end(0, {"loss": 1.0})
    with pytest.raises(ValueError, match="Received: max_segments=0"):
        SegmentCurriculum(_Data(), max_segments=0)
    with pytest.raises(ValueError, match="settable `num_segments`"):
        SegmentCurriculum(object(), max_segments=2)


def test_plateau_curriculum_goes_on_in_a_second_fit():
    data = _Data()
    curriculum = SegmentCurriculum(data, max_segments=4, patience=1)
    seen = []
    # Two fits of three epochs each, as `fit()` drives the callback.
    for losses in ([1.0, 1.0, 1.0], [1.0, 1.0, 1.0]):
        curriculum.on_train_begin()
        for epoch, loss in enumerate(losses):
            curriculum.on_epoch_begin(epoch)
            seen.append(data.num_segments)
            curriculum.on_epoch_end(epoch, {"loss": loss})
        curriculum.on_train_end()
    # Patience 1: one segment more every second epoch, across both fits.
    assert seen == [1, 1, 2, 2, 3, 3]
    assert curriculum.history == seen


def test_scheduled_curriculum_goes_on_in_a_second_fit():
    data = _Recorded(batch_size=2, num_batches=1, segment_length=4, pad_to=4)
    curriculum = SegmentCurriculum(data, max_segments=4, schedule=[1, 2, 3, 4])
    model = _model()
    callbacks = [curriculum, _EpochOf(data)]
    # Keras numbers each fit's epochs from 0 again; the schedule goes on.
    first = model.fit(data, epochs=2, callbacks=callbacks, verbose=0)
    second = model.fit(data, epochs=2, callbacks=callbacks, verbose=0)
    assert first.history["num_segments"] == [1, 2]
    assert second.history["num_segments"] == [3, 4]
    assert curriculum.history == [1, 2, 3, 4]
    # By Keras' epoch numbers, each fit's: the batches made had those widths.
    assert data.widths == {0: {1, 3}, 1: {2, 4}}


def test_schedule_starts_at_an_initial_epoch_further_on():
    schedule = [1, 2, 3, 4, 5, 6]

    def seen_in(curriculum, data, epochs, initial_epoch=0):
        # The epochs `fit(epochs=..., initial_epoch=...)` runs.
        seen = []
        curriculum.on_train_begin()
        for epoch in range(initial_epoch, epochs):
            curriculum.on_epoch_begin(epoch)
            seen.append(data.num_segments)
            curriculum.on_epoch_end(epoch, {})
        curriculum.on_train_end()
        return seen

    # Resuming from a checkpoint of epoch 2 with a new callback.
    data = _Data()
    resumed = SegmentCurriculum(data, max_segments=6, schedule=schedule)
    assert seen_in(resumed, data, epochs=4, initial_epoch=2) == [3, 4]
    # Then a plain second fit goes on from there.
    assert seen_in(resumed, data, epochs=1) == [5]
    # Keras' way of going on with the same callback, initial_epoch=2 after
    # two epochs: no epoch of the schedule skipped or repeated.
    data = _Data()
    curriculum = SegmentCurriculum(data, max_segments=6, schedule=schedule)
    assert seen_in(curriculum, data, epochs=2) == [1, 2]
    assert seen_in(curriculum, data, epochs=4, initial_epoch=2) == [3, 4]
    assert curriculum.history == [1, 2, 3, 4]


@pytest.mark.skipif(
    keras.backend.backend() != "tensorflow",
    reason="only TensorFlow's fit fixes input shapes from the first batches",
)
def test_growing_without_pad_to_is_refused_up_front_on_tensorflow():
    def growing(batch_size, num_segments, rng):
        ids = np.ones((batch_size, 4 * num_segments), "int32")
        return {"token_ids": ids, "padding_mask": ids}, ids[:, :1]

    data = SegmentedDataset(growing, 2, 2, segment_length=4)
    with pytest.raises(
        ValueError,
        match=r"batches for 1 and 3 segments differ.*Pass "
        r"SegmentedDataset\(pad_to=3, \.\.\.\).*Received: pad_to=None",
    ):
        SegmentCurriculum(data, max_segments=3)
    with pytest.raises(ValueError, match=r"batches for 1 and 2 segments"):
        SegmentCurriculum(data, max_segments=3, schedule=[1, 2])
    # Nothing grows, or the batches keep one shape: nothing to refuse.
    SegmentCurriculum(data, max_segments=3, schedule=[2, 2])
    padded = SegmentedDataset(growing, 2, 2, segment_length=4, pad_to=3)
    assert SegmentCurriculum(padded, max_segments=3).data is padded

    def one_shape(batch_size, num_segments, rng):
        return growing(batch_size, 3, rng)

    data = SegmentedDataset(one_shape, 2, 2, segment_length=4)
    assert SegmentCurriculum(data, max_segments=3).data is data


@pytest.mark.skipif(
    keras.backend.backend() != "tensorflow",
    reason="only TensorFlow's fit makes the next epoch's batch ahead",
)
def test_steps_per_epoch_shorter_than_the_data_is_refused_on_tensorflow():
    # With one iterator across epochs, TensorFlow made epoch 2's first
    # batch for epoch 1's number of segments: it trained on it silently.
    data = _Recorded(batch_size=2, num_batches=4, segment_length=4, pad_to=3)
    curriculum = SegmentCurriculum(data, max_segments=3, schedule=[1, 2, 3])
    with pytest.raises(
        ValueError,
        match=re.escape(
            "Give the dataset num_batches=2 instead of steps_per_epoch. "
            "Received: steps_per_epoch=2, len(data)=4"
        ),
    ):
        _model().fit(
            data, epochs=3, steps_per_epoch=2, callbacks=[curriculum], verbose=0
        )
