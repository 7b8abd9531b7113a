"""Tests of moduli.analysis: known topology, hand-computed graph statistics, pictures, bad input."""

from __future__ import annotations

import doctest
import math
from types import SimpleNamespace

import networkx as nx
import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st

from moduli import analysis as an
from moduli import manifolds as mf


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# ------------------------------------------------------------------ topology
def test_circle_betti():
    C = mf.Circle(5.0)
    x = C.random_uniform(60, generator=gen(1), dtype=torch.float64)
    r = an.persistence(x, manifold=C, maxdim=1)
    assert r.betti(2.0) == [1, 1]
    assert len(r.diagrams) == 2 and all(d.shape[1] == 2 for d in r.diagrams)
    assert np.isinf(r.diagrams[0][:, 1]).sum() == 1  # one essential component
    # the circle's one loop lives almost until the inscribed-triangle scale sqrt(3) * radius
    assert r.lifetimes(1).max() > 7.0


def test_torus_betti_1_2_1():
    T = mf.FlatTorus(2, 10.0)
    x = T.random_uniform(200, generator=gen(1), dtype=torch.float64)
    r = an.persistence(x, manifold=T, maxdim=2)
    assert r.betti(1.2) == [1, 2, 1]


def test_sphere_betti_1_0_1():
    S = mf.Sphere(2, 5.0)
    x = S.random_uniform(150, generator=gen(1), dtype=torch.float64)
    r = an.persistence(x, manifold=S, maxdim=2)
    assert r.betti(2.5) == [1, 0, 1]


def test_klein_bottle_depends_on_the_field():
    # Over Z/2 the Klein bottle has betti (1, 2, 1); over Z/3 it has (1, 1, 0): the
    # 2-torsion loop and the mod-2 fundamental class only exist in characteristic 2.
    K = mf.KleinBottle(10.0)
    x = K.random_uniform(250, generator=gen(1), dtype=torch.float64)
    r2 = an.persistence(x, manifold=K, maxdim=2, coeff=2)
    r3 = an.persistence(x, manifold=K, maxdim=2, coeff=3)
    assert r2.betti(1.0) == [1, 2, 1]
    assert r3.betti(1.0) == [1, 1, 0]
    assert r2.coeff == 2 and r3.coeff == 3


def test_float32_input_and_tiny_asymmetry_are_harmless():
    # float32 Klein-bottle distances are not bit-symmetric; the engine must still see both loops.
    K = mf.KleinBottle(10.0)
    x = K.random_uniform(300, generator=gen(1), dtype=torch.float32)
    assert an.persistence(x, manifold=K, coeff=2).betti(2.0) == [1, 2]


def test_euclidean_points_and_distance_matrix_agree():
    t = np.linspace(0, 2 * np.pi, 40, endpoint=False)
    P = np.stack([np.cos(t), np.sin(t)], 1)
    a = an.persistence(P)  # Euclidean, numpy input
    D = np.linalg.norm(P[:, None] - P[None], axis=-1)
    b = an.persistence(D, distance_matrix=True)
    for da, db in zip(a.diagrams, b.diagrams):
        np.testing.assert_allclose(da, db, atol=1e-9)
    assert a.betti(0.5) == [1, 1]
    # 40 evenly spaced points: every H0 bar dies at the chord 2 sin(pi / 40)
    finite = a.diagrams[0][np.isfinite(a.diagrams[0][:, 1]), 1]
    np.testing.assert_allclose(finite, 2 * np.sin(np.pi / 40), rtol=1e-9)


def test_landmarks_obey_the_stability_bound():
    T = mf.FlatTorus(2, 10.0)
    x = T.random_uniform(400, generator=gen(2), dtype=torch.float64)
    full = an.persistence(x, manifold=T, sparse=None)
    sub = an.persistence(x, manifold=T, n_landmarks=120, sparse=None)
    assert len(sub.landmarks) == 120 and len(set(sub.landmarks.tolist())) == 120
    assert sub.covering_radius > 0 and sub.error_bound == 2 * sub.covering_radius
    D = T.cdist(x).numpy()
    assert np.isclose(D[:, sub.landmarks].min(1).max(), sub.covering_radius)
    assert an.bottleneck_distance(full, sub, dim=1) <= sub.error_bound + 1e-9
    assert sub.betti(2 * sub.error_bound)[1] == 2
    assert "landmarks" in sub.method


def test_sparse_rips_keeps_the_long_bars():
    T = mf.FlatTorus(2, 10.0)
    x = T.random_uniform(300, generator=gen(3), dtype=torch.float64)
    exact = an.persistence(x, manifold=T, sparse=None)
    sparse = an.persistence(x, manifold=T, sparse=0.3)
    assert sparse.sparse == 0.3 and exact.sparse is None
    assert exact.betti(1.5)[1] == 2 and sparse.betti(1.5)[1] == 2
    long_exact = np.sort(exact.lifetimes(1))[-2:]
    long_sparse = np.sort(sparse.lifetimes(1))[-2:]
    assert np.all(np.abs(long_sparse - long_exact) < 0.3 * long_exact)


