"""Neuron swaps (moduli.regularizers.swap_neurons_): exact cost changes, coefficients that follow the
points, the network untouched, convergence, and clear refusals."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from moduli import manifolds as mf
from moduli import regularizers as rg
from moduli import targets as tg
from moduli.regularizers.penalty import as_coefficients, weighted_penalty
from moduli.regularizers.swaps import _Group, _touching


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def _brute_cost(priors, points: dict) -> float:
    """The prior's cost with the given points, every coefficient recomputed from scratch."""
    total = 0.0
    prior = priors.prior
    for t in priors.terms.values():
        lay = t.layout
        c = prior.coefficients(lay, points[lay.out_group], None if lay.shared else points[lay.in_group])
        c = as_coefficients(c, lay, "test")
        total += float(weighted_penalty(t.weight.detach(), c, t.exponent, slice_norm=lay.slice_norm,
                                        reduction=t.reduction))
    return total


def _points(priors) -> dict:
    return {g: e.points.detach().clone() for g, e in priors.embeddings.items()}


def _swapped(points: dict, group: str, a: int, b: int) -> dict:
    out = dict(points)
    q = points[group].clone()
    q[[a, b]] = q[[b, a]]
    out[group] = q
    return out


# ------------------------------------------------------------------ instances
def _rnn():
    torch.manual_seed(0)
    return nn.RNN(2, 7, nonlinearity="relu").double(), {}, (5, 3, 2)


def _lstm():
    torch.manual_seed(1)
    return nn.LSTM(3, 5).double(), {"targets": ["weight_hh_l0", "weight_ih_l0"]}, (5, 3, 3)


def _lstm_projected():
    torch.manual_seed(2)
    return nn.LSTM(3, 6, proj_size=4).double(), {}, (5, 3, 3)


def _tied():
    torch.manual_seed(3)
    seq = nn.Sequential(nn.Linear(3, 6), nn.ReLU(), nn.Linear(6, 5), nn.Tanh(), nn.Linear(5, 2)).double()
    return seq, {"targets": "linear", "tie": "consecutive"}, (4, 3)


def _pruned():
    torch.manual_seed(4)
    model = nn.RNN(2, 7).double()
    tg.install_mask(model, "weight_hh_l0", (torch.rand(7, 7, generator=_gen(5)) < 0.5).double())
    return model, {}, (5, 3, 2)


def _conv():
    torch.manual_seed(6)
    return nn.Sequential(nn.Conv1d(3, 5, 3), nn.ReLU(), nn.Conv1d(5, 4, 2)).double(), {"targets": "conv"}, (2, 3, 8)


INSTANCES = {"rnn": _rnn, "lstm_blocks": _lstm, "lstm_proj": _lstm_projected, "tied_linear": _tied,
             "pruned": _pruned, "conv": _conv}

PRIORS = {
    "circle_dog": lambda: rg.ModuliPrior(mf.Circle(2.0), rg.DifferenceOfGaussians()),
    "torus_exp2_mean": lambda: rg.ModuliPrior(mf.FlatTorus(2, 4.0), rg.DifferenceOfGaussians(), exponent=2,
                                              reduction="mean"),
    "sphere_exp1.5": lambda: rg.ModuliPrior(mf.Sphere(2, 1.0), rg.Diffusion(power=2), exponent=1.5),
}


@pytest.mark.parametrize("instance", list(INSTANCES))
@pytest.mark.parametrize("prior_name", list(PRIORS))
def test_cost_changes_match_brute_force(instance, prior_name):
    model, kw, _ = INSTANCES[instance]()
    priors = rg.attach(model, PRIORS[prior_name](), generator=_gen(7), **kw)
    pts = _points(priors)
    base = _brute_cost(priors, pts)
    assert base == pytest.approx(float(priors.penalty().detach()), rel=1e-12)
    for group in priors.embeddings:
        changes = rg.swap_cost_changes(priors, group)
        n = changes.shape[0]
        brute = torch.zeros(n, n, dtype=torch.float64)
        for a in range(n):
            for b in range(n):
                if a != b:
                    brute[a, b] = _brute_cost(priors, _swapped(pts, group, a, b)) - base
        torch.testing.assert_close(changes, brute, rtol=0, atol=1e-12 * max(1.0, base))
        assert bool((changes.diagonal() == 0).all())
        # the O(n) per-pair path gives the same numbers, also after swaps applied to the working state
        state = _Group(priors, group, _touching(priors, group))
        current = pts
        for a, b in [(0, n - 1), (1, 2)] if n > 2 else [(0, 1)]:
            state.swap(a, b)
            current = _swapped(current, group, a, b)
        now = _brute_cost(priors, current)
        for a in range(n):
            bs = torch.tensor([b for b in range(n) if b != a])
            want = torch.tensor([_brute_cost(priors, _swapped(current, group, a, int(b))) - now for b in bs],
                                dtype=torch.float64)
            torch.testing.assert_close(state.changes(a, bs), want, rtol=0, atol=1e-12 * max(1.0, base))


