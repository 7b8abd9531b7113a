"""bctpy-level graph statistics (moduli.analysis.graphs) against networkx, and bctpy where installed."""

import math

import networkx as nx
import numpy as np
import pytest
import torch

from moduli import analysis as an


def _weighted_graph(n=30, p=0.25, seed=0, components=1):
    """A symmetric weighted matrix (distinct weights in (0, 1]) and its networkx graph."""
    rng = np.random.default_rng(seed)
    W = np.zeros((n, n))
    size = n // components
    for c in range(components):
        lo, hi = c * size, (c + 1) * size if c < components - 1 else n
        m = hi - lo
        mask = np.triu(rng.random((m, m)) < p, 1)
        W[lo:hi, lo:hi] = mask * rng.uniform(0.05, 1.0, (m, m))
    W = W + W.T
    G = nx.Graph()
    G.add_nodes_from(range(n))
    r, c = np.nonzero(np.triu(W, 1))
    G.add_weighted_edges_from(zip(r.tolist(), c.tolist(), W[r, c].tolist()))
    return W, G


def test_density_threshold_keeps_exact_count_and_strongest():
    W, _ = _weighted_graph(40, 0.5, seed=1)
    A = an.adjacency(W, density=0.1).toarray()
    m = int(math.floor(0.1 * 40 * 39 / 2 + 0.5))
    assert int((np.triu(A, 1) > 0).sum()) == m
    kept = np.triu(A, 1)[np.triu(A, 1) > 0]
    dropped = np.triu(W, 1)[(np.triu(W, 1) > 0) & (np.triu(A, 1) == 0)]
    assert kept.min() >= dropped.max()
    # an asymmetric weight: undirected edges rank max(|W_jk|, |W_kj|); directed arcs rank |W_jk|
    rng = np.random.default_rng(2)
    V = rng.normal(size=(25, 25))
    Au = an.adjacency(V, density=0.2).toarray()
    assert np.array_equal(Au, Au.T) and int((np.triu(Au, 1) > 0).sum()) == int(math.floor(0.2 * 300 + 0.5))
    Ad = an.adjacency(V, density=0.2, directed=True).toarray()
    assert int((Ad > 0).sum()) == int(math.floor(0.2 * 600 + 0.5))
    assert np.allclose(Ad[Ad > 0], np.abs(V.T)[Ad > 0])
    s = an.connectivity(V, density=0.2, n_random=0)
    assert s.n_edges == int(math.floor(0.2 * 300 + 0.5)) and s.density == pytest.approx(60 / 300)
    assert an.connectivity(V, density=0.2, directed=True, n_random=0).n_edges == 120
    assert an.connectivity(rng.normal(size=(6, 10)), density=0.5, n_random=0).n_edges == 30


def test_strength_and_weighted_clustering_match_networkx():
    W, G = _weighted_graph(30, 0.3, seed=3)
    assert np.allclose(an.strength(W), [G.degree(i, weight="weight") for i in range(30)])
    cw = nx.clustering(G, weight="weight")
    assert np.allclose(an.weighted_clustering(torch.tensor(W)), [cw[i] for i in range(30)], atol=1e-12)
    # equal weights: the binary clustering coefficient
    cb = nx.clustering(G)
    assert np.allclose(an.weighted_clustering((W > 0) * 0.3), [cb[i] for i in range(30)], atol=1e-12)
    V = np.random.default_rng(4).normal(size=(12, 12))
    np.fill_diagonal(V, 0)
    assert np.allclose(an.strength(V, directed=True), np.abs(V).sum(0) + np.abs(V).sum(1))


@pytest.mark.parametrize("components", [1, 3])
def test_efficiency_matches_networkx(components):
    W, G = _weighted_graph(36, 0.3, seed=5, components=components)
    assert an.global_efficiency(W) == pytest.approx(nx.global_efficiency(G), rel=1e-12)
    le = an.local_efficiency(W)
    assert le.mean() == pytest.approx(nx.local_efficiency(G), rel=1e-12)
    assert le[7] == pytest.approx(nx.global_efficiency(G.subgraph(list(G[7]))), rel=1e-12)
    # weighted: lengths 1 / (w / max w), Dijkstra in networkx
    H = G.copy()
    wmax = W.max()
    for u, v, d in H.edges(data=True):
        d["length"] = wmax / d["weight"]
    inv = sum(1.0 / dist for u, row in nx.all_pairs_dijkstra_path_length(H, weight="length")
              for v, dist in row.items() if v != u)
    assert an.global_efficiency(W, weighted=True) == pytest.approx(inv / (36 * 35), rel=1e-12)
    # weighted local efficiency with equal weights is the binary one
    assert np.allclose(an.local_efficiency((W > 0) * 0.7, weighted=True), le, atol=1e-12)
    # directed: paths follow arcs (an arc k -> j for W[j, k])
    chain = np.zeros((4, 4))
    chain[1, 0] = chain[2, 1] = chain[3, 2] = 1.0   # 0 -> 1 -> 2 -> 3
    D = nx.DiGraph([(0, 1), (1, 2), (2, 3)])
    assert an.global_efficiency(chain, directed=True) == pytest.approx(nx.global_efficiency(D.to_undirected()) / 2)


def test_global_efficiency_source_sample_is_close():
    W, G = _weighted_graph(120, 0.05, seed=6)
    exact = an.global_efficiency(W)
    est = an.global_efficiency(W, max_sources=60, seed=1)
    assert est == pytest.approx(exact, rel=0.05) and est != exact


