"""Key/value-cached generation inside a segment, for any keras-hub decoder.

keras-hub's causal LMs step through a key/value cache with
`call_with_cache(token_ids, cache, index)`, one implementation per family.
Memory enters a segment as embeddings, not token ids, so this module runs
the family's own `call_with_cache` (and `_build_cache`) on a stand-in task
whose token embedding passes embeddings through: the keras-hub code then
runs `[read memory ; tokens ; write memory]` as the backbone body does.
"""

import functools
import inspect

import keras_hub
from keras import ops

CACHE_METHODS = ("call_with_cache", "_build_cache")


def find_cached_causal_lm(backbone):
    """The keras-hub `CausalLM` class with a key/value cache for `backbone`.

    Looks through the backbone's class and its bases for a task whose
    `backbone_cls` it is and which has `call_with_cache`; None if there is
    none.
    """
    tasks = _subclasses(keras_hub.models.CausalLM)
    for backbone_cls in type(backbone).__mro__:
        for task in tasks:
            if getattr(task, "backbone_cls", None) is backbone_cls and all(
                hasattr(task, name) for name in CACHE_METHODS
            ):
                return task
    return None


def _subclasses(cls):
    found = []
    for subclass in cls.__subclasses__():
        found.append(subclass)
        found.extend(_subclasses(subclass))
    return found


def segment_cache_for(rmt_backbone):
    """(a `SegmentCache`, None), or (None, why there is none)."""
    backbone = rmt_backbone.backbone
    if rmt_backbone.associative_key_dim is not None:
        return None, "associative memory (ARMT) has no in-segment cache"
    if rmt_backbone.memory_attention != "backbone":
        return None, (
            "memory_attention='bidirectional' needs the whole segment's "
            "attention mask at every step"
        )
    task = find_cached_causal_lm(backbone)
    if task is None:
        return None, (
            f"keras-hub has no CausalLM with call_with_cache for "
            f"{type(backbone).__name__}"
        )
    return SegmentCache(rmt_backbone, task), None


class SegmentCache:
    """One segment `[read memory ; tokens ; write memory]` with a KV cache.

    Gives the outputs of running the whole segment through the backbone:
    `prefill` runs the read memory and a segment's tokens at once (slots of
    tokens not generated yet are overwritten when their step comes, and
    causal attention never reads them before); `step` runs one token;
    `write` runs the write block once, after the segment's last token, and
    its outputs are the next segment's memory; `read` starts the next
    segment in the same cache with that memory (the old segment's slots
    after it are overwritten before any step attends to them).

    Every step is the family's own `call_with_cache` (keras-hub's
    `task_cls`), on embeddings: memory and the backbone's token embeddings.

    Args:
        rmt_backbone: `keras_rmt.models.RMTBackbone`.
        task_cls: the keras-hub `CausalLM` class of the wrapped backbone.
    """

    def __init__(self, rmt_backbone, task_cls):
        backbone = rmt_backbone.backbone
        self.backbone = backbone
        self.num_memory_tokens = rmt_backbone.num_memory_tokens
        self.segment_length = rmt_backbone.segment_length
        self.task = _EmbeddingsInTask(task_cls, backbone)

    @property
    def slots(self):
        return self.segment_length + 2 * self.num_memory_tokens

    def embed(self, token_ids):
        return self.backbone.token_embedding(token_ids)

    def prefill(self, memory, segment):
        """A new cache holding `[memory ; segment ; memory]`.

        Returns the hidden states of the segment's tokens, those of the
        write block (the next memory once the segment is whole) and the
        cache.
        """
        tokens = self.embed(segment)
        memory = ops.cast(memory, tokens.dtype)
        joined = ops.concatenate([memory, tokens, memory], axis=1)
        hidden, cache = self.task.build_cache(joined)
        m, length = self.num_memory_tokens, self.segment_length
        return hidden[:, m : m + length], hidden[:, m + length :], cache

    def read(self, memory, cache):
        """The cache of a new segment's read memory, in slots from 0."""
        memory = ops.cast(memory, self.backbone.compute_dtype)
        _, cache = self.task.run(memory, cache, 0)
        return cache

    def step(self, token, offset, cache):
        """One token (batch, 1) at segment position `offset`."""
        index = self.num_memory_tokens + offset
        hidden, cache = self.task.run(self.embed(token), cache, index)
        return hidden[:, 0], cache

    def write(self, memory, cache):
        """The write block, after a whole segment: the next memory."""
        index = self.num_memory_tokens + self.segment_length
        memory = ops.cast(memory, self.backbone.compute_dtype)
        hidden, _ = self.task.run(memory, cache, index)
        return hidden


class _EmbeddingsInTask:
    """A keras-hub causal LM whose token embedding takes embeddings.

    Runs the class's own `call_with_cache` and `_build_cache` with `self`
    standing for the task: `self.backbone` is the real backbone but for its
    token embedding, which passes its input through (forward: the
    embeddings given; reverse: the hidden states, whose logits the RMT task
    computes itself), and, for families that fuse token and position
    embeddings, that fused layer, which only adds positions.
    """

    def __init__(self, task_cls, backbone):
        self.backbone = _EmbeddingsInBackbone(backbone)
        self.compute_dtype = backbone.compute_dtype
        self.call_with_cache = functools.partial(task_cls.call_with_cache, self)
        self._build_cache = functools.partial(task_cls._build_cache, self)
        # Families with images (Gemma 3) take more arguments: none here.
        self._build_cache_extras = {
            name: None for name in _parameters(task_cls._build_cache)[2:]
        }

    def run(self, embeddings, cache, index):
        """`call_with_cache` on embeddings: (hidden states, cache)."""
        _, hidden, cache = self.call_with_cache(embeddings, cache, index)
        return hidden, cache

    def build_cache(self, embeddings):
        return self._build_cache(embeddings, **self._build_cache_extras)


def _parameters(function):
    return [
        name
        for name, parameter in inspect.signature(function).parameters.items()
        if parameter.default is inspect.Parameter.empty
        and parameter.kind
        in (parameter.POSITIONAL_ONLY, parameter.POSITIONAL_OR_KEYWORD)
    ]


class _PassThrough:
    def __call__(self, inputs, reverse=False, **kwargs):
        return inputs


class _PositionsOnly:
    """A fused `TokenAndPositionEmbedding` given embeddings: adds positions."""

    def __init__(self, fused):
        self.fused = fused

    def __call__(self, embeddings, start_index=0, **kwargs):
        positions = self.fused.position_embedding(
            embeddings, start_index=start_index
        )
        return embeddings + positions


class _EmbeddingsInBackbone:
    def __init__(self, backbone):
        self._backbone = backbone
        self.token_embedding = _PassThrough()
        fused = getattr(backbone, "embeddings", None)
        self._fused = fused if hasattr(fused, "position_embedding") else None

    def __getattr__(self, name):
        value = getattr(self._backbone, name)
        if self._fused is not None and value is self._fused:
            return _PositionsOnly(value)
        return value
