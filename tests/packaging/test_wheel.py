"""The built wheel installs into a clean virtual environment and the
README's quick start runs from it. Backend-independent: run once."""

import pathlib
import re
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[2]


def _run(command, **kwargs):
    result = subprocess.run(command, capture_output=True, text=True, **kwargs)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result.stdout


def _quick_start():
    readme = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", readme, re.S)
    return next(block for block in blocks if "RecurrentSegments" in block)


def test_wheel_installs_in_clean_venv_and_quick_start_runs(tmp_path):
    _run([sys.executable, "-m", "build", "--wheel", "--outdir", tmp_path, ROOT])
    wheel = next(tmp_path.glob("keras_rmt-*.whl"))
    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", venv])
    python = venv / "bin" / "python"
    # keras-hub brings tensorflow-text and so TensorFlow: no extra backend.
    _run([python, "-m", "pip", "install", "-q", f"{wheel}[tensorflow]"])
    script = tmp_path / "quick_start.py"
    script.write_text(_quick_start())
    output = _run(
        [python, script],
        cwd=tmp_path,
        env={"KERAS_BACKEND": "tensorflow", "PATH": "/usr/bin:/bin"},
    )
    assert "sequence_output (2, 20, 16)" in output, output
    site = _run(
        [python, "-c", "import keras_rmt; print(keras_rmt.__file__)"],
        cwd=tmp_path,
    )
    assert str(venv) in site
