"""The transformer stack of a backbone, run with an attention mask of ours."""

import keras

from keras_rmt.utils.keras_hub_internals import first_call_arguments


class TransformerDecoderStack:
    """Runs a backbone whose blocks are keras-hub `TransformerDecoder`s.

    keras-hub backbones pass only a padding mask to their blocks. To let a
    memory block attend to itself in both directions (the paper's policy),
    the blocks must be called with a full `(batch, n, n)` attention mask and
    their causal mask switched off, which `keras_hub.layers.TransformerDecoder`
    allows (GPT-2, OPT). The graph before the first block and after the last
    one stays the backbone's own.

    Raises `ValueError` naming the backbone class when its blocks are of
    another kind.
    """

    def __init__(self, body):
        import keras_hub

        backbone = body.backbone
        blocks = getattr(backbone, "transformer_layers", None) or []
        if not blocks or not all(
            type(block) is keras_hub.layers.TransformerDecoder
            for block in blocks
        ):
            raise ValueError(
                "memory_attention='bidirectional' needs a backbone whose "
                "blocks are keras_hub.layers.TransformerDecoder, which take an "
                "attention mask (GPT-2, OPT). "
                f"Received: backbone={type(backbone).__name__}"
            )
        self.blocks = blocks
        first_input = first_call_arguments(blocks[0]).args[0]
        self.before_blocks = (
            None
            if first_input is body.split_tensor
            else keras.Model(body.split_tensor, first_input)
        )
        self.after_blocks = keras.Model(blocks[-1].output, body.sequence_output)

    def __call__(self, embeddings, padding_mask, attention_mask, training=None):
        x = embeddings
        if self.before_blocks is not None:
            x = self.before_blocks(x, training=training)
        for block in self.blocks:
            x = block(
                x,
                decoder_padding_mask=padding_mask,
                decoder_attention_mask=attention_mask,
                use_causal_mask=False,
                training=training,
            )
        return self.after_blocks(x, training=training)
