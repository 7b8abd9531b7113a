"""The weight-dependent priors: seRNN's communicability prior and TopoLoss.

Values are checked against independent numpy/scipy computations, gradients
with ``gradcheck`` and against ``(lam * penalty()).backward()``; pruned rows
and columns (strength 0, zero units) must give finite values and gradients.
"""

from __future__ import annotations

import io

import networkx as nx
import numpy as np
import pytest
import scipy.linalg
import torch
from torch import nn
from torch.nn.utils import parametrize

from moduli import manifolds as mf
from moduli import regularizers as rg
from moduli import targets as tg

LINE = mf.Euclidean(1)
CIRCLE = mf.Circle()


def np_communicability(w, d, strength="out", reduction="sum"):
    """seRNN's penalty, written from the formula with scipy's expm; nan where a strength is 0."""
    a = np.abs(w)
    s = {"out": a.sum(0), "in": a.sum(1), "total": a.sum(0) + a.sum(1)}[strength]
    with np.errstate(divide="ignore", invalid="ignore"):
        r = np.diag(s ** -0.5)
        c = scipy.linalg.expm(r @ a @ r)
    np.fill_diagonal(c, 0.0)
    total = (a * c * d).sum()
    return total / a.size if reduction == "mean" else total


def np_topo(w, k, reduction="sum"):
    """``sum_i 1 - cos(w_i, (K W)_i)`` over the rows of ``w`` (trailing axes flattened)."""
    w = w.reshape(w.shape[0], -1)
    avg = k @ w
    cos = (w * avg).sum(1) / (np.linalg.norm(w, axis=1) * np.linalg.norm(avg, axis=1))
    return (1 - cos).mean() if reduction == "mean" else (1 - cos).sum()


def _rnn(n, w):
    model = nn.RNN(2, n).double()
    with torch.no_grad():
        model.weight_hh_l0.copy_(torch.as_tensor(w))
    return model


W3 = np.array([[0.3, -1.2, 0.5], [0.7, 0.1, -0.4], [-0.2, 0.9, 1.5]])
X3 = np.array([[0.0], [1.0], [3.0]])  # three points on a line


# ----------------------------------------------------------------------------- hand computations

@pytest.mark.parametrize("strength", ["out", "in", "total"])
@pytest.mark.parametrize("reduction", ["sum", "mean"])
def test_communicability_matches_scipy_on_a_line(strength, reduction):
    model = _rnn(3, W3)
    priors = rg.attach(model, rg.CommunicabilityPrior(LINE, strength=strength, reduction=reduction),
                       points={"weight_hh_l0": torch.as_tensor(X3)})
    d = np.abs(X3 - X3.T)
    np.testing.assert_allclose(priors.terms["weight_hh_l0"].coefficients().numpy(), d, rtol=0, atol=1e-15)
    expected = np_communicability(W3, d, strength, reduction)
    assert abs(priors.penalty().item() - expected) < 1e-10
    assert abs(priors.add_penalty_grad_(1.0).item() - expected) < 1e-10


def test_communicability_seRNN_orientation_is_the_transpose_of_a_keras_kernel():
    """seRNN sums the rows of a Keras kernel (stored (in, out)); "out" is that convention on a torch weight."""
    d = np.abs(X3 - X3.T)
    keras = W3.T
    a = np.abs(keras)
    r = np.diag(a.sum(1) ** -0.5)
    c = scipy.linalg.expm(r @ a @ r)
    np.fill_diagonal(c, 0.0)
    sernn = (a * c * d).sum()
    ours = rg.communicability_penalty(torch.as_tensor(W3), torch.as_tensor(d), strength="out")
    assert abs(ours.item() - sernn) < 1e-10