def test_shared_formula_is_exact_for_any_coefficient_matrix():
    # inhibitor(cdist) is symmetric with a constant diagonal, which hides the terms of the four entries in
    # rows and columns {a, b}; an arbitrary C (asymmetric, varying diagonal) exercises them
    model, _, _ = _rnn()
    priors = rg.attach(model, PRIORS["circle_dog"](), generator=_gen(19))
    state = _Group(priors, "hidden_l0", _touching(priors, "hidden_l0"))
    x, _, cd = state.shared[0]
    m, c = x[0], x[1]
    c.copy_(torch.rand(c.shape, generator=_gen(20), dtype=c.dtype))
    x[3].copy_(c.t())
    cd.copy_(c.diagonal())
    n = c.shape[0]

    def cost(perm):
        return float((m * c[perm][:, perm]).sum())

    base = cost(torch.arange(n))
    brute = torch.zeros(n, n, dtype=torch.float64)
    for a in range(n):
        for b in range(n):
            if a != b:
                perm = torch.arange(n)
                perm[[a, b]] = perm[[b, a]]
                brute[a, b] = cost(perm) - base
    torch.testing.assert_close(state.all_changes(), brute, rtol=0, atol=1e-12)
    for a in range(n):
        bs = torch.tensor([b for b in range(n) if b != a])
        torch.testing.assert_close(state.changes(a, bs), brute[a, bs], rtol=0, atol=1e-12)


def test_hand_case_one_swap_on_a_circle():
    # four neurons a quarter of a circle apart (circumference 4): distances 1 to neighbours, 2 across;
    # f(d) = d. Connections 0<-2 (1.0) and 1<-3 (1.0) join opposite neurons, 0<-1 (0.5) neighbours:
    # cost 1*2 + 1*2 + 0.5*1 = 4.5. Swapping 0 and 1 makes every connection a neighbour's: 2.5, the
    # minimum (all connections at the least distance). Swapping 0 with 3 would give 3.0 (0<-1 across).
    circle = mf.Circle(2.0 / math.pi)
    r = circle.radius
    angles = torch.tensor([0.0, 0.5, 1.0, 1.5], dtype=torch.float64) * math.pi
    pts = torch.stack([r * torch.cos(angles), r * torch.sin(angles)], 1)
    model = nn.RNN(1, 4, bias=False).double()
    with torch.no_grad():
        model.weight_hh_l0.zero_()
        model.weight_hh_l0[0, 2] = 1.0
        model.weight_hh_l0[1, 3] = -1.0
        model.weight_hh_l0[0, 1] = 0.5
    priors = rg.attach(model, rg.ModuliPrior(circle, rg.Diffusion(power=1)), points={"hidden_l0": pts})
    changes = rg.swap_cost_changes(priors, "hidden_l0")
    assert float(changes[0, 1]) == pytest.approx(-2.0, abs=1e-12)
    assert float(changes[0, 3]) == pytest.approx(-1.5, abs=1e-12)
    assert float(changes[0, 2]) == pytest.approx(0.0, abs=1e-12)
    result = rg.swap_neurons_(priors, candidates=3)
    assert result.swaps == 1
    assert result.cost_before == pytest.approx(4.5, abs=1e-12)
    assert result.cost_after == pytest.approx(2.5, abs=1e-12)
    assert float(priors.penalty().detach()) == pytest.approx(2.5, abs=1e-12)
    assert result.groups["hidden_l0"].permutation.tolist() == [1, 0, 2, 3]
    torch.testing.assert_close(priors.embeddings["hidden_l0"].points, pts[[1, 0, 2, 3]], rtol=0, atol=0)
    again = rg.swap_neurons_(priors, candidates=3)
    assert again.swaps == 0 and again.cost_after == result.cost_after


def _outputs(model, x):
    with torch.no_grad():
        out = model(x)
    return out[0] if isinstance(out, tuple) else out