def test_auto_switches_to_sparse_above_the_limit():
    T = mf.FlatTorus(2, 10.0)
    x = T.random_uniform(an.EXACT_LIMIT[2] + 1, generator=gen(4), dtype=torch.float64)
    r = an.persistence(x[:60], manifold=T, maxdim=2)
    assert r.sparse is None
    # only check the decision (computing 401 points to H2 costs seconds): H0 only is cheap
    r0 = an.persistence(x, manifold=T, maxdim=0)
    assert r0.sparse is None and r0.betti(0.0)[0] == x.shape[0]


def test_max_edge_length_caps_deaths():
    C = mf.Circle(5.0)
    x = C.random_uniform(60, generator=gen(1), dtype=torch.float64)
    r = an.persistence(x, manifold=C, max_edge_length=5.0)
    assert np.isinf(r.diagrams[1][:, 1]).sum() == 1  # the loop (born at 2.0) is still open at 5
    assert r.lifetimes(1).max() <= 5.0 - 2.0 + 1e-9
    assert r.betti(2.0) == [1, 1]
    assert r.betti(5.0) == [0, 0]  # capped lifetimes do not exceed the cut-off


def test_bottleneck_known_values():
    assert an.bottleneck_distance(np.array([[0.0, 1.0]]), np.array([[0.0, 1.0]])) == pytest.approx(0.0, abs=1e-12)
    assert an.bottleneck_distance(np.array([[0.0, 1.0]]), np.zeros((0, 2))) == pytest.approx(0.5)
    assert an.bottleneck_distance(np.array([[0.0, 1.0]]), np.array([[0.0, 2.0]])) == pytest.approx(1.0)
    assert an.bottleneck_distance([[0.0, 4.0], [1.0, 1.2]], [[0.0, 4.5]]) == pytest.approx(0.5)


def test_rank_manifolds_finds_the_circle_and_the_torus():
    cands = {"circle": mf.Circle(5.0), "sphere": mf.Sphere(2, 5.0), "torus": mf.FlatTorus(2, 10.0)}
    C = mf.Circle(3.0)  # other radius: ranking must be scale-free
    xc = C.random_uniform(150, generator=gen(5), dtype=torch.float64)
    fits = an.rank_manifolds(xc, cands, manifold=C, n_points=100, n_reference=1)
    assert fits[0].name == "circle"
    assert [f.score for f in fits] == sorted(f.score for f in fits)
    T = mf.FlatTorus(2, 1.0)
    xt = T.random_uniform(250, generator=gen(6), dtype=torch.float64)
    fits = an.rank_manifolds(xt, cands, manifold=T, n_points=150, n_reference=1)
    assert fits[0].name == "torus", [(f.name, f.score) for f in fits]
    assert set(fits[0].per_dim) == {1}


def test_rank_manifolds_needs_z3_to_tell_klein_from_torus():
    # Over Z/2 the flat torus and Klein bottle both have betti (1, 2, 1) and similar bars;
    # over Z/3 the Klein bottle loses a loop, so the ranking separates them.
    cands = {"torus": mf.FlatTorus(2, 10.0), "klein": mf.KleinBottle(10.0)}
    K = mf.KleinBottle(3.0)
    x = K.random_uniform(200, generator=gen(8), dtype=torch.float64)
    s2 = {f.name: f.score for f in an.rank_manifolds(x, cands, manifold=K, coeff=2, n_points=150, n_reference=1)}
    s3 = {f.name: f.score for f in an.rank_manifolds(x, cands, manifold=K, coeff=3, n_points=150, n_reference=1)}
    assert abs(s2["torus"] - s2["klein"]) < 0.1
    assert s3["torus"] - s3["klein"] > 0.1


@pytest.mark.parametrize(
    "kwargs, exc, match",
    [
        (dict(coeff=4), ValueError, "prime"),
        (dict(coeff=2.0), TypeError, "coeff"),
        (dict(maxdim=-1), ValueError, "maxdim"),
        (dict(sparse=1.5), ValueError, "sparse"),
        (dict(sparse="fast"), ValueError, "sparse"),
        (dict(max_edge_length=-1.0), ValueError, "max_edge_length"),
        (dict(n_landmarks=0), ValueError, "n_landmarks"),
    ],
)
def test_persistence_rejects_bad_arguments(kwargs, exc, match):
    x = np.random.default_rng(0).normal(size=(10, 2))
    with pytest.raises(exc, match=match):
        an.persistence(x, **kwargs)


