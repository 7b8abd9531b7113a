"""Layers users have: parametrized weights, nn.MultiheadAttention, tied consecutive layers."""

import copy
import math
import warnings

import pytest
import torch
from torch import nn
from torch.nn.utils import parametrizations as P
from torch.nn.utils import parametrize

from moduli import manifolds as mf
from moduli import pruning
from moduli import regularizers as rg
from moduli import targets as tg

TORUS = mf.FlatTorus(2, 10.0)


def fixed_prior():
    return rg.ModuliPrior(TORUS, rg.DifferenceOfGaussians())


def trained_prior():
    return rg.ModuliPrior(TORUS, rg.DifferenceOfGaussians(), trainable=True)


def _linear(kind):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 5 if kind != "orthogonal" else 6), nn.Tanh()).double()
    {"weight_norm": P.weight_norm, "spectral_norm": P.spectral_norm, "orthogonal": P.orthogonal}[kind](model[0])
    return model, "linear", "0.weight"


def _rnn(kind):
    torch.manual_seed(0)
    model = nn.RNN(4, 6).double()
    {"weight_norm": P.weight_norm, "orthogonal": P.orthogonal}[kind](model, "weight_hh_l0")
    return model, "recurrent", "weight_hh_l0"


CASES = [("linear", k) for k in ("weight_norm", "spectral_norm", "orthogonal")] + \
        [("rnn", k) for k in ("weight_norm", "orthogonal")]


def build(case):
    layer, kind = case
    return _linear(kind) if layer == "linear" else _rnn(kind)


def originals(model):
    return [p for n, p in model.named_parameters() if ".original" in n]


def reference(term):
    """Eq. 6 by hand on the weight the layer computes with."""
    return (term.coefficients() * term.weight.abs()).sum()


# ------------------------------------------------------------ parametrized weights
@pytest.mark.parametrize("case", CASES, ids=lambda c: "-".join(c))
def test_prior_on_parametrized_weight_penalises_the_computed_weight(case):
    model, spec, name = build(case)
    model.eval()  # spectral norm: no power iteration per read, so every read gives the same weight
    priors = rg.attach(model, fixed_prior(), spec, generator=torch.Generator().manual_seed(1))
    assert list(priors.terms) == [name]
    term = priors.terms[name]
    assert term.parametrized
    owner, attr = tg.resolve(model, name)
    assert torch.equal(term.weight, getattr(owner, attr))
    p = priors.penalty()
    ref = reference(term)
    torch.testing.assert_close(p, ref)
    leaves = originals(model)
    assert leaves
    auto = torch.autograd.grad(ref, leaves)
    got = torch.autograd.grad(priors.penalty(), leaves)
    for a, b in zip(auto, got):
        assert float(a.abs().sum()) > 0
        torch.testing.assert_close(a, b)
    # the fused gradient reaches the originals through the parametrization
    for q in model.parameters():
        q.grad = None
    v = priors.add_penalty_grad_(0.5)
    torch.testing.assert_close(v, ref.detach())
    for leaf, a in zip(leaves, auto):
        torch.testing.assert_close(leaf.grad, 0.5 * a)


@pytest.mark.parametrize("case", [("linear", "weight_norm"), ("rnn", "orthogonal")], ids=lambda c: "-".join(c))
def test_trained_embedding_on_parametrized_weight_fused_equals_autograd(case):
    model, spec, name = build(case)
    model.eval()
    priors = rg.attach(model, trained_prior(), spec, generator=torch.Generator().manual_seed(2)).double()
    leaves = originals(model) + list(priors.parameters())
    auto = torch.autograd.grad(priors.penalty(), leaves)
    for q in leaves:
        q.grad = None
    priors.add_penalty_grad_(2.0)
    for leaf, a in zip(leaves, auto):
        torch.testing.assert_close(leaf.grad, 2.0 * a)


def test_parametrized_weight_named_by_its_originals_or_layer():
    model, _, _ = _linear("weight_norm")
    for alias in ("0.weight", "0.parametrizations.weight.original0", "0.parametrizations.weight.original1"):
        assert [lay.name for lay in tg.find_targets(model, [alias])] == ["0.weight"]
    assert tg.weight_names(model) == ["0.weight"]
    assert [n for n, _, _ in tg.default_weights(model)] == ["0.weight"]
    with pytest.raises(ValueError, match="stored_parameters"):
        tg.stored_parameter(model, "0.weight")
    assert len(tg.stored_parameters(model, "0.weight")) == 2


