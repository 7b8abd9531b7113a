"""The API reference (docs/api) builds without a single Sphinx warning and lists every public name."""

from __future__ import annotations

import importlib
import importlib.util
import pathlib
import re
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
SOURCE = ROOT / "docs" / "api"
# one page per public package: docs/api/<name>.rst documents moduli.<name>
PACKAGES = ("manifolds", "regularizers", "pruning", "targets", "geodesic", "analysis", "sparse", "experiments")

_MISSING = [name for name in ("sphinx", "numpydoc") if importlib.util.find_spec(name) is None]
needs_sphinx = pytest.mark.skipif(
    bool(_MISSING), reason=f"{' and '.join(_MISSING)} not installed (pip install -e '.[docs]')")


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    out = tmp_path_factory.mktemp("api_html")
    cmd = [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html", str(SOURCE), str(out)]
    # built once per module; with --keep-going the pages are written even when warnings fail the build
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600), out


@needs_sphinx
def test_reference_builds_without_warnings(built):
    proc, out = built
    assert proc.returncode == 0, f"sphinx -W failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-8000:]}"
    assert (out / "index.html").is_file()


def test_every_package_has_a_page():
    pages = {p.stem for p in SOURCE.glob("*.rst")} - {"index"}
    assert pages == set(PACKAGES)
    index = (SOURCE / "index.rst").read_text()
    assert all(re.search(rf"^\s+{name}$", index, re.M) for name in PACKAGES)


@needs_sphinx
@pytest.mark.parametrize("package", PACKAGES)
def test_every_public_name_is_documented(built, package):
    """A name added to ``__all__`` must show up on its page; an undocumented
    constant needs an ``autodata`` line in docs/api/<package>.rst."""
    module = importlib.import_module(f"moduli.{package}")
    page = built[1] / f"{package}.html"
    assert page.is_file(), f"sphinx wrote no {page.name}:\n{built[0].stderr[-4000:]}"
    html = page.read_text(encoding="utf-8")
    anchors = set(re.findall(r'id="(moduli\.[\w.]+)"', html))
    missing = [name for name in module.__all__ if f"moduli.{package}.{name}" not in anchors]
    assert not missing, f"moduli.{package}: {missing} not in the API reference"
