"""A small TF-Serving-like REST server for a SavedModel, TensorFlow only.

    python keras_rmt/export/rest_server.py SAVED_MODEL [--name rmt]
        [--host 127.0.0.1] [--port 8501]

TensorFlow Serving's model server is not installable from PyPI or Debian
(`tensorflow-serving-api` is its client only). This script stands in for it
with the Python standard library: it loads the SavedModel with
`tf.saved_model.load` in a process where Keras, keras-hub, keras-rmt, JAX and
PyTorch cannot be imported, and answers the REST calls of TF Serving's API
that a keras-rmt client needs:

- `POST /v1/models/NAME:predict` with a JSON body
  `{"signature_name": "serve_segment", "inputs": {"token_ids": [[...]], ...}}`
  (the columnar "inputs" form; `signature_name` defaults to
  `serving_default`) -> `{"outputs": {"logits": [...], "memory": [...]}}`;
  a refused input -> HTTP 400 with `{"error": MESSAGE}`.
- `GET /v1/models/NAME` -> the model's status.
- `GET /v1/models/NAME/metadata` -> every signature's inputs and outputs,
  with dtypes and shapes (-1 where any size is served).

It is run by path, not imported: importing `keras_rmt` imports Keras.
It listens on the loopback by default and prints one line,
`Serving NAME at http://HOST:PORT`, once it accepts requests (`--port 0`
picks a free port).
"""

import argparse
import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

BLOCKED = ("keras", "keras_hub", "keras_rmt", "jax", "torch")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("saved_model", help="The SavedModel folder.")
    parser.add_argument("--name", default="rmt", help="The model's name.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8501)
    args = parser.parse_args(argv)
    for name in BLOCKED:
        sys.modules[name] = None  # `import` now raises ImportError.
    import numpy as np
    import tensorflow as tf

    served = tf.saved_model.load(args.saved_model)
    handler = _handler(tf, np, served, args.name)
    server = ThreadingHTTPServer((args.host, args.port), handler)
    host, port = server.server_address[:2]
    print(f"Serving {args.name} at http://{host}:{port}", flush=True)
    server.serve_forever()


class _BadRequest(Exception):
    pass


def _handler(tf, np, served, name):
    signatures = dict(served.signatures)
    prefix = f"/v1/models/{name}"

    def input_specs(function):
        return function.structured_input_signature[1]

    def describe(spec):
        dims = spec.shape.as_list() if spec.shape.rank is not None else []
        return {
            "dtype": spec.dtype.name,
            "shape": [-1 if dim is None else dim for dim in dims],
        }

    def metadata():
        return {
            "model_spec": {"name": name},
            "signatures": {
                key: {
                    "inputs": {
                        k: describe(v) for k, v in input_specs(function).items()
                    },
                    "outputs": {
                        k: describe(v)
                        for k, v in function.structured_outputs.items()
                    },
                }
                for key, function in signatures.items()
            },
        }

    def predict(request):
        key = request.get("signature_name", "serving_default")
        if key not in signatures:
            raise _BadRequest(
                f"Serving signature name: {key!r} not found in signature "
                f"def. Signatures: {sorted(signatures)}"
            )
        function = signatures[key]
        given = request.get("inputs", {})
        if not isinstance(given, dict):
            raise _BadRequest("`inputs` must be an object: input name -> value")
        specs = input_specs(function)
        missing = sorted(set(specs) - set(given))
        unknown = sorted(set(given) - set(specs))
        if missing or unknown:
            raise _BadRequest(
                f"Signature {key!r} takes inputs {sorted(specs)}. Received: "
                f"missing {missing}, unknown {unknown}"
            )
        tensors = {}
        for input_name, value in given.items():
            dtype = specs[input_name].dtype.as_numpy_dtype
            try:
                tensors[input_name] = tf.constant(np.asarray(value, dtype))
            except (TypeError, ValueError) as error:
                raise _BadRequest(
                    f"`{input_name}` must be a (nested) list of "
                    f"{specs[input_name].dtype.name} values of one shape. "
                    f"Received an error converting it: {error}"
                ) from None
        try:
            outputs = function(**tensors)
        except tf.errors.InvalidArgumentError as error:
            raise _BadRequest(error.message) from None
        return {"outputs": {k: _listed(np, v) for k, v in outputs.items()}}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            if self.path == prefix:
                status = {"version": "1", "state": "AVAILABLE"}
                self._reply(200, {"model_version_status": [status]})
            elif self.path == prefix + "/metadata":
                self._reply(200, metadata())
            else:
                self._reply(404, {"error": f"Not found: {self.path}"})

        def do_POST(self):
            if self.path != prefix + ":predict":
                self._reply(404, {"error": f"Not found: {self.path}"})
                return
            length = int(self.headers.get("Content-Length", 0))
            try:
                request = json.loads(self.rfile.read(length) or b"{}")
                if not isinstance(request, dict):
                    raise _BadRequest("The request body must be an object")
                self._reply(200, predict(request))
            except json.JSONDecodeError as error:
                self._reply(400, {"error": f"Malformed JSON: {error}"})
            except _BadRequest as error:
                self._reply(400, {"error": str(error)})
            except Exception as error:  # Reply, rather than drop the call.
                message = f"{type(error).__name__}: {error}"
                self._reply(500, {"error": message})

        def _reply(self, code, body):
            data = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format, *args):
            pass  # One line per request is noise for a test or an example.

    return Handler


def _listed(np, tensor):
    """A JSON value: nested lists, bytes as text."""
    array = np.asarray(tensor.numpy())
    if array.dtype.kind in "SO":
        array = array.astype(str)
    return array.tolist()


if __name__ == "__main__":
    main()
