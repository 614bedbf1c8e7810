"""A keras-hub text backbone opened at its token embeddings."""

import json

import keras
import numpy as np
from keras import ops

TEXT_INPUTS = ("token_ids", "padding_mask")
OPTIONAL_TEXT_INPUTS = ("segment_ids",)

# Whether a backbone is causal depends on its architecture (class and
# configuration), not on its weights: probed once per architecture in a
# process instead of at every layer built on it (two eager backbone passes,
# which on JAX compile each op for the probe's shapes).
_CAUSALITY_BY_ARCHITECTURE = {}


def _refuse(backbone, reason):
    raise ValueError(
        "`backbone` must be a keras-hub text backbone that RecurrentSegments "
        f"can open at its token embeddings. {reason} "
        f"Received: backbone={type(backbone).__name__}"
    )


class BackboneBody:
    """Runs a keras-hub backbone on embeddings instead of token ids.

    Splits the backbone's functional graph at its token embedding (the
    reference code's `inputs_embeds`): `embed()` maps token ids to token
    embeddings, and calling the body maps (possibly longer, memory-holding)
    embeddings plus the other backbone inputs to the sequence output.
    Position embeddings, embedding norms, the transformer stack and the final
    norm all stay the backbone's own. Families that fuse token and position
    embeddings (`TokenAndPositionEmbedding`: OPT, RoBERTa, DistilBERT) are
    split after that layer, and positions are added here.

    Families with factorized embeddings (ALBERT, ELECTRA with
    `embedding_dim != hidden_dim`) embed tokens at a narrower width and
    project them to the hidden width. The memory lives at the hidden width,
    so they are split after that projection: `embed()` runs the whole
    embedding part on a segment's tokens (positions counted within the
    segment), and the memory joins the projected embeddings and takes no
    position of the table.

    This object holds no weights of its own and is not tracked by Keras: the
    backbone stays the owner of every variable.
    """

    def __init__(self, backbone):
        import keras_hub

        if not isinstance(backbone, keras_hub.models.Backbone):
            _refuse(backbone, "It is not a keras_hub.models.Backbone.")
        if not isinstance(backbone.input, dict) or any(
            name not in backbone.input for name in TEXT_INPUTS
        ):
            _refuse(backbone, "Its inputs are not token_ids and padding_mask.")
        unknown = set(backbone.input) - set(TEXT_INPUTS + OPTIONAL_TEXT_INPUTS)
        if unknown:
            _refuse(backbone, f"It takes inputs {sorted(unknown)}.")
        if getattr(backbone, "token_embedding", None) is None:
            _refuse(backbone, "It has no token_embedding.")

        self.backbone = backbone
        self.token_embedding = backbone.token_embedding
        self.extra_input_names = [
            name for name in OPTIONAL_TEXT_INPUTS if name in backbone.input
        ]
        self.position_embedding = None
        fused = getattr(backbone, "embeddings", None)
        if fused is not None and hasattr(fused, "position_embedding"):
            # TokenAndPositionEmbedding: the token embedding has no node of
            # its own in the graph, so split after the fused layer.
            split_at = fused.output
            self.position_embedding = fused.position_embedding
        else:
            try:
                split_at = self.token_embedding.output
            except (AttributeError, ValueError):
                _refuse(backbone, "Its token embedding is not in its graph.")
        output = backbone.output
        if isinstance(output, dict):
            output = output.get("sequence_output")
        if output is None or len(output.shape) != 3:
            _refuse(backbone, "It has no (batch, tokens, hidden) output.")
        self.sequence_output = output
        self.embedding_part = None
        if split_at.shape[-1] != output.shape[-1]:
            split_at = self._split_after_projection(split_at, output)
        self.split_tensor = split_at
        self.body_extra_names = list(self.extra_input_names)
        self.model = None
        if self.embedding_part is not None:
            # The projected embeddings may already hold what the other
            # inputs add (ALBERT's segment embedding).
            self.model = self._try_model(
                [split_at, backbone.input["padding_mask"]], output
            )
            if self.model is not None:
                self.body_extra_names = []
        if self.model is None:
            inputs = [backbone.input[name] for name in self.body_input_names]
            self.model = self._try_model([split_at, *inputs], output)
        if self.model is None:
            _refuse(backbone, "Its graph cannot be split there.")

    def _try_model(self, inputs, outputs):
        try:
            return keras.Model(
                inputs, outputs, name=f"{self.backbone.name}_body"
            )
        except Exception:  # Keras raises several types here.
            return None

    def _split_after_projection(self, embedded, output):
        """The output of the layer projecting embeddings to the hidden width.

        Sets `embedding_part`, the model from token ids (and segment ids)
        to the projected embeddings.
        """
        backbone = self.backbone
        narrow, wide = embedded.shape[-1], output.shape[-1]
        projection = None
        for layer in backbone.layers:
            try:
                shapes = (layer.input.shape, layer.output.shape)
            except (AttributeError, ValueError):
                continue
            if shapes[0][-1] == narrow and shapes[1][-1] == wide:
                projection = layer
                break
        if projection is None:
            _refuse(
                backbone,
                f"Its token embeddings ({narrow} wide) are not projected to "
                f"its hidden width ({wide}) by one layer.",
            )
        inputs = [backbone.input["token_ids"]] + [
            backbone.input[name] for name in self.extra_input_names
        ]
        self.embedding_part = self._try_model(inputs, projection.output)
        if self.embedding_part is None:
            _refuse(backbone, "Its embeddings cannot be split from its body.")
        return projection.output

    @property
    def body_input_names(self):
        return ["padding_mask", *self.extra_input_names]

    @property
    def hidden_dim(self):
        """The width of the body, of its outputs and of the memory."""
        return int(self.sequence_output.shape[-1])

    @property
    def vocabulary_size(self):
        size = getattr(self.token_embedding, "input_dim", None)
        return int(size) if size is not None else None

    @property
    def memory_takes_positions(self):
        """Whether memory vectors get positions of the position table."""
        return self.embedding_part is None

    @property
    def max_sequence_length(self):
        """Size of a learned position table, or None (rotary, no limit)."""
        table = self.position_embedding or getattr(
            self.backbone, "position_embedding", None
        )
        length = getattr(table, "sequence_length", None)
        return int(length) if length is not None else None

    @property
    def compute_dtype(self):
        return self.token_embedding.compute_dtype

    def embed(self, token_ids, extras, training=None):
        """Token ids (and `extras`) -> embeddings at the body's width."""
        if self.embedding_part is None:
            return self.token_embedding(token_ids)
        inputs = [token_ids] + [extras[n] for n in self.extra_input_names]
        return self.embedding_part(inputs, training=training)

    def embeddings_for_body(self, embeddings):
        if self.position_embedding is None:
            return embeddings
        return embeddings + self.position_embedding(embeddings)

    def __call__(self, embeddings, padding_mask, extras, training=None):
        inputs = [
            self.embeddings_for_body(ops.convert_to_tensor(embeddings)),
            ops.convert_to_tensor(padding_mask),
            *[
                ops.convert_to_tensor(extras[name])
                for name in self.body_extra_names
            ],
        ]
        return self.model(inputs, training=training)

    def is_causal(self):
        """Whether the first output ignores later tokens (a decoder).

        Probed on random embeddings the first time a backbone of this class
        and configuration is seen, then remembered.
        """
        key = self._architecture_key()
        if key is None:
            return self._probe_causality()
        if key not in _CAUSALITY_BY_ARCHITECTURE:
            _CAUSALITY_BY_ARCHITECTURE[key] = self._probe_causality()
        return _CAUSALITY_BY_ARCHITECTURE[key]

    def _architecture_key(self):
        """The backbone's class and configuration, or None without one."""
        backbone_class = type(self.backbone)
        try:
            config = dict(self.backbone.get_config())
        except Exception:  # A model without a configuration of its own.
            return None
        config.pop("name", None)  # Unique per instance; not architecture.
        config = json.dumps(config, sort_keys=True, default=repr)
        return (backbone_class.__module__, backbone_class.__qualname__, config)

    def _probe_causality(self):
        rng = np.random.default_rng(0)
        embeddings = rng.normal(size=(1, 4, self.hidden_dim)).astype("float32")
        changed = embeddings.copy()
        changed[:, -1] = rng.normal(size=self.hidden_dim)
        # Embeddings as the body gets them: in its compute dtype (TensorFlow
        # adds nothing else to the position embeddings of a mixed policy).
        embeddings, changed = (
            ops.cast(x, self.compute_dtype) for x in (embeddings, changed)
        )
        mask = np.ones((1, 4), "int32")
        extras = {
            name: np.zeros((1, 4), "int32") for name in self.body_extra_names
        }
        first = self(embeddings, mask, extras, training=False)[:, 0]
        second = self(changed, mask, extras, training=False)[:, 0]
        diff = ops.max(ops.abs(ops.cast(first - second, "float32")))
        return float(ops.convert_to_numpy(diff)) == 0.0
