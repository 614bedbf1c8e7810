from keras_rmt.callbacks.segment_curriculum import SegmentCurriculum

__all__ = ["SegmentCurriculum"]
