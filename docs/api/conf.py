"""Sphinx configuration for the moduli API reference.

Build (from the repository root)::

    python -m sphinx -W --keep-going -b html docs/api docs/api/_build
"""

from __future__ import annotations

import inspect
import pathlib
import sys
import warnings

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))  # document this checkout, not whichever moduli is installed

import torch  # noqa: E402

_dtype = torch.get_default_dtype()
import moduli  # noqa: E402
import moduli.analysis  # noqa: E402,F401
import moduli.experiments  # noqa: E402,F401
import moduli.geodesic  # noqa: E402,F401
import moduli.sparse  # noqa: E402,F401

if torch.get_default_dtype() != _dtype:  # geomstats sets float64 on import; moduli must undo it
    raise RuntimeError(f"importing moduli changed torch's default dtype to {torch.get_default_dtype()}")

project = "moduli"
author = "moduli contributors"
release = version = moduli.__version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.viewcode",
    "numpydoc",
]

exclude_patterns = ["_build", "README.md"]
root_doc = "index"
html_theme = "alabaster"

autodoc_default_options = {
    "members": True,
    "member-order": "bysource",
}
autodoc_typehints = "none"  # the numpydoc Parameters sections already give the types
autodoc_inherit_docstrings = True

numpydoc_show_class_members = False  # autodoc lists members; avoid duplicating them
numpydoc_class_members_toctree = False
numpydoc_xref_param_type = False


def _defining_comment(name):
    """The ``#:`` comment above the assignment of the constant ``name``.

    A package re-exports constants from its submodules (``moduli.regularizers``
    exports ``INHIBITORS`` from ``moduli.regularizers.inhibitors``); autodoc reads
    ``#:`` comments only from the module named in the directive, so the comment is
    looked up in the submodule whose attribute is the same object.
    """
    from sphinx.pycode import ModuleAnalyzer, PycodeError

    package, _, attr = name.rpartition(".")
    obj = getattr(sys.modules[package], attr)
    for modname, module in sorted(sys.modules.items()):
        if not modname.startswith(package + ".") or getattr(module, attr, None) is not obj:
            continue
        try:
            docs = ModuleAnalyzer.for_module(modname).find_attr_docs()
        except PycodeError:
            continue
        if ("", attr) in docs:
            return list(docs[("", attr)])
    return []


def _text(lines):
    return " ".join(" ".join(lines).split())


def _constant_docstring(app, what, name, obj, options, lines):
    """Give a re-exported constant the ``#:`` comment of its definition.

    Without one autodoc shows the docstring of the value's type (``tuple``,
    ``dict``), which says nothing about the constant; that is dropped.
    """
    if what != "data":
        return
    type_doc = inspect.cleandoc(type(obj).__doc__ or "").splitlines()
    if _text(lines) and _text(lines) != _text(type_doc):
        return  # the directive's own module documents it
    lines[:] = _defining_comment(name)


def _report_numpydoc_warnings():
    """Turn numpydoc's Python warnings (``Unknown section ...``) into Sphinx warnings.

    numpydoc reports a misspelt section heading with :func:`warnings.warn`, which
    ``sphinx -W`` does not see; routed through Sphinx's logger it fails the build.
    """
    from sphinx.util import logging

    logger = logging.getLogger("numpydoc")
    show = warnings.showwarning

    def showwarning(message, category, filename, lineno, file=None, line=None):
        if "numpydoc" in pathlib.Path(filename).parts:
            logger.warning("%s", message, type="numpydoc")
        else:
            show(message, category, filename, lineno, file, line)

    # every occurrence, not only the first per line of numpydoc that warns
    warnings.filterwarnings("always", category=UserWarning, module=r"numpydoc\.")
    warnings.showwarning = showwarning


def setup(app):
    _report_numpydoc_warnings()
    # before numpydoc (priority 500) reformats the lines
    app.connect("autodoc-process-docstring", _constant_docstring, priority=400)