def test_rich_club_matches_networkx():
    W, G = _weighted_graph(40, 0.2, seed=7)
    rc = an.rich_club(W, n_null=0)
    ref = nx.rich_club_coefficient(G, normalized=False)
    for k, v in ref.items():
        if rc.n_nodes[k] >= 2:
            assert rc.phi[k] == pytest.approx(v, rel=1e-12), k
    assert np.isnan(rc.phi_null).all() and np.isnan(rc.normalized).all()


def test_rich_club_nulls():
    # an Erdős–Rényi graph against the density-matched ER null: about 1 at low degree levels
    G = nx.gnp_random_graph(150, 0.1, seed=8)
    A = nx.to_numpy_array(G)
    rc = an.rich_club(A, null="er", n_null=10, seed=0)
    assert np.nanmax(np.abs(rc.normalized[:12] - 1)) < 0.15
    # hubs wired together: two-level graph, 10 hubs fully interconnected plus random leaves
    rng = np.random.default_rng(9)
    B = np.zeros((100, 100))
    B[:10, :10] = 1
    for i in range(10, 100):
        B[i, rng.choice(10, 2, replace=False)] = 1
    B = np.maximum(B, B.T)
    np.fill_diagonal(B, 0)
    rw = an.rich_club(A, null="rewired", n_null=3, seed=0)
    assert rw.normalized[0] == pytest.approx(1.0)   # degree-preserving: phi(0) is fixed
    assert np.nanmax(np.abs(rw.normalized[:12] - 1)) < 0.15
    # in B the degrees force the hub clique: the rewired null keeps it too
    rb = an.rich_club(B, null="rewired", n_null=2, seed=0)
    assert rb.phi[10] == pytest.approx(1.0) and rb.normalized[10] == pytest.approx(1.0)
    er = an.rich_club(B, null="er", n_null=4, seed=0)
    assert np.isfinite(er.phi[2]) and er.normalized[2] > 2.0


def test_small_world_both_sigmas():
    ws = nx.to_numpy_array(nx.watts_strogatz_graph(200, 8, 0.05, seed=1))
    er = nx.to_numpy_array(nx.gnp_random_graph(200, 8 / 199, seed=2))
    s_ws = an.small_world(ws, n_random=3, seed=0)
    s_er = an.small_world(er, n_random=3, seed=0)
    assert s_ws.sigma > 3 and s_ws.sigma_efficiency > 3
    assert 0.7 < s_er.sigma < 1.4 and 0.7 < s_er.sigma_efficiency < 1.4
    G = nx.from_numpy_array(ws)
    assert s_ws.clustering == pytest.approx(nx.average_clustering(G))
    assert s_ws.path_length == pytest.approx(nx.average_shortest_path_length(G))
    assert s_ws.efficiency == pytest.approx(nx.global_efficiency(G))
    # a disconnected small world (two rings): the efficiency sigma needs no largest component
    two = np.zeros((200, 200))
    two[:100, :100] = ws[:100, :100]
    two[100:, 100:] = ws[:100, :100]
    s2 = an.small_world(two, n_random=2)
    assert math.isfinite(s2.sigma_efficiency) and s2.sigma_efficiency > 1


def test_bad_graph_input_raises_named_errors():
    W = np.ones((5, 5))
    with pytest.raises(ValueError, match="density"):
        an.adjacency(W, density=1.5)
    with pytest.raises(ValueError, match="not both"):
        an.adjacency(W, density=0.5, threshold=0.1)
    with pytest.raises(ValueError, match="square"):
        an.global_efficiency(np.ones((3, 4)))
    with pytest.raises(TypeError, match="weighted"):
        an.local_efficiency(W, weighted="yes")
    with pytest.raises(ValueError, match="null"):
        an.rich_club(W, null="config")
    with pytest.raises(ValueError, match="at least 3"):
        an.small_world(np.ones((2, 2)))
    with pytest.raises(ValueError, match="density"):
        an.connectivity(W, density=-0.1)


# ------------------------------------------------------------------ bctpy
def test_against_bctpy_when_installed():
    bct = pytest.importorskip("bct")
    W, G = _weighted_graph(30, 0.3, seed=11)
    Wn = W / W.max()
    B = (W > 0).astype(float)
    assert np.allclose(an.strength(W), bct.strengths_und(W))
    assert np.allclose(an.weighted_clustering(W), bct.clustering_coef_wu(Wn), atol=1e-12)
    assert an.global_efficiency(W) == pytest.approx(bct.efficiency_bin(B), rel=1e-12)
    assert np.allclose(an.local_efficiency(W), bct.efficiency_bin(B, local=True), atol=1e-12)
    assert an.global_efficiency(W, weighted=True) == pytest.approx(bct.efficiency_wei(Wn), rel=1e-12)
    assert np.allclose(an.local_efficiency(W, weighted=True), bct.efficiency_wei(Wn, local=True), atol=1e-12)
    R, Nk, Ek = bct.rich_club_bu(B)
    rc = an.rich_club(W, n_null=0)
    for k in range(1, len(R)):
        if Nk[k - 1] >= 2:
            assert rc.phi[k] == pytest.approx(R[k - 1], rel=1e-12)  # BCT's entry k - 1 is phi(k)
    Wp = bct.threshold_proportional(W, 0.1)
    assert np.array_equal(an.adjacency(W, density=0.1).toarray() > 0, Wp > 0)
