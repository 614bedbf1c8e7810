"""Tiny randomly initialised backbones and helpers shared by the tests."""

import atexit
import contextlib
import os
import shutil
import sys
import tempfile

# Set before Keras imports a backend (and inherited by the subprocesses the
# tests start). The models here are tiny: one thread per process spends less
# CPU than a pool whose threads wait on each other, the more so when the
# backends' test runs share the cores (`make test`). Measured on the 2-core
# machine, one test file: torch 81 -> 39 CPU seconds, JAX 123 -> 114.
for _variable in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_variable, "1")
# TensorFlow's inter-op pool keeps its threads: ops that wait on each other
# (a `tf.distribute` all-reduce) need more than one.
os.environ.setdefault("TF_NUM_INTRAOP_THREADS", "1")
# XLA (JAX, and TensorFlow's `jit_compile=True`) compiles each new shape of
# these small graphs; its optimising passes cost more than they save (JAX,
# one test file: 182 -> 123 CPU seconds; the demo model's first epoch 15.8
# -> 10.2 s, while its next 32 steps take 0.8 s instead of 0.3). The tests
# compare numbers, which both sides of each comparison compute with the
# same flags. XLA's CPU fusion emitters (its default) compile about twice
# as slowly as the older elemental emitters for these graphs (JAX, the text
# classifier's tests: 42.8 -> 22.6 s of backend compile, 75 -> 56 s).
FAST_XLA_FLAGS = (
    "--xla_cpu_use_fusion_emitters=false",
    "--xla_backend_optimization_level=0",
    "--xla_llvm_disable_expensive_passes=true",
    "--xla_cpu_multi_thread_eigen=false",
    "intra_op_parallelism_threads=1",
)
_given = os.environ.get("XLA_FLAGS", "")
os.environ["XLA_FLAGS"] = " ".join(
    [_given]
    + [f for f in FAST_XLA_FLAGS if f.split("=")[0].lstrip("-") not in _given]
).strip()

# JAX compiles the same small functions again and again: each test builds
# its own models, often alike. A compilation cache shared by this run (and
# the processes it starts) reuses them; it starts empty, so nothing outlives
# the run (JAX, one test file: 114 -> 96 CPU seconds).
if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
    _cache = tempfile.mkdtemp(prefix="keras_rmt_tests_jax_cache_")
    atexit.register(shutil.rmtree, _cache, ignore_errors=True)
    os.environ["JAX_COMPILATION_CACHE_DIR"] = _cache
    os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"
    os.environ["JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES"] = "0"

import keras  # noqa: E402
import keras_hub  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

import keras_rmt  # noqa: E402
from keras_rmt.backend.compiled import jax_jit_reading_weights  # noqa: E402

# The examples are tested through their own functions.
sys.path.insert(
    0,
    os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "examples"),
)

VOCABULARY_SIZE = 64
HIDDEN_DIM = 16
POSITIONS = 32


def _common(num_heads_key="num_heads"):
    return {
        "vocabulary_size": VOCABULARY_SIZE,
        "num_layers": 2,
        num_heads_key: 2,
        "hidden_dim": HIDDEN_DIM,
        "intermediate_dim": 32,
    }


def _learned_positions(**extra):
    return {
        **_common(),
        "dropout": 0.0,
        "max_sequence_length": POSITIONS,
        **extra,
    }


def _rotary(**extra):
    return {**_common("num_query_heads"), "num_key_value_heads": 1, **extra}


# Each takes overrides of its config's values (`make_backbone`).
BACKBONES = {
    "gpt2": lambda **o: keras_hub.models.GPT2Backbone(
        **_learned_positions(**o)
    ),
    "opt": lambda **o: keras_hub.models.OPTBackbone(**_learned_positions(**o)),
    "llama": lambda **o: keras_hub.models.LlamaBackbone(**_rotary(**o)),
    "mistral": lambda **o: keras_hub.models.MistralBackbone(**_rotary(**o)),
    "gemma": lambda **o: keras_hub.models.GemmaBackbone(
        **_rotary(head_dim=8, **o)
    ),
    "bert": lambda **o: keras_hub.models.BertBackbone(
        **_learned_positions(**o)
    ),
    "roberta": lambda **o: keras_hub.models.RobertaBackbone(
        **_learned_positions(**o)
    ),
    "distilbert": lambda **o: keras_hub.models.DistilBertBackbone(
        **_learned_positions(**o)
    ),
    "mixtral": lambda **o: keras_hub.models.MixtralBackbone(
        **_rotary(num_experts=4, top_k=2, router_aux_loss_coef=10.0, **o)
    ),
    "albert": lambda **o: keras_hub.models.AlbertBackbone(
        **_learned_positions(embedding_dim=8, **o)
    ),
    "qwen3": lambda **o: keras_hub.models.Qwen3Backbone(
        **_rotary(head_dim=8, **o)
    ),
    "phi3": lambda **o: keras_hub.models.Phi3Backbone(**_rotary(**o)),
}
DECODERS = ("gpt2", "opt", "llama", "mistral", "gemma")
ENCODERS = ("bert", "roberta", "distilbert")