def test_communicability_with_an_inhibitor_on_a_circle():
    theta = np.array([[0.0], [2.0], [4.5], [6.0]])
    pts = torch.as_tensor(np.concatenate([np.cos(theta), np.sin(theta)], 1))
    w = np.random.default_rng(0).normal(size=(4, 4))
    dog = rg.DifferenceOfGaussians()
    priors = rg.attach(_rnn(4, w), rg.CommunicabilityPrior(CIRCLE, dog), points={"weight_hh_l0": pts})
    diff = np.abs(theta - theta.T) % (2 * np.pi)
    d = dog(torch.as_tensor(np.minimum(diff, 2 * np.pi - diff))).numpy()
    assert abs(priors.penalty().item() - np_communicability(w, d)) < 1e-10


def test_communicability_is_homogeneous_of_degree_one():
    """The normalised matrix does not change when W is scaled, so the penalty scales like |W|."""
    w, d = torch.as_tensor(W3), torch.as_tensor(np.abs(X3 - X3.T))
    p = rg.communicability_penalty(w, d)
    assert torch.allclose(rg.communicability_penalty(-2.5 * w, d), 2.5 * p, rtol=1e-12, atol=0)


def test_communicability_of_lstm_gate_blocks_is_the_sum_over_blocks():
    rng = np.random.default_rng(1)
    lstm = nn.LSTM(2, 3).double()
    w = rng.normal(size=(12, 3))
    with torch.no_grad():
        lstm.weight_hh_l0.copy_(torch.as_tensor(w))
    priors = rg.attach(lstm, rg.CommunicabilityPrior(LINE), points={"weight_hh_l0": torch.as_tensor(X3)})
    d = np.abs(X3 - X3.T)
    expected = sum(np_communicability(w[3 * b:3 * b + 3], d) for b in range(4))
    assert abs(priors.penalty().item() - expected) < 1e-10


def _gauss_kernel(x, sigma):
    d = np.abs(x - x.T)
    k = np.exp(-d**2 / (2 * sigma**2))
    return k / k.sum(1, keepdims=True)


@pytest.mark.parametrize("reduction", ["sum", "mean"])
def test_topo_loss_matches_numpy_on_a_line(reduction):
    x = np.array([[0.0], [1.0], [2.5], [3.0], [6.0]])
    model = nn.Sequential(nn.Linear(4, 5)).double()
    w = model[0].weight.detach().numpy().copy()
    priors = rg.attach(model, rg.TopoLossPrior(LINE, sigma=1.3, reduction=reduction), targets="linear",
                       points={"0.out": torch.as_tensor(x)})
    k = _gauss_kernel(x, 1.3)
    np.testing.assert_allclose(priors.terms["0.weight"].coefficients().numpy(), k, rtol=0, atol=1e-15)
    expected = np_topo(w, k, reduction)
    assert abs(priors.penalty().item() - expected) < 1e-10
    assert abs(priors.add_penalty_grad_(1.0).item() - expected) < 1e-10


def test_topo_loss_on_a_graph_with_radius_and_on_conv_kernels():
    grid = mf.GraphSpace(nx.grid_2d_graph(2, 3))
    conv = nn.Conv2d(3, 6, 3).double()
    prior = rg.TopoLossPrior(grid, radius=1)
    priors = rg.attach(conv, prior, targets="conv", points={"out": grid.points(grid.nodes)})
    term = next(iter(priors.terms.values()))
    adj = nx.to_numpy_array(nx.grid_2d_graph(2, 3), nodelist=grid.nodes) + np.eye(6)  # neighbours and itself
    k = adj / adj.sum(1, keepdims=True)
    np.testing.assert_allclose(term.coefficients().numpy(), k, rtol=0, atol=1e-15)
    expected = np_topo(conv.weight.detach().numpy(), k)
    assert abs(priors.penalty().item() - expected) < 1e-10


def test_topo_loss_is_zero_for_equal_units_and_one_for_orthogonal_neighbours():
    k = torch.full((3, 3), 1 / 3, dtype=torch.float64)
    same = torch.tensor([[1.0, 2.0, -1.0]], dtype=torch.float64).repeat(3, 1)
    assert rg.topo_loss(same, k).abs().item() < 1e-14
    # a kernel averaging only the other unit: the two rows orthogonal, each cos = 0
    swap = torch.tensor([[0.0, 1.0], [1.0, 0.0]], dtype=torch.float64)
    assert rg.topo_loss(torch.eye(2, dtype=torch.float64), swap).item() == 2.0


