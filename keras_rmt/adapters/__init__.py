"""How keras-rmt runs any keras-hub backbone's own layers around a memory.

Nothing here holds weights or is tracked by Keras: every adapter reads a
keras-hub backbone's functional graph and calls the backbone's own layers,
so the backbone stays the owner of its variables (and `RMTBackbone`, the
backbone users build, lives with the tasks in `keras_rmt.models`, as
keras-hub keeps its backbones with its models).

- `backbone_body`: `BackboneBody` opens a backbone at its token embeddings
  and runs the rest of it (positions, blocks, final norm) on embeddings
  that hold the memory.
- `memory_layout`: where the memory block sits among a segment's token
  embeddings (decoder, encoder, write-only).
- `decoder_stack`: the blocks run with an attention mask of ours
  (`memory_attention="bidirectional"`).
- `decoder_blocks`: the blocks run one by one, with a hook before each
  (associative memory).
- `inference_attention`: attention layers run fused when not training.
"""