def make_backbone(family, seed=0, **overrides):
    """The family's tiny backbone; `overrides` replace its config's values."""
    keras.utils.set_random_seed(seed)
    return BACKBONES[family](**overrides)


def wrap_rmt(backbone, num_tokens=2, segment_length=4, **kwargs):
    """`backbone` as a `RecurrentSegments` with `num_tokens` memory tokens."""
    return keras_rmt.layers.RecurrentSegments(
        backbone,
        memory=keras_rmt.layers.MemoryTokens(num_tokens),
        segment_length=segment_length,
        **kwargs,
    )


def make_rmt(family="gpt2", num_tokens=2, segment_length=4, seed=0, **kwargs):
    return wrap_rmt(
        make_backbone(family, seed), num_tokens, segment_length, **kwargs
    )


def text_inputs(length=None):
    return {
        "token_ids": keras.Input((length,), dtype="int32", name="token_ids"),
        "padding_mask": keras.Input(
            (length,), dtype="int32", name="padding_mask"
        ),
    }


def random_batch(batch, length, seed=0, lengths=None):
    """Token ids in [3, vocabulary) and a mask with trailing padding."""
    rng = np.random.default_rng(seed)
    ids = rng.integers(3, VOCABULARY_SIZE, (batch, length)).astype("int32")
    mask = np.ones((batch, length), "int32")
    for row, row_length in enumerate(lengths or []):
        mask[row, row_length:] = 0
        ids[row, row_length:] = 0
    return {"token_ids": ids, "padding_mask": mask}


def numpy(tree):
    return keras.tree.map_structure(keras.ops.convert_to_numpy, tree)


