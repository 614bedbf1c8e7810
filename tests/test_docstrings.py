"""Every public docstring's example runs and gives the shapes it shows.

The examples' task generators (`examples/tasks/`) are held to it too.
"""

import re
import textwrap

import keras
import keras_hub
import numpy as np
import pytest
from tasks.associative_retrieval import associative_retrieval
from tasks.bbc_news import bbc_news, bbc_news_articles
from tasks.copy_sequence import copy_sequence
from tasks.facts_in_noise import facts_in_noise
from tasks.first_token_recall import first_token_recall
from tasks.python_docs import python_docs
from tasks.reverse_sequence import reverse_sequence

import keras_rmt

PUBLIC = [
    keras_rmt.layers.MemoryTokens,
    keras_rmt.layers.RecurrentSegments,
    keras_rmt.layers.RecurrentSegments.segment,
    first_token_recall,
    copy_sequence,
    reverse_sequence,
    associative_retrieval,
    facts_in_noise,
    python_docs,
    bbc_news,
    bbc_news_articles,
    keras_rmt.datasets.vary_n_segments,
    keras_rmt.datasets.SegmentedDataset,
    keras_rmt.callbacks.SegmentCurriculum,
    keras_rmt.export.export_saved_model,
    keras_rmt.export.streaming_model,
    keras_rmt.models.RMTCausalLMPreprocessor,
    keras_rmt.models.RMTTextClassifierPreprocessor,
    keras_rmt.models.RMTBackbone,
    keras_rmt.models.RMTCausalLM,
    keras_rmt.models.RMTTextClassifier,
    keras_rmt.metrics.SegmentLosses,
    keras_rmt.distribution.get_layout_map,
    keras_rmt.distribution.pad_to_segments,
]
# NumPy, tf.data and string work: the same on every backend, run once.
BACKEND_INDEPENDENT = {
    "first_token_recall",
    "copy_sequence",
    "reverse_sequence",
    "associative_retrieval",
    "facts_in_noise",
    "python_docs",
    "bbc_news",
    "bbc_news_articles",
    "vary_n_segments",
    "SegmentedDataset",
    "RMTCausalLMPreprocessor",
    "RMTTextClassifierPreprocessor",
    "pad_to_segments",
}
SHOWN_SHAPE = re.compile(r"^(\s*)(.+?)\s+# (\(.*\))$")


def _example_with_asserts(docstring):
    (example,) = re.findall(r"```python\n(.*?)```", docstring, re.S)
    lines = textwrap.dedent(example).splitlines()
    return "\n".join(
        SHOWN_SHAPE.sub(r"\1assert tuple(\2) == \3, '\2'", line)
        for line in lines
    )


@pytest.mark.parametrize(
    "documented",
    [
        pytest.param(x, marks=pytest.mark.backend_independent)
        if x.__name__ in BACKEND_INDEPENDENT
        else x
        for x in PUBLIC
    ],
    ids=lambda x: x.__name__,
)
def test_docstring_example_runs_and_gives_the_shapes_it_shows(documented):
    code = _example_with_asserts(documented.__doc__)
    assert code.count("assert tuple(") >= 1
    namespace = {"keras": keras, "keras_hub": keras_hub, "np": np}
    exec(code, {**namespace, "keras_rmt": keras_rmt})
