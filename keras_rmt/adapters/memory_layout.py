"""Where the memory block sits among a segment's token embeddings."""

from keras import ops


class DecoderLayout:
    """`[read memory ; segment ; write memory]`, for causal backbones.

    Tokens see the read block because it comes first; the write block comes
    last and so sees the whole segment. The outputs at the write positions
    are the next segment's memory.
    """

    name = "decoder"

    def __init__(self, num_memory_tokens):
        self.num_memory_tokens = num_memory_tokens

    def positions_used(self, segment_length):
        return segment_length + 2 * self.num_memory_tokens

    def join(self, memory, segment):
        return ops.concatenate([memory, segment, memory], axis=1)

    def split(self, hidden):
        m = self.num_memory_tokens
        return hidden[:, m:-m], hidden[:, -m:]

    def block_ids(self, segment_length):
        """Per position: 1 in the read block, 2 in the write block, else 0."""
        m = self.num_memory_tokens
        return [1] * m + [0] * segment_length + [2] * m


class EncoderLayout:
    """`[first token ; memory ; rest of segment]`, for bidirectional backbones.

    The memory block sits right after the segment's first token (`[CLS]`,
    which pooled outputs read), so read and write are the same positions.
    """

    name = "encoder"

    def __init__(self, num_memory_tokens):
        self.num_memory_tokens = num_memory_tokens

    def positions_used(self, segment_length):
        return segment_length + self.num_memory_tokens

    def join(self, memory, segment):
        return ops.concatenate([segment[:, :1], memory, segment[:, 1:]], axis=1)

    def split(self, hidden):
        m = self.num_memory_tokens
        tokens = ops.concatenate([hidden[:, :1], hidden[:, 1 + m :]], axis=1)
        return tokens, hidden[:, 1 : 1 + m]

    def block_ids(self, segment_length):
        m = self.num_memory_tokens
        return [0] + [1] * m + [0] * (segment_length - 1)


class WriteOnlyLayout:
    """`[segment ; write memory]`, for memory read another way (ARMT).

    Associative memory reads into every token's hidden state in every layer,
    so the segment needs no read block: `segment_length + num_memory_tokens`
    positions. The write block comes last and so sees the whole segment.
    Chosen by the layer that reads memory that way, never by users.
    """

    name = "write-only"

    def __init__(self, num_memory_tokens):
        self.num_memory_tokens = num_memory_tokens

    def positions_used(self, segment_length):
        return segment_length + self.num_memory_tokens

    def join(self, memory, segment):
        return ops.concatenate([segment, memory], axis=1)

    def split(self, hidden):
        m = self.num_memory_tokens
        return hidden[:, :-m], hidden[:, -m:]

    def block_ids(self, segment_length):
        return [0] * segment_length + [2] * self.num_memory_tokens


LAYOUTS = {"decoder": DecoderLayout, "encoder": EncoderLayout}
