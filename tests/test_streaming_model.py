import re

import keras
import numpy as np
import pytest
from conftest import make_rmt_on_shared, numpy, random_batch, text_inputs

import keras_rmt

SEGMENT_LENGTH = 4


def initial_memory(rmt, batch):
    return numpy(rmt.memory(np.zeros((batch, 1, rmt.hidden_dim), "float32")))


def stream(stream_model, rmt, inputs, output):
    """`inputs` fed segment by segment; per-token outputs and final memory."""
    memory = initial_memory(rmt, inputs["token_ids"].shape[0])
    pieces = []
    for start in range(0, inputs["token_ids"].shape[1], SEGMENT_LENGTH):
        segment = {
            k: v[:, start : start + SEGMENT_LENGTH] for k, v in inputs.items()
        }
        outputs = numpy(stream_model({**segment, "memory": memory}))
        memory = outputs["memory"]
        pieces.append(outputs[output])
    return np.concatenate(pieces, axis=1), memory


def test_streaming_segments_gives_the_outputs_of_one_call():
    # A task-like model around a model with list inputs: both are replayed.
    rmt = make_rmt_on_shared("gpt2", 2, SEGMENT_LENGTH)
    token_ids, padding_mask = text_inputs().values()
    sequence = rmt({"token_ids": token_ids, "padding_mask": padding_mask})
    inner = keras.Model([token_ids, padding_mask], sequence["sequence_output"])
    inputs = text_inputs()
    hidden = inner([inputs["token_ids"], inputs["padding_mask"]])
    model = keras.Model(inputs, {"logits": keras.layers.Dense(3)(hidden)})

    stream_model = keras_rmt.export.streaming_model(model)
    assert sorted(stream_model.input) == ["memory", "padding_mask", "token_ids"]
    assert sorted(stream_model.output) == ["logits", "memory"]
    # Every weight is shared: nothing was copied.
    assert sorted(map(id, stream_model.weights)) == sorted(
        map(id, model.weights)
    )
    whole = keras_rmt.export.streaming_model(model, memory_input=False)
    assert sorted(whole.input) == ["padding_mask", "token_ids"]

    # The last row is padding after 2 tokens: its memory must stand still.
    batch = random_batch(3, 11, lengths=[11, 6, 2])
    expected = numpy(whole(batch))
    np.testing.assert_array_equal(
        expected["logits"], numpy(model(batch))["logits"]
    )
    logits, memory = stream(stream_model, rmt, batch, "logits")
    np.testing.assert_allclose(logits, expected["logits"], atol=1e-6, rtol=0)
    np.testing.assert_allclose(memory, expected["memory"], atol=1e-6, rtol=0)


def test_models_without_one_recurrent_segments_layer_are_refused():
    inputs = text_inputs()
    plain = keras.Model(
        inputs, keras.layers.Embedding(64, 4)(inputs["token_ids"])
    )
    with pytest.raises(
        ValueError,
        match=re.escape(
            "Streaming and export need a functional keras.Model holding "
            "exactly one keras_rmt.layers.RecurrentSegments layer. Received: "
            "model='plain' of type Functional with 0 RecurrentSegments "
            "layers []"
        ),
    ):
        plain.name = "plain"
        keras_rmt.export.streaming_model(plain)

    first = make_rmt_on_shared("gpt2", name="first")
    second = make_rmt_on_shared("gpt2", name="second")
    both = keras.Model(
        inputs,
        [first(inputs)["sequence_output"], second(inputs)["sequence_output"]],
        name="both",
    )
    with pytest.raises(
        ValueError, match=re.escape("with 2 RecurrentSegments layers")
    ):
        keras_rmt.export.streaming_model(both)


def test_an_output_named_memory_must_be_the_memory():
    inputs = text_inputs()
    rmt = make_rmt_on_shared("gpt2", 2, SEGMENT_LENGTH)
    outputs = rmt(inputs)
    model = keras.Model(
        inputs,
        {
            "memory": outputs["sequence_output"],
            "logits": keras.layers.Dense(3)(outputs["sequence_output"]),
        },
    )
    with pytest.raises(
        ValueError,
        match=re.escape(
            "The model already has an output named 'memory' that is not the "
            "memory of its RecurrentSegments layer. Rename that output. "
            "Received: model outputs ['logits', 'memory']"
        ),
    ):
        keras_rmt.export.streaming_model(model)
    # The layer's own memory as an output is fine.
    model = keras.Model(inputs, outputs)
    stream_model = keras_rmt.export.streaming_model(model)
    assert sorted(stream_model.output) == ["memory", "sequence_output"]


def test_outputs_are_named_for_what_they_are():
    inputs = text_inputs()
    rmt = make_rmt_on_shared("gpt2", 2, SEGMENT_LENGTH)
    hidden = rmt(inputs)["sequence_output"]
    # Auto-numbered layers name neither output.
    head = keras.layers.Dense(3)(hidden)
    for output, name in ((head, "logits"), (hidden, "sequence_output")):
        stream_model = keras_rmt.export.streaming_model(
            keras.Model(inputs, output)
        )
        assert sorted(stream_model.output) == sorted([name, "memory"])
    with pytest.raises(
        ValueError,
        match=re.escape(
            "Streaming and export name the served outputs by the keys of a "
            "dict: build the model with a dict of outputs, e.g. "
            "`keras.Model(inputs, {'logits': ..., 'scores': ...})`. "
            "Received: model 'two' with 2 outputs in a list"
        ),
    ):
        keras_rmt.export.streaming_model(
            keras.Model(inputs, [head, hidden], name="two")
        )


def test_streaming_without_carried_memory_gives_the_outputs_of_one_call():
    # Every segment reads the initial memory, which each streamed segment
    # hands back: the outputs and memory of one call (a served stream read
    # the memory each segment wrote).
    rmt = make_rmt_on_shared("gpt2", 2, SEGMENT_LENGTH, carry_memory=False)
    inputs = text_inputs()
    hidden = rmt(inputs)["sequence_output"]
    model = keras.Model(inputs, {"logits": keras.layers.Dense(3)(hidden)})
    stream_model = keras_rmt.export.streaming_model(model)
    whole = keras_rmt.export.streaming_model(model, memory_input=False)
    batch = random_batch(2, 11, lengths=[11, 6])
    expected = numpy(whole(batch))
    logits, memory = stream(stream_model, rmt, batch, "logits")
    np.testing.assert_allclose(logits, expected["logits"], atol=1e-6, rtol=0)
    np.testing.assert_allclose(memory, expected["memory"], atol=1e-6, rtol=0)
    np.testing.assert_allclose(
        memory, initial_memory(rmt, 2), atol=1e-6, rtol=0
    )
