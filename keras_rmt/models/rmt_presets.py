"""Building RMT tasks from presets: RMT presets and plain keras-hub ones."""

import keras_hub
from keras_hub.src.utils.preset_utils import get_preset_loader

from keras_rmt.models.rmt_backbone import (
    RMTBackbone,
    check_no_rmt_kwargs,
    split_rmt_kwargs,
)


def load_rmt_task(cls, preset, load_weights=True, **kwargs):
    """Loads `cls` from an RMT task preset, or wraps a keras-hub preset.

    A preset saved from an RMT task (its backbone config is an
    `RMTBackbone`) is loaded whole, as keras-hub loads its own tasks. Any
    other keras-hub preset gives the backbone, wrapped in an `RMTBackbone`
    with the RMT keyword arguments, and the tokenizer, handed to
    `cls.preprocessor_cls`. Names, handles and local folders all go through
    keras-hub's preset loader.
    """
    rmt_kwargs, kwargs = split_rmt_kwargs(kwargs)
    loader = get_preset_loader(preset)
    if issubclass(loader.check_backbone_class(), RMTBackbone):
        check_no_rmt_kwargs(preset, rmt_kwargs)
        load_task_weights = "num_classes" not in kwargs
        return loader.load_task(cls, load_weights, load_task_weights, **kwargs)
    backbone_kwargs = {}
    if "dtype" in kwargs:
        backbone_kwargs["dtype"] = kwargs.pop("dtype")
    backbone = RMTBackbone.from_preset(
        preset, load_weights=load_weights, **rmt_kwargs, **backbone_kwargs
    )
    if "preprocessor" not in kwargs:
        tokenizer = load_tokenizer(preset)
        kwargs["preprocessor"] = (
            None
            if cls.preprocessor_cls is None
            else cls.preprocessor_cls(
                tokenizer=tokenizer,
                segment_length=backbone.segment_length,
                **cls.preprocessor_kwargs_for(backbone),
            )
        )
    return cls(backbone=backbone, **kwargs)


def load_tokenizer(preset):
    """The preset's tokenizer, or an error that says how to do without."""
    try:
        return keras_hub.tokenizers.Tokenizer.from_preset(preset)
    except FileNotFoundError as error:
        raise ValueError(
            f"The preset {preset!r} has no tokenizer, which the task's "
            "preprocessor needs. Save one into it "
            "(`tokenizer.save_to_preset(preset)`), or pass "
            "`preprocessor=None` and feed token ids yourself. "
            f"({error})"
        ) from error
