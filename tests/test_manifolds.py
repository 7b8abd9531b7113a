"""One contract suite run over every metric space, points drawn by hypothesis."""

from __future__ import annotations

import importlib.util
import itertools
import math
import os
import subprocess
import sys
from dataclasses import dataclass, field
from typing import Callable

import networkx as nx
import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from moduli import manifolds as mf
from moduli.manifolds.testing import ManifoldCheckError, check_manifold

#: geomstats is an optional extra (in ``dev``); the cross-checks against it skip without it.
needs_geomstats = pytest.mark.skipif(importlib.util.find_spec("geomstats") is None,
                                     reason="geomstats not installed (pip install 'moduli[geomstats]')")

SETTINGS = settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
DTYPES = [torch.float32, torch.float64]
ATOL = {torch.float32: 1e-4, torch.float64: 1e-10}

I2 = torch.eye(2, dtype=torch.float64)
FLIP = torch.tensor([[1.0, 0.0], [0.0, -1.0]], dtype=torch.float64)
SQ3 = math.sqrt(3.0)


def hexagonal_torus(L: float = 4.0) -> mf.QuotientSpace:
    u, v = [L, 0.0], [L / 2, L * SQ3 / 2]
    return mf.QuotientSpace([(I2, u), (I2, v)], domain=torch.tensor([u, v]).T, name="hexagonal")


def klein_quotient(s: float = 10.0, depth: int = 2) -> mf.QuotientSpace:
    return mf.QuotientSpace([(I2, [0.0, s]), (FLIP, [s, s])], domain=[s, s], depth=depth, name="klein")


def weighted_grid_graph() -> mf.GraphSpace:
    g = nx.grid_2d_graph(4, 5)
    rng = np.random.default_rng(0)
    for u, v in g.edges:
        g.edges[u, v]["weight"] = float(rng.uniform(0.5, 2.0))
    return mf.GraphSpace(g)


def _translation(shift):
    return lambda x: x + torch.as_tensor(shift, dtype=x.dtype)


def _affine(A, b):
    return lambda x: x @ torch.as_tensor(A, dtype=x.dtype).T + torch.as_tensor(b, dtype=x.dtype)


def _rotation(seed, n):
    q, _ = np.linalg.qr(np.random.default_rng(seed).normal(size=(n, n)))
    return lambda x: x @ torch.as_tensor(q, dtype=x.dtype).T


@dataclass
class Case:
    """A space, a hypothesis strategy for raw coordinates, and its isometries."""

    name: str
    space: mf.Manifold
    coords: Callable  # strategy of one point's coordinates -> list of floats
    deck: list = field(default_factory=list)  # maps of the cover: d(g x, y) = d(x, y)
    isometries: list = field(default_factory=list)  # d(g x, g y) = d(x, y)
    builtin: bool = True

    def points(self, values, dtype):
        x = torch.tensor(values, dtype=torch.float64)
        if isinstance(self.space, mf.Sphere):
            x = self.space.project(x)
        return x.to(dtype)


def _floats(lo, hi, k):
    return st.lists(st.floats(lo, hi, allow_nan=False, width=64), min_size=k, max_size=k)


def _sphere_coords(k):
    # Bounded away from the origin so the radial projection is defined.
    return _floats(-1.0, 1.0, k).filter(lambda v: sum(t * t for t in v) > 1e-2)


CASES = [
    Case("euclidean", mf.Euclidean(3), _floats(-50, 50, 3),
         isometries=[_translation([1.5, -2.0, 7.0]), _rotation(0, 3)]),
    Case("circle", mf.Circle(5.0), _sphere_coords(2), isometries=[_rotation(1, 2)]),
    Case("sphere", mf.Sphere(2, 5.0), _sphere_coords(3), isometries=[_rotation(2, 3)]),
    Case("torus", mf.FlatTorus(2, 10.0), _floats(-25, 35, 2),
         [_translation([10.0, 0.0]), _translation([0.0, -10.0])]),
    Case("torus6", mf.FlatTorus(6, 10.0), _floats(-25, 35, 6),
         [_translation([0, 0, 10.0, 0, 0, 0]), _translation([-10.0, 0, 0, 0, 0, 10.0])]),
    Case("klein", mf.KleinBottle(10.0), _floats(-25, 35, 2),
         [_translation([0.0, 10.0]), _affine(FLIP, [10.0, 10.0])]),
    Case("product", mf.Product(mf.Circle(1.0), mf.Sphere(2, 1.0)),
         st.tuples(_sphere_coords(2), _sphere_coords(3)).map(lambda t: t[0] + t[1])),
    Case("hexagonal", hexagonal_torus(), _floats(-10, 10, 2),
         [_translation([4.0, 0.0]), _translation([2.0, 2 * SQ3])], builtin=False),
    Case("klein_quotient", klein_quotient(), _floats(-25, 35, 2),
         [_translation([0.0, 10.0]), _affine(FLIP, [10.0, 10.0])], builtin=False),
    Case("graph", weighted_grid_graph(), st.lists(st.integers(0, 19).map(float), min_size=1, max_size=1),
         [], builtin=False),
]


def _product_points(values, dtype):
    x = torch.tensor(values, dtype=torch.float64)
    c = mf.Circle(1.0).project(x[..., :2])
    s = mf.Sphere(2, 1.0).project(x[..., 2:])
    return torch.cat([c, s], -1).to(dtype)


def points_of(case, values, dtype):
    if case.name == "product":
        return _product_points(values, dtype)
    return case.points(values, dtype)