def test_persistence_rejects_bad_inputs():
    C = mf.Circle(5.0)
    with pytest.raises(ValueError, match="NaN"):
        an.persistence(np.array([[0.0, 1.0], [np.nan, 0.0]]))
    with pytest.raises(ValueError, match=r"shape \(n, d\)"):
        an.persistence(np.zeros(5))
    with pytest.raises(ValueError, match="symmetric"):
        an.persistence(np.array([[0.0, 1.0], [2.0, 0.0]]), distance_matrix=True)
    with pytest.raises(ValueError, match="negative"):
        an.persistence(np.array([[0.0, -1.0], [-1.0, 0.0]]), distance_matrix=True)
    with pytest.raises(ValueError, match="square"):
        an.persistence(np.zeros((3, 2)), distance_matrix=True)
    with pytest.raises(ValueError, match="not both"):
        an.persistence(np.zeros((3, 3)), distance_matrix=True, manifold=C)
    with pytest.raises(ValueError, match="shape"):
        an.persistence(torch.zeros(5, 3), manifold=C)  # circle points have 2 coordinates
    with pytest.raises(ValueError, match="min_persistence"):
        an.persistence(np.eye(3)).betti(-1.0)
    with pytest.raises(ValueError, match=r"diagram of shape \(n_pairs, 2\)"):
        an.bottleneck_distance(np.zeros((2, 3)), np.zeros((0, 2)))
    with pytest.raises(ValueError, match="dim="):
        r = an.persistence(np.eye(3))
        an.bottleneck_distance(r, r)


@settings(max_examples=8, deadline=None)
@given(st.integers(3, 25), st.integers(0, 10_000))
def test_h0_has_one_essential_class_and_n_bars(n, seed):
    x = np.random.default_rng(seed).normal(size=(n, 3))
    r = an.persistence(x, maxdim=1)
    d0 = r.diagrams[0]
    assert d0.shape == (n, 2) and np.isinf(d0[:, 1]).sum() == 1
    assert np.all(d0[:, 0] == 0)
    # H0 deaths are the minimum-spanning-tree edge lengths (Kruskal)
    from scipy.sparse.csgraph import minimum_spanning_tree

    D = np.linalg.norm(x[:, None] - x[None], axis=-1)
    mst = np.sort(minimum_spanning_tree(D).data)
    np.testing.assert_allclose(np.sort(d0[np.isfinite(d0[:, 1]), 1]), mst, rtol=1e-9)


# ------------------------------------------------------------ hidden states
def _ring_rnn():
    torch.manual_seed(0)
    rnn = torch.nn.RNN(2, 16, batch_first=True)
    with torch.no_grad():
        rnn.weight_hh_l0.zero_()
        rnn.bias_hh_l0.zero_()
        rnn.bias_ih_l0.zero_()
        rnn.weight_ih_l0.normal_(0, 1.5)
    th = torch.rand(1, 400, generator=gen(0)) * 2 * math.pi
    return rnn, torch.stack([th.cos(), th.sin()], -1)


def test_hidden_states_of_a_ring_network_have_one_significant_loop():
    rnn, inputs = _ring_rnn()
    out = an.hidden_state_topology(rnn, inputs, n_points=150, n_surrogates=4)
    assert out.n_states == 400 and out.null == "gaussian"
    assert out.significant == [1, 1]
    assert out.null_longest.shape == (4, 2)
    assert out.significant_bars(1).shape == (1, 2)
    assert out.result.lifetimes(1).max() > 2 * out.threshold[1]


def test_clifford_torus_activity_has_two_significant_loops():
    T = mf.FlatTorus(2, 2 * math.pi)
    x = T.random_uniform(800, generator=gen(0), dtype=torch.float64)
    states = torch.cat([x.cos(), x.sin()], 1)
    out = an.activity_topology(states, n_points=200, n_surrogates=3, maxdim=1)
    assert out.significant == [1, 2]


# Activity in 32 neurons: a latent (n, m) mapped by a random (m, 32) matrix, plus noise of std 0.1
# per neuron (benchmarks/activity_null.py measures the rates on 40 data sets of each kind).
def _mixed(latent: np.ndarray, rng) -> np.ndarray:
    A = rng.standard_normal((latent.shape[1], 32)) / math.sqrt(2)
    return latent @ A + 0.1 * rng.standard_normal((latent.shape[0], 32))


def _blob(seed: int, n: int = 300) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return _mixed(rng.standard_normal((n, 3)), rng)


