"""Where keras-rmt uses a backend's own API, and why.

Model code (layers, tasks, metrics, callbacks) computes with `keras.ops`
only, the same on TensorFlow, JAX and PyTorch. The backend's own API
appears in three named places:

- `keras_rmt.backend.compiled`: compiling one segment step for inference
  (`jax.jit`, `tf.function` with XLA, `torch.no_grad`), and, on JAX, the
  cutting of an input into segments before it.
- `keras_rmt.export`: TF SavedModels are TensorFlow graphs, written from the
  TensorFlow backend directly and from JAX through `jax2tf`.
- `keras_rmt.distribution`: `keras.distribution` device meshes on JAX and
  `tf.distribute` strategies on TensorFlow.

Input pipelines are data code, not model code: like keras-hub's own
preprocessors, the RMT preprocessors, `utils/segment_packing.py` and
`keras_rmt.distribution.pad_to_segments` use TensorFlow (`tf.data`,
`tf.strings`) on every Keras backend.

Elsewhere `keras.backend.backend()` is read only to choose or refuse what a
backend cannot do, with the reason next to the check: the segment loop
(`layers/segment_loops.py`: no scan gradient or `remat` on TensorFlow, a
scan by default on JAX) and `SegmentCurriculum` (TensorFlow's `fit` fixes
the input shapes from its first batches).
"""