@pytest.fixture(params=CASES, ids=[c.name for c in CASES])
def case(request):
    return request.param


def triples(case):
    return st.tuples(case.coords, case.coords, case.coords)


# ------------------------------------------------------------------ axioms
@pytest.mark.parametrize("dtype", DTYPES)
def test_metric_axioms(case, dtype):
    M = case.space
    atol = ATOL[dtype] * max(1.0, _scale(M))

    @SETTINGS
    @given(st.lists(triples(case), min_size=1, max_size=6))
    def check(rows):
        x = points_of(case, [r[0] for r in rows], dtype)
        y = points_of(case, [r[1] for r in rows], dtype)
        z = points_of(case, [r[2] for r in rows], dtype)
        dxy, dyx = M.dist(x, y), M.dist(y, x)
        assert dxy.shape == (len(rows),) and dxy.dtype == dtype
        assert torch.all(dxy >= 0)
        assert torch.allclose(M.dist(x, x), torch.zeros_like(dxy), atol=atol)
        assert torch.allclose(dxy, dyx, atol=atol)
        assert torch.all(M.dist(x, z) <= dxy + M.dist(y, z) + atol)
        assert torch.all(dxy <= M.diameter + atol)
        for g in case.deck:
            assert torch.allclose(M.dist(g(x), y), dxy, atol=atol)
        for g in case.deck + case.isometries:
            assert torch.allclose(M.dist(g(x), g(y)), dxy, atol=atol)

    check()


@pytest.mark.parametrize("dtype", DTYPES)
def test_dist_is_diagonal_of_cdist(case, dtype):
    M, atol = case.space, ATOL[dtype] * max(1.0, _scale(case.space))

    @SETTINGS
    @given(st.lists(st.tuples(case.coords, case.coords), min_size=1, max_size=8))
    def check(rows):
        x = points_of(case, [r[0] for r in rows], dtype)
        y = points_of(case, [r[1] for r in rows], dtype)
        D = M.cdist(x, y)
        assert D.shape == (len(rows), len(rows))
        assert torch.allclose(torch.diagonal(D), M.dist(x, y), atol=atol)
        assert torch.allclose(M.cdist(x), M.cdist(x, x), atol=atol)
        # broadcasting: (n, 1, k) against (1, n, k) is cdist
        assert torch.allclose(M.dist(x[:, None], y[None]), D, atol=atol)

    check()


def test_cdist_of_one_set_is_exactly_symmetric(case):
    """Tools such as gudhi misbehave on distance matrices that are symmetric
    only up to rounding, so cdist(x) must be symmetric bit for bit."""
    g = torch.Generator().manual_seed(1)
    for dtype in DTYPES:
        x = case.space.random_uniform(300, generator=g, dtype=dtype)
        D = case.space.cdist(x)
        assert torch.equal(D, D.T)
        assert torch.equal(torch.diagonal(D), torch.zeros(300, dtype=dtype))


def test_cdist_large_blocked_matches_autograd_path(case):
    """The row-blocked / fast no-grad paths agree with the differentiable path."""
    M = case.space
    g = torch.Generator().manual_seed(3)
    # 300 x 1500 pairs: several row blocks of the no-grad path
    x = M.random_uniform(300, generator=g, dtype=torch.float64)
    y = M.random_uniform(1500, generator=g, dtype=torch.float64)
    fast = M.cdist(x, y)
    if M.differentiable:
        slow = M.cdist(x.clone().requires_grad_(), y).detach()
    else:
        slow = M.dist(x[:, None], y[None])
    assert torch.allclose(fast, slow, atol=1e-9)


def _scale(M):
    return M.diameter if math.isfinite(M.diameter) else 10.0


# ------------------------------------------------------- reference geometry
@needs_geomstats
@pytest.mark.parametrize("case", [c for c in CASES if c.builtin], ids=[c.name for c in CASES if c.builtin])
def test_agrees_with_geomstats(case):
    match = case.space.geomstats_equivalent()
    assert match is not None, f"{case.name} must name its geomstats equivalent"

    @SETTINGS
    @given(st.lists(st.tuples(case.coords, case.coords), min_size=2, max_size=6))
    def check(rows):
        x = points_of(case, [r[0] for r in rows], torch.float64)
        y = points_of(case, [r[1] for r in rows], torch.float64)
        ours = case.space.dist(x, y).numpy()
        theirs = np.asarray(match.dist(x, y), dtype=np.float64)
        np.testing.assert_allclose(ours, theirs, atol=1e-7)

    check()


def _brute_force_flat(x, y, transforms):
    """min over explicitly listed images g(y) of |x - g(y)|."""
    imgs = torch.stack([g(y) for g in transforms])  # (J, n, k)
    return (x[None] - imgs).norm(dim=-1).amin(0)


def _klein_images(s, r=3):
    out = []
    for j, k in itertools.product(range(-r, r + 1), repeat=2):
        out.append(_affine(np.eye(2), [2 * j * s, k * s]))
        out.append(_affine(FLIP.numpy(), [(2 * j + 1) * s, k * s]))
    return out


def _lattice_images(vectors, r=3):
    out = []
    for coeffs in itertools.product(range(-r, r + 1), repeat=len(vectors)):
        out.append(_translation(sum(c * np.asarray(v, dtype=float) for c, v in zip(coeffs, vectors))))
    return out


BRUTE = {
    "torus": lambda: _lattice_images([[10.0, 0.0], [0.0, 10.0]]),
    "klein": lambda: _klein_images(10.0),
    "klein_quotient": lambda: _klein_images(10.0),
    "hexagonal": lambda: _lattice_images([[4.0, 0.0], [2.0, 2 * SQ3]]),
}