@pytest.mark.parametrize("case", CASES, ids=lambda c: "-".join(c))
def test_gmp_prunes_parametrized_weight_exactly_through_training(case):
    model, spec, name = build(case)
    gmp = pruning.GradualMagnitudePruning(model, 0.5, 2, targets=spec)
    assert gmp.names == [name]
    gmp.step()
    gmp.step()
    owner, attr = tg.resolve(model, name)
    mask = tg.mask_of(model, name)
    assert isinstance(owner.parametrizations[attr][-1], tg.PruningMask)
    n = mask.numel()
    assert int((mask == 0).sum()) == round(0.5 * n)
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    x = torch.randn(7, 3, 6 if spec == "linear" else 4, dtype=torch.double)
    for _ in range(5):
        opt.zero_grad()
        out = model(x)
        out = out[0] if isinstance(out, tuple) else out
        out.pow(2).sum().backward()
        opt.step()
        w = getattr(owner, attr)
        assert bool((w[mask == 0] == 0).all())
        assert int((w == 0).sum()) >= round(0.5 * n)
    assert pruning.sparsity(model, [name]) == pytest.approx(round(0.5 * n) / n)
    # a prior attached after pruning sees the masked weight
    priors = rg.attach(model, fixed_prior(), spec)
    torch.testing.assert_close(priors.penalty(), reference(priors.terms[name]))


def test_parametrized_masks_save_and_restore():
    model, spec, name = _linear("weight_norm")
    gmp = pruning.GradualMagnitudePruning(model, 0.6, 1, targets=spec)
    gmp.step()
    saved, state = pruning.masks(model), copy.deepcopy(model.state_dict())
    assert any(k.endswith(".mask") for k in state)
    other, _, _ = _linear("weight_norm")
    pruning.restore_masks(other, saved)
    other.load_state_dict(state)
    torch.testing.assert_close(other[0].weight, model[0].weight)
    with pytest.raises(ValueError, match="shape"):
        pruning.restore_masks(_linear("weight_norm")[0], {name: torch.ones(3, 3)})


@pytest.mark.parametrize("kind", ["weight_norm", "orthogonal"])
def test_lottery_reset_of_parametrized_weight(kind):
    model, spec, name = _linear(kind)
    initial = copy.deepcopy(model.state_dict())
    gmp = pruning.GradualMagnitudePruning(model, 0.5, 1, targets=spec)
    gmp.step()
    mask = tg.mask_of(model, name).clone()
    with torch.no_grad():
        for p in originals(model):
            p.add_(1.0)
    before = model[0].weight.detach().clone()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "kept their weights" warning for the parametrization
        pruning.lottery_reset(model, "reinit", seed=3)
    after = model[0].weight.detach()
    assert torch.equal(tg.mask_of(model, name), mask)
    assert bool((after[mask == 0] == 0).all())
    assert not torch.allclose(after, before)
    if kind == "orthogonal":  # the constraint holds for the weight before the mask
        q = model[0].parametrizations.weight[0](model[0].parametrizations.weight.original)
        torch.testing.assert_close(q @ q.T, torch.eye(6, dtype=torch.double))
    # rewind: back to the initial originals, the mask kept
    pruning.lottery_reset(model, "rewind", initial)
    fresh, _, _ = _linear(kind)
    fresh.load_state_dict(initial)
    torch.testing.assert_close(model[0].weight, fresh[0].weight * mask)
    assert torch.equal(tg.mask_of(model, name), mask)


def test_finalize_parametrized_weight():
    model, spec, name = _linear("spectral_norm")
    pruning.GradualMagnitudePruning(model, 0.5, 1, targets=spec).step()
    model.eval()
    w = model[0].weight.detach().clone()
    saved = tg.finalize_pruning(model)
    assert list(saved) == [name]
    assert not parametrize.is_parametrized(model[0])
    assert isinstance(model[0].weight, nn.Parameter)
    torch.testing.assert_close(model[0].weight.detach(), w)
    assert int((model[0].weight == 0).sum()) == 15


def test_finalize_weight_norm_gives_a_parameter_and_spares_copies():
    model, spec, name = _linear("weight_norm")
    pruning.GradualMagnitudePruning(model, 0.5, 1, targets=spec).step()
    twin = copy.deepcopy(model)  # shares torch's generated class with model
    with torch.no_grad():
        w = model[0].weight.clone()
    tg.finalize_pruning(model)
    assert "weight" in model[0]._parameters and model[0].weight.requires_grad
    torch.testing.assert_close(model[0].weight.detach(), w)
    torch.testing.assert_close(twin[0].weight.detach(), w)  # the copy still computes its weight
    assert parametrize.is_parametrized(twin[0], "weight")