# ----------------------------------------------------------------------------- gradients

def test_gradcheck_of_both_penalties():
    gen = torch.Generator().manual_seed(0)
    w = (torch.rand(4, 4, generator=gen, dtype=torch.float64) + 0.2) * torch.tensor([1.0, -1.0]).repeat(8).reshape(4, 4)
    d = torch.rand(4, 4, generator=gen, dtype=torch.float64)
    for strength in ("out", "in", "total"):
        assert torch.autograd.gradcheck(lambda x: rg.communicability_penalty(x, d, strength=strength),
                                        (w.clone().requires_grad_(),))
    k = torch.rand(4, 4, generator=gen, dtype=torch.float64)
    k = k / k.sum(1, keepdim=True)
    v = torch.randn(4, 3, 2, generator=gen, dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda x: rg.topo_loss(x, k, reduction="mean"), (v.requires_grad_(),))


def _both_grads(make, prior, lam=0.7, **attach):
    """``.grad`` of every parameter after ``add_penalty_grad_(lam)`` and after ``(lam * penalty()).backward()``."""
    out = []
    for fused in (True, False):
        model = make()
        priors = rg.attach(model, prior, generator=torch.Generator().manual_seed(3), **attach)
        if fused:
            value = priors.add_penalty_grad_(lam)
        else:
            value = priors.penalty()
            (lam * value).backward()
        out.append((value.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}))
    return out


def _pruned_rnn(n=6, rows=(), cols=()):
    torch.manual_seed(0)
    model = nn.RNN(2, n).double()
    mask = (torch.rand(n, n) < 0.7).double()
    for i in rows:
        mask[i] = 0
    for j in cols:
        mask[:, j] = 0
    tg.install_mask(model, "weight_hh_l0", mask)
    with torch.no_grad():  # pruned entries of the stored parameter nonzero: only the mask keeps them out
        model.weight_hh_l0_orig.add_(1 - mask)
    return model


@pytest.mark.parametrize("prior", [rg.CommunicabilityPrior(mf.FlatTorus(2, 4.0)),
                                   rg.CommunicabilityPrior(LINE, strength="total", reduction="mean"),
                                   rg.TopoLossPrior(CIRCLE, sigma=0.8)], ids=["comm", "comm-total", "topo"])
@pytest.mark.parametrize("pruned", [False, True])
def test_fused_gradient_equals_autograd_of_penalty(prior, pruned):
    make = (lambda: _pruned_rnn(rows=(1,), cols=(4,))) if pruned else (lambda: _rnn(6, np.random.default_rng(2)
                                                                                     .normal(size=(6, 6))))
    (v1, g1), (v2, g2) = _both_grads(make, prior)
    assert torch.allclose(v1, v2, rtol=1e-12, atol=0)
    assert g1.keys() == g2.keys() and g1
    for name in g1:
        assert torch.allclose(g1[name], g2[name], rtol=1e-10, atol=1e-14), name
    if pruned:
        grad = g1["weight_hh_l0_orig"]
        mask = _pruned_rnn(rows=(1,), cols=(4,)).weight_hh_l0_mask
        assert bool(torch.isfinite(grad).all()) and bool((grad[mask == 0] == 0).all())
        assert bool((grad[mask != 0] != 0).any())


def test_fused_gradient_reaches_the_originals_of_a_parametrized_weight():
    class Symmetric(nn.Module):
        def forward(self, x):
            return x.triu() + x.triu(1).T

    def make():
        torch.manual_seed(1)
        model = nn.RNN(2, 5).double()
        parametrize.register_parametrization(model, "weight_hh_l0", Symmetric())
        return model

    (v1, g1), (v2, g2) = _both_grads(make, rg.CommunicabilityPrior(LINE), lam=2.0)
    name = "parametrizations.weight_hh_l0.original"
    assert torch.allclose(g1[name], g2[name], rtol=1e-10, atol=1e-14)
    assert bool((g1[name].tril(-1) == 0).all())  # the strict lower triangle does not enter the weight


