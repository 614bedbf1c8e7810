"""Loading RMT tasks and tokenizers from RMT and plain keras-hub presets."""

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
    try:
        tokenizer = load_tokenizer(preset)
    except FileNotFoundError as error:
        raise ValueError(
            f"The preset {preset!r} has no tokenizer, which the task's "
            "preprocessor needs. Save one into it "
            "(`tokenizer.save_to_preset(preset)`), or pass "
            "`preprocessor=None` and feed token ids yourself. "
            f"({error})"
        ) from error
    return cls.preprocessor_cls(
        tokenizer=tokenizer,
        segment_length=backbone.segment_length,
        **cls.preprocessor_kwargs_for(backbone),
    )


def load_tokenizer(preset):
    """The tokenizer saved in `preset`, a keras-hub preset or an RMT one.

    The one way tasks and preprocessors load a tokenizer from a preset.
    keras-hub's `Tokenizer.from_preset` picks the tokenizer class by the
    preset's backbone class; an RMT preset's is `RMTBackbone`, which has no
    tokenizer class of its own, so there the class is the one named in the
    saved tokenizer config. Raises `FileNotFoundError` if the preset holds
    no tokenizer.
    """
    loader = get_preset_loader(preset)
    if rmt_backbone_config(loader) is not None:
        return loader.load_tokenizer(keras_hub.tokenizers.Tokenizer)
    return keras_hub.tokenizers.Tokenizer.from_preset(preset)


def rmt_backbone_config(loader):
    """The saved `RMTBackbone` configuration of an RMT preset (an RMT task's
    or an `RMTBackbone`'s), or None for a plain keras-hub preset.

    `loader` is keras-hub's preset loader of the preset.
    """
    if not issubclass(loader.check_backbone_class(), RMTBackbone):
        return None
    return loader.config["config"]
