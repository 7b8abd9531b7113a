"""Disjoint unions of spaces (multi-modular priors): metric, layout, coefficients, training, bad input."""

from __future__ import annotations

import math
import warnings

import pytest
import torch
from torch import nn
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from moduli import manifolds as mf
from moduli import regularizers as rg
from moduli.manifolds.testing import ManifoldCheckError, check_manifold

SETTINGS = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
DTYPES = [torch.float32, torch.float64]
ATOL = {torch.float32: 1e-4, torch.float64: 1e-10}

# widths 2, 3 and 1 (padding differs per module); diameters pi, pi, 2: metric for cross >= pi / 2
PARTS = (mf.Circle(1.0), mf.Sphere(2, 1.0), mf.FlatTorus(1, 4.0))
CROSS = 2.0
U = mf.DisjointUnion(*PARTS, cross_distance=CROSS)


def dog():
    return rg.DifferenceOfGaussians(c=1.0, sigma1=0.5, sigma2=math.sqrt(5.0))


def dog_value(d):
    """Eq. 8 by hand: 1 - (exp(-d^2/5) - exp(-4 d^2))."""
    return 1.0 - (math.exp(-d * d / 5.0) - math.exp(-4.0 * d * d))


def component_point(k, values):
    v = torch.tensor(values, dtype=torch.float64)
    if k == 0:
        return PARTS[0].project(v[:2])
    if k == 1:
        return PARTS[1].project(v)
    return 4.0 * v[:1]


# one point: a module and three raw numbers (the first two bounded away from 0 for the projections)
POINT = st.tuples(
    st.integers(0, 2),
    st.lists(st.floats(-1.0, 1.0, allow_nan=False, width=64), min_size=3, max_size=3)
    .filter(lambda v: v[0] ** 2 + v[1] ** 2 > 1e-2),
)


def union_points(rows, dtype):
    return torch.cat([U.pack(k, component_point(k, v)[None]) for k, v in rows]).to(dtype)


# ------------------------------------------------------------------ metric
@pytest.mark.parametrize("dtype", DTYPES)
def test_metric_axioms_and_exact_distances(dtype):
    atol = ATOL[dtype] * math.pi

    @SETTINGS
    @given(st.lists(st.tuples(POINT, POINT, POINT), min_size=1, max_size=6))
    def check(triples):
        x, y, z = (union_points([t[i] for t in triples], dtype) for i in range(3))
        dxy, dyx = U.dist(x, y), U.dist(y, x)
        assert dxy.shape == (len(triples),) and dxy.dtype == dtype
        assert torch.all(dxy >= 0)
        assert torch.all(U.dist(x, x) <= atol)
        assert torch.allclose(dxy, dyx, atol=atol)
        assert torch.all(U.dist(x, z) <= dxy + U.dist(y, z) + atol)
        assert torch.all(dxy <= U.diameter + atol)
        D = U.cdist(x, y)
        assert torch.allclose(torch.diagonal(D), dxy, atol=atol)
        assert torch.allclose(U.dist(x[:, None], y[None]), D, atol=atol)
        for i, ((kx, vx), (ky, vy), _) in enumerate(triples):
            if kx == ky:  # within a module: the module's own distance
                want = PARTS[kx].dist(component_point(kx, vx).to(dtype), component_point(ky, vy).to(dtype))
                assert float(dxy[i]) == pytest.approx(float(want), abs=atol)
            else:  # between modules: the cross distance, exactly
                assert float(dxy[i]) == CROSS

    check()


@pytest.mark.parametrize("dtype", DTYPES)
def test_contract_for_a_finite_cross_distance(dtype):
    report = check_manifold(U, generator=torch.Generator().manual_seed(4), dtype=dtype)
    assert report.max_distance <= U.diameter
    # an infinite cross distance is an extended metric: the contract's "finite" check refuses it
    with pytest.raises(ManifoldCheckError) as err:
        check_manifold(mf.DisjointUnion(*PARTS), generator=torch.Generator().manual_seed(4))
    assert err.value.property == "finite"