@pytest.mark.parametrize("name", sorted(BRUTE))
def test_agrees_with_brute_force_minimum_over_images(name):
    case = next(c for c in CASES if c.name == name)
    M, transforms = case.space, BRUTE[name]()

    @SETTINGS
    @given(st.lists(st.tuples(case.coords, case.coords), min_size=1, max_size=8))
    def check(rows):
        x = points_of(case, [r[0] for r in rows], torch.float64)
        y = points_of(case, [r[1] for r in rows], torch.float64)
        # move x into the fundamental domain so +-3 copies certainly suffice
        xc = M.canonical(x)
        yc = M.canonical(y)
        expected = _brute_force_flat(xc, yc, transforms)
        assert torch.allclose(M.dist(x, y), expected, atol=1e-9)

    check()


def test_quotient_depth_is_enough_for_examples():
    deep = klein_quotient(depth=5)
    shallow = klein_quotient(depth=2)
    assert deep.num_images > shallow.num_images
    g = torch.Generator().manual_seed(0)
    x = shallow.random_uniform(300, generator=g, dtype=torch.float64)
    assert torch.allclose(shallow.cdist(x), deep.cdist(x), atol=1e-12)
    assert torch.allclose(shallow.cdist(x), mf.KleinBottle(10.0).cdist(x), atol=1e-12)


# ------------------------------------------------------------- known numbers
def test_known_distances():
    K = mf.KleinBottle(10.0)
    t = lambda *v: torch.tensor(v, dtype=torch.float64)  # noqa: E731
    # across the glide seam (0, y) ~ (10, 10 - y): (0.5, 2) and (9.5, 8) are 1 apart
    assert float(K.dist(t(0.5, 2.0), t(9.5, 8.0))) == pytest.approx(1.0)
    # across the translation seam (x, 0) ~ (x, 10)
    assert float(K.dist(t(3.0, 0.5), t(3.0, 9.5))) == pytest.approx(1.0)
    # not a torus: (0.5, 2) and (9.5, 2) are NOT 1 apart
    assert float(K.dist(t(0.5, 2.0), t(9.5, 2.0))) == pytest.approx(math.hypot(1.0, 4.0))
    T = mf.FlatTorus(2, 10.0)
    assert float(T.dist(t(0.5, 0.0), t(9.5, 0.0))) == pytest.approx(1.0)
    assert float(T.dist(t(0.0, 0.0), t(5.0, 5.0))) == pytest.approx(T.diameter)
    S = mf.Sphere(2, 5.0)
    assert float(S.dist(t(0, 0, 5.0), t(0, 0, -5.0))) == pytest.approx(5 * math.pi)
    assert float(S.dist(t(0, 0, 5.0), t(5.0, 0, 0))) == pytest.approx(5 * math.pi / 2)
    C = mf.Circle(5.0)
    assert float(C.dist(t(5.0, 0), t(0, 5.0))) == pytest.approx(5 * math.pi / 2)
    P = mf.Product(mf.FlatTorus(1, 10.0), mf.Euclidean(1))
    assert float(P.dist(t(1.0, 0.0), t(9.0, 4.0))) == pytest.approx(math.hypot(2.0, 4.0))
    H = hexagonal_torus(4.0)
    # the lattice's shortest vectors have length 4 -> the point 2 along one is at distance 2
    assert float(H.dist(t(0.0, 0.0), t(2.0, 2 * SQ3))) == pytest.approx(0.0, abs=1e-12)
    assert float(H.dist(t(0.0, 0.0), t(3.0, 0.0))) == pytest.approx(1.0)
    G = weighted_grid_graph()
    assert G.diameter == pytest.approx(float(G.cdist(G.random_uniform(0).new_tensor(range(20))[:, None]).max()))


BOUNDED = [c for c in CASES if math.isfinite(c.space.diameter)]


def test_unbounded_space_has_infinite_diameter():
    assert mf.Euclidean(3).diameter == math.inf


@pytest.mark.parametrize("case", BOUNDED, ids=[c.name for c in BOUNDED])
def test_diameter_is_attained(case):
    M = case.space
    g = torch.Generator().manual_seed(0)
    x = M.random_uniform(3000, generator=g, dtype=torch.float64)
    D = M.cdist(x)
    assert float(D.max()) <= M.diameter + 1e-9
    # 3000 samples come within a few % of the supremum (6-torus: 4%); the
    # quotient's grid bound is at most ~3% above it
    assert float(D.max()) >= 0.93 * M.diameter


def test_mean_distance_of_uniform_samples():
    """Uniform sampling gives the known mean distances."""
    g = torch.Generator().manual_seed(0)
    n = 3000
    # circle: E d = pi R / 2;  sphere S^2: E d = pi R / 2;  torus T^1: E d = p / 4
    for M, expected in [(mf.Circle(5.0), 5 * math.pi / 2), (mf.Sphere(2, 5.0), 5 * math.pi / 2),
                        (mf.FlatTorus(1, 10.0), 2.5)]:
        x = M.random_uniform(n, generator=g, dtype=torch.float64)
        mean = float(M.cdist(x).sum()) / (n * (n - 1))
        assert mean == pytest.approx(expected, rel=0.03), M
    # sphere: coordinates have mean 0 and second moment R^2 / 3
    x = mf.Sphere(2, 5.0).random_uniform(20000, generator=g, dtype=torch.float64)
    assert torch.allclose(x.mean(0), torch.zeros(3, dtype=torch.float64), atol=0.15)
    assert torch.allclose((x * x).mean(0), torch.full((3,), 25.0 / 3, dtype=torch.float64), rtol=0.05)


