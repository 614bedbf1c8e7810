import keras
import numpy as np
import pytest
from check_weights_under_backend import recall_model
from conftest import build_optimizer, random_batch
from tasks.first_token_recall import first_token_recall


def _fit_recall(carry_memory):
    data = first_token_recall(2048, seed=0)
    model = build_optimizer(recall_model(carry_memory), data)
    model.fit(*data, batch_size=64, epochs=4, verbose=0)
    return model.evaluate(*first_token_recall(512, seed=1), verbose=0)[1]


# The compiled fit and evaluate of a Functional RMT model on TensorFlow (and
# 128 steps for each model: eagerly they cost more than the trace). Four
# epochs: accuracy 1.0 from the second (TensorFlow), third (torch) or
# fourth (JAX) on; without memory at most 0.15 on each.
@pytest.mark.compiled
def test_fit_learns_recall_with_memory_and_not_without():
    assert _fit_recall(carry_memory=True) >= 0.95
    # 8 keys: chance is 0.125.
    assert _fit_recall(carry_memory=False) <= 0.25


class _VaryingLengths(keras.utils.PyDataset):
    """Batches of 6, 9 and 13 tokens: the model sees a new length each step."""

    def __init__(self):
        super().__init__()
        self.batches = []
        for index, length in enumerate([6, 9, 13] * 4):
            batch = random_batch(8, length, seed=index, lengths=[length - 2])
            batch["token_ids"] = batch["token_ids"] % 16
            self.batches.append((batch, batch["token_ids"][:, 0] % 8))

    def __len__(self):
        return len(self.batches)

    def __getitem__(self, index):
        return self.batches[index]


# Traced on TensorFlow: the claim is the compiled step's, that a length
# unknown when it is traced (None) takes each batch's new length.
@pytest.mark.compiled
def test_fit_and_predict_on_batches_of_different_lengths():
    data = _VaryingLengths()
    model = build_optimizer(recall_model(), data[0])
    history = model.fit(data, epochs=3, verbose=0)
    losses = history.history["loss"]
    assert losses[-1] < losses[0]
    for batch, _ in data.batches[:3]:
        np.testing.assert_allclose(
            model.predict(batch, verbose=0),
            keras.ops.convert_to_numpy(model(batch)),
            atol=1e-5,
        )
