"""Diagram distances and vectorisations (moduli.analysis.diagrams) against direct computations."""

import math

import numpy as np
import pytest
import torch
from scipy.optimize import linear_sum_assignment

from moduli import analysis as an
from moduli import manifolds as mf


def _random_diagram(rng, n):
    b = rng.uniform(0, 3, n)
    return np.stack([b, b + rng.exponential(0.7, n)], 1)


def _wasserstein_exact(a, b, q, p):
    """Exact W_q with the L^p ground norm: an optimal assignment on diagrams augmented by
    their diagonal projections (finite diagrams only)."""
    def norm(u, v):
        return np.linalg.norm(u - v, ord=p, axis=-1)

    def diag(x):
        m = (x[:, 0] + x[:, 1]) / 2
        return np.stack([m, m], 1)

    n, m = len(a), len(b)
    C = np.zeros((n + m, n + m))
    C[:n, :m] = norm(a[:, None, :], b[None, :, :]) ** q
    C[:n, m:] = np.inf
    C[n:, :m] = np.inf
    for i in range(n):
        C[i, m + i] = norm(a[i], diag(a[i:i + 1])[0]) ** q
    for j in range(m):
        C[n + j, j] = norm(b[j], diag(b[j:j + 1])[0]) ** q
    C[n:, m:] = 0.0
    C[~np.isfinite(C)] = 1e18
    r, c = linear_sum_assignment(C)
    return float(C[r, c].sum()) ** (1 / q)


@pytest.mark.parametrize("q,p", [(1, math.inf), (2, math.inf), (1, 2), (2, 2)])
def test_wasserstein_matches_exact_assignment(q, p):
    rng = np.random.default_rng(q * 10 + int(p if p < 10 else 9))
    for _ in range(4):
        a, b = _random_diagram(rng, 7), _random_diagram(rng, 5)
        exact = _wasserstein_exact(a, b, q, p)
        got = an.wasserstein_distance(a, b, order=q, internal_p=p, delta=1e-6)
        assert got == pytest.approx(exact, rel=1e-5)


def test_wasserstein_against_pot_when_installed():
    pytest.importorskip("ot")
    from gudhi.wasserstein import wasserstein_distance as pot_w

    rng = np.random.default_rng(3)
    a, b = _random_diagram(rng, 12), _random_diagram(rng, 9)
    for q, p in [(1, math.inf), (2, 2)]:
        assert an.wasserstein_distance(a, b, order=q, internal_p=p, delta=1e-6) == pytest.approx(
            pot_w(a, b, order=q, internal_p=p), rel=1e-5)


