from keras_rmt.datasets.first_token_recall import first_token_recall

__all__ = ["first_token_recall"]
