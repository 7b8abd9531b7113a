"""The table of built-in spaces: Appendix D instances and scale-parameterized lookups."""

from __future__ import annotations

import pytest
import torch

from moduli import manifolds as mf
from moduli.analysis.cli import _SPACES, make_manifold
from moduli.cli import build_parser
from moduli.manifolds import catalog


def test_appendix_d_spaces():
    assert catalog.NAMES == ("circle", "sphere", "torus", "klein", "torus6", "r3")
    got = {name: repr(catalog.build(name)) for name in catalog.NAMES}
    assert got == {
        "circle": "Circle(radius=5)", "sphere": "Sphere(dim=2, radius=5)",
        "torus": "FlatTorus(dim=2, period=10)", "klein": "KleinBottle(side=10)",
        "torus6": "FlatTorus(dim=6, period=10)", "r3": "Euclidean(dim=3)",
    }
    assert catalog.build("r3").extent == 10.0
    assert set(catalog.SPACES) == set(catalog.NAMES)
    with pytest.raises(ValueError, match="manifold must be one of"):
        catalog.build("moebius")


def test_at_scale_and_the_topology_lookup_agree():
    assert repr(catalog.at_scale("sphere", 2.0, 4)) == "Sphere(dim=3, radius=2)"
    assert repr(catalog.at_scale("torus", 3.0, 5)) == "FlatTorus(dim=5, period=3)"
    assert repr(make_manifold("klein", 4.0, 2)) == "KleinBottle(side=4)"
    assert make_manifold("euclidean", 1.0, 7) is None
    assert _SPACES == ("euclidean", *catalog.NAMES)
    with pytest.raises(SystemExit, match="--manifold must be one of euclidean, circle"):
        make_manifold("moebius", 1.0, 2)
    with pytest.raises(SystemExit, match="radius must be a finite positive number"):
        make_manifold("circle", -1.0, 2)


def test_topology_scale_defaults_to_the_natural_size(capsys):
    assert repr(make_manifold("klein", None, 2)) == "KleinBottle(side=10)"
    assert repr(make_manifold("sphere", None, 3)) == "Sphere(dim=2, radius=5)"
    assert "--scale not given: sphere at its natural scale 5" in capsys.readouterr().err


def test_help_lists_the_catalog():
    parser = build_parser()
    topology = parser._subparsers._group_actions[0].choices["topology"]
    text = topology.format_help()
    for name in catalog.NAMES:
        assert name in text
    assert "6-torus" in text


def test_every_catalog_space_passes_the_contract():
    for name in catalog.NAMES:
        mf.testing.check_manifold(catalog.build(name), generator=torch.Generator().manual_seed(2), n=32)