@pytest.mark.parametrize("instance", list(INSTANCES))
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_swaps_keep_coefficients_exact_and_the_network_unchanged(instance, dtype):
    model, kw, shape = INSTANCES[instance]()
    model = model.to(dtype)
    priors = rg.attach(model, PRIORS["torus_exp2_mean"](), generator=_gen(8), **kw)
    x = torch.randn(*shape, generator=_gen(9), dtype=dtype)
    state_before = {k: v.clone() for k, v in model.state_dict().items()}
    y0 = _outputs(model, x)
    old = _points(priors)
    result = rg.swap_neurons_(priors, candidates=4, passes=3)
    assert result.swaps > 0
    # (1) coefficients are the inhibitor of the new points' distances
    prior = priors.prior
    for t in priors.terms.values():
        lay = t.layout
        fresh = prior.coefficients(lay, t.points_out, None if lay.shared else t.points_in)
        tol = 0 if dtype == torch.float64 else 1e-5
        torch.testing.assert_close(t.coeff, fresh, rtol=tol, atol=tol * 10)
    # the points were permuted, as reported
    for g, rec in result.groups.items():
        assert torch.equal(priors.embeddings[g].points, old[g][rec.permutation])
        assert sorted(rec.permutation.tolist()) == list(range(len(rec.permutation)))
    # (2) the penalty is the reported cost after, no more than before
    with torch.no_grad():  # the reported costs are penalty() without autograd, to the bit
        assert float(priors.penalty()) == result.cost_after
    assert float(priors.penalty().detach()) == pytest.approx(result.cost_after, rel=1e-5)
    assert result.cost_after <= result.cost_before * (1 + (1e-6 if dtype == torch.float32 else 1e-12))
    assert result.swaps == sum(r.swaps for r in result.groups.values())
    # (3) weights and outputs are bit-identical
    for k, v in model.state_dict().items():
        assert torch.equal(v, state_before[k]), k
    assert torch.equal(_outputs(model, x), y0)


def test_repeated_calls_converge_to_a_local_minimum_over_all_pairs():
    torch.manual_seed(10)
    model = nn.LSTM(2, 12).double()
    priors = rg.attach(model, PRIORS["circle_dog"](), targets=["weight_hh_l0", "weight_ih_l0"], generator=_gen(11))
    with torch.no_grad():
        costs = [float(priors.penalty())]
    for _ in range(50):
        result = rg.swap_neurons_(priors, candidates=2)
        assert result.cost_before == costs[-1]
        costs.append(result.cost_after)
        assert costs[-1] <= costs[-2] + 1e-12 * costs[0]
        if result.swaps == 0:
            break
    else:
        pytest.fail("50 calls did not converge")
    assert costs[-1] < costs[0]
    for group in priors.embeddings:
        changes = rg.swap_cost_changes(priors, group)
        assert float(changes.min()) >= -1e-10 * costs[-1]


def test_passes_stops_after_a_sweep_without_swaps():
    model, _, _ = _rnn()
    priors = rg.attach(model, PRIORS["circle_dog"](), generator=_gen(12))
    result = rg.swap_neurons_(priors, candidates=6, passes=100)
    rec = result.groups["hidden_l0"]
    assert rec.passes < 100 and rec.swaps > 0
    assert float(rg.swap_cost_changes(priors, "hidden_l0").min()) >= -1e-10 * result.cost_after


def test_groups_selects_and_orders_the_groups():
    model, kw, _ = _tied()
    priors = rg.attach(model, PRIORS["circle_dog"](), generator=_gen(13), **kw)
    before = _points(priors)
    result = rg.swap_neurons_(priors, groups="0.out", candidates=5)
    assert list(result.groups) == ["0.out"]
    for g in priors.embeddings:
        if g != "0.out":
            assert torch.equal(priors.embeddings[g].points, before[g])
    result = rg.swap_neurons_(priors, groups=["2.out", "0.in"])
    assert list(result.groups) == ["2.out", "0.in"]


@pytest.mark.parametrize("frozen", [False, True])
def test_trained_embeddings_swap_rows_of_u_and_the_optimizer_state(frozen):
    torch.manual_seed(14)
    model = nn.RNN(2, 8).double()
    prior = rg.ModuliPrior(mf.FlatTorus(2, 4.0), rg.DifferenceOfGaussians(), trainable=True)
    priors = rg.attach(model, prior, generator=_gen(15))
    opt = torch.optim.Adam(priors.parameters(), lr=0.01)
    priors.penalty().backward()
    opt.step()
    priors.penalty().backward()  # a pending gradient, to be permuted too
    emb = priors.embeddings["hidden_l0"]
    u0, g0 = emb.u.detach().clone(), emb.u.grad.clone()
    m0 = opt.state[emb.u]["exp_avg"].clone()
    if frozen:
        priors.freeze()
    result = rg.swap_neurons_(priors, candidates=7, optimizer=opt)
    assert result.swaps > 0
    perm = result.groups["hidden_l0"].permutation
    assert torch.equal(emb.u.detach(), u0[perm])
    assert torch.equal(emb.u.grad, g0[perm])
    assert torch.equal(opt.state[emb.u]["exp_avg"], m0[perm])
    assert emb.u.requires_grad is (not frozen)
    term = priors.terms["weight_hh_l0"]
    fresh = prior.coefficients(term.layout, term.points_out)
    torch.testing.assert_close(term.coefficients(), fresh, rtol=0, atol=1e-12)
    with torch.no_grad():
        assert float(priors.penalty()) == result.cost_after <= result.cost_before