# ------------------------------------------------------------ nn.MultiheadAttention
def _torus_dist(a, b, period=10.0):
    total = 0.0
    for x, y in zip(a.tolist(), b.tolist()):
        t = abs(x - y) % period
        total += min(t, period - t) ** 2
    return total ** 0.5


def _dog(d, c=1.0, s1=0.5, s2=5 ** 0.5):
    """The difference of Gaussians inhibitor's formula (defaults of rg.DifferenceOfGaussians)."""
    return c - c * (math.exp(-d * d / s2 ** 2) - math.exp(-d * d / s1 ** 2))


def _hand_term(weight, p_rows, p_cols, blocks=1):
    n = p_rows.shape[0]
    total = 0.0
    for r in range(weight.shape[0]):
        for j in range(weight.shape[1]):
            total += _dog(_torus_dist(p_rows[r % n], p_cols[j])) * abs(float(weight[r, j].detach()))
    return total


def test_attention_layout_packed_in_proj_penalty_by_hand():
    torch.manual_seed(0)
    mha = nn.MultiheadAttention(4, 2).double()
    layouts = {lay.name: lay for lay in tg.find_targets(mha, "attention")}
    assert list(layouts) == ["in_proj_weight"]
    lay = layouts["in_proj_weight"]
    assert (lay.blocks, lay.n_out, lay.n_in, lay.out_group, lay.in_group) == (3, 4, 4, "heads", "in")
    g = torch.Generator().manual_seed(5)
    pts = {k: TORUS.random_uniform(4, generator=g, dtype=torch.double) for k in ("heads", "in", "out_proj.out")}
    priors = rg.attach(mha, fixed_prior(), ["attention", "linear"], points=pts)
    assert list(priors.terms) == ["in_proj_weight", "out_proj.weight"]
    assert priors.terms["out_proj.weight"].layout.in_group == "heads"
    assert set(priors.embeddings) == {"heads", "in", "out_proj.out"}
    # the attention units are one embedding: out_proj's columns are in_proj's rows
    assert priors.terms["out_proj.weight"]._emb_in is priors.terms["in_proj_weight"]._emb_out
    d = dict(mha.named_parameters())
    ref = _hand_term(d["in_proj_weight"], pts["heads"], pts["in"], blocks=3) + \
        _hand_term(d["out_proj.weight"], pts["out_proj.out"], pts["heads"])
    assert float(priors.penalty().detach()) == pytest.approx(ref, rel=1e-10)


def test_attention_layout_separate_projections():
    torch.manual_seed(0)
    model = nn.Sequential(nn.MultiheadAttention(4, 2, kdim=3, vdim=5)).double()
    lays = {lay.name: lay for lay in tg.find_targets(model, "attention")}
    assert {n: (l.n_out, l.n_in, l.out_group, l.in_group) for n, l in lays.items()} == {
        "0.q_proj_weight": (4, 4, "0.heads", "0.in"),
        "0.k_proj_weight": (4, 3, "0.heads", "0.key_in"),
        "0.v_proj_weight": (4, 5, "0.heads", "0.value_in"),
    }
    priors = rg.attach(model, fixed_prior(), "attention")
    torch.testing.assert_close(priors.penalty(), sum(reference(t) for t in priors.terms.values()))


def test_gmp_default_prunes_attention_projections():
    torch.manual_seed(0)
    mha = nn.MultiheadAttention(8, 2)
    gmp = pruning.GradualMagnitudePruning(mha, 0.5, 1, scope="tensor")
    assert gmp.names == ["in_proj_weight", "out_proj.weight"]
    gmp.step()
    opt = torch.optim.SGD(mha.parameters(), lr=0.1)
    x = torch.randn(5, 3, 8)
    for _ in range(3):
        opt.zero_grad()
        mha(x, x, x)[0].pow(2).sum().backward()
        opt.step()
    mask = tg.mask_of(mha, "in_proj_weight")
    assert int((mask == 0).sum()) == 96
    assert bool((mha.in_proj_weight[mask == 0] == 0).all())
    assert pruning.sparsity(mha) == pytest.approx(0.5)


# ------------------------------------------------------------ tied consecutive layers
def _mlp():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 5), nn.ReLU(), nn.Linear(5, 4), nn.Dropout(0.1), nn.Linear(4, 2)).double()


