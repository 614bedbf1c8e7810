import keras
import numpy as np

from keras_rmt.datasets.segmented_dataset import SegmentedDataset
from keras_rmt.utils.checks import check_positive_integer


class SegmentCurriculum(keras.callbacks.Callback):
    """Grows the number of segments of the training data: 1, 2, ... N.

    The paper's recipe for memory that holds over many segments: train on
    one segment until the model has learnt the task, then on two, and so
    on. Before each epoch the callback sets `num_segments` of the training
    data (a `keras_rmt.datasets.SegmentedDataset`, or any object with a
    settable `num_segments`).

    Two ways to decide when to grow:
    - `schedule`: a list, entry `i` the number of segments of epoch `i`
      (the last entry holds afterwards), or a callable `epoch -> segments`.
      Epochs are counted across calls to `fit()` (see below).
    - otherwise, on a plateau: one segment more once `monitor` has not
      improved by more than `min_delta` for `patience` epochs, or as soon as
      it reaches `target`. Growing restarts the count.

    The number in use is logged each epoch as `num_segments`, and
    `history` lists it per epoch. The curriculum goes on across calls to
    `fit()`: a second `fit()` with the same callback starts where the first
    stopped (build a new callback to start again). The schedule is read
    at the callback's own epoch count: one past the last epoch it ran,
    whatever number Keras gives the epoch (each `fit()` counts from its
    `initial_epoch`, `0` unless given), or `initial_epoch` if that is
    further on. After `k` epochs, the same callback goes on at epoch `k`
    with or without `fit(initial_epoch=k)`; resuming from a checkpoint of
    epoch `k` with a new callback, pass `initial_epoch=k`.

    On TensorFlow, `fit` fixes the input shapes from the first batches, so
    a `SegmentedDataset` whose inputs grow needs `pad_to=max_segments`
    (every batch padded at the end to that many segments); without it the
    callback refuses to be built (it makes one batch of the fewest and one
    of the most segments to compare their shapes). There `fit` also makes
    each epoch's first batch ahead of time when `steps_per_epoch` is shorter
    than the dataset (one iterator across epochs): refused when training
    starts; give the dataset that `num_batches` instead.

    Args:
        data: the training data; its `num_segments` is set.
        max_segments: int. The curriculum stops growing here.
        schedule: list of int, callable or None. See above. Defaults to
            `None`: grow on a plateau.
        start: int. Segments of the first epoch (plateau mode). Defaults
            to `1`.
        monitor: str. The logged metric watched for a plateau. Defaults to
            `"loss"`.
        mode: `"min"`, `"max"` or `"auto"` (`"max"` for names with
            "acc", otherwise `"min"`). Defaults to `"auto"`.
        patience: int. Epochs without improvement before growing.
            Defaults to `2`.
        min_delta: float. Smallest change that counts as an improvement.
            Defaults to `0.0`.
        target: float or None. Grow as soon as `monitor` reaches this
            value. Defaults to `None`.
        verbose: int. 1 prints a line each time the data grows. Defaults
            to `0`.

    Example:
    ```python
    class Data:
        num_segments = 1

    data = Data()
    curriculum = keras_rmt.callbacks.SegmentCurriculum(
        data, max_segments=4, schedule=[1, 1, 2, 4]
    )
    curriculum.on_epoch_begin(2)
    (data.num_segments,)  # (2,)
    ```

    Reference:
     - [Bulatov et al., 2022](https://arxiv.org/abs/2207.06881)
    """

    def __init__(
        self,
        data,
        max_segments,
        schedule=None,
        start=1,
        monitor="loss",
        mode="auto",
        patience=2,
        min_delta=0.0,
        target=None,
        verbose=0,
    ):
        super().__init__()
        if not hasattr(data, "num_segments"):
            raise ValueError(
                "`data` must have a settable `num_segments` (for example a "
                f"keras_rmt.datasets.SegmentedDataset). Received: data={data!r}"
            )
        max_segments = check_positive_integer("max_segments", max_segments)
        if not isinstance(start, int) or not 1 <= start <= max_segments:
            raise ValueError(
                f"`start` must be an integer from 1 to max_segments="
                f"{max_segments}. Received: start={start!r}"
            )
        if mode not in ("auto", "min", "max"):
            raise ValueError(
                "`mode` must be one of ('auto', 'min', 'max'). "
                f"Received: mode={mode!r}"
            )
        if isinstance(schedule, (list, tuple)) and not schedule:
            raise ValueError(
                f"`schedule` must not be empty. Received: schedule={schedule!r}"
            )
        _check_shapes_can_grow(data, max_segments, schedule, start)
        self.data = data
        self.max_segments = max_segments
        self.schedule = schedule
        self.start = start
        self.monitor = monitor
        if mode == "auto":
            mode = "max" if "acc" in monitor else "min"
        self.mode = mode
        self.patience = patience
        self.min_delta = min_delta
        self.target = target
        self.verbose = verbose
        self.history = []
        self._num_segments = start
        self._best = None
        self._wait = 0
        # One past the last epoch run: the curriculum's epochs go on across
        # fits.
        self._next_epoch = 0

    def on_train_begin(self, logs=None):
        # `params` is None when the callback is driven by hand.
        _check_epochs_are_whole(self.data, (self.params or {}).get("steps"))

    def on_epoch_begin(self, epoch, logs=None):
        if self.schedule is not None:
            self._num_segments = self._scheduled(self._own_epoch(epoch))
        if self.verbose and self._num_segments != self.data.num_segments:
            print(
                f"\nSegmentCurriculum: epoch {epoch + 1}: "
                f"{self._num_segments} segments"
            )
        self.data.num_segments = self._num_segments

    def on_epoch_end(self, epoch, logs=None):
        self.history.append(self._num_segments)
        self._next_epoch = self._own_epoch(epoch) + 1
        if self.schedule is None:
            if logs is None or self.monitor not in logs:
                raise ValueError(
                    f"SegmentCurriculum watches monitor={self.monitor!r}, "
                    f"which the logs do not hold. Logged: {sorted(logs or {})}"
                )
            if self._plateaued(float(logs[self.monitor])):
                self._num_segments = min(
                    self._num_segments + 1, self.max_segments
                )
                self._best = None
                self._wait = 0
        if logs is not None:
            logs["num_segments"] = self.history[-1]

    def _own_epoch(self, epoch):
        """The curriculum's number for the epoch Keras numbers `epoch`."""
        return max(epoch, self._next_epoch)

    def _scheduled(self, epoch):
        if callable(self.schedule):
            count = self.schedule(epoch)
        else:
            count = self.schedule[min(epoch, len(self.schedule) - 1)]
        if not isinstance(count, (int, np.integer)) or count < 1:
            raise ValueError(
                "`schedule` must give positive integers. Received "
                f"{count!r} for epoch {epoch}"
            )
        return int(min(count, self.max_segments))

    def _plateaued(self, value):
        sign = 1.0 if self.mode == "max" else -1.0
        if self.target is not None and sign * (value - self.target) >= 0:
            return True
        if self._best is None or sign * (value - self._best) > self.min_delta:
            self._best = value
            self._wait = 0
            return False
        self._wait += 1
        return self._wait >= self.patience


