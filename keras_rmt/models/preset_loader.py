"""Loading RMT tasks from presets: RMT presets and plain keras-hub ones."""

import keras_hub

from keras_rmt.models.rmt_backbone import (
    RMTBackbone,
    check_no_rmt_kwargs,
    check_required_rmt_kwargs,
    split_rmt_kwargs,
)
from keras_rmt.utils.keras_hub_internals import (
    TASK_CONFIG_FILE,
    check_config_class,
    check_file_exists,
    get_preset_loader,
    load_json,
)


def load_rmt_task(cls, preset, load_weights=True, **kwargs):
    """Loads `cls` from an RMT preset, or wraps a keras-hub preset.

    A preset saved from an RMT task of class `cls` is loaded whole, as
    keras-hub loads its own tasks. A preset saved from another RMT task (an
    `RMTCausalLM` preset given to `RMTTextClassifier`: pretrain, then
    fine-tune) or from an `RMTBackbone` alone gives its backbone, memory
    included, and its tokenizer, and `cls` builds its own head and
    preprocessor on them. Any other keras-hub preset gives the backbone,
    wrapped in an `RMTBackbone` with the RMT keyword arguments, and the
    tokenizer. Names, handles and local folders all go through keras-hub's
    preset loader.
    """
    rmt_kwargs, kwargs = split_rmt_kwargs(kwargs)
    loader = get_preset_loader(preset)
    backbone_kwargs = {}
    if "dtype" in kwargs:
        backbone_kwargs["dtype"] = kwargs.pop("dtype")
    if issubclass(loader.check_backbone_class(), RMTBackbone):
        execution = check_no_rmt_kwargs(preset, rmt_kwargs)
        if _holds_task(preset, cls):
            return _load_whole_task(
                cls, loader, load_weights, execution, backbone_kwargs, kwargs
            )
        backbone = loader.load_backbone(
            RMTBackbone, load_weights, **execution, **backbone_kwargs
        )
    else:
        check_required_rmt_kwargs(cls, preset, rmt_kwargs)
        backbone = RMTBackbone.from_preset(
            preset, load_weights=load_weights, **rmt_kwargs, **backbone_kwargs
        )
    if "preprocessor" not in kwargs:
        kwargs["preprocessor"] = _new_preprocessor(cls, preset, backbone)
    return cls(backbone=backbone, **kwargs)


def _holds_task(preset, cls):
    if not check_file_exists(preset, TASK_CONFIG_FILE):
        return False
    task_class = check_config_class(load_json(preset, TASK_CONFIG_FILE))
    return issubclass(task_class, cls)


def _load_whole_task(
    cls, loader, load_weights, execution, backbone_kwargs, kwargs
):
    load_task_weights = "num_classes" not in kwargs
    if execution:
        # The task's config holds the backbone's: load the backbone with the
        # new execution settings and hand it over (weights come after).
        kwargs["backbone"] = loader.load_backbone(
            RMTBackbone, False, **execution, **backbone_kwargs
        )
    kwargs.update(backbone_kwargs)
    return loader.load_task(cls, load_weights, load_task_weights, **kwargs)


def _new_preprocessor(cls, preset, backbone):
    if cls.preprocessor_cls is None:
        return None
    rmt_preset = issubclass(
        get_preset_loader(preset).check_backbone_class(), RMTBackbone
    )
    return cls.preprocessor_cls(
        tokenizer=load_tokenizer(preset, rmt_preset),
        segment_length=backbone.segment_length,
        **cls.preprocessor_kwargs_for(backbone),
    )


def load_tokenizer(preset, rmt_preset=False):
    """The preset's tokenizer, or an error that says how to do without."""
    try:
        if rmt_preset:
            # keras-hub finds a tokenizer class by the preset's backbone
            # class, which is ours here: read the saved config directly.
            loader = get_preset_loader(preset)
            return loader.load_tokenizer(keras_hub.tokenizers.Tokenizer)
        return keras_hub.tokenizers.Tokenizer.from_preset(preset)
    except FileNotFoundError as error:
        raise ValueError(
            f"The preset {preset!r} has no tokenizer, which the task's "
            "preprocessor needs. Save one into it "
            "(`tokenizer.save_to_preset(preset)`), or pass "
            "`preprocessor=None` and feed token ids yourself. "
            f"({error})"
        ) from error
