"""The `export()` method of the RMT tasks and of `RMTBackbone`."""

from keras_rmt.export.saved_model import export_task


class SavedModelExport:
    """Gives a task or backbone keras-rmt's SavedModel as its `export()`."""

    def export(self, filepath, format="tf_saved_model", verbose=None, **kwargs):
        """Writes the model for serving.

        With `format="tf_saved_model"` (the default), a TF SavedModel with
        the signatures `serve`, `serve_segment`, `initial_memory` and
        `metadata`, written atomically; pass `overwrite=True` to replace an
        existing export: see `keras_rmt.export.export_saved_model`. Other
        formats go to `keras.Model.export`.
        """
        return export_task(self, filepath, format, verbose, **kwargs)