def _check_shapes_can_grow(data, max_segments, schedule, start):
    """On TensorFlow, batches that grow need a dataset padded to one shape.

    TensorFlow's `fit` reads the shapes of a `keras.utils.PyDataset` from
    its first batches; a later batch of another shape stops training. The
    data's batches for the fewest and the most segments of the curriculum
    are made once here and compared (a `make_batch` may pad rows to one
    length itself).
    """
    if keras.backend.backend() != "tensorflow":
        return
    if not isinstance(data, SegmentedDataset) or data.pad_to is not None:
        return
    if isinstance(schedule, (list, tuple)):
        counts = [min(count, max_segments) for count in schedule]
        fewest, most = min(counts), max(counts)
    else:
        fewest, most = (1 if callable(schedule) else start), max_segments
    if fewest == most:
        return
    rng = np.random.default_rng(0)
    shapes = [
        _shapes(data.make_batch(data.batch_size, count, rng))
        for count in (fewest, most)
    ]
    if shapes[0] != shapes[1]:
        raise ValueError(
            "SegmentCurriculum on the TensorFlow backend needs batches of "
            "one shape, and the data's batches for "
            f"{fewest} and {most} segments differ ({shapes[0]} and "
            f"{shapes[1]}): TensorFlow's fit fixes the input shapes from the "
            "first batches. Pass SegmentedDataset(pad_to="
            f"{max_segments}, ...) to pad every batch to {max_segments} "
            "segments. Received: pad_to=None"
        )


def _shapes(batch):
    return [tuple(np.shape(leaf)) for leaf in keras.tree.flatten(batch)]


def _check_epochs_are_whole(data, steps):
    """On TensorFlow, `fit(steps_per_epoch=...)` shorter than the dataset
    keeps one iterator across epochs, which makes each epoch's first batch
    ahead of time: before the curriculum sets its number of segments."""
    if keras.backend.backend() != "tensorflow" or steps is None:
        return
    if not isinstance(data, keras.utils.PyDataset) or steps >= len(data):
        return
    raise ValueError(
        f"On TensorFlow, fit(steps_per_epoch={steps}) over a dataset of "
        f"{len(data)} batches makes each epoch's first batch before "
        "SegmentCurriculum sets that epoch's number of segments, so it "
        "would train on the previous epoch's. Give the dataset "
        f"num_batches={steps} instead of steps_per_epoch. "
        f"Received: steps_per_epoch={steps}, len(data)={len(data)}"
    )
