"""Tests run against the package in ../src and the library named by
SHMLEASE_LIBRARY (CMake sets both; by hand, the default build/ is used)."""

import os
import sys
import uuid

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", "..", ".."))
sys.path.insert(0, os.path.join(HERE, "..", "src"))
sys.path.insert(0, HERE)
if not os.environ.get("SHMLEASE_LIBRARY"):
    built = os.path.join(ROOT, "build", "libshmlease.so")
    if os.path.exists(built):
        os.environ["SHMLEASE_LIBRARY"] = built

import shmlease  # noqa: E402


@pytest.fixture
def table_name():
    name = f"pytest-{os.getpid()}-{uuid.uuid4().hex[:12]}"
    yield name
    shmlease.unlink(name)


@pytest.fixture
def table(table_name):
    with shmlease.Table(table_name) as t:
        yield t

