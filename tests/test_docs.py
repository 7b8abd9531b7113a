"""Docstring examples and the code blocks of README.md / docs/*.md run."""

from __future__ import annotations

import doctest
import importlib
import pathlib
import pkgutil
import re

import pytest

import moduli

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _modules():
    for info in pkgutil.walk_packages(moduli.__path__, "moduli."):
        yield info.name


@pytest.mark.parametrize("name", sorted(_modules()))
def test_docstring_examples(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0


def _blocks():
    for path in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        text = path.read_text()
        for i, match in enumerate(re.finditer(r"```python\n(.*?)```", text, re.S)):
            yield pytest.param(match.group(1), id=f"{path.name}-{i}")


@pytest.mark.parametrize("code", list(_blocks()))
def test_markdown_python_blocks_run(code, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    exec(compile(code, "<markdown>", "exec"), {"__name__": "__markdown__"})
