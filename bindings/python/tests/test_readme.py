"""The examples of the READMEs run as written (against a fresh table)."""

import ast
import asyncio
import os
import re

import pytest

import shmlease

HERE = os.path.dirname(os.path.abspath(__file__))


def python_blocks(path, section):
    text = open(path).read()
    if section:
        text = text[text.index(section):]
        text = text[: text.index("\n## ", 1)]
    return re.findall(r"```python\n(.*?)```", text, re.S)


@pytest.mark.parametrize("path, section", [
    (os.path.join(HERE, "..", "..", "..", "README.md"), "## From Python"),
    (os.path.join(HERE, "..", "README.md"), "## Use"),
])
def test_readme_example_runs(table_name, path, section):
    blocks = python_blocks(path, section)
    assert blocks
    calls = []

    async def drain_async():
        calls.append("drain_async")

    scope = {
        "drain": lambda *a, **k: calls.append("drain"),
        "write_report": lambda **k: calls.append("report"),
        "drain_async": drain_async,
    }
    for code in blocks:
        code = code.replace('"jobs"', repr(table_name))
        compiled = compile(code, path, "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
        result = eval(compiled, scope)
        if asyncio.iscoroutine(result):
            asyncio.run(result)
    assert "drain" in calls
    scope["table"].close()
