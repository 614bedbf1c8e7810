"""Training data whose number of segments changes while `fit` runs."""

from keras_rmt.datasets.segmented_dataset import (
    SegmentedDataset,
    vary_n_segments,
)

__all__ = ["SegmentedDataset", "vary_n_segments"]