def _noisy_torus(seed: int, n: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = rng.uniform(0, 2 * math.pi, (n, 2))
    return _mixed(np.concatenate([np.cos(t), np.sin(t)], 1), rng)


def _untrained_rnn_states(seed: int, n: int = 300) -> torch.Tensor:
    torch.manual_seed(seed)
    rnn = torch.nn.RNN(4, 32, batch_first=True)
    return an.collect_hidden_states(rnn, torch.randn(1, n, 4, generator=gen(seed)))


def test_gaussian_null_keeps_the_mean_and_covariance():
    from moduli.analysis.activity import _gaussian_null

    rng = np.random.default_rng(0)
    S = rng.standard_normal((20000, 3)) @ rng.standard_normal((3, 8)) + 5.0   # rank-3 covariance
    X = _gaussian_null(S)(rng)
    assert X.shape == S.shape
    np.testing.assert_allclose(X.mean(0), S.mean(0), atol=0.03)
    np.testing.assert_allclose(np.cov(X.T), np.cov(S.T), atol=0.03 * np.abs(np.cov(S.T)).max())
    assert np.linalg.matrix_rank(X - X.mean(0)) == 3


# With 19 surrogates and quantile 1 about 1 loop-free data set in 20 shows a significant bar (the
# rule's nominal rate, measured in benchmarks/activity_null.py); of seeds 0-7 here, blobs 1 and 4 and
# RNN 7 are such cases, so these seeds are fixed, not a sample.
def test_phase_null_keeps_the_mean_covariance_and_spectra():
    from moduli.analysis.activity import _phase_null

    rng = np.random.default_rng(0)
    for n in (200, 201):   # even n has a Nyquist coefficient
        S = rng.standard_normal((n, 3)) @ rng.standard_normal((3, 8)) + 5.0
        X = _phase_null(S)(rng)
        np.testing.assert_allclose(X.mean(0), S.mean(0), atol=1e-10)
        np.testing.assert_allclose(np.cov(X.T), np.cov(S.T), atol=1e-10)
        FX, FS = np.fft.rfft(X - X.mean(0), axis=0), np.fft.rfft(S - S.mean(0), axis=0)
        np.testing.assert_allclose(FX[:, :, None] * FX[:, None].conj(), FS[:, :, None] * FS[:, None].conj(),
                                   atol=1e-8)   # every (cross-)periodogram
        assert np.abs(X - S).mean() > 0.5


def _slow_ar1(seed: int, n: int, rho: float = 0.98) -> np.ndarray:
    rng = np.random.default_rng(seed)
    e = rng.standard_normal((n, 3))
    z = np.zeros((n, 3))
    z[0] = e[0]
    for t in range(1, n):
        z[t] = rho * z[t - 1] + math.sqrt(1 - rho ** 2) * e[t]
    return _mixed(z, rng)


def test_phase_null_accounts_for_slow_dynamics():
    # ~50-step correlation time: few independent samples, a clumpy cloud that beats i.i.d. draws.
    states = _slow_ar1(0, 400)
    assert an.activity_topology(states, n_points=150).significant[1] > 0
    assert an.activity_topology(states, n_points=150, null="phase").significant == [1, 0]


@pytest.mark.parametrize("seed", [0, 2, 3])
def test_default_null_finds_no_loop_in_correlated_loop_free_activity(seed):
    blob = an.activity_topology(_blob(seed), n_points=120)
    assert blob.null == "gaussian" and blob.null_longest.shape == (19, 2)
    assert blob.significant == [1, 0]
    rnn = an.activity_topology(_untrained_rnn_states(seed), n_points=120)
    assert rnn.significant == [1, 0]


def test_time_shuffle_null_flags_loops_in_loop_free_activity():
    # What the old default tests: independence of the neurons, which correlated activity fails.
    states = _untrained_rnn_states(0)
    old = an.activity_topology(states, n_points=120, null="time-shuffle")
    assert old.null == "time-shuffle"
    assert old.significant[0] > 3 and old.significant[1] > 0
    assert an.activity_topology(states, n_points=120).significant == [1, 0]


def test_default_null_finds_the_loop_of_a_noisy_circle():
    rng = np.random.default_rng(0)
    t = rng.uniform(0, 2 * math.pi, 300)
    out = an.activity_topology(_mixed(np.stack([np.cos(t), np.sin(t)], 1), rng), n_points=120)
    assert out.significant == [1, 1]
    assert out.result.lifetimes(1).max() > 2 * out.threshold[1]


def test_default_null_finds_the_two_loops_of_a_noisy_torus():
    out = an.activity_topology(_noisy_torus(0, 1000), n_points=300)
    assert out.significant == [1, 2]
    assert out.significant_bars(1).shape == (2, 2)


def test_activity_rejects_bad_states():
    with pytest.raises(ValueError, match="states"):
        an.activity_topology(np.zeros(10))
    bad = np.random.default_rng(0).normal(size=(20, 3))
    bad[3, 1] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        an.activity_topology(bad)
    with pytest.raises(ValueError, match="quantile"):
        an.activity_topology(np.random.default_rng(0).normal(size=(20, 3)), quantile=1.5)
    with pytest.raises(TypeError, match="model"):
        an.hidden_state_topology(3, torch.zeros(2, 2))
    ok = np.random.default_rng(0).normal(size=(20, 3))
    with pytest.raises(ValueError, match="null must be one of 'gaussian', 'phase', 'time-shuffle'; got 'shuffle'"):
        an.activity_topology(ok, null="shuffle")
    with pytest.raises(TypeError, match="null"):
        an.activity_topology(ok, null=None)
    with pytest.raises(TypeError, match="n_surrogates or its older name n_shuffles"):
        an.activity_topology(ok, n_surrogates=3, n_shuffles=3)
    with pytest.raises(ValueError, match="n_surrogates"):
        an.activity_topology(ok, n_surrogates=0)


def test_n_shuffles_is_the_older_name_of_n_surrogates():
    states = _blob(0, 100)
    new = an.activity_topology(states, n_points=60, n_surrogates=3, null="time-shuffle")
    old = an.activity_topology(states, n_points=60, n_shuffles=3, null="time-shuffle")
    np.testing.assert_array_equal(new.null_longest, old.null_longest)


# -------------------------------------------------------------- connectivity
def ring_lattice(n: int, k: int) -> np.ndarray:
    W = np.zeros((n, n))
    for i in range(n):
        for o in range(1, k // 2 + 1):
            W[i, (i + o) % n] = W[(i + o) % n, i] = 1.0
    return W


def test_ring_lattice_statistics():
    s = an.connectivity(ring_lattice(20, 4))
    assert (s.n_nodes, s.n_edges) == (20, 40)
    assert s.density == pytest.approx(40 / 190)
    assert s.mean_degree == 4.0 and np.all(s.degrees == 4)
    assert s.clustering == pytest.approx(0.5)  # 3(k-2) / (4(k-1)) with k = 4
    assert s.transitivity == pytest.approx(0.5)
    # hop distance ceil(s/2) to offsets s = 1..19: 2*(1+1+2+2+3+3+4+4+5) + 5 = 55
    assert s.path_length == pytest.approx(55 / 19)
    assert s.n_components == 1 and s.largest_component == 20
    assert s.path_sources == 20 and not any("estimated" in note for note in s.notes)
    assert s.small_world_sigma > 1  # a lattice clusters far more than a random graph


def test_two_cliques_modularity_one_half():
    W = np.zeros((10, 10))
    W[:5, :5] = 1.0
    W[5:, 5:] = 1.0
    s = an.connectivity(W)
    assert s.modularity == pytest.approx(0.5)
    assert s.n_communities == 2 and s.n_components == 2
    assert s.n_self_loops == 10 and s.n_edges == 20
    assert s.clustering == pytest.approx(1.0) and s.path_length == pytest.approx(1.0)


def test_statistics_match_networkx():
    G = nx.gnp_random_graph(120, 0.08, seed=3)
    A = nx.to_numpy_array(G)
    s = an.connectivity(torch.as_tensor(A) * 0.3)
    assert s.n_edges == G.number_of_edges()
    assert s.clustering == pytest.approx(nx.average_clustering(G))
    assert s.transitivity == pytest.approx(nx.transitivity(G))
    big = G.subgraph(max(nx.connected_components(G), key=len))
    assert s.path_length == pytest.approx(nx.average_shortest_path_length(big))
    comms = nx.community.louvain_communities(G, seed=0)
    assert s.modularity == pytest.approx(nx.community.modularity(G, comms))


def test_directed_three_cycle():
    W = np.zeros((3, 3))
    W[1, 0] = W[2, 1] = W[0, 2] = 1.0  # 0 -> 1 -> 2 -> 0
    d = an.connectivity(W, directed=True)
    assert d.n_edges == 3 and d.density == pytest.approx(0.5)
    assert np.all(d.in_degrees == 1) and np.all(d.out_degrees == 1)
    assert d.path_length == pytest.approx(1.5)  # hops 1 and 2 from every node
    u = an.connectivity(W)
    assert u.n_edges == 3 and u.density == 1.0 and u.path_length == 1.0 and u.clustering == 1.0


def test_threshold_and_path_sampling():
    W = ring_lattice(20, 4) * 0.5
    W[0, 10] = W[10, 0] = 0.1  # a weak shortcut, dropped by threshold 0.2
    assert an.connectivity(W).n_edges == 41
    s = an.connectivity(W, threshold=0.2, max_sources=5)
    assert s.n_edges == 40 and s.path_sources == 5
    assert any("estimated" in note for note in s.notes)
    assert 1.0 <= s.path_length <= 5.0


def test_edge_lengths_local_versus_random():
    C = mf.Circle(5.0)
    x = C.random_uniform(200, generator=gen(0))
    D = C.cdist(x)
    local = torch.randn(200, 200, generator=gen(1)) * (D < 2.0)
    random = torch.randn(200, 200, generator=gen(2)) * (torch.rand(200, 200, generator=gen(3)) < 0.1)
    a = an.connectivity(local, points=x, manifold=C)
    b = an.connectivity(random, points=x, manifold=C)
    assert a.edge_length_ratio < 0.3
    assert 0.9 < b.edge_length_ratio < 1.1
    assert a.weight_distance_correlation < -0.3 and abs(b.weight_distance_correlation) < 0.05
    assert a.edge_lengths.shape == (a.n_edges,) and a.edge_lengths.max() < 2.0
    assert a.mean_edge_length == pytest.approx(float(a.edge_lengths.mean()))


def test_pruned_module_and_prior_term():
    import torch.nn.utils.prune as prune

    lin = torch.nn.Linear(12, 12)
    prune.l1_unstructured(lin, "weight", amount=0.75)
    s = an.connectivity(lin, directed=True)
    eff = lin.weight.detach()
    assert s.n_edges == int((eff != 0).sum() - (eff.diagonal() != 0).sum())
    C = mf.Circle(5.0)
    x = C.random_uniform(12, generator=gen(0))
    term = SimpleNamespace(points_out=x, points_in=x, weight=eff, manifold=C)
    t = an.connectivity(term, directed=True)
    assert t.n_edges == s.n_edges and t.mean_edge_length is not None


def test_rectangular_weight_is_bipartite():
    W = np.zeros((3, 4))
    W[0, 0] = W[1, 1] = W[2, 2] = W[2, 3] = 1.0
    s = an.connectivity(W, points=(np.zeros((3, 2)), np.ones((4, 2))))
    assert s.bipartite and s.n_nodes == 7 and s.n_edges == 4
    assert s.density == pytest.approx(4 / 12) and s.clustering == 0.0
    assert math.isnan(s.small_world_sigma)
    assert s.mean_edge_length == pytest.approx(math.sqrt(2)) and s.edge_length_ratio == pytest.approx(1.0)


def test_connectivity_rejects_bad_input():
    with pytest.raises(ValueError, match="2-D"):
        an.connectivity(torch.zeros(2, 3, 3))
    with pytest.raises(ValueError, match="NaN"):
        an.connectivity(torch.tensor([[0.0, float("nan")], [1.0, 0.0]]))
    with pytest.raises(ValueError, match="threshold"):
        an.connectivity(torch.eye(3), threshold=-0.1)
    with pytest.raises(ValueError, match="points"):
        an.connectivity(torch.eye(3), points=torch.zeros(4, 2))
    with pytest.raises(ValueError, match="without points"):
        an.connectivity(torch.eye(3), manifold=mf.Circle(1.0))
    with pytest.raises(TypeError, match="weight"):
        an.connectivity("weights")
    with pytest.raises(ValueError, match="points_out"):
        an.connectivity(torch.zeros(3, 4), points=torch.zeros(3, 2))


def test_docstring_examples_run():
    from moduli.analysis import activity, graphs, homology, plots

    for mod in (homology, graphs, activity, plots):
        res = doctest.testmod(mod, optionflags=doctest.NORMALIZE_WHITESPACE)
        assert res.failed == 0 and res.attempted > 0


# ------------------------------------------------------------------ pictures
def _is_png(path) -> bool:
    data = path.read_bytes()
    return data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 2000


def test_pictures_write_pngs(tmp_path):
    from matplotlib.figure import Figure

    T = mf.FlatTorus(2, 10.0)
    x = T.random_uniform(80, generator=gen(0), dtype=torch.float64)
    r = an.persistence(x, manifold=T, maxdim=1)
    D = T.cdist(x)
    W = torch.exp(-D) * (D < 3.0)
    s = an.connectivity(W, points=x, manifold=T)
    figs = {
        "diagram": an.plot_diagram(r, path=tmp_path / "diagram.png"),
        "barcode": an.plot_barcode(r, path=tmp_path / "barcode.png"),
        "heatmap": an.plot_weight_heatmap(W, x, T, neuron=5, path=tmp_path / "heatmap.png"),
        "field": an.plot_inhibitor_field(
            {"d^2": lambda d: d ** 2, "cos": lambda d: 10 + 10 * torch.cos(2 * d)},
            {"circle": mf.Circle(5.0), "sphere": mf.Sphere(2, 5.0), "klein": mf.KleinBottle(10.0)},
            n=120, path=tmp_path / "sub" / "field.png"),
        "degrees": an.plot_degree_histogram(s, path=tmp_path / "degrees.png"),
        "lengths": an.plot_edge_length_histogram(s, path=tmp_path / "lengths.png"),
    }
    for name, fig in figs.items():
        assert isinstance(fig, Figure), name
    for p in ["diagram", "barcode", "heatmap", "sub/field", "degrees", "lengths"]:
        assert _is_png(tmp_path / f"{p}.png"), p
    # the diagram of a plain list works too, without writing a file
    assert isinstance(an.plot_diagram(r.diagrams), Figure)


def test_chart_falls_back_to_mds():
    T6 = mf.FlatTorus(6, 10.0)
    x = T6.random_uniform(30, generator=gen(0), dtype=torch.float64)
    coords, labels, square = an.chart(T6, x)
    assert coords.shape == (30, 2) and labels == ("MDS 1", "MDS 2") and square is None
    K = mf.KleinBottle(10.0)
    c, _, side = an.chart(K, torch.tensor([[12.0, 3.0]]))
    np.testing.assert_allclose(c, [[2.0, 7.0]])  # glide: (x + s, s - y)
    assert side == 10.0


def test_pictures_reject_bad_input():
    C = mf.Circle(5.0)
    x = C.random_uniform(10, generator=gen(0))
    s = an.connectivity(torch.eye(10) + 1.0)
    with pytest.raises(ValueError, match="edge lengths"):
        an.plot_edge_length_histogram(s)
    with pytest.raises(ValueError, match="direction"):
        an.plot_weight_heatmap(torch.ones(10, 10), x, C, direction="up")
    with pytest.raises(ValueError, match="neuron"):
        an.plot_weight_heatmap(torch.ones(10, 10), x, C, neuron=10)
    with pytest.raises(ValueError, match="same shape"):
        an.plot_inhibitor_field(lambda d: d[:3], C, n=10)
    with pytest.raises(TypeError, match="callable"):
        an.plot_inhibitor_field({"bad": 3.0}, C, n=10)
    with pytest.raises(TypeError, match="GraphStats"):
        an.plot_degree_histogram({"degrees": [1, 2]})


# ---------------------------------------------------------------- commands
def test_cli_topology_and_graph(tmp_path, capsys):
    import json

    import moduli.analysis.cli  # noqa: F401  (registers the subcommands)
    from moduli.cli import main

    C = mf.Circle(5.0)
    x = C.random_uniform(60, generator=gen(1), dtype=torch.float64)
    np.save(tmp_path / "x.npy", x.numpy())
    out = tmp_path / "topo"
    assert main(["topology", str(tmp_path / "x.npy"), "--manifold", "circle", "--scale", "5",
                 "--min-persistence", "2.0", "--out", str(out)]) == 0
    summary = json.loads((out / "persistence.json").read_text())
    assert summary["betti"] == [{"min_persistence": 2.0, "betti": [1, 1]}]
    assert _is_png(out / "diagram.png") and _is_png(out / "barcode.png")
    with pytest.raises(SystemExit, match="not an empty directory"):
        main(["topology", str(tmp_path / "x.npy"), "--out", str(out)])
    with pytest.raises(SystemExit, match="prime"):
        main(["topology", str(tmp_path / "x.npy"), "--coeff", "4", "--out", str(tmp_path / "bad")])
    assert not (tmp_path / "bad").exists()

    np.savetxt(tmp_path / "ring.csv", ring_lattice(20, 4), delimiter=",")
    gout = tmp_path / "graph"
    assert main(["graph", str(tmp_path / "ring.csv"), "--out", str(gout)]) == 0
    g = json.loads((gout / "graph.json").read_text())
    assert g["clustering"] == pytest.approx(0.5) and g["n_edges"] == 40
    assert _is_png(gout / "degrees.png") and not (gout / "edge_lengths.png").exists()
    assert "clustering" in capsys.readouterr().out


def test_recurrent_modules_give_their_hidden_weight_and_states():
    rnn = torch.nn.RNN(3, 7, batch_first=True)
    s = an.connectivity(rnn, directed=True)
    w = rnn.weight_hh_l0.detach()
    assert s.n_nodes == 7 and s.n_edges == int((w != 0).sum() - (w.diagonal() != 0).sum())
    lstm = torch.nn.LSTM(3, 5)  # returns (output, (h, c)); time-major
    states = an.collect_hidden_states(lstm, torch.zeros(11, 2, 3))
    assert states.shape == (22, 5) and not states.requires_grad
    with pytest.raises(ValueError, match="weight"):
        an.connectivity(torch.nn.ReLU())


def test_connectivity_reads_a_real_prior_term_after_pruning():
    from moduli import pruning, regularizers as rg

    torch.manual_seed(0)
    rnn = torch.nn.RNN(2, 24)
    torus = mf.FlatTorus(2, 10.0)
    priors = rg.attach(rnn, rg.ModuliPrior(torus, rg.DifferenceOfGaussians()),
                       generator=torch.Generator().manual_seed(0))
    pruning.GradualMagnitudePruning(rnn, 0.75, epochs=1, targets="recurrent").step()
    term = priors.terms["weight_hh_l0"]
    from_term = an.connectivity(term, seed=0)
    by_hand = an.connectivity(rnn.weight_hh_l0_orig * rnn.weight_hh_l0_mask, points=term.points_out,
                              manifold=torus, seed=0)
    assert from_term.summary() == by_hand.summary()
    assert from_term.n_edges < 24 * 23 / 2  # the pruned entries are not edges


@pytest.mark.parametrize(
    "command,flags,message",
    [
        ("topology", ["--manifold", "torus", "--scale", "-1"], r"--scale must be a finite positive number; got -1"),
        ("topology", ["--manifold", "circle", "--scale", "nan"], r"--scale must be a finite positive number"),
        ("topology", ["--maxdim", "-1"], r"--maxdim must be an int >= 0"),
        ("topology", ["--coeff", "4"], r"--coeff must be a prime"),
        ("topology", ["--coeff", "1"], r"--coeff must be an int >= 2"),
        ("topology", ["--landmarks", "0"], r"--landmarks must be an int >= 1"),
        ("topology", ["--sparse", "2"], r"--sparse must be in \(0, 1\)"),
        ("topology", ["--sparse", "-0.5"], r"--sparse must be a finite positive number"),
        ("topology", ["--min-persistence", "1", "--min-persistence", "-1"],
         r"--min-persistence must be a finite non-negative number; got -1"),
        ("topology", ["--manifold", "klein"], r"points \(.*x3\.npy\) must have shape \(\.\.\., 2\)"),
        ("topology", ["--points-with-nan"], r"points \(.*nan\.npy\) .*NaN"),
        ("graph", ["--threshold", "-1"], r"--threshold must be a finite non-negative number"),
        ("graph", ["--threshold", "nan"], r"--threshold must be a finite non-negative number"),
        ("graph", ["--seed", "-1"], r"--seed must be an int >= 0"),
        ("graph", ["--points", "P", "--manifold", "torus", "--scale", "-2"], r"--scale must be a finite positive"),
        ("graph", ["--points", "P", "--manifold", "sphere", "--scale", "0"], r"--scale must be a finite positive"),
    ],
)
def test_cli_errors_name_the_flag(tmp_path, command, flags, message):
    import moduli.analysis.cli  # noqa: F401  (registers the subcommands)
    from moduli.cli import main

    rng = np.random.default_rng(0)
    np.save(tmp_path / "x3.npy", rng.normal(size=(12, 3)))
    bad = rng.normal(size=(12, 3))
    bad[2, 1] = np.nan
    np.save(tmp_path / "nan.npy", bad)
    np.save(tmp_path / "w.npy", ring_lattice(8, 2))
    np.save(tmp_path / "p.npy", rng.uniform(size=(8, 2)))
    if command == "topology":
        src = "nan.npy" if flags == ["--points-with-nan"] else "x3.npy"
        flags = [] if flags == ["--points-with-nan"] else flags
    else:
        src = "w.npy"
        flags = [str(tmp_path / "p.npy") if f == "P" else f for f in flags]
    out = tmp_path / "out"
    with pytest.raises(SystemExit, match=rf"^moduli {command}: {message}"):
        main([command, str(tmp_path / src), *flags, "--out", str(out)])
    assert not out.exists()


def test_numpy_scalars_are_accepted_like_python_numbers():
    C = mf.Circle(5.0)
    x = C.random_uniform(40, generator=gen(2), dtype=torch.float64)
    kw_py = dict(manifold=C, maxdim=1, coeff=3, n_landmarks=30, max_edge_length=20.0)
    kw_np = dict(manifold=C, maxdim=np.int64(1), coeff=np.int64(3), n_landmarks=np.int64(30),
                 max_edge_length=np.float32(20.0))
    a, b = an.persistence(x, **kw_py), an.persistence(x, **kw_np)
    assert all(np.array_equal(p, q) for p, q in zip(a.diagrams, b.diagrams))
    assert a.betti(1.5) == b.betti(np.float32(1.5))
    assert np.array_equal(a.lifetimes(1), b.lifetimes(np.int64(1)))
    W = torch.as_tensor(ring_lattice(12, 4))
    s_py = an.connectivity(W, threshold=0.5, seed=1, max_sources=4, n_random=2)
    s_np = an.connectivity(W, threshold=np.float32(0.5), seed=np.int64(1), max_sources=np.int64(4),
                           n_random=np.int64(2))
    assert s_np.summary() == s_py.summary()