def test_wasserstein_known_values_infinite_bars_and_results():
    inf = math.inf
    assert an.wasserstein_distance([[0, inf], [0, 1.0]], [[0.5, inf]]) == pytest.approx(1.0)
    assert an.wasserstein_distance([[0, inf]], [[0, 1.0]]) == inf
    assert an.wasserstein_distance(np.zeros((0, 2)), np.zeros((0, 2))) == 0.0
    assert an.wasserstein_distance([[0.0, 1.0]], [[0.0, 1.0]], order=math.inf) == pytest.approx(0.0)
    rng = np.random.default_rng(0)
    a, b = _random_diagram(rng, 6), _random_diagram(rng, 6)
    assert an.wasserstein_distance(a, b, order=math.inf) == pytest.approx(an.bottleneck_distance(a, b))
    # W_q decreases in q towards the bottleneck distance
    w = [an.wasserstein_distance(a, b, order=q, delta=1e-6) for q in (1, 2, 8)]
    assert w[0] >= w[1] >= w[2] >= an.bottleneck_distance(a, b) - 1e-9
    C = mf.Circle(5.0)
    x = C.random_uniform(40, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    r = an.persistence(x, manifold=C, maxdim=1)
    assert an.wasserstein_distance(r, r, dim=1) == pytest.approx(0.0, abs=1e-12)
    assert an.diagram_distance(r, r.diagrams[1], dim=1, metric="wasserstein", order=2) == pytest.approx(0.0, abs=1e-12)


def _landscape_direct(d, k, t):
    tents = np.maximum(0.0, np.minimum(t[None, :] - d[:, :1], d[:, 1:] - t[None, :]))
    tents = -np.sort(-tents, axis=0)
    out = np.zeros((k, len(t)))
    out[:min(k, len(d))] = tents[:k]
    return out


def test_landscape_equals_tent_functions():
    rng = np.random.default_rng(1)
    d = _random_diagram(rng, 9)
    t, lam = an.landscape(d, num_landscapes=4, resolution=57, sample_range=(0.0, 5.0))
    assert np.allclose(t, np.linspace(0, 5, 57))
    assert np.allclose(lam, _landscape_direct(d, 4, t), atol=1e-12)
    # default range: smallest birth to largest death; landscapes vanish at both ends
    t2, lam2 = an.landscape(d, num_landscapes=2)
    assert t2[0] == pytest.approx(d[:, 0].min()) and t2[-1] == pytest.approx(d[:, 1].max())
    assert np.allclose(lam2[:, [0, -1]], 0.0, atol=1e-12)


def test_landscape_stability_under_bottleneck():
    # Bubenik: sup_t |lambda_k^a(t) - lambda_k^b(t)| <= d_B(a, b) for every k
    rng = np.random.default_rng(2)
    for _ in range(5):
        a = _random_diagram(rng, 8)
        b = a + rng.normal(0, 0.1, a.shape)
        b[:, 1] = np.maximum(b[:, 1], b[:, 0])
        dsup = an.diagram_distance(a, b, metric="landscape", p=math.inf, num_landscapes=8)
        assert dsup <= an.bottleneck_distance(a, b) + 1e-9


def test_persistence_image_is_weighted_gaussian_sum():
    rng = np.random.default_rng(4)
    d = _random_diagram(rng, 6)
    bw = 0.3
    births, pers, img = an.persistence_image(d, resolution=(7, 5), bandwidth=bw, im_range=(0, 3, 0, 2))
    assert img.shape == (5, 7)
    B, P = np.meshgrid(births, pers)
    want = np.zeros_like(B)
    for b, e in d:
        w = e - b
        want += w * np.exp(-((B - b) ** 2 + (P - w) ** 2) / (2 * bw ** 2)) / (2 * np.pi * bw ** 2)
    assert np.allclose(img, want, rtol=1e-10, atol=1e-12)
    _, _, img_u = an.persistence_image(d, resolution=(7, 5), bandwidth=bw, im_range=(0, 3, 0, 2),
                                       weight="uniform")
    assert img_u.sum() > 0 and not np.allclose(img_u, img)
    # essential bars: dropped by default, given a death with infinity=
    e = np.vstack([d, [[0.0, math.inf]]])
    assert np.allclose(an.persistence_image(e, resolution=(7, 5), bandwidth=bw, im_range=(0, 3, 0, 2))[2], img)
    assert not np.allclose(an.persistence_image(e, resolution=(7, 5), bandwidth=bw, im_range=(0, 3, 0, 2),
                                                infinity=1.5)[2], img)


def test_betti_curve_counts_and_exact_betti_distance():
    rng = np.random.default_rng(5)
    d = _random_diagram(rng, 10)
    g = np.linspace(-0.5, 6.0, 301)
    t, beta = an.betti_curve(d, grid=g)
    want = ((d[:, :1] <= g[None, :]) & (g[None, :] < d[:, 1:])).sum(0)
    assert np.array_equal(beta, want)
    # the exact integral against a fine midpoint rule
    e = _random_diagram(rng, 7)
    lo = min(d.min(), e.min())
    hi = max(d.max(), e.max())
    s = np.linspace(lo, hi, 200001)
    mid = (s[1:] + s[:-1]) / 2
    ba = ((d[:, :1] <= mid) & (mid < d[:, 1:])).sum(0)
    bb = ((e[:, :1] <= mid) & (mid < e[:, 1:])).sum(0)
    numeric = float(np.sum(np.abs(ba - bb) * np.diff(s)))
    assert an.diagram_distance(d, e, metric="betti") == pytest.approx(numeric, rel=1e-3)


def test_diagram_distance_metric_properties():
    rng = np.random.default_rng(6)
    a, b = _random_diagram(rng, 8), _random_diagram(rng, 6)
    for m in an.DIAGRAM_METRICS:
        assert an.diagram_distance(a, a, metric=m) == pytest.approx(0.0, abs=1e-9)
        dab = an.diagram_distance(a, b, metric=m)
        assert dab > 0
        assert dab == pytest.approx(an.diagram_distance(b, a, metric=m), rel=1e-6)
    assert an.diagram_distance(a, b, metric=lambda x, y: len(x) - len(y)) == 2.0


def test_rank_manifolds_with_other_metrics():
    C = mf.Circle(3.0)
    x = C.random_uniform(90, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    cands = {"circle": mf.Circle(5.0), "sphere": mf.Sphere(2, 5.0), "torus": mf.FlatTorus(2, 10.0)}
    for metric, opts in [("wasserstein", {"order": 2}), ("landscape", None), ("betti", None)]:
        fits = an.rank_manifolds(x, cands, manifold=C, n_points=60, n_reference=1,
                                 metric=metric, metric_options=opts)
        assert fits[0].name == "circle", (metric, [(f.name, f.score) for f in fits])
        assert fits[0].metric == metric


def test_bad_input_raises_named_errors():
    with pytest.raises(ValueError, match="metric"):
        an.diagram_distance([[0, 1.0]], [[0, 1.0]], metric="cosine")
    with pytest.raises(TypeError, match="unexpected"):
        an.diagram_distance([[0, 1.0]], [[0, 1.0]], metric="bottleneck", order=2)
    with pytest.raises(ValueError, match="order"):
        an.wasserstein_distance([[0, 1.0]], [[0, 1.0]], order=0.5)
    with pytest.raises(ValueError, match="internal_p"):
        an.wasserstein_distance([[0, 1.0]], [[0, 1.0]], order=math.inf, internal_p=2)
    with pytest.raises(ValueError, match="shape"):
        an.landscape(np.zeros((3, 3)))
    with pytest.raises(ValueError, match="death < birth"):
        an.betti_curve([[1.0, 0.0]])
    with pytest.raises(ValueError, match="grid"):
        an.betti_curve([[0.0, 1.0]], grid=[1.0, 0.0])
    with pytest.raises(ValueError, match="sample_range"):
        an.landscape([[0.0, 1.0]], sample_range=(1.0, 1.0))
    with pytest.raises(ValueError, match="im_range"):
        an.persistence_image([[0.0, 1.0]], im_range=(1.0, 0.0, 0.0, 1.0))
    with pytest.raises(ValueError, match="weight"):
        an.persistence_image([[0.0, 1.0]], weight="log")
    C = mf.Circle(5.0)
    r = an.persistence(C.random_uniform(20, generator=torch.Generator().manual_seed(0)), manifold=C)
    with pytest.raises(ValueError, match="dim="):
        an.wasserstein_distance(r, r)
    with pytest.raises(ValueError, match="metric"):
        an.rank_manifolds(np.random.default_rng(0).normal(size=(20, 2)), {"c": C}, metric="nope")
