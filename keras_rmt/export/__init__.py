"""Serving RMT models: streaming rebuilds and TF SavedModel export."""

from keras_rmt.export.saved_model import export_saved_model
from keras_rmt.export.streaming import streaming_model

__all__ = ["export_saved_model", "streaming_model"]