# ----------------------------------------------------------------------- errors
def _rnn_priors(prior):
    return rg.attach(nn.RNN(2, 6), prior, generator=_gen(16))


def test_l1_and_shuffled_priors_are_refused():
    with pytest.raises(ValueError, match="L1Prior"):
        rg.swap_neurons_(_rnn_priors(rg.L1Prior()))
    shuffled = rg.ShuffledPrior(PRIORS["circle_dog"](), generator=_gen(17))
    with pytest.raises(ValueError, match="ShuffledPrior"):
        rg.swap_neurons_(_rnn_priors(shuffled))
    with pytest.raises(ValueError, match="ShuffledPrior"):
        rg.swap_cost_changes(_rnn_priors(shuffled), "hidden_l0")

    class Scaled(rg.ModuliPrior):
        def coefficients(self, layout, points_out, points_in=None, *, generator=None):
            return 2 * super().coefficients(layout, points_out, points_in)

    with pytest.raises(ValueError, match="overrides ModuliPrior.coefficients"):
        rg.swap_neurons_(_rnn_priors(Scaled(mf.Circle(2.0), rg.DifferenceOfGaussians())))


@pytest.mark.parametrize("kwargs, error, match", [
    ({"candidates": 0}, ValueError, "candidates"),
    ({"candidates": -3}, ValueError, "candidates"),
    ({"candidates": 2.0}, TypeError, "candidates"),
    ({"candidates": True}, TypeError, "candidates"),
    ({"passes": 0}, ValueError, "passes"),
    ({"rtol": -1.0}, ValueError, "rtol"),
    ({"groups": "nope"}, ValueError, "groups names 'nope'"),
    ({"groups": ["hidden_l0", "hidden_l0"]}, ValueError, "twice"),
    ({"groups": [3]}, TypeError, "groups"),
    ({"groups": 3}, TypeError, "groups"),
    ({"optimizer": "adam"}, TypeError, "optimizer"),
])
def test_bad_arguments_are_named(kwargs, error, match):
    priors = _rnn_priors(PRIORS["circle_dog"]())
    with pytest.raises(error, match=match):
        rg.swap_neurons_(priors, **kwargs)


def test_trained_embedding_whose_map_mixes_rows_is_refused():
    class Mixing(mf.Euclidean):
        def from_unconstrained(self, u):
            return u + u.mean(0) * torch.arange(len(u), dtype=u.dtype)[:, None]

    prior = rg.ModuliPrior(Mixing(2), rg.DifferenceOfGaussians(), trainable=True)
    priors = rg.attach(nn.RNN(2, 5).double(), prior, generator=_gen(21))
    u0 = priors.embeddings["hidden_l0"].u.detach().clone()
    with pytest.raises(ValueError, match="does not map each row of u to its own point"):
        rg.swap_neurons_(priors)
    assert torch.equal(priors.embeddings["hidden_l0"].u.detach(), u0)


def test_swap_cost_changes_needs_one_group_name():
    priors = _rnn_priors(PRIORS["circle_dog"]())
    with pytest.raises(TypeError, match="group must be the name"):
        rg.swap_cost_changes(priors, ["hidden_l0"])
    with pytest.raises(ValueError, match="'hidden'"):
        rg.swap_cost_changes(priors, "hidden")


def test_not_a_prior_set_and_grouped_convolutions_are_refused():
    with pytest.raises(TypeError, match="PriorSet"):
        rg.swap_neurons_(nn.RNN(2, 3))
    model = nn.Sequential(nn.Conv1d(4, 6, 3, groups=2))
    priors = rg.attach(model, PRIORS["circle_dog"](), targets="conv", generator=_gen(18))
    with pytest.raises(ValueError, match="grouped convolution"):
        rg.swap_neurons_(priors)
