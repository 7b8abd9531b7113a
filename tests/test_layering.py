"""The package layering, read from the source: who may import whom.

Every import statement counts, module-level or inside a function, so a cycle
cannot hide behind a function-local import.
"""

from __future__ import annotations

import ast
import pathlib
import re

ROOT = pathlib.Path(__file__).resolve().parents[1] / "moduli"

#: The packages ``moduli.regularizers`` may import (everything below it).
BELOW_REGULARIZERS = {"manifolds", "targets", "_validate"}


def _unit(path: pathlib.Path) -> str:
    """``moduli/regularizers/state.py`` -> ``regularizers``; ``moduli/targets.py`` -> ``targets``."""
    rel = path.relative_to(ROOT).with_suffix("")
    return rel.parts[0]


def _imports(path: pathlib.Path) -> set[str]:
    """The top-level ``moduli`` units imported anywhere in ``path``."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = list(path.relative_to(ROOT.parent).with_suffix("").parts)[:-1]
    dynamic = any(isinstance(n, ast.Attribute) and n.attr == "import_module" for n in ast.walk(tree))
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                mod = base + (node.module.split(".") if node.module else [])
                if len(mod) == 1:  # "from .. import x, y": x and y are units
                    out |= {a.name for a in node.names}
                    continue
                names = [".".join(mod)]
            else:
                names = [node.module or ""]
        elif dynamic and isinstance(node, ast.Constant) and isinstance(node.value, str) \
                and re.fullmatch(r"moduli(\.\w+)+", node.value):
            names = [node.value]  # a module name handed to importlib.import_module
        else:
            continue
        for name in names:
            parts = name.split(".")
            if parts[0] == "moduli" and len(parts) > 1:
                out.add(parts[1])
    return out


def _graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for path in ROOT.rglob("*.py"):
        unit = _unit(path)
        graph.setdefault(unit, set()).update(_imports(path) - {unit, "__version__"})
    return graph


def test_regularizers_import_only_what_lies_below_them():
    graph = _graph()
    assert graph["regularizers"] <= BELOW_REGULARIZERS, graph["regularizers"]
    for unit in BELOW_REGULARIZERS:
        assert "regularizers" not in graph.get(unit, set()), unit


def test_targets_is_the_bottom_of_the_model_seam():
    graph = _graph()
    assert graph["targets"] <= {"_validate"}
    assert graph["_validate"] == set()


def test_the_package_graph_has_no_cycle():
    graph = _graph()
    state: dict[str, int] = {}

    def visit(unit, path):
        state[unit] = 1
        for dep in sorted(graph.get(unit, ())):
            if state.get(dep) == 1:
                raise AssertionError("import cycle: " + " -> ".join(path + [unit, dep]))
            if dep not in state:
                visit(dep, path + [unit])
        state[unit] = 2

    for unit in sorted(graph):
        if unit not in state:
            visit(unit, [])
