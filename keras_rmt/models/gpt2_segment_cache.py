"""Key/value-cached generation inside a segment, for GPT-2 backbones."""

from keras import ops


def supports_segment_cache(backbone):
    """Whether `backbone` (an RMTBackbone) can generate with this cache.

    GPT-2's blocks take a key/value cache (keras-hub's `call_with_cache`);
    memory positions follow the backbone's own causal mask only with
    `memory_attention="backbone"` (the paper's mask needs the whole block).
    """
    import keras_hub

    return (
        type(backbone.backbone) is keras_hub.models.GPT2Backbone
        and backbone.memory_layout == "decoder"
        and backbone.memory_attention == "backbone"
    )


class GPT2SegmentCache:
    """One segment `[read memory ; tokens ; write memory]` with a KV cache.

    Gives the same outputs as running the whole segment through the
    backbone: the read block and the segment's tokens are run once when a
    segment is entered (slots of tokens not yet generated are overwritten
    when their step comes, and causal attention never reads them earlier);
    each later step runs one token; the write block runs once, after the
    segment's last token, and its outputs are the next segment's memory.
    """

    def __init__(self, rmt_backbone):
        self.gpt2 = rmt_backbone.backbone
        self.num_memory_tokens = rmt_backbone.num_memory_tokens
        self.segment_length = rmt_backbone.segment_length

    def empty(self, batch):
        gpt2 = self.gpt2
        slots = self.segment_length + 2 * self.num_memory_tokens
        head_dim = gpt2.hidden_dim // gpt2.num_heads
        shape = (batch, gpt2.num_layers, 2, slots, gpt2.num_heads, head_dim)
        return ops.zeros(shape, gpt2.compute_dtype)

    def run(self, embeddings, cache, index):
        """Runs `embeddings` at slots `index...`: (outputs, new cache)."""
        gpt2 = self.gpt2
        positions = gpt2.position_embedding(embeddings, start_index=index)
        x = gpt2.embeddings_add((embeddings, positions))
        x = gpt2.embeddings_dropout(x)
        caches = []
        for layer_index, layer in enumerate(gpt2.transformer_layers):
            x, layer_cache = layer(
                x,
                self_attention_cache=cache[:, layer_index],
                self_attention_cache_update_index=index,
            )
            caches.append(layer_cache)
        return gpt2.layer_norm(x), ops.stack(caches, axis=1)

    def enter(self, memory, segment, cache):
        """Read block and all of `segment`'s current tokens, from slot 0."""
        tokens = self.gpt2.token_embedding(segment)
        embeddings = ops.concatenate(
            [ops.cast(memory, tokens.dtype), tokens], axis=1
        )
        outputs, cache = self.run(embeddings, cache, 0)
        return outputs[:, self.num_memory_tokens :], cache

    def step(self, token, offset, cache):
        """One token (batch, 1) at segment position `offset`."""
        embeddings = self.gpt2.token_embedding(token)
        return self.run(embeddings, cache, self.num_memory_tokens + offset)

    def write(self, memory, cache):
        """The write block, after a full segment: the next memory."""
        index = self.num_memory_tokens + self.segment_length
        embeddings = ops.cast(memory, self.gpt2.compute_dtype)
        outputs, _ = self.run(embeddings, cache, index)
        return outputs
