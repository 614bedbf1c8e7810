"""`python -m keras_rmt export MODEL.keras OUT_DIR`: SavedModels from any
backend.

Keras writes TF SavedModels from TensorFlow and JAX only. The command loads
a `.keras` file (saved under any backend, PyTorch included) under the backend
asked for and exports it with `keras_rmt.export.export_saved_model`. When the
current process runs another backend, it replaces itself (`os.execve`) with
one that runs the backend asked for: no child process is left to outlive it.
"""

import argparse
import contextlib
import importlib
import os
import signal
import sys
import zipfile

import keras

from keras_rmt.export.saved_model import EXPORT_BACKENDS, export_saved_model


def main(argv=None):
    """Runs the command line; returns the exit status."""
    argv = sys.argv[1:] if argv is None else list(argv)
    args = _parser().parse_args(argv)
    if keras.backend.backend() != args.backend:
        if os.environ.get("KERAS_BACKEND") == args.backend:
            raise RuntimeError(
                f"KERAS_BACKEND={args.backend} is set, but Keras runs on "
                f"{keras.backend.backend()!r}: was Keras imported before?"
            )
        # The backend is fixed once Keras is imported: become a process
        # that imports it with the backend asked for. The process id stays,
        # so a signal sent to this command reaches the export itself.
        environment = {**os.environ, "KERAS_BACKEND": args.backend}
        command = [sys.executable, "-m", "keras_rmt", *argv]
        sys.stdout.flush()
        sys.stderr.flush()
        os.execve(sys.executable, command, environment)
    with _exit_on_sigterm():
        for module in args.imports:
            importlib.import_module(module)
        model = load(args.model, safe_mode=args.safe_mode == "true")
        export_saved_model(
            model, args.out_dir, overwrite=args.overwrite, verbose=args.verbose
        )
    print(
        f"Wrote a SavedModel from the {args.backend} backend to "
        f"{args.out_dir} with signatures serve, serve_segment, "
        "initial_memory and metadata."
    )
    return 0


def load(path, safe_mode=True):
    """`keras.saving.load_model(path)`, saying so when the file is damaged.

    A `.keras` file is a zip archive; one cut short (an interrupted copy or
    save) lacks the archive's index, and Keras then reports a missing file.
    """
    if os.path.isfile(path) and not zipfile.is_zipfile(path):
        raise ValueError(
            f"{path} is damaged: it is not a complete .keras archive (a zip "
            "file), as when a copy or a save was cut short. Save or copy the "
            f"model again. Received: model={path!r}"
        )
    return keras.saving.load_model(path, compile=False, safe_mode=safe_mode)


@contextlib.contextmanager
def _exit_on_sigterm():
    """SIGTERM (as `timeout` or a scheduler sends) raises SystemExit, so that
    an export cut short removes its temporary folder on the way out."""

    def stop(number, frame):
        raise SystemExit(128 + number)

    try:
        previous = signal.signal(signal.SIGTERM, stop)
    except ValueError:  # Not the main thread: leave signals alone.
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _parser():
    parser = argparse.ArgumentParser(
        prog="python -m keras_rmt",
        description="keras-rmt command line tools.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    export = commands.add_parser(
        "export",
        help="Export a .keras RMT model as a TF SavedModel.",
        description=(
            "Load a .keras RMT model (saved under any backend) and write it "
            "as a TF SavedModel with the signatures serve, serve_segment, "
            "initial_memory and metadata. Replaces the current process with "
            "one running the backend asked for when Keras runs another."
        ),
    )
    export.add_argument("model", help="The .keras file to export.")
    export.add_argument("out_dir", help="The SavedModel folder to write.")
    export.add_argument(
        "--backend",
        choices=EXPORT_BACKENDS,
        default="tensorflow",
        help="The Keras backend that writes the SavedModel. Default: "
        "tensorflow.",
    )
    export.add_argument(
        "--import",
        dest="imports",
        action="append",
        default=[],
        metavar="MODULE",
        help="A module to import first, e.g. one that registers the model's "
        "custom layers. Can be repeated.",
    )
    export.add_argument(
        "--safe-mode",
        choices=("true", "false"),
        default="true",
        help="Keras' safe_mode for loading: 'false' lets a model you trust "
        "run the Python code it holds (Lambda layers). Default: true.",
    )
    export.add_argument(
        "--overwrite",
        action="store_true",
        help="Replace OUT_DIR when it exists and is not empty.",
    )
    export.add_argument(
        "--verbose",
        action="store_true",
        help="Print the signatures, one line each.",
    )
    return parser