# ----------------------------------------------------------------------------- pruned rows and columns

def test_all_zero_row_and_column_give_finite_value_and_gradient():
    model = _pruned_rnn(rows=(2,), cols=(2, 5))
    w = model.weight_hh_l0.detach()
    pts = torch.linspace(0, 5, 6, dtype=torch.float64)[:, None]
    d = (pts - pts.T).abs()
    # the seRNN formula itself is NaN here: the strength of neuron 2 is zero
    assert np.isnan(np_communicability(w.numpy(), d.numpy()))
    for strength in ("out", "in", "total"):
        priors = rg.attach(model, rg.CommunicabilityPrior(LINE, strength=strength), points={"weight_hh_l0": pts})
        model.zero_grad()
        value = priors.penalty()
        value.backward()
        grad = model.weight_hh_l0_orig.grad
        assert bool(torch.isfinite(value)) and bool(torch.isfinite(grad).all())
        assert bool((grad[2] == 0).all()) and bool((grad[:, 5] == 0).all())
        assert bool(torch.isfinite(priors.add_penalty_grad_(1.0)))
        # neuron 2 is dead (row and column pruned): the guarded value is the penalty of the network without
        # it for "in"/"total", whose only zero strength is neuron 2's ("out" also has neuron 5's, whose
        # pruned column alone leaves the other neurons' strengths counting its row)
        if strength != "out":
            keep = [0, 1, 3, 4, 5]
            sub = np_communicability(w.numpy()[np.ix_(keep, keep)], d.numpy()[np.ix_(keep, keep)], strength)
            assert abs(value.item() - sub) < 1e-10


def test_pruned_topo_unit_gives_finite_value_and_zero_gradient():
    model = _pruned_rnn(rows=(0, 3))
    priors = rg.attach(model, rg.TopoLossPrior(CIRCLE, sigma=1.0), generator=torch.Generator().manual_seed(0))
    value = priors.penalty()
    value.backward()
    grad = model.weight_hh_l0_orig.grad
    assert bool(torch.isfinite(grad).all()) and bool((grad[[0, 3]] == 0).all())
    w = model.weight_hh_l0.detach().numpy()
    k = priors.terms["weight_hh_l0"].coefficients().numpy()
    live = [1, 2, 4, 5]  # a zero unit counts 1 - 0; the others as in the formula
    avg = k @ w
    expected = 2 + sum(1 - w[i] @ avg[i] / (np.linalg.norm(w[i]) * np.linalg.norm(avg[i])) for i in live)
    assert abs(value.item() - expected) < 1e-10


# ----------------------------------------------------------------------------- bad input

def test_non_square_target_is_refused_naming_it():
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 4))
    with pytest.raises(ValueError, match=r"0\.weight has shape \(4, 3\)"):
        rg.attach(model, rg.CommunicabilityPrior(LINE), targets="linear")
    with pytest.raises(ValueError, match=r"square weight matrix; 0\.weight is a conv"):
        rg.attach(nn.Sequential(nn.Conv1d(2, 2, 3)), rg.CommunicabilityPrior(LINE), targets="conv")


def test_prox_and_trained_embeddings_are_refused():
    for prior in (rg.CommunicabilityPrior(LINE), rg.TopoLossPrior(LINE, sigma=1.0)):
        priors = rg.attach(nn.RNN(2, 4), prior)
        with pytest.raises(ValueError, match="no closed-form proximal step"):
            priors.prox_(0.1, 0.1)
        prior.trainable = True
        with pytest.raises(ValueError, match="fixed embeddings only"):
            rg.attach(nn.RNN(2, 4), prior)


def test_bad_arguments():
    with pytest.raises(ValueError, match="exactly one of sigma"):
        rg.TopoLossPrior(LINE)
    with pytest.raises(ValueError, match="exactly one of sigma"):
        rg.TopoLossPrior(LINE, sigma=1.0, radius=1.0)
    with pytest.raises(ValueError, match="sigma must be a finite positive"):
        rg.TopoLossPrior(LINE, sigma=0.0)
    with pytest.raises(ValueError, match="strength must be one of"):
        rg.CommunicabilityPrior(LINE, strength="rows")
    with pytest.raises(TypeError, match="manifold must be"):
        rg.CommunicabilityPrior("euclidean")
    with pytest.raises(ValueError, match="weight must be square"):
        rg.communicability_penalty(torch.ones(3, 2), torch.ones(3, 2))


