"""The ``moduli`` command line."""

from __future__ import annotations

import subprocess
import sys

import pytest

from moduli.cli import build_parser, main


def test_demo_prints_every_space(capsys):
    assert main(["demo", "--n", "64"]) == 0
    out = capsys.readouterr().out
    for name in ["circle", "sphere", "torus", "klein", "torus6", "r3"]:
        assert f"\n{name} " in out
    # the Klein bottle's diameter s / sqrt(2) for s = 10
    assert "7.071" in out


def test_demo_rejects_too_few_points():
    with pytest.raises(SystemExit, match="--n must be at least 2"):
        main(["demo", "--n", "1"])


def test_subcommands_register_in_module_and_script_mode():
    names = set(build_parser()._subparsers._group_actions[0].choices)
    assert {"demo", "topology", "graph"} <= names
    out = subprocess.run([sys.executable, "-m", "moduli.cli", "--help"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0
    for name in names:
        assert name in out.stdout
