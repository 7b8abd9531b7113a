"""Docstring examples and the ```python blocks of README.md and docs/*.md run."""

from __future__ import annotations

import doctest
import importlib
import pathlib
import pkgutil
import re
import warnings

import pytest
import torch

import moduli

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _modules():
    with warnings.catch_warnings():  # walking imports packages; the moduli.backends shim warns on import
        warnings.simplefilter("ignore", DeprecationWarning)
        names = [info.name for info in pkgutil.walk_packages(moduli.__path__, "moduli.")]
    return names


@pytest.mark.parametrize("name", sorted(_modules()))
def test_docstring_examples(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0


def _documents():
    for path in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        blocks = re.findall(r"```python\n(.*?)```", path.read_text(), re.S)
        if blocks:
            yield pytest.param(path, blocks, id=path.name)


@pytest.mark.parametrize("path, blocks", list(_documents()))
def test_markdown_python_blocks_run(path, blocks, tmp_path, monkeypatch):
    """Every ```python block runs, in order, in one namespace per document (a
    page reads like a notebook). Signatures and sketches are fenced ```py."""
    monkeypatch.chdir(tmp_path)
    namespace = {"__name__": "__markdown__"}
    threads, rng = torch.get_num_threads(), torch.get_rng_state()
    try:
        for i, code in enumerate(blocks):
            exec(compile(code, f"{path.name}[block {i}]", "exec"), namespace)
    finally:  # examples may pin threads or seed; keep the rest of the suite unaffected
        torch.set_num_threads(threads)
        torch.set_rng_state(rng)