def test_non_finite_weight_is_named():
    model = nn.RNN(2, 4)
    priors = rg.attach(model, rg.CommunicabilityPrior(LINE))
    with torch.no_grad():
        model.weight_hh_l0[1, 2] = float("nan")
    with pytest.raises(ValueError, match="weight weight_hh_l0 of shape \\(4, 4\\) has 1 NaN"):
        priors.penalty()
    with pytest.raises(ValueError, match="weight weight_hh_l0 of shape \\(4, 4\\) has 1 NaN"):
        priors.add_penalty_grad_(1.0)


def test_overflow_of_a_weight_penalty_is_explained():
    class Explosive(rg.Prior):
        def coefficients(self, layout, points_out, points_in, *, generator=None):
            return torch.ones(())

        def weight_penalty(self, weight, base, layout):
            return torch.exp(1e3 * weight.abs().sum() * base)

    priors = rg.attach(nn.RNN(2, 3), Explosive())
    assert priors.terms["weight_hh_l0"].weight_dependent
    for call in (priors.penalty, lambda: priors.add_penalty_grad_(1.0)):
        with pytest.raises(ValueError, match="penalty of Explosive is not finite in torch.float32 although"):
            call()


def test_out_strength_normalisation_has_spectral_radius_one():
    """S^-1/2 |W| S^-1/2 is similar to the column-stochastic |W| S^-1: eigenvalues stay bounded by 1 even
    when a neuron's outgoing strength nearly vanishes (its entries grow, the value stays finite)."""
    a = torch.rand(6, 6, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    a[:, 2] *= 1e-12
    r = a.sum(0).rsqrt()
    m = r[:, None] * a * r[None, :]
    assert abs(torch.linalg.eigvals(m).abs().max().item() - 1) < 1e-9 and m.max() > 1e3
    assert bool(torch.isfinite(rg.communicability_penalty(a.float(), torch.ones(6, 6))))


# ----------------------------------------------------------------------------- attach, train, save

def test_attach_on_rnn_and_sequential_trains_and_saves(tmp_path):
    rnn = nn.RNN(3, 8)
    comm = rg.attach(rnn, rg.CommunicabilityPrior(mf.Euclidean(3)), generator=torch.Generator().manual_seed(0))
    mlp = nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 6), nn.ReLU(), nn.Linear(6, 5))
    topo = rg.attach(mlp, rg.TopoLossPrior(mf.FlatTorus(2, 3.0), sigma=1.0), targets="linear",
                     generator=torch.Generator().manual_seed(0))
    square = rg.attach(mlp, rg.CommunicabilityPrior(LINE), targets=["2.weight"])
    assert list(topo.terms) == ["0.weight", "2.weight", "4.weight"]
    assert topo.terms["4.weight"].coefficients().shape == (5, 5)
    for model, priors in ((rnn, comm), (mlp, topo), (mlp, square)):
        opt = torch.optim.SGD(model.parameters(), lr=0.05)
        before = priors.penalty().item()
        for _ in range(20):
            opt.zero_grad()
            priors.add_penalty_grad_(1.0)
            opt.step()
        assert priors.penalty().item() < before  # gradient descent on the penalty alone lowers it
        buf = io.BytesIO()
        torch.save(priors, buf)
        buf.seek(0)
        loaded = torch.load(buf, weights_only=False)
        assert torch.allclose(loaded.penalty(), priors.penalty(), rtol=1e-6)
        fresh = rg.attach(model, priors.prior, targets=list(priors.terms))  # other random points
        fresh.load_state_dict(priors.state_dict())
        assert torch.allclose(fresh.penalty(), priors.penalty(), rtol=1e-12)
