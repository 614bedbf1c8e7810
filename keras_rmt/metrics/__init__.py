from keras_rmt.metrics.segment_losses import SegmentLosses

__all__ = ["SegmentLosses"]
