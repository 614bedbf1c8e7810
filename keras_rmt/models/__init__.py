from keras_rmt.models.rmt_backbone import RMTBackbone
from keras_rmt.models.rmt_causal_lm import RMTCausalLM
from keras_rmt.models.rmt_text_classifier import RMTTextClassifier

__all__ = ["RMTBackbone", "RMTCausalLM", "RMTTextClassifier"]
