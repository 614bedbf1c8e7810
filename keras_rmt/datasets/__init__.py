from keras_rmt.datasets.associative_retrieval import associative_retrieval
from keras_rmt.datasets.bbc_news import bbc_news
from keras_rmt.datasets.copy_sequence import copy_sequence
from keras_rmt.datasets.facts_in_noise import facts_in_noise
from keras_rmt.datasets.first_token_recall import first_token_recall
from keras_rmt.datasets.python_docs import python_docs
from keras_rmt.datasets.reverse_sequence import reverse_sequence
from keras_rmt.datasets.segmented_dataset import SegmentedDataset
from keras_rmt.datasets.vary_n_segments import vary_n_segments

__all__ = [
    "SegmentedDataset",
    "associative_retrieval",
    "bbc_news",
    "copy_sequence",
    "facts_in_noise",
    "first_token_recall",
    "python_docs",
    "reverse_sequence",
    "vary_n_segments",
]
