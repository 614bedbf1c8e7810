"""The package keeps the promises its docs make about where things live.

`keras_rmt/backend/__init__.py` (and the README's architecture section)
name the modules that use a backend's own API, and
`keras_rmt/utils/keras_hub_internals.py` says it is the one module that
reads private keras-hub and Keras APIs. A new import elsewhere fails here,
so that the docs are updated with it or the code moves.
"""

import pathlib
import re

import pytest

pytestmark = pytest.mark.backend_independent

PACKAGE = pathlib.Path(__file__).resolve().parents[1] / "keras_rmt"


def _modules_matching(pattern):
    return sorted(
        path.relative_to(PACKAGE).as_posix()
        for path in PACKAGE.rglob("*.py")
        if re.search(pattern, path.read_text(), re.MULTILINE)
    )


def test_backend_libraries_are_imported_only_where_the_docs_say():
    importing = _modules_matching(r"^\s*(import|from) (jax|tensorflow|torch)\b")
    assert importing == [
        "backend/compiled.py",
        "distribution/batch_size.py",
        "distribution/segment_padding.py",
        "export/rest_server.py",
        "export/saved_model.py",
        "utils/segment_packing.py",
    ]


def test_private_keras_hub_and_keras_apis_are_read_in_one_module():
    reading = _modules_matching(
        r"keras_hub\.src|\._(inbound_nodes|flatten_layers|loss_ids"
        r"|nodes_by_depth|run_through_graph|standardize_inputs|keras_history)"
    )
    assert reading == ["utils/keras_hub_internals.py"]
