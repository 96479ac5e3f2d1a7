"""The offline install: a virtual environment (--system-site-packages), pip
install --no-index --no-build-isolation of this directory, then the
installed package (not the source tree) imported and used.

Usage: install_check.py PACKAGE_DIR LIBRARY"""

import os
import subprocess
import sys
import tempfile

pkg, library = sys.argv[1], sys.argv[2]

with tempfile.TemporaryDirectory(prefix="shmlease-py-") as tmp:
    venv = os.path.join(tmp, "venv")
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", venv], check=True)
    py = os.path.join(venv, "bin", "python")
    env = dict(os.environ, PIP_DISABLE_PIP_VERSION_CHECK="1", PIP_NO_CACHE_DIR="1",
               PIP_NO_INPUT="1")
    env.pop("PYTHONPATH", None)
    # pip builds in a copy of the directory: the source tree stays clean
    src = os.path.join(tmp, "src")
    subprocess.run(["cp", "-r", pkg, src], check=True)
    subprocess.run([py, "-m", "pip", "install", "--no-index", "--no-build-isolation", "-q", src],
                   check=True, env=env, cwd=tmp)
    check = r"""
import os, sys, shmlease
where = os.path.dirname(shmlease.__file__)
assert where.startswith(sys.prefix), where   # the installed copy
assert os.path.exists(os.path.join(where, "py.typed"))
name = "pyinstall-%d" % os.getpid()
try:
    with shmlease.Table(name) as t:
        with t.lease("job", ttl=5, metadata={"from": "venv"}) as lease:
            assert t.inspect("job").metadata_json() == {"from": "venv"}
            print("acquired", lease.fencing_token, "from", where)
        assert t.inspect("job") is None
finally:
    shmlease.unlink(name)
"""
    subprocess.run([py, "-c", check], check=True, cwd=tmp, env=dict(env, SHMLEASE_LIBRARY=library))
    # without the library, a clear error naming what was tried
    bad = os.path.join(tmp, "missing", "libshmlease.so")
    out = subprocess.run([py, "-c", "import shmlease; shmlease.Table('x')"], cwd=tmp,
                         env=dict(env, SHMLEASE_LIBRARY=bad), capture_output=True, text=True)
    assert out.returncode != 0 and "LibraryNotFoundError" in out.stderr and bad in out.stderr, out.stderr
print("install check: ok")
