"""`fit`, `evaluate` and `predict` on datasets of token ids for tasks that
carry a preprocessor."""

import keras


class TokenDatasetInputs:
    """Lets a keras-hub task `fit`, `evaluate` and `predict` on a
    `keras.utils.PyDataset`.

    keras-hub's `Task` maps its preprocessor over `x`, which must then be
    raw samples (strings, a `tf.data.Dataset`). A `keras.utils.PyDataset`,
    such as `keras_rmt.datasets.SegmentedDataset` (the segment curriculum's
    data), already yields token ids: Keras reads it as it is.
    """

    def fit(self, x=None, y=None, **kwargs):
        if isinstance(x, keras.utils.PyDataset):
            return keras.Model.fit(self, x, y, **kwargs)
        return super().fit(x, y, **kwargs)

    def evaluate(self, x=None, y=None, **kwargs):
        if isinstance(x, keras.utils.PyDataset):
            return keras.Model.evaluate(self, x, y, **kwargs)
        return super().evaluate(x, y, **kwargs)

    def predict(self, x=None, **kwargs):
        if isinstance(x, keras.utils.PyDataset):
            return keras.Model.predict(self, x, **kwargs)
        return super().predict(x, **kwargs)
