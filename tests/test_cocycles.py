"""Persistent cohomology with cocycles, and circular coordinates (moduli.analysis.cocycles)."""

import math

import numpy as np
import pytest
import torch

from moduli import analysis as an
from moduli import manifolds as mf


def _resultant(theta, angle):
    """max over orientation s of |mean exp(i (2 pi theta - s angle))|: 1 when theta tracks the
    angle up to rotation and reflection."""
    return max(abs(np.exp(1j * (2 * np.pi * theta - s * angle)).mean()) for s in (1, -1))


def _circular_correlation(a, b):
    """Fisher–Lee (1983) circular correlation: invariant under rotating either angle, -1 under
    reflection, and free of circular means (undefined for uniformly spread angles)."""
    da = np.sin(a[:, None] - a[None, :])
    db = np.sin(b[:, None] - b[None, :])
    return float((da * db).sum() / np.sqrt((da ** 2).sum() * (db ** 2).sum()))


@pytest.fixture(scope="module")
def noisy_circle():
    rng = np.random.default_rng(0)
    t = rng.uniform(0, 2 * np.pi, 200)
    return t, np.c_[np.cos(t), np.sin(t)] + rng.normal(0, 0.1, (200, 2))


def test_cohomology_bars_match_homology(noisy_circle):
    _, X = noisy_circle
    res = an.cocycles(X, n_landmarks=60)
    ph = an.persistence(X[res.landmarks], maxdim=1, sparse=None)
    ours = np.sort(res.diagram[:, 0] - res.diagram[:, 1])
    ref = ph.diagrams[1]
    ref = np.sort(ref[:, 0] - ref[:, 1])
    assert np.allclose(ours, ref, atol=1e-9)           # persistent homology = cohomology (fields)
    assert res.lifetimes()[0] > 1.0 and res.lifetimes()[1] < 0.3


def test_cocycles_are_cocycles_along_their_bar(noisy_circle):
    _, X = noisy_circle
    res = an.cocycles(X, n_landmarks=40, coeff=7)
    D = res.distances
    m = len(D)
    for (birth, death), c in zip(res.diagram[:3], res.cocycles[:3]):
        val = {(int(i), int(j)): int(v) for i, j, v in c}
        for s in (birth, 0.5 * (birth + min(death, res.max_edge_length)), np.nextafter(death, 0)):
            for i in range(m):
                for j in range(i + 1, m):
                    for k in range(j + 1, m):
                        if max(D[i, j], D[i, k], D[j, k]) <= s:
                            cob = val.get((j, k), 0) - val.get((i, k), 0) + val.get((i, j), 0)
                            assert cob % 7 == 0
        assert any(D[i, j] == birth for i, j, _ in c)  # the birth edge carries the class


def test_against_ripser_when_installed(noisy_circle):
    ripser = pytest.importorskip("ripser")
    _, X = noisy_circle
    res = an.cocycles(X, n_landmarks=60)
    ref = ripser.ripser(X[res.landmarks], maxdim=1, coeff=47)["dgms"][1]
    assert np.allclose(np.sort(res.diagram.ravel()), np.sort(ref.ravel()), atol=1e-6)


def test_circle_coordinate_tracks_the_angle(noisy_circle):
    t, X = noisy_circle
    cc = an.circular_coordinates(X, n_landmarks=60)
    assert cc.theta.shape == (200, 1) and (cc.theta >= 0).all() and (cc.theta < 1).all()
    assert abs(_circular_correlation(2 * np.pi * cc.theta[:, 0], t)) > 0.95
    assert _resultant(cc.theta[:, 0], t) > 0.95
    assert cc.notes == []


def test_torus_gets_two_coordinates_that_parametrise_it():
    rng = np.random.default_rng(1)
    u, v = rng.uniform(0, 2 * np.pi, (2, 400))
    Y = np.c_[np.cos(u), np.sin(u), np.cos(v), np.sin(v)] + rng.normal(0, 0.05, (400, 4))
    cc = an.circular_coordinates(Y, n_coords=2, n_landmarks=80)
    rows = []
    for c in range(2):
        th = 2 * np.pi * cc.theta[:, c]
        best = max((abs(np.exp(1j * (th - m * u - k * v)).mean()), m, k)
                   for m in range(-2, 3) for k in range(-2, 3))
        assert best[0] > 0.9, best
        rows.append(best[1:])
    # each coordinate is an integer combination of the two angles, and together they are a basis
    assert abs(round(np.linalg.det(np.array(rows, dtype=float)))) == 1


def test_circular_coordinates_on_a_manifold_and_bad_input():
    C = mf.Circle(5.0)
    x = C.random_uniform(120, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    cc = an.circular_coordinates(x, manifold=C, n_landmarks=40)
    angle = np.arctan2(x[:, 1].numpy(), x[:, 0].numpy())   # Circle(5.0) points are (x, y) on a radius-5 circle
    assert _resultant(cc.theta[:, 0], angle) > 0.95
    with pytest.raises(ValueError, match="n_coords"):
        an.circular_coordinates(x, manifold=C, n_landmarks=40, n_coords=500)
    with pytest.raises(ValueError, match="position"):
        an.circular_coordinates(x, manifold=C, position=1.5)
    with pytest.raises(ValueError, match="coeff"):
        an.cocycles(x, manifold=C, coeff=4)
    with pytest.raises(TypeError, match="cohomology"):
        an.circular_coordinates(x, manifold=C, cohomology="nope")
    with pytest.raises(ValueError, match="at least 3"):
        an.cocycles(np.zeros((2, 2)))
