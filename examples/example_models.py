"""The three models every paper example compares, and a one-segment reader.

Every example trains a small GPT-2-style model read segment by segment by
`keras_rmt.layers.RecurrentSegments` ("RMT"), the same model with memory
that is not carried between segments ("no memory", `carry_memory=False`)
and, where it fits, the same backbone attending over the whole input at
once ("full attention"). Models predict a token at every position; only
positions with `sample_weight` 1 count towards loss and accuracy.
"""

import keras
import keras_hub
import numpy as np

import keras_rmt

MODEL_KINDS = ("RMT", "no memory", "full attention")


def build_model(
    kind,
    vocabulary_size,
    segment_length,
    num_memory_tokens,
    hidden_dim=64,
    num_layers=2,
    num_heads=4,
    learning_rate=1e-3,
    max_length=None,
    memory_attention="bidirectional",
    segment_loop="auto",
    kernel_stddev=None,
    embedding_stddev=None,
    dropout=0.0,
    seed=0,
):
    """A compiled model giving next-token logits at every position.

    `kind` is one of `MODEL_KINDS`; "full attention" needs `max_length`,
    the longest input, and ignores the segment settings. `segment_loop`
    goes to `RecurrentSegments`: on a GPU, `"unrolled"` trained these small
    models 1.6x faster a step than the scan (6.4 against 10.2 ms on an H100,
    copy 24/48 over 6 segments), for a longer first compile.
    `kernel_stddev` and `embedding_stddev`, where given, redraw the
    backbone's kernels and embeddings at that scale (`redraw_weights`); None
    keeps keras-hub's. `dropout` is the backbone's (GPT-2 uses 0.1).
    """
    if kind not in MODEL_KINDS:
        raise ValueError(f"`kind` must be one of {MODEL_KINDS}. Got {kind!r}")
    keras.utils.set_random_seed(seed)
    positions = (
        max_length
        if kind == "full attention"
        else segment_length + 2 * num_memory_tokens
    )
    backbone = keras_hub.models.GPT2Backbone(
        vocabulary_size=vocabulary_size,
        num_layers=num_layers,
        num_heads=num_heads,
        hidden_dim=hidden_dim,
        intermediate_dim=4 * hidden_dim,
        dropout=dropout,
        max_sequence_length=positions,
    )
    redraw_weights(backbone, kernel_stddev, embedding_stddev, seed)
    inputs = {
        "token_ids": keras.Input((None,), dtype="int32", name="token_ids"),
        "padding_mask": keras.Input(
            (None,), dtype="int32", name="padding_mask"
        ),
    }
    if kind == "full attention":
        hidden = backbone(inputs)
    else:
        rmt = keras_rmt.layers.RecurrentSegments(
            backbone,
            memory=keras_rmt.layers.MemoryTokens(num_memory_tokens),
            segment_length=segment_length,
            memory_attention=memory_attention,
            carry_memory=kind == "RMT",
            segment_loop=segment_loop,
        )
        hidden = rmt(inputs)["sequence_output"]
    logits = keras.layers.Dense(vocabulary_size, name="head")(hidden)
    model = keras.Model(inputs, logits, name=kind.replace(" ", "_"))
    model.compile(
        optimizer=keras.optimizers.AdamW(
            learning_rate, weight_decay=0.01, clipnorm=1.0
        ),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        weighted_metrics=[
            keras.metrics.SparseCategoricalAccuracy(name="accuracy")
        ],
    )
    return model


def build_from_config(
    kind, vocabulary_size, segment_length, config, max_length=None, seed=0
):
    """`build_model` with the sizes and options of an example's config.

    Reads `num_memory_tokens`, `hidden_dim`, `num_layers`, `num_heads` and
    `learning_rate`, and where present `memory_attention`, `segment_loop`,
    `kernel_stddev`, `embedding_stddev` and `dropout` (otherwise
    `build_model`'s defaults).
    """
    options = (
        "memory_attention", "segment_loop", "kernel_stddev",
        "embedding_stddev", "dropout",
    )  # fmt: skip
    return build_model(
        kind,
        vocabulary_size,
        segment_length,
        config["num_memory_tokens"],
        hidden_dim=config["hidden_dim"],
        num_layers=config["num_layers"],
        num_heads=config["num_heads"],
        learning_rate=config["learning_rate"],
        max_length=max_length,
        seed=seed,
        **{name: config[name] for name in options if name in config},
    )


def redraw_weights(backbone, kernel_stddev, embedding_stddev, seed=0):
    """Redraws the backbone's kernels and embeddings from normal laws.

    keras-hub's GPT-2 draws both with GPT-2's 0.02 (embeddings 0.01), made
    for 768 wide models. In a 64 or 128 wide one, attention scores then
    start near zero, and so does their gradient, the product of two such
    small matrices: a model that must learn a lookup (associative
    retrieval) stays for thousands of steps where it answers one of the
    row's values at random. Kernels at about `hidden_dim ** -0.5` get past
    that in hundreds. The memory an RMT carries is the backbone's final
    layer-norm output, about 1 per dimension; embeddings at 1 put the
    tokens of a segment at the same scale. A None standard deviation keeps
    keras-hub's; biases and layer norms are always kept.
    """
    rng = np.random.default_rng(seed)
    stddevs = {"kernel": kernel_stddev, "embeddings": embedding_stddev}
    for variable in backbone.weights:
        stddev = stddevs.get(variable.name)
        if stddev is not None:
            variable.assign(rng.normal(0.0, stddev, variable.shape))


def last_token_reader(model):
    """Reads one segment per call: `(segment, memory) -> (logits, memory)`.

    Compiles one segment step, whatever the input's length: the way to run
    an RMT over many more segments than it was trained on. The logits are
    those of the segment's last position.
    """
    rmt = next(
        layer
        for layer in model.layers
        if isinstance(layer, keras_rmt.layers.RecurrentSegments)
    )
    length = rmt.segment_length
    inputs = {
        "token_ids": keras.Input((length,), dtype="int32", name="token_ids"),
        "padding_mask": keras.Input(
            (length,), dtype="int32", name="padding_mask"
        ),
        "memory": keras.Input(
            (rmt.num_memory_tokens, rmt.hidden_dim), name="memory"
        ),
    }
    outputs = rmt(inputs)
    logits = model.get_layer("head")(outputs["sequence_output"][:, -1])
    step = keras.Model(inputs, [logits, outputs["memory"]])
    initial = keras.ops.convert_to_numpy(
        rmt.memory(keras.ops.zeros((1, 1, rmt.hidden_dim)))
    )

    def read(inputs, batch_size=128):
        """Last-position logits of rows whose length is whole segments."""
        token_ids, mask = inputs["token_ids"], inputs["padding_mask"]
        count = token_ids.shape[1] // length
        results = []
        for start in range(0, len(token_ids), batch_size):
            rows = slice(start, start + batch_size)
            batch = len(token_ids[rows])
            memory = np.repeat(initial, batch, axis=0)
            for index in range(count):
                cut = slice(index * length, (index + 1) * length)
                logits, written = step.predict_on_batch(
                    {
                        "token_ids": token_ids[rows, cut],
                        "padding_mask": mask[rows, cut],
                        "memory": memory,
                    }
                )
                if rmt.carry_memory:
                    memory = np.asarray(written)
            results.append(np.asarray(logits))
        return np.concatenate(results)

    return read
