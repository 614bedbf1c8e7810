"""Fused attention at inference for backbones whose config has dropout."""

import functools
import inspect

import keras

from keras_rmt.utils.keras_hub_internals import sublayers


def _rate_attribute(layer):
    """The attribute whose dropout rate keeps `layer` off the fused path."""
    if isinstance(layer, keras.layers.MultiHeadAttention):
        # Includes keras-hub's CachedMultiHeadAttention (GPT-2, OPT, BERT...).
        return "_dropout"
    # keras-hub's own attention layers (Gemma, Mixtral, GPT-NeoX...) keep the
    # rate in `dropout` and test it before calling the fused op.
    rate = getattr(layer, "dropout", None)
    is_rate = isinstance(rate, (int, float)) and not isinstance(rate, bool)
    if hasattr(layer, "_compute_attention") and is_rate:
        return "dropout"
    return None


def fuse_attention_at_inference(backbone):
    """Lets the attention layers of `backbone` run fused when not training.

    Keras' `MultiHeadAttention` (and the keras-hub attention layers built on
    it or modelled after it) call the fused `keras.ops.dot_product_attention`
    only when their attention-probability dropout rate is 0, even when not
    training. keras-hub presets carry dropout 0.1 in their configs, so
    inference paid for a score matrix, a float32 softmax and a dropout layer
    that does nothing.

    This wraps the `call` of each attention layer of `backbone` that has a
    dropout rate above 0: when `training` is falsy, the layer runs with its
    rate read as 0, which is exactly what dropout does at inference, so the
    function is the same and the fused path is taken. Training calls are
    untouched and keep their dropout. The rate is a Python number read while
    the call is traced, so compiled inference (`infer`, `predict`,
    generation, export) is fused too. The layers are changed in place, so
    the backbone called on its own is fused at inference as well; calling
    this again on the same backbone does nothing.

    Args:
        backbone: `keras.layers.Layer`. Its attention layers are found among
            all its sublayers.
    """
    for layer in sublayers(backbone):
        attribute = _rate_attribute(layer)
        if attribute is None or not getattr(layer, attribute):
            continue
        if getattr(layer.call, "_keras_rmt_fused_at_inference", False):
            continue
        layer.call = _call_without_dropout_at_inference(layer, attribute)


def _call_without_dropout_at_inference(layer, attribute):
    call = layer.call
    signature = inspect.signature(call)

    # `wraps` keeps the signature Keras reads to pass `training` along.
    @functools.wraps(call)
    def wrapped(*args, **kwargs):
        arguments = signature.bind_partial(*args, **kwargs).arguments
        if arguments.get("training"):
            return call(*args, **kwargs)
        rate = getattr(layer, attribute)
        setattr(layer, attribute, 0.0)
        try:
            return call(*args, **kwargs)
        finally:
            setattr(layer, attribute, rate)

    wrapped._keras_rmt_fused_at_inference = True
    return wrapped