def gradient(loss_fn, variable):
    """d loss_fn() / d variable, as numpy, on the current backend."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        with tf.GradientTape() as tape:
            loss = loss_fn()
        grad = tape.gradient(loss, variable.value)
        return tf.convert_to_tensor(grad).numpy()
    if backend == "jax":
        import jax

        def loss_of(value):
            with keras.StatelessScope(state_mapping=[(variable, value)]):
                return loss_fn()

        return np.asarray(jax.grad(loss_of)(variable.value))
    if backend == "torch":
        variable.value.grad = None
        loss_fn().backward()
        return variable.value.grad.detach().cpu().numpy()
    raise NotImplementedError(backend)


@contextlib.contextmanager
def dtype_policy(name):
    """Keras' global dtype policy set to `name` inside the block, the one
    before restored after it (models built inside keep `name`)."""
    before = keras.config.dtype_policy()
    keras.config.set_dtype_policy(name)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(before)


def jitted_on_jax(layer, function):
    """`function` (reading `layer`'s weights) jitted on JAX, else itself.

    Op by op, JAX dispatches and compiles every operation of every call; a
    function called many times on the same shapes costs a fraction of that
    jitted once. TensorFlow and torch run it eagerly, cheaply. Arguments
    that vary from call to call must be arrays, not Python numbers.
    """
    if keras.backend.backend() != "jax":
        return function
    return jax_jit_reading_weights(layer, function)


def build_optimizer(model, data=None):
    """Builds a compiled `model`'s optimizer now, before `fit`; returns `model`.

    On TensorFlow, Keras otherwise creates the optimizer's variables inside
    the first trace of the train function, and TensorFlow then traces that
    function a second time: every segment of the model twice (a 3-segment
    GPT-2 classifier's `fit`: 23 -> 10 CPU seconds, same losses). JAX and
    torch build it at the start of `fit` anyway.

    The compiled metrics' variables (`accuracy`, the loss of each segment)
    are made inside that first trace too. Given `data`, one batch of what
    the train step receives (`(x, y)` or `(x, y, sample_weight)`, after any
    preprocessor), they are built now from its shapes, as Keras does under
    a distribution strategy (TensorFlow, the first-token recall model's
    build and first epoch: 7.9 -> 6.7 CPU seconds).
    """
    if not model.optimizer.built:
        model.optimizer.build(model.trainable_variables)
    if data is not None and keras.backend.backend() == "tensorflow":
        model._symbolic_build(data_batch=data)
    return model


@pytest.fixture(autouse=True)
def _seed():
    keras.utils.set_random_seed(0)


@pytest.fixture(autouse=True)
def _eager_on_tensorflow(request, monkeypatch):
    """TensorFlow runs Keras models eagerly unless the test is `compiled`.

    Tracing a `tf.function` costs more than these tiny models' steps: a
    compiled `fit` of a 2-segment classifier takes 16.5 CPU seconds, an
    eager one 1.3, and the numbers are the same. So the tests that check
    numbers run models eagerly (`fit`, `predict`, `evaluate`, `generate`
    read `run_eagerly`), and each path keeps tests marked
    `@pytest.mark.compiled` that run it traced, as users run it. JAX and
    torch run as users do (JAX eagerly is slower than compiled).
    """
    if keras.backend.backend() != "tensorflow":
        return
    if request.node.get_closest_marker("compiled"):
        return
    monkeypatch.setattr(
        keras.Model,
        "run_eagerly",
        property(lambda self: True, lambda self, value: None),
    )


# === Tokenizers built from vocabularies written here (no downloads) ===
# Every vocabulary fits VOCABULARY_SIZE, so these tokenizers feed the tiny
# backbones above.

WORDPIECE_VOCABULARY = (
    ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    + list("abcdefghijklmnopqrstuvwxyz0123456789")
    + ["the", "quick", "brown", "fox", "jump", "##s", "##ed", "over"]
    + ["lazy", "dog", ".", "?"]
)
BPE_CHARACTERS = list("abcdefghijklmnopqrstuvwxyz0123456789.?")
BPE_MERGES = ["t h", "th e", "Ġ the", "Ġ f", "o x", "Ġf ox"]
BPE_MERGES += ["Ġ d", "o g", "Ġd og"]
SENTENCEPIECE_CORPUS = [
    "the quick brown fox jumps over the lazy dog",
    "a cat sat on the mat",
    "key 1 2 3 value 4 5 6 what is the key",
] * 10


def bpe_vocabulary(specials):
    """Byte-level BPE vocabulary: `specials`, then characters, then merges."""
    vocabulary = {token: i for i, token in enumerate(specials)}
    for token in ["Ġ"] + BPE_CHARACTERS:
        vocabulary[token] = len(vocabulary)
    for merge in BPE_MERGES:
        vocabulary[merge.replace(" ", "")] = len(vocabulary)
    return vocabulary


@pytest.fixture(scope="module")
def wordpiece_tokenizer():
    """A BERT WordPiece tokenizer: [CLS]=2, [SEP]=3, [PAD]=0."""
    return keras_hub.models.BertTokenizer(vocabulary=WORDPIECE_VOCABULARY)


@pytest.fixture(scope="module")
def gpt2_tokenizer():
    """A GPT-2 byte-pair tokenizer: <|endoftext|>=0 starts and ends."""
    return keras_hub.models.GPT2Tokenizer(
        vocabulary=bpe_vocabulary(["<|endoftext|>"]), merges=BPE_MERGES
    )


@pytest.fixture(scope="module")
def roberta_tokenizer():
    """A RoBERTa byte-pair tokenizer: <s>=0, <pad>=1, </s>=2, <mask>=3."""
    return keras_hub.models.RobertaTokenizer(
        vocabulary=bpe_vocabulary(["<s>", "<pad>", "</s>", "<mask>"]),
        merges=BPE_MERGES,
    )


@pytest.fixture(scope="module")
def sentencepiece_proto():
    """A tiny SentencePiece model: <unk>=0, <s>=1, </s>=2 (Llama's ids)."""
    import io

    import sentencepiece

    model = io.BytesIO()
    sentencepiece.SentencePieceTrainer.train(
        sentence_iterator=iter(SENTENCEPIECE_CORPUS),
        model_writer=model,
        vocab_size=48,
        model_type="bpe",
        unk_id=0,
        bos_id=1,
        eos_id=2,
        pad_id=-1,
        character_coverage=1.0,
        num_threads=1,
        minloglevel=2,
    )
    return model.getvalue()


@pytest.fixture
def llama_tokenizer(sentencepiece_proto):
    """A Llama SentencePiece tokenizer: <s>=1, </s>=2, padding 0.

    Built per test: `tf.random.set_seed` (the `_seed` fixture, through
    `keras.utils.set_random_seed`) frees the TensorFlow resource of a
    SentencePiece tokenizer built before it, and `tf.data` then fails with
    "Resource ... SentencepieceOp ... does not exist" (any backend).
    """
    return keras_hub.models.LlamaTokenizer(proto=sentencepiece_proto)


def save_local_preset(directory, family, tokenizer=None, seed=0, **overrides):
    """A keras-hub preset folder: a tiny `family` backbone and a tokenizer.

    Presets cannot be downloaded here; loading from this folder takes the
    same code path as a downloadable preset name. `overrides` replace the
    backbone config's values (`make_backbone`).
    """
    make_backbone(family, seed, **overrides).save_to_preset(str(directory))
    if tokenizer is not None:
        tokenizer.save_to_preset(str(directory))
    return str(directory)


def wrap_rmt_backbone(backbone, num_memory_tokens=2, segment_length=4, **kw):
    """`backbone` as a `keras_rmt.models.RMTBackbone`."""
    return keras_rmt.models.RMTBackbone(
        backbone,
        num_memory_tokens=num_memory_tokens,
        segment_length=segment_length,
        **kw,
    )


def make_rmt_backbone(
    family="gpt2", num_memory_tokens=2, segment_length=4, seed=0, **kwargs
):
    """A tiny keras_rmt.models.RMTBackbone over `family`."""
    return wrap_rmt_backbone(
        make_backbone(family, seed), num_memory_tokens, segment_length, **kwargs
    )


def backbone_inputs(batch, family):
    """`batch` plus the zero segment ids the family's backbone takes."""
    if family in ("bert",):
        return {**batch, "segment_ids": np.zeros_like(batch["token_ids"])}
    return dict(batch)


@pytest.fixture(scope="session")
def bare_bert_preset(tmp_path_factory):
    """A preset folder with a tiny BERT backbone and no tokenizer.

    Copy it (`shutil.copytree`) before adding files. Built once: a first
    backbone costs seconds on JAX.
    """
    return save_local_preset(tmp_path_factory.mktemp("bare_bert"), "bert")


# === Shared by the segment tests ===

_SHARED_BACKBONES = {}


def shared_backbone(family):
    """The family's tiny backbone (seed 0), built once per test run.

    For tests that only read its weights: building a backbone costs about
    0.6 CPU seconds, and many tests wrap the same one with other options.
    Several `RecurrentSegments` layers may wrap it at once.
    """
    if family not in _SHARED_BACKBONES:
        _SHARED_BACKBONES[family] = make_backbone(family)
    return _SHARED_BACKBONES[family]


def make_rmt_on_shared(family="gpt2", num_tokens=2, segment_length=4, **kw):
    """As `make_rmt`, around `shared_backbone(family)`: never train it."""
    return wrap_rmt(shared_backbone(family), num_tokens, segment_length, **kw)


# === Shared by the causal LM tests ===


def generation_functions(causal_lm):
    """`causal_lm`'s `start_generation` and `next_logits`, jitted on JAX.

    Op by op, JAX compiles every operation of every step; jitted, each
    function compiles once for the whole loop. The path `generate` compiles
    is tested through `generate` on every backend.
    """
    start = jitted_on_jax(causal_lm, causal_lm.start_generation)
    step = jitted_on_jax(causal_lm, causal_lm.next_logits)

    def next_logits(prompt, cache, index):
        return step(prompt, cache, keras.ops.convert_to_tensor(index, "int32"))

    return start, next_logits


_exit_status = []


def pytest_sessionfinish(session, exitstatus):
    _exit_status.append(int(exitstatus))


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config):
    """Ends the process once the session is reported, skipping teardown.

    Tearing down a process that imported TensorFlow, JAX or torch (the
    interpreter freeing every object, the backends' own teardown) tells
    nothing and took seconds: a JAX test file's process 9.8 -> 1.8 s from
    its summary to its end; `make test`'s JAX run 50 -> 27 s outside
    pytest's own timer, its import included. The `atexit` handlers still
    run (they remove the run's JAX compilation cache).
    """
    if not _exit_status:
        return
    sys.stdout.flush()
    sys.stderr.flush()
    atexit._run_exitfuncs()
    os._exit(_exit_status[0])