@pytest.mark.parametrize("make", ["random", "blocks"])
def test_cdist_blocks_match_the_components_and_autograd(make):
    """Over several row blocks: exact symmetry, the components' own cdist within
    modules, the cross distance between them, and the autograd path."""
    g = torch.Generator().manual_seed(5)
    n = 700  # 700 x 700 entries: more than one row block of the no-grad path
    x = U.random_uniform(n, generator=g, dtype=torch.float64) if make == "random" \
        else U.assign([300, 150, 250], generator=g, dtype=torch.float64)
    D = U.cdist(x)
    assert torch.equal(D, D.T) and torch.equal(torch.diagonal(D), torch.zeros(n, dtype=torch.float64))
    k = U.modules(x)
    for m, space in enumerate(PARTS):
        rows = k == m
        assert int(rows.sum()) > 100
        assert torch.equal(D[rows][:, rows], space.cdist(U.coordinates(x, m)))
        assert torch.all(D[rows][:, ~rows] == CROSS)
    y = U.random_uniform(333, generator=g, dtype=torch.float64)
    assert torch.allclose(U.cdist(x, y), U.cdist(x.clone().requires_grad_(), y).detach(), atol=1e-12)
    assert torch.allclose(U.cdist(x, y), U.dist(x[:, None], y[None]), atol=1e-12)


def test_diameter_and_the_metric_condition():
    assert U.diameter == math.pi and U.coord_dim == 4 and U.dim == 2
    assert mf.DisjointUnion(*PARTS).diameter == math.inf
    assert mf.DisjointUnion(mf.FlatTorus(2, 10.0), cross_distance=1.0).diameter == pytest.approx(5 * math.sqrt(2))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        mf.DisjointUnion(*PARTS, cross_distance=math.pi / 2)  # exactly the bound D / 2
        mf.DisjointUnion(mf.FlatTorus(2, 10.0), cross_distance=0.1)  # one module: no between pairs
        mf.DisjointUnion(mf.Euclidean(2), mf.Circle(1.0))  # infinite cross distance
    with pytest.warns(UserWarning, match=r"not a metric space .*cross_distance >= 1.5708"):
        mf.DisjointUnion(*PARTS, cross_distance=1.5)
    with pytest.warns(UserWarning, match="not a metric space"):
        mf.DisjointUnion(mf.Euclidean(2), mf.Circle(1.0), cross_distance=100.0)


def test_the_triangle_inequality_fails_below_the_bound():
    """The documented condition is sharp: with c < D / 2 two antipodal points of one
    circle are farther apart than their detours through the other module."""
    with pytest.warns(UserWarning):
        V = mf.DisjointUnion(mf.Circle(1.0), mf.Circle(1.0), cross_distance=1.5)
    a, b, other = V.pack(0, torch.tensor([1.0, 0.0])), V.pack(0, torch.tensor([-1.0, 0.0])), \
        V.pack(1, torch.tensor([1.0, 0.0]))
    assert float(V.dist(a, b)) == pytest.approx(math.pi)
    assert float(V.dist(a, b)) > float(V.dist(a, other) + V.dist(other, b)) == 3.0


