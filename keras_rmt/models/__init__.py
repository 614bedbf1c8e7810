"""Ready tasks and their preprocessors."""

from keras_rmt.models.rmt_causal_lm_preprocessor import RMTCausalLMPreprocessor
from keras_rmt.models.rmt_text_classifier_preprocessor import (
    RMTTextClassifierPreprocessor,
)

__all__ = ["RMTCausalLMPreprocessor", "RMTTextClassifierPreprocessor"]