# ------------------------------------------------------------------ sampling
@pytest.mark.parametrize("dtype", DTYPES)
def test_random_uniform_contract(case, dtype):
    M = case.space
    x = M.random_uniform(17, generator=torch.Generator().manual_seed(5), dtype=dtype)
    assert x.shape == (17, M.coord_dim) and x.dtype == dtype and x.device.type == "cpu"
    M.check_points(x)  # on the space
    y = M.random_uniform(17, generator=torch.Generator().manual_seed(5), dtype=dtype)
    assert torch.equal(x, y)
    assert M.random_uniform(0, dtype=dtype).shape == (0, M.coord_dim)


# ----------------------------------------------------------------- gradients
CUT_LOCI = {
    "euclidean": [([1.0, 2.0, 3.0], [1.0, 2.0, 3.0])],
    "circle": [([5.0, 0.0], [5.0, 0.0]), ([5.0, 0.0], [-5.0, 0.0])],
    "sphere": [([0.0, 0.0, 5.0], [0.0, 0.0, 5.0]), ([0.0, 0.0, 5.0], [0.0, 0.0, -5.0])],
    "torus": [([1.0, 1.0], [1.0, 1.0]), ([0.0, 0.0], [5.0, 0.0]), ([0.0, 0.0], [5.0, 5.0])],
    "torus6": [([0.0] * 6, [5.0] * 6), ([1.0] * 6, [1.0] * 6)],
    "klein": [([0.0, 3.0], [10.0, 7.0]), ([0.0, 0.0], [5.0, 5.0]), ([2.0, 0.0], [2.0, 10.0]),
              ([0.0, 0.0], [0.0, 0.0]), ([0.0, 2.5], [5.0, 2.5])],
    "product": [([1.0, 0.0, 0.0, 0.0, 1.0], [1.0, 0.0, 0.0, 0.0, 1.0]),
                ([1.0, 0.0, 0.0, 0.0, 1.0], [-1.0, 0.0, 0.0, 0.0, -1.0])],
    "hexagonal": [([0.0, 0.0], [0.0, 0.0]), ([0.0, 0.0], [2.0, 0.0]), ([0.0, 0.0], [4.0, 0.0])],
    "klein_quotient": [([0.0, 3.0], [10.0, 7.0]), ([0.0, 0.0], [5.0, 5.0]), ([1.0, 1.0], [1.0, 1.0])],
}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", sorted(CUT_LOCI))
def test_finite_gradients_at_cut_loci(name, dtype):
    M = next(c for c in CASES if c.name == name).space
    xs = torch.tensor([p for p, _ in CUT_LOCI[name]], dtype=dtype, requires_grad=True)
    ys = torch.tensor([q for _, q in CUT_LOCI[name]], dtype=dtype, requires_grad=True)
    (gx, gy) = torch.autograd.grad(M.dist(xs, ys).sum(), (xs, ys))
    assert torch.isfinite(gx).all() and torch.isfinite(gy).all()
    (gc,) = torch.autograd.grad(M.cdist(xs, ys).sum() + M.cdist(xs).sum(), (xs,))
    assert torch.isfinite(gc).all()
    # the inhibitor-style use: gradient of f(d) with f smooth, d squared
    (g2,) = torch.autograd.grad((M.cdist(xs) ** 2).sum(), (xs,))
    assert torch.isfinite(g2).all()


def test_gradient_is_correct_away_from_cut_loci():
    g = torch.Generator().manual_seed(0)
    for M in [mf.Sphere(2, 5.0), mf.FlatTorus(2, 10.0), mf.KleinBottle(10.0), hexagonal_torus(),
              mf.Product(mf.Circle(1.0), mf.Euclidean(2))]:
        x = M.random_uniform(4, generator=g, dtype=torch.float64).requires_grad_()
        y = M.random_uniform(5, generator=g, dtype=torch.float64)
        if isinstance(M, (mf.Sphere, mf.Product)):
            # perturb within R^coord_dim; check the ambient gradient formula itself
            f = lambda a: M._cdist(a, y).sum()  # noqa: E731
        else:
            f = lambda a: M.cdist(a, y).sum()  # noqa: E731
        assert torch.autograd.gradcheck(f, (x,), eps=1e-6, atol=1e-5)


def test_gradient_at_d0_is_zero_not_nan():
    for M in [mf.FlatTorus(2, 10.0), mf.KleinBottle(10.0), mf.Euclidean(2)]:
        x = torch.tensor([[1.0, 2.0]], requires_grad=True)
        M.dist(x, x.detach()).sum().backward()
        assert torch.equal(x.grad, torch.zeros_like(x))