# ------------------------------------------------------------ sampling
def test_random_uniform_follows_the_weights():
    V = mf.DisjointUnion(*PARTS, cross_distance=CROSS, weights=[1.0, 0.0, 3.0])
    assert V.weights == (0.25, 0.0, 0.75)
    x = V.random_uniform(4000, generator=torch.Generator().manual_seed(0))
    counts = torch.bincount(V.modules(x), minlength=3) / 4000.0
    assert float(counts[1]) == 0.0
    assert float(counts[0]) == pytest.approx(0.25, abs=0.03)
    # equal weights by default; every module's points are uniform in it
    x = U.random_uniform(3000, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    assert torch.bincount(U.modules(x), minlength=3).min() > 900
    torus = U.coordinates(x, 2)
    assert float(torus.mean()) == pytest.approx(2.0, abs=0.15) and float(torus.min()) >= 0.0
    assert U.random_uniform(0).shape == (0, 4)


def test_assign_builds_a_fixed_assignment():
    g = torch.Generator().manual_seed(2)
    x = U.assign([2, 0, 3], generator=g)
    assert U.modules(x).tolist() == [0, 0, 2, 2, 2]
    assert torch.all(x[:2, 3] == 0) and torch.all(x[2:, 2:] == 0)  # padding
    assert torch.allclose(x[:2, 1:3].norm(dim=1), torch.ones(2))
    y = U.assign(labels=[2, 0, 1, 0], generator=g, dtype=torch.float64)
    assert U.modules(y).tolist() == [2, 0, 1, 0] and y.dtype == torch.float64
    assert U.modules(U.assign(labels=torch.tensor([1, 1]))).tolist() == [1, 1]
    # the same generator state gives the same points
    assert torch.equal(U.assign([3, 3, 3], generator=torch.Generator().manual_seed(7)),
                       U.assign([3, 3, 3], generator=torch.Generator().manual_seed(7)))


# ------------------------------------------------------ the prior on it
def _two_circles(cross):
    V = mf.DisjointUnion(mf.Circle(1.0), mf.Circle(1.0), cross_distance=cross)
    angle = lambda t: torch.tensor([[math.cos(t), math.sin(t)]])  # noqa: E731
    # module 0: angles 0 and pi/2 (arc pi/2); module 1: angles 0 and pi (arc pi)
    pts = torch.cat([V.pack(0, angle(0.0)), V.pack(0, angle(math.pi / 2)),
                     V.pack(1, angle(0.0)), V.pack(1, angle(math.pi))])
    return V, pts


W = torch.tensor([[0.5, -1.0, 2.0, 0.25],
                  [1.5, -0.5, -3.0, 1.0],
                  [-2.0, 0.75, 1.0, -1.25],
                  [0.1, 4.0, -0.2, 0.3]])


@pytest.mark.parametrize("cross", [3.0, math.inf])
def test_coefficients_and_penalty_by_hand(cross):
    V, pts = _two_circles(cross)
    prior = rg.ModuliPrior(V, dog())
    model = torch.nn.RNN(2, 4, nonlinearity="relu")
    with torch.no_grad():
        model.weight_hh_l0.copy_(W)
    priors = rg.attach(model, prior, points={"weight_hh_l0": pts})
    a, b = dog_value(math.pi / 2), dog_value(math.pi)
    x = 1.0 if math.isinf(cross) else dog_value(cross)  # DoG -> c = 1 far away
    hand = torch.tensor([[1.0, a, x, x], [a, 1.0, x, x], [x, x, 1.0, b], [x, x, b, 1.0]])
    C = priors.terms["weight_hh_l0"].coefficients()
    assert not torch.isnan(C).any()
    assert torch.allclose(C, hand, atol=1e-6)
    assert V.between_coefficient(dog()) == pytest.approx(x)
    # sum C |W| by hand: the diagonal (f(0) = 1), the two within pairs, the eight between entries
    total = (0.5 + 0.5 + 1.0 + 0.3) + a * (1.0 + 1.5) + b * (1.25 + 0.2) \
        + x * (2.0 + 0.25 + 3.0 + 1.0 + 2.0 + 0.75 + 0.1 + 4.0)
    assert float(priors.penalty().detach()) == pytest.approx(total, rel=1e-6)


def test_infinite_cross_distance_constructs_and_stays_finite():
    V = mf.DisjointUnion(mf.FlatTorus(2, 10.0), mf.FlatTorus(2, 7.0))
    assert V.diameter == math.inf
    prior = rg.ModuliPrior(V, rg.DifferenceOfGaussians(c=2.0))
    x = V.assign([5, 4], generator=torch.Generator().manual_seed(0))
    D = V.cdist(x)
    assert torch.all(D[:5, 5:] == math.inf) and torch.isfinite(D[:5, :5]).all()
    C = rg.coefficient_matrix(V, prior.inhibitor, x)
    assert torch.all(C[:5, 5:] == 2.0) and torch.isfinite(C).all()
    # formulas without a finite value at inf are refused by between_coefficient
    for f in [rg.Ricker(), rg.Sinusoid(), rg.Diffusion()]:
        with pytest.raises(ValueError, match="no finite value at d = inf; pass a finite cross_distance"):
            V.between_coefficient(f)
        with pytest.raises(ValueError, match="at d = inf, a distance of"):  # and by the prior itself
            rg.ModuliPrior(V, f)
    W2 = mf.DisjointUnion(mf.FlatTorus(2, 10.0), mf.FlatTorus(2, 7.0), cross_distance=8.0)
    assert W2.between_coefficient(rg.Ricker()) == pytest.approx(1.0 - (1.0 - 64.0) * math.exp(-32.0))


# ------------------------------------------------------------ training
@pytest.mark.parametrize("cross", [4.0, math.inf])
def test_a_gradient_step_moves_coordinates_never_modules(cross):
    V = mf.DisjointUnion(mf.FlatTorus(2, 10.0), mf.Circle(2.0), mf.FlatTorus(2, 7.0), cross_distance=cross)
    pts = V.assign([3, 3, 2], generator=torch.Generator().manual_seed(0))
    model = torch.nn.RNN(3, 8)
    priors = rg.attach(model, rg.ModuliPrior(V, dog(), trainable=True), points={"weight_hh_l0": pts})
    (u,) = list(priors.parameters())
    term = priors.terms["weight_hh_l0"]
    before = term.points_out.detach().clone()
    opt = torch.optim.Adam(priors.parameters(), lr=0.1)
    for step in range(3):
        opt.zero_grad()
        if step == 0:
            priors.penalty().backward()
        else:  # the coefficients' own autograd graph (through the inhibitor at every pair)
            (term.coefficients() * model.weight_hh_l0.detach().abs()).sum().backward()
        assert torch.isfinite(u.grad).all()
        assert torch.all(u.grad[:, 0] == 0)
        opt.step()
    after = term.points_out.detach()
    assert torch.equal(after[:, 0], before[:, 0])  # the assignment is fixed under gradient steps
    assert not torch.allclose(after[:, 1:], before[:, 1:])  # the coordinates moved
    V.check_points(after, "after")  # still on the space: the circle rows keep radius 2
    # swapping two neurons' points (as a discrete swap step does) moves them between modules
    with torch.no_grad():
        u[[0, 3]] = u[[3, 0]]
    assert V.modules(term.points_out).tolist()[:4] == [1, 0, 0, 0]


def test_unconstrained_round_trip_keeps_the_index():
    x = U.random_uniform(50, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    assert torch.allclose(U.from_unconstrained(U.to_unconstrained(x)), x, atol=1e-12)
    g = torch.Generator().manual_seed(4)
    u = U.to_unconstrained(x) + 0.9 * (torch.rand(50, 4, dtype=torch.float64, generator=g) - 0.5)
    y = U.from_unconstrained(u)
    assert torch.equal(y[:, 0], x[:, 0])  # drifts below 0.5 in the index column are rounded away
    U.check_points(y, "y")


def test_a_graph_module_refuses_training():
    import networkx as nx

    V = mf.DisjointUnion(mf.GraphSpace(nx.cycle_graph(5)), mf.Circle(1.0), cross_distance=3.0)
    assert not V.differentiable
    with pytest.raises(ValueError, match="differentiable space"):
        rg.ModuliPrior(V, dog(), trainable=True)
    x = torch.cat([V.pack(0, torch.tensor([[0.0], [2.0]])), V.pack(1, torch.tensor([[0.0, 1.0]]))])
    assert V.cdist(x).tolist() == [[0.0, 2.0, 3.0], [2.0, 0.0, 3.0], [3.0, 3.0, 0.0]]


# ------------------------------------------------------------ bad input
def test_bad_input_names_the_argument():
    ok = U.pack(2, torch.tensor([[1.0]]))
    for bad_index in [1.5, -1.0, 3.0]:
        x = ok.clone()
        x[0, 0] = bad_index
        with pytest.raises(ValueError, match=r"x must hold a module index in column 0: an integer in \[0, 3\)"):
            U.cdist(x)
    x = ok.clone()
    x[0, 3] = 1.0
    with pytest.raises(ValueError, match=r"points of module 2 .* must be zero in columns 2..3"):
        U.dist(x, ok)
    off = U.pack(0, torch.tensor([[1.0, 0.0]]))
    off[0, 1] = 2.0
    with pytest.raises(ValueError, match=r"module 0, Circle\(radius=1\).*must lie on the sphere"):
        U.check_points(off, "points")
    with pytest.raises(ValueError, match=r"x must have shape \(\.\.\., 4\)"):
        U.cdist(torch.zeros(3, 3))
    with pytest.raises(ValueError, match="x contains NaN"):
        U.cdist(torch.full((2, 4), math.nan))
    for cross in [0.0, -1.0, math.nan]:
        with pytest.raises(ValueError, match="cross_distance must be > 0"):
            mf.DisjointUnion(*PARTS, cross_distance=cross)
    with pytest.raises(TypeError, match="cross_distance must be a positive real"):
        mf.DisjointUnion(*PARTS, cross_distance="far")
    with pytest.raises(TypeError, match=r"spaces\[1\] must be a moduli Manifold"):
        mf.DisjointUnion(mf.Circle(1.0), "torus")
    with pytest.raises(ValueError, match="at least one space"):
        mf.DisjointUnion()
    with pytest.raises(ValueError, match="weights must be a sequence of 3"):
        mf.DisjointUnion(*PARTS, weights=[1.0, 1.0])
    with pytest.raises(ValueError, match=r"weights\[1\] must be a finite non-negative"):
        mf.DisjointUnion(*PARTS, weights=[1.0, -1.0, 1.0])
    with pytest.raises(ValueError, match="weights must not all be zero"):
        mf.DisjointUnion(*PARTS, weights=[0, 0, 0])
    with pytest.raises(ValueError, match="exactly one of sizes"):
        U.assign()
    with pytest.raises(ValueError, match="sizes must be a sequence of 3 counts"):
        U.assign([1, 2])
    with pytest.raises(ValueError, match=r"sizes\[0\] must be an int >= 0"):
        U.assign([-1, 2, 2])
    with pytest.raises(ValueError, match=r"labels\[1\] = 3"):
        U.assign(labels=[0, 3])
    with pytest.raises(TypeError, match="labels must hold integers"):
        U.assign(labels=torch.tensor([0.0, 1.0]))
    with pytest.raises(ValueError, match=r"module must be a module index in \[0, 3\); got 3"):
        U.pack(3, torch.zeros(1, 1))
    with pytest.raises(ValueError, match=r"coords must have shape \(\.\.\., 3\)"):
        U.pack(1, torch.zeros(1, 2))


# ------------------------------------------------------------ learned assignment
def test_swaps_learn_the_assignment_of_a_block_diagonal_network():
    """Neurons wired in two hidden groups but assigned to modules at random: swaps move them between
    modules (the only way an assignment changes) until each group shares a module, lowering the cost."""
    V = mf.DisjointUnion(mf.Circle(4.0), mf.Circle(4.0))
    prior = rg.ModuliPrior(V, rg.DifferenceOfGaussians(c=1.0))  # every between-module pair costs f(inf) = 1
    n = 8
    hidden = torch.tensor([0, 1] * 4)  # the network's groups: even and odd neurons
    w = torch.where(hidden[:, None] == hidden[None, :], 1.0, 0.0) * 0.5
    model = nn.RNN(1, n, bias=False)
    with torch.no_grad():
        model.weight_hh_l0.copy_(w)
    points = V.assign([4, 4], generator=torch.Generator().manual_seed(0))  # modules 0,0,0,0,1,1,1,1
    priors = rg.attach(model, prior, points={"weight_hh_l0": points})
    before = V.modules(priors.terms["weight_hh_l0"].points_out).clone()
    result = rg.swap_neurons_(priors, candidates=n - 1, passes=10)
    after = V.modules(priors.terms["weight_hh_l0"].points_out)
    assert result.swaps > 0 and result.cost_after < result.cost_before
    assert not torch.equal(before, after) and sorted(after.tolist()) == sorted(before.tolist())
    # each hidden group now lies in one module: no strong weight crosses modules
    for g in (0, 1):
        assert len(set(after[hidden == g].tolist())) == 1
    assert set(after[hidden == 0].tolist()) != set(after[hidden == 1].tolist())
