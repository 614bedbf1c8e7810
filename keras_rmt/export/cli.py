"""`python -m keras_rmt export MODEL.keras OUT_DIR`: SavedModels from any
backend.

Keras writes TF SavedModels from TensorFlow and JAX only. The command loads
a `.keras` file (saved under any backend, PyTorch included) under the backend
asked for, in a new Python process when the current one runs another, and
exports it there with `keras_rmt.export.export_saved_model`.
"""

import argparse
import importlib
import os
import subprocess
import sys

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
        # The backend is fixed once Keras is imported: start a process
        # that imports it with the backend asked for.
        environment = {**os.environ, "KERAS_BACKEND": args.backend}
        command = [sys.executable, "-m", "keras_rmt", *argv]
        return subprocess.run(command, env=environment).returncode
    for module in args.imports:
        importlib.import_module(module)
    model = keras.saving.load_model(args.model, compile=False)
    export_saved_model(model, args.out_dir, verbose=args.verbose)
    print(
        f"Wrote a SavedModel from the {args.backend} backend to "
        f"{args.out_dir} with signatures serve, serve_segment and "
        "initial_memory."
    )
    return 0


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
            "as a TF SavedModel with the signatures serve, serve_segment "
            "and initial_memory. Runs in a new process when the current "
            "Keras backend is not the one asked for."
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
        "--verbose", action="store_true", help="Print the signatures."
    )
    return parser