# ---------------------------------------------------------------- bad input
def test_bad_points_raise_clear_errors(case):
    M = case.space
    good = M.random_uniform(3, generator=torch.Generator().manual_seed(0))
    with pytest.raises(ValueError, match=r"x must have shape \(\.\.\., %d\)" % M.coord_dim):
        M.dist(torch.zeros(3, M.coord_dim + 1), good)
    with pytest.raises(ValueError, match="y must have shape"):
        M.cdist(good, torch.zeros(3, M.coord_dim + 2))
    with pytest.raises(ValueError, match=r"x must have shape \(n, "):
        M.cdist(good[None])
    bad = good.clone()
    bad[1, 0] = float("nan")
    with pytest.raises(ValueError, match="x contains NaN"):
        M.cdist(bad)
    bad[1, 0] = float("inf")
    with pytest.raises(ValueError, match="y contains NaN or infinite"):
        M.dist(good, bad)
    with pytest.raises(TypeError, match="x must be a torch.Tensor"):
        M.cdist(good.numpy())
    with pytest.raises(TypeError, match="floating-point"):
        M.cdist(good.long())
    with pytest.raises(TypeError, match="same dtype"):
        M.cdist(good, good.double())
    with pytest.raises(ValueError, match="broadcastable"):
        M.dist(good, good[:2])
    with pytest.raises(ValueError, match="n must be an int >= 0"):
        M.random_uniform(-1)
    with pytest.raises(TypeError, match="dtype"):
        M.random_uniform(2, dtype=torch.int64)
    with pytest.raises(TypeError, match="n must be an int"):
        M.random_uniform(2.0)


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: mf.Sphere(2, -1.0), "radius must be a finite positive number"),
        (lambda: mf.Circle(0.0), "radius"),
        (lambda: mf.Circle(float("nan")), "radius"),
        (lambda: mf.FlatTorus(2, -10.0), "period must be a finite positive number"),
        (lambda: mf.FlatTorus(0, 10.0), "dim must be an int >= 1"),
        (lambda: mf.KleinBottle(-1.0), "side must be a finite positive number"),
        (lambda: mf.Euclidean(0), "dim must be an int >= 1"),
        (lambda: mf.Product(), "at least one space"),
        (lambda: mf.QuotientSpace([(2 * I2, [1.0, 0.0])], domain=[1.0, 1.0]), "orthogonal"),
        (lambda: mf.QuotientSpace([(I2, [1.0, 0.0, 0.0])], domain=[1.0, 1.0]), r"b of shape \(2,\)"),
        (lambda: mf.QuotientSpace([(I2, [1.0, 0.0])], domain=[[1.0, 2.0], [2.0, 4.0]]), "linearly independent"),
        (lambda: mf.GraphSpace(nx.Graph([(0, 1), (2, 3)])), "connected"),
        (lambda: mf.GraphSpace(nx.Graph([(0, 1, {"weight": -1.0})])), "lengths must be finite and >= 0"),
    ],
)
def test_bad_parameters(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_type_errors_for_parameters():
    with pytest.raises(TypeError, match="radius must be a positive real number"):
        mf.Sphere(2, "5")
    with pytest.raises(TypeError, match="dim must be an int"):
        mf.FlatTorus(2.0, 10.0)
    with pytest.raises(TypeError, match=r"spaces\[1\]"):
        mf.Product(mf.Circle(1.0), "torus")
    with pytest.raises(TypeError, match="networkx graph"):
        mf.GraphSpace([(0, 1)])


def test_points_off_the_space_are_rejected():
    S = mf.Sphere(2, 5.0)
    with pytest.raises(ValueError, match="x must lie on the sphere of radius 5.0"):
        S.cdist(torch.tensor([[1.0, 0.0, 0.0]]))
    G = weighted_grid_graph()
    with pytest.raises(ValueError, match="node indices"):
        G.cdist(torch.tensor([[0.5]]))
    with pytest.raises(ValueError, match="node indices"):
        G.cdist(torch.tensor([[20.0]]))
    with pytest.raises(ValueError, match="not in the graph"):
        G.points([(9, 9)])


# ------------------------------------------------------------ parametrization
@pytest.mark.parametrize("case", [c for c in CASES if c.space.differentiable], ids=[c.name for c in CASES if c.space.differentiable])
def test_unconstrained_parametrization_stays_on_space(case):
    M = case.space
    g = torch.Generator().manual_seed(0)
    x = M.random_uniform(20, generator=g, dtype=torch.float64)
    u = M.to_unconstrained(x)
    assert torch.allclose(M.cdist(M.from_unconstrained(u), x).diagonal(), torch.zeros(20, dtype=torch.float64), atol=1e-9)
    u = (u + 3.0 * torch.randn(u.shape, generator=g, dtype=torch.float64)).requires_grad_()
    p = M.from_unconstrained(u)
    M.check_points(p.detach())
    M.cdist(p).sum().backward()
    assert torch.isfinite(u.grad).all()


# ----------------------------------------------------------- global state
@needs_geomstats
def test_import_and_geomstats_leave_torch_defaults_unchanged():
    code = (
        "import torch\n"
        "torch.set_default_dtype(torch.float32)\n"
        "import moduli\n"
        "from moduli import manifolds as mf\n"
        "assert torch.get_default_dtype() == torch.float32, 'import'\n"
        "for M in [mf.Sphere(2), mf.FlatTorus(2), mf.KleinBottle(), mf.Euclidean(2)]:\n"
        "    M.geomstats_equivalent()\n"
        "assert torch.get_default_dtype() == torch.float32, torch.get_default_dtype()\n"
        "print('ok')\n"
    )
    for backend in ["numpy", "pytorch"]:
        env = dict(os.environ, GEOMSTATS_BACKEND=backend)
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
        assert out.returncode == 0 and out.stdout.strip() == "ok", (backend, out.stderr[-2000:])


@needs_geomstats
def test_geomstats_import_restores_dtype_in_process():
    torch.set_default_dtype(torch.float32)
    mf.KleinBottle().geomstats_equivalent()
    assert torch.get_default_dtype() == torch.float32


def test_missing_geomstats_names_the_extra(monkeypatch):
    for name in [m for m in sys.modules if m.split(".")[0] == "geomstats"] + ["geomstats"]:
        monkeypatch.setitem(sys.modules, name, None)  # what an environment without geomstats sees
    with pytest.raises(ModuleNotFoundError, match=r"moduli\[geomstats\]"):
        mf.KleinBottle().geomstats_equivalent()
    assert torch.get_default_dtype() == torch.float32


def test_import_does_not_load_networkx():
    """networkx (and scipy's csgraph) load only when a GraphSpace is built."""
    code = (
        "import sys, moduli\n"
        "from moduli import manifolds as mf\n"
        "assert 'networkx' not in sys.modules, 'import moduli loaded networkx'\n"
        "import networkx as nx\n"
        "mf.GraphSpace(nx.path_graph(3))\n"
        "print('ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-2000:]


class _ProjectivePlane(mf.Sphere):
    """RP^2 = S^2 / (x ~ -x), written as a Sphere subclass overriding only ``_dist``."""

    def __init__(self, radius: float = 1.0):
        super().__init__(2, radius)
        self.diameter = math.pi * radius / 2

    def _dist(self, x, y):
        return torch.minimum(super()._dist(x, y), super()._dist(x, -y))


@pytest.mark.parametrize("dtype", DTYPES)
def test_sphere_fast_path_respects_a_subclass_dist(dtype):
    """Sphere's Gram/acos cdist accelerates Sphere._dist only; a subclass with its
    own _dist (here RP^2) must get cdist == its dist, never above its diameter."""
    M = _ProjectivePlane(5.0)
    g = torch.Generator().manual_seed(0)
    x = M.random_uniform(400, generator=g, dtype=dtype)
    y = M.random_uniform(300, generator=g, dtype=dtype)
    atol = ATOL[dtype] * M.diameter
    for D, expected in [(M.cdist(x, y), M.dist(x[:, None], y[None])), (M.cdist(x), M.dist(x[:, None], x[None]))]:
        assert float((D - expected).abs().max()) <= atol
        assert float(D.max()) <= M.diameter + atol
    # the plain sphere keeps its fast path, which agrees with its own dist
    S = mf.Sphere(2, 5.0)
    assert torch.allclose(S.cdist(x, y), S.dist(x[:, None], y[None]), atol=atol)


def test_random_uniform_is_a_template():
    """A space implements only the sampling hook; the base class validates and
    resolves dtype and device. A space without the hook fails loudly."""

    class Interval(mf.Manifold):
        coord_dim = dim = 1
        diameter = 1.0

        def _dist(self, x, y):
            return (x - y).abs()[..., 0]

        def _random_uniform(self, n, generator, dtype, device):
            return torch.rand(n, 1, generator=generator, dtype=dtype, device=device)

    M = Interval()
    x = M.random_uniform(4, generator=torch.Generator().manual_seed(0))
    assert x.dtype == torch.get_default_dtype() and x.device.type == "cpu"
    assert torch.equal(x, torch.rand(4, 1, generator=torch.Generator().manual_seed(0)))
    with pytest.raises(ValueError, match="n must be an int >= 0"):
        M.random_uniform(-2)
    with pytest.raises(TypeError, match="dtype"):
        M.random_uniform(2, dtype=torch.int32)

    class NoSampler(mf.Manifold):
        coord_dim = dim = 1

    with pytest.raises(NotImplementedError, match="NoSampler must implement _random_uniform"):
        NoSampler().random_uniform(3)


# ------------------------------------------------ the public contract check
@pytest.mark.parametrize("dtype", DTYPES)
def test_check_manifold_passes_on_every_space(case, dtype):
    report = check_manifold(case.space, generator=torch.Generator().manual_seed(11), dtype=dtype)
    assert report.space == repr(case.space) and report.dtype == dtype and report.n == 64
    assert all(0.0 <= err <= report.atol for err in report.errors.values())
    expected = {"random_uniform", "symmetry", "triangle inequality", "dist is the diagonal of cdist",
                "cdist(x) exactly symmetric", "identity", "non-negativity"}
    assert expected <= set(report.checks)
    assert ("finite gradients" in report.checks) == case.space.differentiable
    assert ("diameter" in report.checks) == math.isfinite(case.space.diameter)


class _Skewed(mf.Euclidean):
    """d(x, y) + relu(x_0 - y_0): zero on the diagonal, non-negative, not symmetric."""

    def _dist(self, x, y):
        return super()._dist(x, y) + torch.relu(x[..., 0] - y[..., 0])


class _Squared(mf.Euclidean):
    """|x - y|^2: symmetric, zero on the diagonal, breaks the triangle inequality."""

    def _dist(self, x, y):
        return super()._dist(x, y) ** 2


class _WrongBlock(mf.FlatTorus):
    """A _cdist_block that disagrees with _dist."""

    def _cdist_block(self, x, y):
        return 0.5 * super()._cdist_block(x, y)


class _SmallDiameter(mf.Sphere):
    def __init__(self, dim, radius):
        super().__init__(dim, radius)
        self.diameter = 1.0  # the true diameter is pi * radius


class _OffSphere(mf.Sphere):
    def _random_uniform(self, n, generator, dtype, device):
        return 2.0 * super()._random_uniform(n, generator, dtype, device)


class _NaiveSqrt(mf.Euclidean):
    """sqrt without a guard: infinite derivative at d = 0, NaN gradients."""

    def _dist(self, x, y):
        return torch.sqrt(((x - y) ** 2).sum(-1))


class _NotSeeded(mf.Euclidean):
    def _random_uniform(self, n, generator, dtype, device):
        return torch.rand(n, self.dim, dtype=dtype, device=device)  # ignores the generator


class _Negative(mf.Euclidean):
    def _dist(self, x, y):
        return super()._dist(x, y) - 0.1  # negative for nearby points


@pytest.mark.parametrize(
    "space, prop",
    [
        (_Skewed(2), "symmetry"),
        (_Squared(2), "triangle inequality"),
        (_WrongBlock(2, 10.0), "dist is the diagonal of cdist"),
        (_SmallDiameter(2, 5.0), "diameter"),
        (_OffSphere(2, 5.0), "random_uniform"),
        (_NaiveSqrt(2), "finite gradients"),
        (_NotSeeded(2), "random_uniform"),
        (_ProjectivePlane(5.0), None),  # a correct space written as a Sphere subclass passes
    ],
    ids=lambda v: v if isinstance(v, str) else type(v).__name__,
)
def test_check_manifold_names_the_broken_property(space, prop):
    if prop is None:
        check_manifold(space)
        return
    with pytest.raises(ManifoldCheckError) as info:
        check_manifold(space)
    err = info.value
    assert isinstance(err, AssertionError) and err.property == prop
    assert str(err).startswith(f"{prop} fails for {space!r}")


def test_check_manifold_reports_the_worst_pair():
    with pytest.raises(ManifoldCheckError, match=r"triangle inequality fails for .*worst at index \(\d+"):
        check_manifold(_Squared(3), dtype=torch.float32)
    with pytest.raises(AssertionError, match="non-negativity"):
        check_manifold(_Negative(2))


def test_check_manifold_rejects_bad_arguments():
    with pytest.raises(TypeError, match="M must be a moduli Manifold"):
        check_manifold("sphere")
    with pytest.raises(ValueError, match="n must be an int >= 2"):
        check_manifold(mf.Circle(1.0), n=1)
    with pytest.raises(TypeError, match="dtype"):
        check_manifold(mf.Circle(1.0), dtype=torch.int64)
    with pytest.raises(ValueError, match="atol"):
        check_manifold(mf.Circle(1.0), atol=-1.0)


# --------------------------------------------------------------------------- graph node ids and low precision


@pytest.mark.parametrize("dtype,exact", [(torch.float16, 2048), (torch.bfloat16, 256)])
def test_graph_refuses_dtypes_that_round_node_ids(dtype, exact):
    big = mf.GraphSpace(nx.path_graph(exact + 2))  # largest index exact + 1 rounds in dtype
    idx = torch.arange(big.num_nodes, dtype=torch.float64)[:, None]
    # the defect: exact + 1 becomes another node's index without any error
    assert idx.to(dtype)[-1, 0].item() != exact + 1
    msg = rf"has dtype {dtype}, which cannot represent every node index.*{exact + 2} nodes.*up to {exact}\b"
    x = idx.to(dtype)
    with pytest.raises(TypeError, match=r"^x " + msg):
        big.check_points(x, "x")
    with pytest.raises(TypeError, match=r"^x " + msg):
        big.cdist(x)
    with pytest.raises(TypeError, match=r"^x " + msg):
        big.cdist(x, validate=False)
    with pytest.raises(TypeError, match=r"^y " + msg):
        big.dist(idx[:2], x[:2])  # y is checked before the two dtypes are compared
    with pytest.raises(TypeError, match=r"^x " + msg):
        big.dist(x[:2], x[:2], validate=False)
    with pytest.raises(TypeError, match=r"^dtype " + msg):
        big.random_uniform(3, dtype=dtype)
    with pytest.raises(TypeError, match=r"^dtype " + msg):
        big.points([0, 1], dtype=dtype)
    # inside a product the factor is named
    with pytest.raises(TypeError, match=r"^x \(factor 1, GraphSpace.*cannot represent every node index"):
        mf.Product(mf.Euclidean(1), big).check_points(torch.zeros(2, 2, dtype=dtype), "x")
    with pytest.raises(TypeError, match=r"^dtype " + msg):
        mf.Product(mf.Euclidean(1), big).random_uniform(2, dtype=dtype)


@pytest.mark.parametrize("dtype,exact", [(torch.float16, 2048), (torch.bfloat16, 256), (torch.float32, 2**24)])
def test_graph_accepts_dtypes_that_hold_every_node_id(dtype, exact):
    n = min(exact + 1, 3000)  # largest index exact: every index is held
    G = mf.GraphSpace(nx.path_graph(n))
    x = G.points([0, n - 1, n // 2], dtype=dtype)
    assert x[:, 0].tolist() == [0, n - 1, n // 2]
    D = G.cdist(x)
    assert D.dtype == dtype
    assert D[0, 1].item() == float(torch.tensor(n - 1.0, dtype=dtype))
    assert G.dist(x[:1], x[1:2]).shape == (1,)
    s = G.random_uniform(50, dtype=dtype, generator=torch.Generator().manual_seed(0))
    assert bool(((s >= 0) & (s <= n - 1) & (s == s.round())).all())


@pytest.mark.parametrize(
    "make",
    [
        lambda f, i: mf.Circle(f(5.0)),
        lambda f, i: mf.Sphere(i(2), f(5.0)),
        lambda f, i: mf.FlatTorus(i(2), f(10.0)),
        lambda f, i: mf.KleinBottle(f(10.0)),
        lambda f, i: mf.Euclidean(i(3), extent=f(2.5)),
        lambda f, i: mf.Product(mf.Circle(f(2.0)), mf.Euclidean(i(1))),
        lambda f, i: mf.catalog.at_scale("torus", f(4.0), i(3)),
    ],
)
def test_numpy_scalars_build_the_same_spaces(make):
    py, npy = make(float, int), make(np.float32, np.int64)  # values exact in float32
    assert repr(npy) == repr(py)
    a = py.random_uniform(5, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    b = npy.random_uniform(np.int64(5), generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    assert torch.equal(a, b)
    assert torch.equal(py.cdist(a), npy.cdist(b))


# --------------------------------------------------------------------------- Euclidean overflow


def _plain_euclidean(x, y):
    from moduli.manifolds.base import safe_sqrt
    from moduli.manifolds.euclidean import squared_norm_of_difference

    return safe_sqrt(squared_norm_of_difference(x, y))


@pytest.mark.parametrize("dtype,big", [(torch.float64, 1e200), (torch.float32, 1e30), (torch.float16, 1e3)])
def test_euclidean_large_finite_points_have_finite_accurate_distances(dtype, big):
    E = mf.Euclidean(3)
    x = torch.tensor([[0.0, 0.0, 0.0], [3.0, 4.0, 0.0], [3.0, 4.0, 12.0]], dtype=torch.float64) * big
    d = E.cdist(x.to(dtype))
    want = torch.tensor([[0.0, 5.0, 13.0], [5.0, 0.0, 12.0], [13.0, 12.0, 0.0]], dtype=torch.float64) * big
    assert bool(torch.isfinite(d).all())
    rel = 4 * torch.finfo(dtype).eps
    assert torch.allclose(d.double(), want, rtol=rel, atol=0.0)
    assert torch.allclose(E.dist(x[1].to(dtype), x[2].to(dtype)).double(), want[1, 2], rtol=rel, atol=0.0)
    # the plain formula overflows on these points (the defect)
    assert not bool(torch.isfinite(_plain_euclidean(x[:, None].to(dtype), x[None].to(dtype))).all())
    # only a distance beyond the dtype's range is infinite
    edge = torch.finfo(dtype).max
    far = torch.tensor([[edge, 0.0, 0.0], [-edge, 0.0, 0.0]], dtype=dtype)
    assert E.cdist(far)[0, 1].item() == math.inf


@pytest.mark.parametrize("dtype,k", [(torch.float64, 600), (torch.float64, -600), (torch.float32, 90),
                                     (torch.float32, -90)])
def test_euclidean_distance_scales_exactly_with_powers_of_two(dtype, k):
    # x * 2**k is exact, so its distances must be exactly the distances times 2**k,
    # also far outside the range where the squares are representable
    E = mf.Euclidean(3)
    x = E.random_uniform(40, generator=torch.Generator().manual_seed(3), dtype=dtype)
    y = E.random_uniform(30, generator=torch.Generator().manual_seed(4), dtype=dtype)
    f = math.ldexp(1.0, k)
    assert torch.equal(E.cdist(x * f, y * f), E.cdist(x, y) * f)
    assert torch.equal(E.dist(x[:30] * f, y * f), E.dist(x[:30], y) * f)
    assert bool((E.cdist(x * f, y * f) > 0).all())


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_euclidean_ordinary_distances_and_gradients_are_the_plain_formula_bit_for_bit(dtype):
    g = torch.Generator().manual_seed(5)
    E = mf.Euclidean(3)
    x = 10 * torch.rand(300, 3, generator=g, dtype=dtype)
    y = 10 * torch.rand(200, 3, generator=g, dtype=dtype)
    plain = _plain_euclidean(x[:, None], y[None])
    assert torch.equal(E.cdist(x, y), plain)
    assert torch.equal(E.dist(x[:200], y), _plain_euclidean(x[:200], y))
    w = torch.rand(300, 200, generator=g, dtype=dtype)
    grads = []
    for f in (lambda a, b: E.cdist(a, b), lambda a, b: _plain_euclidean(a[:, None], b[None])):
        a, b = x.clone().requires_grad_(True), y.clone().requires_grad_(True)
        (f(a, b) * w).sum().backward()
        grads.append((a.grad, b.grad))
    assert torch.equal(grads[0][0], grads[1][0]) and torch.equal(grads[0][1], grads[1][1])


def test_euclidean_gradients_are_finite_at_zero_and_for_huge_points():
    E = mf.Euclidean(3)
    x = torch.tensor([[1.0, 2.0, 3.0], [1.0, 2.0, 3.0], [0.0, 0.0, 0.0]], dtype=torch.float64, requires_grad=True)
    E.cdist(x).sum().backward()
    assert bool(torch.isfinite(x.grad).all())
    z = torch.zeros(2, 3, dtype=torch.float64, requires_grad=True)
    E.dist(z[0], z[1]).backward()
    assert z.grad.abs().sum().item() == 0.0
    h = torch.tensor([[0.0, 0.0, 0.0], [3e200, 4e200, 0.0]], dtype=torch.float64, requires_grad=True)
    E.dist(h[0], h[1]).backward()
    assert torch.allclose(h.grad, torch.tensor([[-0.6, -0.8, 0.0], [0.6, 0.8, 0.0]], dtype=torch.float64))
    check_manifold(mf.Euclidean(3))


def test_a_generator_and_a_different_device_are_a_clear_error():
    gen = torch.Generator().manual_seed(0)
    with pytest.raises(ValueError, match="device cuda differs from the generator's device cpu"):
        mf.Circle(2.0).random_uniform(3, generator=gen, device="cuda")
    assert mf.Circle(2.0).random_uniform(3, generator=gen, device="cpu").device.type == "cpu"
