"""A backbone's transformer blocks, run one by one from outside."""

import keras


def _first_argument(layer):
    return layer._inbound_nodes[0].arguments.args[0]


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
            inputs = [_first_argument(block) for block in blocks]
            self.before_blocks = _piece(body.split_tensor, inputs[0])
            self.blocks = [
                keras.Model([x, padding_mask], block.output)
                for x, block in zip(inputs, blocks)
            ]
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
            x = block([block_input(index, x), padding_mask], training=training)
            outputs.append(x)
        return _apply(self.after_blocks, x, training), outputs


def _piece(start, end):
    return None if start is end else keras.Model(start, end)


def _apply(piece, x, training):
    return x if piece is None else piece(x, training=training)
