"""The type hints the package ships (py.typed) hold: mypy --strict on the
package and on typed code that uses it."""

import importlib.util
import os
import subprocess
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))


@pytest.mark.skipif(importlib.util.find_spec("mypy") is None, reason="mypy not installed (Debian: mypy)")
def test_mypy_strict(tmp_path):
    src = os.path.join(HERE, "..", "src")
    out = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--cache-dir", str(tmp_path),
         os.path.join(src, "shmlease"), os.path.join(HERE, "typed_usage.py")],
        env=dict(os.environ, MYPYPATH=src), capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stdout + out.stderr
