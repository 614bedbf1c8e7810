"""A backbone's transformer blocks, run one by one from outside."""

import keras

from keras_rmt.utils.keras_hub_internals import first_call_arguments


class DecoderBlocks:
    """Runs a backbone block by block, with a hook before every block.

    Cuts the backbone's functional graph at every block of
    `backbone.transformer_layers` (GPT-2, OPT, Llama, Mistral, Gemma,
    Qwen...): the graph before the first block, each block with the padding
    mask it was given, what lies between two blocks and the graph after the
    last one all stay the backbone's own, whatever the family calls its
    blocks or their mask argument. A caller can then change each block's
    input and read each block's output.

    Holds no weights and is not tracked by Keras: the backbone keeps them.

    Raises `ValueError` naming the backbone class when it has no
    `transformer_layers` in its graph, or takes inputs beyond token ids and
    a padding mask.
    """

    def __init__(self, body):
        backbone = body.backbone
        blocks = list(getattr(backbone, "transformer_layers", None) or [])
        if not blocks or body.extra_input_names:
            raise ValueError(
                "Associative memory needs a decoder backbone whose blocks are "
                "listed in `backbone.transformer_layers` and which takes only "
                "token_ids and padding_mask (GPT-2, OPT, Llama, Mistral, "
                f"Gemma, Qwen...). Received: backbone={type(backbone).__name__}"
            )
        padding_mask = backbone.input["padding_mask"]
        try:
            inputs = [first_call_arguments(b).args[0] for b in blocks]
            self.before_blocks = _piece(body.split_tensor, inputs[0])
            self.blocks = [_block_call(b, padding_mask) for b in blocks]
            self.between_blocks = [
                _piece(block.output, x) for block, x in zip(blocks, inputs[1:])
            ]
            self.after_blocks = _piece(blocks[-1].output, body.sequence_output)
        except Exception as error:  # Keras raises several types here.
            raise ValueError(
                "The graph of this backbone cannot be cut at its blocks "
                f"({error}). Received: backbone={type(backbone).__name__}"
            )

    def __len__(self):
        return len(self.blocks)

    def __call__(self, embeddings, padding_mask, block_input, training=None):
        """Runs the backbone on `embeddings` (the body's input).

        Args:
            embeddings: tensor `(batch, tokens, hidden)`, what the backbone
                body takes (after `BackboneBody.embeddings_for_body`).
            padding_mask: tensor `(batch, tokens)`.
            block_input: callable `(index, x) -> x`, applied to the input of
                block `index`.
            training: bool. Whether dropout is active.

        Returns:
            `(sequence_output, block_outputs)`: the backbone's output and the
            list of each block's output.
        """
        x = _apply(self.before_blocks, embeddings, training)
        outputs = []
        for index, block in enumerate(self.blocks):
            if index:
                x = _apply(self.between_blocks[index - 1], x, training)
            x = block(block_input(index, x), padding_mask, training)
            outputs.append(x)
        return _apply(self.after_blocks, x, training), outputs


def _block_call(block, padding_mask):
    """Calls `block` as the backbone does, with another padding mask.

    A block is called, not cut out of the graph as a model, because its
    input may be a tensor that no model input can stand for (Gemma's is
    marked sparse, which torch refuses).
    """
    arguments = first_call_arguments(block)
    tensors = [*arguments.args[1:], *arguments.kwargs.values()]
    if any(
        isinstance(t, keras.KerasTensor) and t is not padding_mask
        for t in tensors
    ):
        raise ValueError(f"block {block.name} takes tensors other than x")
    mask_names = [k for k, v in arguments.kwargs.items() if v is padding_mask]
    options = {k: v for k, v in arguments.kwargs.items() if k not in mask_names}
    if len(arguments.args) > 1 or len(mask_names) > 1:
        raise ValueError(f"block {block.name} takes positional tensors")

    def call(x, mask, training):
        masks = {name: mask for name in mask_names}
        return block(x, **options, **masks, training=training)

    return call


def _piece(start, end):
    return None if start is end else keras.Model(start, end)


def _apply(piece, x, training):
    return x if piece is None else piece(x, training=training)
