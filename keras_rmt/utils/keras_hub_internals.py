"""The private keras-hub and Keras APIs keras-rmt uses, in one place.

keras-hub and Keras have no public API for what is read here, so keras-rmt
reads it through this module and nowhere else. These names are private:
either library may change them in any release. `pyproject.toml` bounds
keras-hub to the releases the test suite runs on (`keras-hub>=0.32,<0.33`);
before widening that range, run the tests that break first when these
change:

- preset files (`get_preset_loader`, `load_json`, the config file names):
  `tests/test_rmt_presets.py`, then the `from_preset` tests of
  `tests/test_rmt_backbone.py` and of the preprocessors
  (`tests/test_rmt_causal_lm_preprocessor.py`,
  `tests/test_rmt_text_classifier_preprocessor.py`).
- how a layer was first called in a functional graph (`_inbound_nodes`):
  `tests/test_associative_recurrent_segments.py` (blocks run one by one)
  and the `memory_attention="bidirectional"` tests of
  `tests/test_recurrent_segments.py`.
- every sublayer of a layer (`_flatten_layers`):
  `tests/test_inference_attention.py`.
- the losses a layer reports (`_loss_ids`), forgotten for the losses a
  segment loop collects itself: the `add_loss` tests of
  `tests/test_recurrent_segments_fast_paths.py`.
- a functional model's graph (`_nodes_by_depth`, `_run_through_graph`,
  `_standardize_inputs`, a symbolic tensor's `_keras_history`), replayed
  by the streaming model: `tests/test_streaming_model.py`.
"""

import keras
from keras_hub.src.utils.preset_utils import (
    PREPROCESSOR_CONFIG_FILE,
    TASK_CONFIG_FILE,
    TOKENIZER_CONFIG_FILE,
    check_config_class,
    check_file_exists,
    get_preset_loader,
    load_json,
)

__all__ = [
    "PREPROCESSOR_CONFIG_FILE",
    "TASK_CONFIG_FILE",
    "TOKENIZER_CONFIG_FILE",
    "check_config_class",
    "check_file_exists",
    "first_call_arguments",
    "forget_losses",
    "get_preset_loader",
    "is_functional",
    "load_json",
    "producing_layer",
    "run_graph",
    "sublayers",
]


def first_call_arguments(layer):
    """The arguments (`.args`, `.kwargs`) of `layer`'s first graph call.

    For a layer of a functional model, the tensors and options it was
    called with when the model was built.
    """
    return layer._inbound_nodes[0].arguments


def sublayers(layer):
    """Every layer inside `layer`, at any depth, `layer` itself excluded."""
    return layer._flatten_layers(include_self=False)


def forget_losses(layer, losses):
    """`layer` and its sublayers stop reporting `losses` in `.losses`."""
    ids = {id(loss) for loss in losses}
    for each in layer._flatten_layers():
        each._loss_ids.difference_update(ids)


def is_functional(layer):
    """Whether `layer` is a model built with the Functional API.

    Functional models (keras-hub tasks and backbones included) keep their
    graph; subclassed models only have Python code in `call`.
    """
    return isinstance(layer, keras.Model) and hasattr(layer, "_nodes_by_depth")


def run_graph(model, inputs, call):
    """Runs functional `model`'s graph on `inputs`, each layer via `call`.

    `call(layer, *args, **kwargs)` runs one layer: the graph walk of
    `keras.models.clone_model(..., call_function=...)`, without building a
    new model at the end.
    """
    return model._run_through_graph(
        model._standardize_inputs(inputs), call_fn=call
    )


def producing_layer(tensor):
    """The layer whose output the symbolic `tensor` is."""
    return tensor._keras_history.operation