def _mlp_points(seed=7):
    g = torch.Generator().manual_seed(seed)
    return {k: TORUS.random_uniform(n, generator=g, dtype=torch.double)
            for k, n in (("0.in", 3), ("0.out", 5), ("2.out", 4), ("4.out", 2))}


def test_tie_consecutive_shares_one_embedding():
    model = _mlp()
    tied = rg.attach(model, fixed_prior(), "linear", tie="consecutive", points=_mlp_points())
    assert set(tied.embeddings) == {"0.in", "0.out", "2.out", "4.out"}
    t = tied.terms
    assert t["0.weight"]._emb_out is t["2.weight"]._emb_in
    assert t["2.weight"]._emb_out is t["4.weight"]._emb_in
    assert t["2.weight"].layout.in_group == "0.out"
    untied_pts = dict(_mlp_points(), **{"2.in": _mlp_points()["0.out"], "4.in": _mlp_points()["2.out"]})
    untied = rg.attach(model, fixed_prior(), "linear", points=untied_pts)
    assert len(untied.embeddings) == 6
    torch.testing.assert_close(tied.penalty(), untied.penalty())
    # default off
    assert rg.attach(model, fixed_prior(), "linear").terms["2.weight"].layout.in_group == "2.in"
    # points under the second layer's name reach the tied group
    by_second = rg.attach(model, fixed_prior(), "linear", tie="consecutive",
                          points={"2.in": _mlp_points()["0.out"]})
    torch.testing.assert_close(by_second.embeddings["0.out"].points, _mlp_points()["0.out"])


@pytest.mark.parametrize("fused", [False, True])
def test_tie_consecutive_trained_gradient_is_sum_of_both_terms(fused):
    model = _mlp()
    tied = rg.attach(model, trained_prior(), "linear", tie="consecutive", points=_mlp_points())
    untied_pts = dict(_mlp_points(), **{"2.in": _mlp_points()["0.out"], "4.in": _mlp_points()["2.out"]})
    untied = rg.attach(model, trained_prior(), "linear", points=untied_pts)
    for ps in (tied, untied):
        ps.zero_grad()
        if fused:
            ps.add_penalty_grad_(1.0)
        else:
            ps.penalty().backward()
    u = {k: e.u.grad for k, e in untied.embeddings.items()}
    for k, e in tied.embeddings.items():
        assert e.u.grad is not None
    torch.testing.assert_close(tied.embeddings["0.out"].u.grad, u["0.out"] + u["2.in"])
    torch.testing.assert_close(tied.embeddings["2.out"].u.grad, u["2.out"] + u["4.in"])
    torch.testing.assert_close(tied.embeddings["0.in"].u.grad, u["0.in"])
    assert float(u["2.in"].abs().sum()) > 0


def test_tie_consecutive_refuses_what_it_cannot_tie():
    with pytest.raises(ValueError, match="tie must be"):
        rg.attach(_mlp(), fixed_prior(), "linear", tie="all")
    with pytest.raises(ValueError, match="no two consecutive"):
        rg.attach(nn.Sequential(nn.Linear(3, 4)), fixed_prior(), "linear", tie="consecutive")
    broken = nn.Sequential(nn.Linear(3, 4), nn.Conv1d(1, 1, 1), nn.Linear(4, 2))
    with pytest.raises(ValueError, match="no two consecutive"):  # a layer with weights breaks the chain
        rg.attach(broken, fixed_prior(), "linear", tie="consecutive")
    misfit = nn.Sequential(nn.Linear(3, 4), nn.Flatten(), nn.Linear(6, 2))
    with pytest.raises(ValueError, match="cannot be the same neurons"):
        rg.attach(misfit, fixed_prior(), "linear", tie="consecutive")
    with pytest.raises(ValueError, match="one neuron group"):
        rg.attach(_mlp(), fixed_prior(), "linear", tie="consecutive",
                  points={"0.out": _mlp_points()["0.out"], "2.in": _mlp_points()["0.out"]})


def test_sparsify_leaves_a_parametrized_model_alone():
    from moduli import sparse

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 6), nn.ReLU(), nn.Linear(6, 2))
    P.orthogonal(model[0])
    pruning.GradualMagnitudePruning(model, 0.5, 1, targets=["0.weight"]).step()
    before = model[0].weight.detach().clone()
    out = sparse.sparsify(model, layout="dense")
    torch.testing.assert_close(model[0].weight.detach(), before, rtol=0, atol=0)
    x = torch.randn(3, 6)
    torch.testing.assert_close(out(x), model(x))
