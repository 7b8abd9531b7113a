"""Inhibitors, moduli priors, controls and prior sets (issue 3, sections 1-2 and 5)."""

import math
import warnings

import pytest
import torch
from hypothesis import given, settings, strategies as st
from torch import nn
from torch.nn.utils import prune

from moduli import manifolds as mf
from moduli import regularizers as rg
from moduli import targets as pruning_targets

PERIOD = 10.0
TORUS = mf.FlatTorus(2, PERIOD)


# ------------------------------------------------------------ hand formulas
def torus_dist(a, b, p=PERIOD):
    total = 0.0
    for x, y in zip(a, b):
        t = abs(x - y) % p
        t = min(t, p - t)
        total += t * t
    return math.sqrt(total)


def dog(d, c=1.0, s1=0.5, s2=5**0.5):
    return c - c * (math.exp(-d * d / s2**2) - math.exp(-d * d / s1**2))


def hand_penalty(weight, rows, cols, f=dog, exponent=1.0):
    """Eq. 6 by loops: sum_jk f(d(i(j), i(k))) |w_jk|^l, rows repeated over gate blocks."""
    w = weight.detach().double().tolist()
    n_out = len(rows)
    total = 0.0
    for r, row in enumerate(w):
        for k, v in enumerate(row):
            total += f(torus_dist(rows[r % n_out], cols[k])) * abs(v) ** exponent
    return total


def grid_points(n, offset=0.0):
    return torch.tensor([[(1.7 * i + offset) % PERIOD, (3.1 * i * i + offset) % PERIOD] for i in range(n)],
                        dtype=torch.float64)


# --------------------------------------------------------------- inhibitors
def test_inhibitor_known_values():
    d = torch.tensor([0.0, 1.0, 2.0], dtype=torch.float64)
    out = rg.DifferenceOfGaussians(c=2.0, sigma1=0.5, sigma2=5**0.5)(d)
    assert torch.allclose(out, torch.tensor([dog(x, c=2.0) for x in (0.0, 1.0, 2.0)], dtype=torch.float64))
    assert out[0].item() == 2.0
    assert torch.allclose(rg.Diffusion(c=3.0, power=2)(d), torch.tensor([0.0, 3.0, 12.0], dtype=torch.float64))
    assert torch.allclose(rg.Diffusion(c=1.0, power=3)(d), torch.tensor([0.0, 1.0, 8.0], dtype=torch.float64))
    s = rg.Sinusoid(c=10.0, mu=2.0)(d)
    assert torch.allclose(s, 10 + 10 * torch.cos(2 * d))
    hard = rg.DiagonalOnly(value=1e4)(d)
    assert hard.tolist() == [0.0, 1e4, 1e4]


def test_ricker_transform_is_documented_rescaling_of_eq7():
    sigma, c = 1.5, 2.0
    f = rg.Ricker(sigma=sigma, c=c)
    d = torch.linspace(0, 20, 401, dtype=torch.float64)
    psi = rg.Ricker.wavelet(d, sigma)
    psi0 = rg.Ricker.wavelet(torch.zeros(1, dtype=torch.float64), sigma)
    assert psi0.item() == pytest.approx(2 / math.sqrt(3 * sigma * math.sqrt(math.pi)))
    assert torch.allclose(f(d), c * (psi0 - psi) / psi0)
    assert f(torch.zeros(1, dtype=torch.float64)).item() == 0.0
    peak = f(torch.tensor([sigma * math.sqrt(3)], dtype=torch.float64)).item()
    assert peak == pytest.approx(c * (1 + 2 * math.exp(-1.5)))
    assert float(f(d).min()) >= 0.0
    assert (psi < 0).any()  # the wavelet itself is negative somewhere


def test_from_expression_matches_dog_and_differentiates():
    f = rg.Inhibitor.from_expression("c - c*(exp(-d**2/s2**2) - exp(-d**2/s1**2))", c=1, s1=0.5, s2=2.2)
    g = rg.DifferenceOfGaussians(c=1.0, sigma1=0.5, sigma2=2.2)
    d = torch.linspace(0.0, 8.0, 33, dtype=torch.float64, requires_grad=True)
    assert torch.allclose(f(d), g(d))
    (gf,) = torch.autograd.grad(f(d).sum(), d)
    (gg,) = torch.autograd.grad(g(d).sum(), d)
    assert torch.allclose(gf, gg)
    h = rg.Inhibitor.from_expression("Piecewise((0, d < a), (b, True))", a=1.0, b=5.0)
    assert h(torch.tensor([0.5, 1.5])).tolist() == [0.0, 5.0]
    assert not h.differentiable
    sq = rg.Inhibitor.from_expression("sqrt(d) + Abs(d - 1) + pi")
    assert sq(torch.tensor([4.0])).item() == pytest.approx(2 + 3 + math.pi)


def test_from_expression_bad_input():
    with pytest.raises(ValueError, match="without values: s"):
        rg.Inhibitor.from_expression("c*d + s", c=1.0)
    with pytest.raises(ValueError, match="unsupported function"):
        rg.Inhibitor.from_expression("gamma(d)")
    with pytest.raises(ValueError, match="not used"):
        rg.Inhibitor.from_expression("d", c=1.0)
    with pytest.raises(TypeError):
        rg.Inhibitor.from_expression(3.0)


def test_inhibitor_parameter_validation():
    with pytest.raises(ValueError, match="sigma2 > sigma1"):
        rg.DifferenceOfGaussians(1.0, sigma1=2.0, sigma2=1.0)
    with pytest.raises(ValueError, match="c must be"):
        rg.Sinusoid(c=-1.0)
    with pytest.raises(TypeError):
        rg.Diffusion(c="1")
    with pytest.raises(ValueError, match="power"):
        rg.Diffusion(power=0.5)


def test_negative_inhibitor_on_manifold_raises():
    cosine = rg.Inhibitor.from_expression("cos(d)")
    with pytest.raises(ValueError, match="negative value"):
        rg.ModuliPrior(TORUS, cosine)
    # on a small circle (diameter pi * 0.3 < pi/2) the cosine is non-negative
    rg.ModuliPrior(mf.Circle(0.3), cosine)
    # R^k is unbounded: checked on a wide range
    with pytest.raises(ValueError, match="negative"):
        rg.ModuliPrior(mf.Euclidean(3), rg.Inhibitor.from_expression("1 - d/500"))


def test_collapse_warning_for_trained_embeddings():
    with pytest.warns(UserWarning, match="degenerates to L1"):
        rg.ModuliPrior(TORUS, rg.Diffusion(), trainable=True)
    with pytest.warns(UserWarning, match="degenerates to L1"):
        rg.ModuliPrior(TORUS, rg.Ricker(sigma=1.0), trainable=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        rg.ModuliPrior(TORUS, rg.DifferenceOfGaussians(), trainable=True)
        rg.ModuliPrior(TORUS, rg.Sinusoid(), trainable=True)
        rg.ModuliPrior(TORUS, rg.Diffusion())  # fixed embedding: fine
    with pytest.raises(ValueError, match="differentiable inhibitor"):
        rg.ModuliPrior(TORUS, rg.DiagonalOnly(), trainable=True)


def test_prior_argument_validation():
    f = rg.DifferenceOfGaussians()
    for bad in (0, -1, 0.5):
        with pytest.raises(ValueError, match="exponent"):
            rg.ModuliPrior(TORUS, f, exponent=bad)
    with pytest.raises(ValueError, match="reduction"):
        rg.ModuliPrior(TORUS, f, reduction="max")
    with pytest.raises(TypeError, match="manifold"):
        rg.ModuliPrior("torus", f)
    with pytest.raises(TypeError, match="inhibitor"):
        rg.ModuliPrior(TORUS, lambda d: d)
    with pytest.raises(ValueError, match="fixed embedding"):
        rg.ShuffledPrior(rg.ModuliPrior(TORUS, f, trainable=True))


# ------------------------------------------------------------ penalties: Eq. 6
def _attach(model, prior, targets, points):
    return rg.attach(model, prior, targets=targets, points=points)


def test_recurrent_penalty_equals_eq6_rnn():
    torch.manual_seed(0)
    model = nn.RNN(2, 5, nonlinearity="relu").double()
    pts = grid_points(5)
    priors = _attach(model, rg.ModuliPrior(TORUS, rg.DifferenceOfGaussians()), "recurrent",
                     {"weight_hh_l0": pts})
    term = priors.terms["weight_hh_l0"]
    assert term.points_out is term.points_in
    expected = hand_penalty(model.weight_hh_l0, pts.tolist(), pts.tolist())
    assert priors.penalty().item() == pytest.approx(expected, rel=1e-12)
    coeff = term.coefficients()
    assert torch.allclose(coeff, rg.DifferenceOfGaussians()(TORUS.cdist(pts)))


@pytest.mark.parametrize("cls,blocks", [(nn.LSTM, 4), (nn.GRU, 3)])
def test_gate_blocks_share_the_hidden_embedding(cls, blocks):
    torch.manual_seed(1)
    model = cls(3, 4, num_layers=2, bidirectional=True).double()
    priors = rg.attach(model, rg.ModuliPrior(TORUS, rg.DifferenceOfGaussians(), exponent=2))
    assert sorted(priors.terms) == ["weight_hh_l0", "weight_hh_l0_reverse", "weight_hh_l1",
                                    "weight_hh_l1_reverse"]
    assert len(priors.embeddings) == 4  # one per layer and direction
    total = 0.0
    for name, term in priors.terms.items():
        pts = term.points_out.tolist()
        w = getattr(model, name)
        assert term.coefficients().shape == w.shape == (blocks * 4, 4)
        total += hand_penalty(w, pts, pts, exponent=2.0)
    assert priors.penalty().item() == pytest.approx(total, rel=1e-12)


def test_linear_penalty_uses_two_embeddings():
    torch.manual_seed(2)
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2)).double()
    pin, pout = grid_points(3, 0.3), grid_points(4, 1.1)
    priors = rg.attach(model, rg.ModuliPrior(TORUS, rg.DifferenceOfGaussians()), targets="linear",
                       points={"0.weight": (pout, pin)})
    assert sorted(priors.terms) == ["0.weight", "2.weight"]
    t0 = priors.terms["0.weight"]
    assert torch.equal(t0.points_out, pout) and torch.equal(t0.points_in, pin)
    assert t0.coefficients().shape == (4, 3)
    t2 = priors.terms["2.weight"]
    expected = hand_penalty(model[0].weight, pout.tolist(), pin.tolist()) + hand_penalty(
        model[2].weight, t2.points_out.tolist(), t2.points_in.tolist())
    assert priors.penalty().item() == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("exponent", [1.0, 2.0, 3.0])
def test_conv_penalty_uses_l2_norm_of_kernel_slices(exponent):
    torch.manual_seed(3)
    conv = nn.Conv2d(3, 4, kernel_size=3).double()
    priors = rg.attach(conv, rg.ModuliPrior(TORUS, rg.DifferenceOfGaussians(), exponent=exponent),
                       targets="conv")
    term = priors.terms["weight"]
    assert term.coefficients().shape == (4, 3)
    po, pi = term.points_out.tolist(), term.points_in.tolist()
    expected = 0.0
    for o in range(4):
        for i in range(3):
            norm = float(conv.weight[o, i].detach().pow(2).sum().sqrt())
            expected += dog(torus_dist(po[o], pi[i])) * norm**exponent
    assert priors.penalty().item() == pytest.approx(expected, rel=1e-10)


def test_grouped_conv_coefficients_pick_the_right_channels():
    conv = nn.Conv1d(4, 6, kernel_size=2, groups=2).double()
    priors = rg.attach(conv, rg.ModuliPrior(TORUS, rg.DifferenceOfGaussians()), targets="conv")
    term = priors.terms["weight"]
    full = rg.DifferenceOfGaussians()(TORUS.cdist(term.points_out, term.points_in))
    c = term.coefficients()
    assert c.shape == (6, 2)
    for o in range(6):
        g = o // 3
        assert torch.equal(c[o], full[o, 2 * g:2 * g + 2])


def test_reduction_mean_divides_by_entries():
    torch.manual_seed(4)
    model = nn.RNN(2, 6)
    pts = TORUS.random_uniform(6, generator=torch.Generator().manual_seed(0))
    s = rg.attach(model, rg.ModuliPrior(TORUS, rg.Sinusoid()), points={"weight_hh_l0": pts}).penalty()
    m = rg.attach(model, rg.ModuliPrior(TORUS, rg.Sinusoid(), reduction="mean"),
                  points={"weight_hh_l0": pts}).penalty()
    assert m.item() == pytest.approx(s.item() / 36, rel=1e-6)


# ------------------------------------------------------------------ controls
def test_l1_prior_is_exactly_sum_abs_and_not_zero():
    torch.manual_seed(5)
    model = nn.Sequential(nn.Conv1d(2, 3, 3), nn.Flatten(), nn.Linear(6, 2))
    priors = rg.attach(model, rg.L1Prior(), targets=["conv", "linear"])
    expected = model[0].weight.abs().sum() + model[2].weight.abs().sum()
    value = priors.penalty()
    assert value.item() > 0
    assert torch.equal(value, expected)
    assert torch.equal(priors.terms["0.weight"].coefficients(), torch.ones(3, 2))
    assert priors.terms["0.weight"].points_out is None
    assert list(priors.parameters()) == []
    value.backward()
    assert torch.equal(model[2].weight.grad, model[2].weight.sign())


def test_shuffled_prior_is_a_permutation():
    torch.manual_seed(6)
    model = nn.LSTM(2, 8)
    pts = TORUS.random_uniform(8, generator=torch.Generator().manual_seed(1))
    base = rg.ModuliPrior(TORUS, rg.DifferenceOfGaussians())
    plain = rg.attach(model, base, points={"weight_hh_l0": pts}).terms["weight_hh_l0"].coefficients()
    shuffled = rg.attach(model, rg.ShuffledPrior(base, generator=torch.Generator().manual_seed(2)),
                         points={"weight_hh_l0": pts}).terms["weight_hh_l0"].coefficients()
    assert shuffled.shape == plain.shape == (32, 8)
    assert torch.equal(shuffled.flatten().sort().values, plain.flatten().sort().values)
    assert not torch.equal(shuffled, plain)
    # geometry destroyed: the gate blocks no longer repeat one matrix
    assert not torch.equal(shuffled[:8], shuffled[8:16])


# ------------------------------------------------------------------ targets
def test_target_selection_and_errors():
    model = nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 2))
    by_name = rg.attach(model, rg.L1Prior(), targets=["1.weight"])
    assert list(by_name.terms) == ["1.weight"]
    pred = rg.attach(model, rg.L1Prior(), targets=lambda name, w: w.shape[0] == 4)
    assert list(pred.terms) == ["0.weight"]
    with pytest.raises(ValueError, match="matched no weight"):
        rg.attach(model, rg.L1Prior(), targets="recurrent")
    with pytest.raises(ValueError, match="no neuron layout"):
        rg.attach(model, rg.L1Prior(), targets=["0.bias"])
    with pytest.raises(ValueError, match="neither a kind"):
        rg.attach(model, rg.L1Prior(), targets=["2.weight"])
    with pytest.raises(ValueError, match="matched no parameter"):
        rg.attach(model, rg.L1Prior(), targets=lambda name, w: False)
    with pytest.raises(TypeError, match="targets must be"):
        rg.attach(model, rg.L1Prior(), targets=3)
    with pytest.raises(TypeError, match="prior must be"):
        rg.attach(model, "l1")
    with pytest.raises(TypeError, match="model must be a torch.nn.Module"):
        rg.attach([1, 2], rg.L1Prior())


def test_rnn_cell_and_input_weights():
    cell = nn.LSTMCell(3, 5)
    priors = rg.attach(cell, rg.ModuliPrior(TORUS, rg.DifferenceOfGaussians()), targets=["recurrent", "weight_ih"])
    assert sorted(priors.terms) == ["weight_hh", "weight_ih"]
    # the input matrix's rows are the same hidden units as the recurrent matrix's
    assert priors.terms["weight_ih"].points_out is priors.terms["weight_hh"].points_out
    assert priors.terms["weight_ih"].coefficients().shape == (20, 3)


def test_bad_points_and_nan_weights():
    model = nn.RNN(2, 4)
    prior = rg.ModuliPrior(TORUS, rg.DifferenceOfGaussians())
    with pytest.raises(ValueError, match=r"shape \(4, 2\)"):
        rg.attach(model, prior, points={"weight_hh_l0": torch.zeros(5, 2)})
    with pytest.raises(ValueError, match="shape"):
        rg.attach(model, prior, points={"weight_hh_l0": torch.zeros(4, 3)})
    with pytest.raises(ValueError, match="neither a target"):
        rg.attach(model, prior, points={"nope": torch.zeros(4, 2)})
    priors = rg.attach(model, prior)
    with torch.no_grad():
        model.weight_hh_l0[0, 0] = float("nan")
    with pytest.raises(ValueError, match="weight_hh_l0 of shape \\(4, 4\\) has 1 NaN"):
        priors.penalty()


# ---------------------------------------------------------- trained embeddings
def test_gradcheck_trained_embedding():
    torch.manual_seed(7)
    model = nn.RNN(2, 5).double()
    sphere = mf.Sphere(2, 5.0)
    priors = rg.attach(model, rg.ModuliPrior(sphere, rg.DifferenceOfGaussians(), trainable=True))
    (u,) = list(priors.parameters())
    w = model.weight_hh_l0

    def fn(u_, w_):
        pts = sphere.from_unconstrained(u_)
        c = rg.DifferenceOfGaussians()(sphere.cdist(pts, validate=False))
        return (c * w_.abs()).sum()

    u0 = u.detach().clone().requires_grad_(True)
    w0 = w.detach().clone().requires_grad_(True)
    assert torch.autograd.gradcheck(fn, (u0, w0))
    # the prior set computes the same value and gradient as the reference
    value = priors.penalty()
    gu, = torch.autograd.grad(value, u)
    ref_value = fn(u0, w0)
    ref, = torch.autograd.grad(ref_value, u0)
    assert value.item() == pytest.approx(ref_value.item(), rel=1e-12)
    assert torch.allclose(gu, ref)


def test_trained_points_stay_on_the_manifold_and_freeze():
    torch.manual_seed(8)
    sphere = mf.Sphere(2, 5.0)
    model = nn.RNN(3, 6)
    priors = rg.attach(model, rg.ModuliPrior(sphere, rg.DifferenceOfGaussians(), trainable=True))
    params = list(priors.parameters())
    assert len(params) == 1
    opt = torch.optim.SGD(params, lr=0.5)
    before = priors.terms["weight_hh_l0"].points_out.detach().clone()
    for _ in range(5):
        opt.zero_grad()
        priors.penalty().backward()
        opt.step()
    pts = priors.terms["weight_hh_l0"].points_out.detach()
    assert not torch.allclose(pts, before)
    assert torch.allclose(pts.norm(dim=1), torch.full((6,), 5.0), atol=1e-5)
    assert params[0] is list(priors.parameters())[0]  # same parameter object throughout
    priors.freeze()
    assert priors.frozen and not params[0].requires_grad
    c_frozen = priors.terms["weight_hh_l0"].coefficients()
    assert torch.allclose(c_frozen, rg.DifferenceOfGaussians()(sphere.cdist(pts)), atol=1e-6)
    params[0].grad = None
    priors.penalty().backward()
    assert params[0].grad is None  # frozen: no gradient reaches the embedding
    priors.unfreeze()
    assert params[0].requires_grad and not priors.frozen


# ------------------------------------------------------------ fused gradients
@pytest.mark.parametrize("kind", ["recurrent", "conv", "l1", "trained", "exponent2", "mean"])
def test_fused_gradient_equals_autograd(kind):
    torch.manual_seed(9)
    if kind == "conv":
        model = nn.Conv2d(3, 4, 2).double()
        prior, targets = rg.ModuliPrior(TORUS, rg.DifferenceOfGaussians(), exponent=1.5), "conv"
    else:
        model = nn.LSTM(2, 5).double()
        targets = "recurrent"
        prior = {
            "recurrent": rg.ModuliPrior(TORUS, rg.DifferenceOfGaussians()),
            "l1": rg.L1Prior(),
            "trained": rg.ModuliPrior(TORUS, rg.DifferenceOfGaussians(), trainable=True),
            "exponent2": rg.ModuliPrior(TORUS, rg.Sinusoid(), exponent=2),
            "mean": rg.ModuliPrior(TORUS, rg.Sinusoid(), reduction="mean"),
        }[kind]
    priors = rg.attach(model, prior, targets=targets)
    lam = 0.37
    params = list(model.parameters()) + list(priors.parameters())
    (lam * priors.penalty()).backward()
    auto = [None if p.grad is None else p.grad.clone() for p in params]
    for p in params:
        p.grad = None
    value = priors.add_penalty_grad_(lam)
    assert value.item() == pytest.approx(priors.penalty().item(), rel=1e-12)
    for a, p in zip(auto, params):
        if a is None:
            assert p.grad is None or float(p.grad.abs().sum()) == 0
        else:
            assert torch.allclose(a, p.grad, rtol=1e-10, atol=1e-12)


# ---------------------------------------------------------------- pruning
def test_prior_follows_pruning_reparametrization():
    torch.manual_seed(10)
    model = nn.RNN(2, 6).double()
    priors = rg.attach(model, rg.ModuliPrior(TORUS, rg.DifferenceOfGaussians()))
    mask = (torch.rand(6, 6) > 0.5).double()
    prune.custom_from_mask(model, "weight_hh_l0", mask)
    assert list(priors.terms) == ["weight_hh_l0"]
    term = priors.terms["weight_hh_l0"]
    expected = (term.coefficients() * (model.weight_hh_l0_orig * mask).abs()).sum()
    assert priors.penalty().item() == pytest.approx(expected.item(), rel=1e-12)
    priors.penalty().backward()
    g = model.weight_hh_l0_orig.grad
    assert torch.equal(g[mask == 0], torch.zeros_like(g[mask == 0]))
    assert torch.allclose(g, term.coefficients() * model.weight_hh_l0_orig.sign() * mask)
    # attaching after pruning accepts both names and reports the original one
    again = rg.attach(model, rg.L1Prior(), targets=["weight_hh_l0_orig"])
    assert list(again.terms) == ["weight_hh_l0"]


# ------------------------------------------------------------- state
def test_model_unchanged_and_prior_state_dict_roundtrip(tmp_path):
    torch.manual_seed(11)
    model = nn.GRU(2, 5)
    keys = list(model.state_dict())
    cls = type(model)
    prior = rg.ModuliPrior(TORUS, rg.DifferenceOfGaussians(), trainable=True)
    a = rg.attach(model, prior, generator=torch.Generator().manual_seed(0))
    assert type(model) is cls and list(model.state_dict()) == keys
    a.freeze()
    torch.save(a.state_dict(), tmp_path / "priors.pt")
    b = rg.attach(model, prior, generator=torch.Generator().manual_seed(1))
    assert not torch.allclose(a.terms["weight_hh_l0"].coefficients(), b.terms["weight_hh_l0"].coefficients())
    b.load_state_dict(torch.load(tmp_path / "priors.pt"))
    assert b.frozen
    assert torch.equal(a.terms["weight_hh_l0"].coefficients(), b.terms["weight_hh_l0"].coefficients())
    assert torch.equal(a.terms["weight_hh_l0"].points_out, b.terms["weight_hh_l0"].points_out)
    assert a.penalty().item() == b.penalty().item()


def test_dtype_follows_model():
    model = nn.RNN(2, 4).double()
    priors = rg.attach(model, rg.ModuliPrior(TORUS, rg.DifferenceOfGaussians()))
    assert priors.terms["weight_hh_l0"].coefficients().dtype == torch.float64
    model.float()
    assert priors.penalty().dtype == torch.float32
    assert priors.terms["weight_hh_l0"].coefficients().dtype == torch.float32


@settings(max_examples=15, deadline=None)
@given(n=st.integers(2, 7), seed=st.integers(0, 2**16), c=st.floats(0.1, 5.0))
def test_recurrent_coefficients_symmetric_nonnegative(n, seed, c):
    g = torch.Generator().manual_seed(seed)
    model = nn.RNN(1, n)
    f = rg.DifferenceOfGaussians(c=c)
    priors = rg.attach(model, rg.ModuliPrior(TORUS, f), generator=g)
    term = priors.terms["weight_hh_l0"]
    coeff = term.coefficients()
    assert torch.equal(coeff, coeff.T)
    assert bool((coeff >= 0).all()) and bool((coeff <= c + 1e-6).all())
    assert torch.allclose(torch.diagonal(coeff), torch.full((n,), c))  # f(0) = c on the diagonal
    assert torch.allclose(coeff, f(TORUS.cdist(term.points_out)))


# ---------------------------------------------------------------- docs
def test_readme_example_in_docs_matches_script():
    """docs/regularizers.md shows docs/examples/torus_rnn.py verbatim (the
    blocks themselves run in tests/test_docs.py)."""
    import pathlib
    import re

    root = pathlib.Path(__file__).resolve().parents[1]
    text = (root / "docs" / "regularizers.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    readme = [b for b in blocks if b.startswith("# README example")]
    assert len(readme) == 1
    assert readme[0] == (root / "docs" / "examples" / "torus_rnn.py").read_text()


@pytest.mark.parametrize("kind", ["grouped_conv", "linear_mean", "lstm_exponent2"])
def test_trained_chunked_path_equals_plain_autograd(kind, monkeypatch):
    from moduli.regularizers import penalty as pen

    monkeypatch.setattr(pen, "CHUNK_ENTRIES", 8)  # force several row chunks
    torch.manual_seed(12)
    if kind == "grouped_conv":
        model, targets, kw = nn.Conv1d(4, 6, 3, groups=2).double(), "conv", {}
    elif kind == "linear_mean":
        model, targets, kw = nn.Linear(5, 7).double(), "linear", {"reduction": "mean"}
    else:
        model, targets, kw = nn.LSTM(2, 5).double(), "recurrent", {"exponent": 2}
    prior = rg.ModuliPrior(TORUS, rg.DifferenceOfGaussians(), trainable=True, **kw)
    priors = rg.attach(model, prior, targets=targets)
    (name, term), = priors.terms.items()
    params = list(priors.parameters()) + [term.parameter]
    value = priors.penalty()
    grads = torch.autograd.grad(value, params)
    # reference: the whole coefficient matrix through plain autograd
    c = prior.coefficients(term.layout, term.points_out, term.points_in)
    ref = rg.weighted_penalty(term.weight, c, prior.exponent, slice_norm=term.layout.slice_norm,
                              reduction=prior.reduction)
    ref_grads = torch.autograd.grad(ref, params)
    assert value.item() == pytest.approx(ref.item(), rel=1e-12)
    for g, r in zip(grads, ref_grads):
        assert torch.allclose(g, r, rtol=1e-10, atol=1e-12)
    with torch.no_grad():
        assert priors.penalty().item() == pytest.approx(ref.item(), rel=1e-12)


@pytest.mark.parametrize("f", [
    rg.DifferenceOfGaussians(c=2.0, sigma1=0.7, sigma2=1.9), rg.Ricker(sigma=1.3, c=0.5),
    rg.Diffusion(c=1.5, power=2), rg.Diffusion(c=1.5, power=1), rg.Diffusion(c=0.5, power=2.5),
    rg.Sinusoid(c=3.0, mu=1.7), rg.Inhibitor.from_expression("a*d*exp(-d)", a=2.0),
])
def test_closed_form_derivatives_match_autograd(f):
    d = torch.linspace(0.0, 9.0, 301, dtype=torch.float64).requires_grad_(True)
    value = f(d)
    (grad,) = torch.autograd.grad(value.sum(), d)
    v2, g2 = f.value_and_derivative(d.detach())
    assert torch.allclose(v2, value.detach(), rtol=1e-12, atol=1e-12)
    assert torch.allclose(g2, grad, rtol=1e-10, atol=1e-12)


def test_shuffled_prior_reproducible_with_generator():
    model = nn.RNN(1, 6)
    base = rg.ModuliPrior(TORUS, rg.DifferenceOfGaussians())
    a = rg.attach(model, rg.ShuffledPrior(base), generator=torch.Generator().manual_seed(3))
    b = rg.attach(model, rg.ShuffledPrior(base), generator=torch.Generator().manual_seed(3))
    assert torch.equal(a.terms["weight_hh_l0"].coefficients(), b.terms["weight_hh_l0"].coefficients())
    assert "ShuffledPrior" in repr(a)


def test_diagonal_only_inhibitor_frees_self_connections():
    model = nn.RNN(2, 5)
    priors = rg.attach(model, rg.ModuliPrior(TORUS, rg.DiagonalOnly(value=1e4)))
    c = priors.terms["weight_hh_l0"].coefficients()
    assert torch.equal(c, 1e4 * (1 - torch.eye(5)))
    expected = 1e4 * (model.weight_hh_l0.abs().sum() - model.weight_hh_l0.diagonal().abs().sum())
    assert priors.penalty().item() == pytest.approx(expected.item(), rel=1e-5)


def test_lstm_with_projection_embeds_projected_units_separately():
    model = nn.LSTM(3, 6, proj_size=2)
    priors = rg.attach(model, rg.ModuliPrior(TORUS, rg.DifferenceOfGaussians()))
    term = priors.terms["weight_hh_l0"]
    assert term.points_out.shape == (6, 2) and term.points_in.shape == (2, 2)
    assert term.coefficients().shape == model.weight_hh_l0.shape == (24, 2)


def test_float32_penalty_matches_float64():
    torch.manual_seed(13)
    m64 = nn.GRU(2, 7).double()
    m32 = nn.GRU(2, 7)
    m32.load_state_dict({k: v.float() for k, v in m64.state_dict().items()})
    pts = TORUS.random_uniform(7, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    prior = rg.ModuliPrior(TORUS, rg.DifferenceOfGaussians())
    p64 = rg.attach(m64, prior, points={"weight_hh_l0": pts}).penalty()
    p32 = rg.attach(m32, prior, points={"weight_hh_l0": pts.float()}).penalty()
    assert p32.dtype == torch.float32
    assert p32.item() == pytest.approx(p64.item(), rel=1e-5)


def test_deprecated_backends_shim_warns_and_delegates():
    import importlib
    import sys

    sys.modules.pop("moduli.backends", None)
    with pytest.warns(DeprecationWarning, match="moduli.backends is deprecated"):
        backends = importlib.import_module("moduli.backends")
    model = nn.RNN(2, 4)
    backend = backends.get_backend(model)
    (lay,) = backend.find_targets(model, "recurrent")
    assert isinstance(lay, backends.TargetLayout) and lay.name == "weight_hh_l0"
    assert torch.equal(backend.read_weight(model, lay.name), model.weight_hh_l0)
    priors = backend.build(model, rg.L1Prior(), [lay])
    assert isinstance(priors, backends.PriorSetProtocol)
    assert float(priors.penalty().detach()) == pytest.approx(float(model.weight_hh_l0.detach().abs().sum()))
    with pytest.raises(TypeError, match="no moduli backend accepts"):
        backends.get_backend(object())


def test_lam_must_be_a_finite_nonnegative_number_and_numpy_scalars_are_numbers():
    import numpy as np

    model = nn.RNN(2, 4)
    priors = rg.attach(model, rg.ModuliPrior(TORUS, rg.DifferenceOfGaussians()))
    for bad in (float("nan"), float("inf"), -1.0):
        with pytest.raises(ValueError, match="lam must be a finite non-negative number"):
            priors.add_penalty_grad_(bad)
        assert model.weight_hh_l0.grad is None  # nothing was written
    with pytest.raises(TypeError, match="lam must be"):
        priors.add_penalty_grad_("1e-3")
    priors.add_penalty_grad_(np.float32(0.5))
    assert bool(torch.isfinite(model.weight_hh_l0.grad).all())


def test_trained_embeddings_refuse_an_inhibitor_with_an_infinite_derivative():
    with pytest.raises(ValueError, match="non-finite derivative at d = 0"):
        rg.ModuliPrior(TORUS, rg.Inhibitor.from_expression("sqrt(d)"), trainable=True)
    rg.ModuliPrior(TORUS, rg.Inhibitor.from_expression("sqrt(d)"))  # a fixed embedding never differentiates f


def test_inhibitors_refuse_nan_distances():
    with pytest.raises(ValueError, match="NaN distances"):
        rg.DifferenceOfGaussians()(torch.tensor([0.0, float("nan")]))


def test_overflow_is_reported_as_overflow_not_as_nan_coefficients():
    model = nn.Linear(2, 2)
    with torch.no_grad():
        model.weight.fill_(3e38)
    priors = rg.attach(model, rg.L1Prior(), targets="linear")
    with pytest.raises(ValueError, match="overflowed in torch.float32.*float64"):
        priors.penalty()
    model.double()
    assert math.isfinite(float(priors.penalty().detach()))


def test_zero_width_layers_and_foreign_states_are_clear_errors():
    with pytest.warns(UserWarning):  # torch: initializing zero-element tensors
        empty = nn.Linear(3, 0)
    with pytest.raises(ValueError, match="a layer without neurons"):
        rg.attach(empty, rg.L1Prior(), targets="linear")
    prior = rg.ModuliPrior(TORUS, rg.DifferenceOfGaussians())
    small = rg.attach(nn.RNN(3, 5), prior)
    with pytest.raises(ValueError, match="does not fit this one: emb.hidden_l0.fixed has shape \\(6, 2\\), here \\(5, 2\\)"):
        small.load_state_dict(rg.attach(nn.RNN(3, 6), prior).state_dict())


def test_points_of_another_dtype_follow_the_model():
    model = nn.RNN(2, 5)
    pts = TORUS.random_uniform(5, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    priors = rg.attach(model, rg.ModuliPrior(TORUS, rg.DifferenceOfGaussians()), points={"weight_hh_l0": pts})
    term = priors.terms["weight_hh_l0"]
    assert term.points_out.dtype == torch.float32 and torch.allclose(term.points_out.double(), pts)
    assert priors.penalty().dtype == torch.float32


# ------------------------------------------------- sparse trained pass (pruned)
def _pruned_trained(kind, manifold, keep, seed):
    torch.manual_seed(seed)
    if kind == "grouped_conv":
        model, targets, kw = nn.Conv1d(4, 6, 3, groups=2).double(), "conv", {"exponent": 1.5}
    elif kind == "linear_mean":
        model, targets, kw = nn.Linear(5, 7).double(), "linear", {"reduction": "mean"}
    elif kind == "lstm":
        model, targets, kw = nn.LSTM(2, 6).double(), "recurrent", {}
    else:
        model, targets, kw = nn.RNN(2, 8).double(), "recurrent", {"exponent": 2}
    prior = rg.ModuliPrior(manifold, rg.DifferenceOfGaussians(), trainable=True, **kw)
    priors = rg.attach(model, prior, targets=targets)
    (name, term), = priors.terms.items()
    mask = (torch.rand(term.parameter.shape, generator=torch.Generator().manual_seed(seed)) < keep).double()
    pruning_targets.install_mask(model, name, mask)
    return model, prior, priors, term


def _all_grads(priors, term, lam=0.3):
    params = list(priors.parameters()) + [term.parameter]
    for p in params:
        p.grad = None
    value = priors.penalty()
    auto = torch.autograd.grad(value, params)
    fused_value = priors.add_penalty_grad_(lam)
    fused = [p.grad.clone() for p in params]
    with torch.no_grad():
        plain = priors.penalty()
    return value.item(), auto, fused_value.item(), fused, plain.item()


@pytest.mark.parametrize("manifold", [TORUS, mf.Sphere(2, 5.0), mf.KleinBottle(10.0)], ids=repr)
@pytest.mark.parametrize("kind", ["lstm", "grouped_conv", "linear_mean", "rnn_exponent2"])
def test_sparse_pass_equals_dense_pass_and_reference_on_pruned_weights(kind, manifold, monkeypatch):
    from moduli.regularizers import penalty as pen

    monkeypatch.setattr(pen, "CHUNK_ENTRIES", 8)  # several chunks in both passes
    model, prior, priors, term = _pruned_trained(kind, manifold, keep=0.3, seed=13)
    monkeypatch.setattr(pen, "SPARSE_DENSITY", 0.0)
    assert term._kept() is None
    dense = _all_grads(priors, term)
    monkeypatch.setattr(pen, "SPARSE_DENSITY", 1.0)
    assert term._kept() is not None and term._kept()[1].density < 1.0
    sparse = _all_grads(priors, term)
    # an independent reference: the whole coefficient matrix under plain autograd, on orig * mask
    params = list(priors.parameters()) + [term.parameter]
    c = prior.coefficients(term.layout, term.points_out, term.points_in)
    ref = rg.weighted_penalty(term.weight, c, prior.exponent, slice_norm=term.layout.slice_norm,
                              reduction=prior.reduction)
    ref_grads = torch.autograd.grad(ref, params)
    for result in (dense, sparse):
        value, auto, fused_value, fused, plain = result
        assert value == pytest.approx(ref.item(), rel=1e-12)
        assert fused_value == pytest.approx(ref.item(), rel=1e-12)
        assert plain == pytest.approx(ref.item(), rel=1e-12)
        for g, f, r in zip(auto, fused, ref_grads):
            assert torch.allclose(g, r, rtol=1e-10, atol=1e-13)
            assert torch.allclose(f, 0.3 * r, rtol=1e-10, atol=1e-13)
    mask = pruning_targets.mask_of(model, term.name)
    assert bool((sparse[1][-1][mask == 0] == 0).all())  # no gradient on pruned entries of orig


def test_sparse_pass_follows_mask_changes(monkeypatch):
    from moduli.regularizers import penalty as pen

    monkeypatch.setattr(pen, "SPARSE_DENSITY", 1.0)
    model, prior, priors, term = _pruned_trained("rnn_exponent2", TORUS, keep=0.6, seed=14)

    def reference():
        with torch.no_grad():
            c = prior.coefficients(term.layout, term.points_out, term.points_in)
            return rg.weighted_penalty(term.weight, c, prior.exponent).item()

    first = term._kept()[1]
    assert priors.penalty().item() == pytest.approx(reference(), rel=1e-12)
    assert term._kept()[1] is first  # gathered once per mask, not per call
    # pruning further changes the mask in place (its version counter moves)
    pruning_targets.install_mask(model, term.name, (torch.rand(8, 8) < 0.5).double())
    assert term._kept()[1] is not first
    assert term._kept()[1].index.numel() < first.index.numel()
    assert priors.penalty().item() == pytest.approx(reference(), rel=1e-12)
    # a new mask tensor (loaded or restored) is a new mask
    saved = pruning_targets.masks(model)
    prune.remove(model, "weight_hh_l0")
    pruning_targets.restore_masks(model, {k: torch.ones_like(v) for k, v in saved.items()})
    assert term._kept()[1].density == 1.0
    assert priors.add_penalty_grad_(1.0).item() == pytest.approx(reference(), rel=1e-12)
    # a write the version counter cannot see needs forget_mask()
    mask = pruning_targets.mask_of(model, term.name)
    mask.data[:4] = 0.0
    pruning_targets.reapply_mask(model, term.name)
    term.forget_mask()
    assert term._kept()[1].index.numel() == 32
    assert priors.penalty().item() == pytest.approx(reference(), rel=1e-12)


@pytest.mark.parametrize("kind", ["lstm", "l1", "mean", "exponent2", "linear_shuffled"])
def test_sparse_fixed_penalty_equals_dense_on_pruned_weights(kind, monkeypatch):
    from moduli.regularizers import penalty as pen

    torch.manual_seed(15)
    model, targets = nn.LSTM(2, 6).double(), "recurrent"
    prior = {
        "lstm": rg.ModuliPrior(TORUS, rg.DifferenceOfGaussians()),
        "l1": rg.L1Prior(),
        "mean": rg.ModuliPrior(TORUS, rg.Sinusoid(), reduction="mean"),
        "exponent2": rg.ModuliPrior(mf.KleinBottle(10.0), rg.DifferenceOfGaussians(), exponent=2),
        "linear_shuffled": rg.ShuffledPrior(rg.ModuliPrior(TORUS, rg.DifferenceOfGaussians())),
    }[kind]
    if kind == "linear_shuffled":
        model, targets = nn.Linear(5, 7).double(), "linear"
    priors = rg.attach(model, prior, targets=targets, generator=torch.Generator().manual_seed(3))
    (name, term), = priors.terms.items()
    mask = (torch.rand(term.parameter.shape, generator=torch.Generator().manual_seed(4)) < 0.3).double()
    pruning_targets.install_mask(model, name, mask)
    expected = rg.weighted_penalty(term.weight, term.coefficients(), prior.exponent, reduction=prior.reduction)
    ref_grad, = torch.autograd.grad(expected, term.parameter)
    for density in (0.0, 1.0):
        monkeypatch.setattr(pen, "SPARSE_DENSITY", density)
        assert (term._kept_entries() is not None) == (density == 1.0)
        term.parameter.grad = None
        value = priors.penalty()
        value.backward()
        assert value.item() == pytest.approx(expected.item(), rel=1e-12)
        assert torch.allclose(term.parameter.grad, ref_grad, rtol=1e-12, atol=1e-15)
        term.parameter.grad = torch.ones_like(term.parameter)
        fused = priors.add_penalty_grad_(0.3)
        assert fused.item() == pytest.approx(expected.item(), rel=1e-12)
        assert torch.allclose(term.parameter.grad, 1.0 + 0.3 * ref_grad, rtol=1e-12, atol=1e-15)
    # a further pruning step is picked up (the mask's version counter moved)
    pruning_targets.install_mask(model, name, torch.zeros_like(mask))
    assert priors.penalty().item() == 0.0


def test_fixed_penalty_backward_once_and_value_from_its_gradient():
    torch.manual_seed(16)
    model = nn.Conv2d(2, 3, 2).double()
    prior = rg.ModuliPrior(TORUS, rg.DifferenceOfGaussians(), exponent=1.5, reduction="mean")
    priors = rg.attach(model, prior, targets="conv")
    term = priors.terms["weight"]
    value = priors.penalty()
    with torch.no_grad():
        plain = priors.penalty()
    expected = rg.weighted_penalty(model.weight.detach(), term._base(), 1.5, slice_norm=True, reduction="mean")
    assert value.item() == pytest.approx(expected.item(), rel=1e-12)
    assert plain.item() == pytest.approx(expected.item(), rel=1e-12)
    value.backward(retain_graph=True)
    with pytest.raises(RuntimeError, match="one backward pass per penalty"):
        value.backward()


def test_torch_save_of_a_prior_set_round_trips_and_keeps_it_bound_to_its_model(tmp_path):
    """A prior set pickles with its model (its caches are dropped and rebuilt): saved together, the loaded
    prior set reads the loaded model; its penalty and its state_dict are those of the original."""
    from moduli import pruning
    from moduli.manifolds import catalog

    torch.manual_seed(0)
    model = nn.RNN(3, 12)
    pruning.GradualMagnitudePruning(model, 0.9, epochs=1, targets=["weight_hh_l0"]).step()
    priors = rg.attach(model, rg.ModuliPrior(catalog.build("klein"), rg.DifferenceOfGaussians(), trainable=True))
    before = priors.penalty().item()
    priors.add_penalty_grad_(1e-3)  # fills the sparse pass's caches (weak references)
    torch.save({"model": model, "priors": priors}, tmp_path / "both.pt")
    loaded = torch.load(tmp_path / "both.pt", weights_only=False)
    m2, p2 = loaded["model"], loaded["priors"]
    assert p2.penalty().item() == before
    with torch.no_grad():
        m2.weight_hh_l0_orig.mul_(2.0)  # the loaded prior set follows the loaded model, not the original
    assert p2.penalty().item() == pytest.approx(2 * before, rel=1e-6)
    assert priors.penalty().item() == before
    fresh = rg.attach(model, rg.ModuliPrior(catalog.build("klein"), rg.DifferenceOfGaussians(), trainable=True))
    fresh.load_state_dict(priors.state_dict())
    assert fresh.penalty().item() == before


def test_prox_soft_thresholds_each_entry_by_its_coefficient_and_gives_exact_zeros():
    from moduli.manifolds import catalog

    torch.manual_seed(0)
    lin = nn.Linear(5, 4)
    priors = rg.attach(lin, rg.ModuliPrior(catalog.build("circle"), rg.DifferenceOfGaussians()), targets="linear")
    c = priors.terms["weight"].coefficients().clone()
    w0 = lin.weight.detach().clone()
    lr, lam = 0.1, 0.7
    priors.prox_(lr, lam)
    expected = w0.sign() * (w0.abs() - lr * lam * c).clamp(min=0)  # the hand formula
    assert torch.equal(lin.weight.detach(), expected)
    assert int((lin.weight == 0).sum()) == int((w0.abs() <= lr * lam * c).sum()) > 0
    # it is the proximal point: W minimises |W - V|^2 / (2 lr) + lam * penalty(W) (checked against nudges)
    obj = lambda w: ((w - w0) ** 2).sum() / (2 * lr) + lam * (c * w.abs()).sum()  # noqa: E731
    best = obj(lin.weight.detach())
    for _ in range(20):
        assert obj(lin.weight.detach() + 1e-3 * torch.randn_like(w0)) >= best
    # mean reduction divides the thresholds; L1 is a uniform threshold; an RNN's gate blocks repeat them
    lin2 = nn.Linear(5, 4)
    w2 = lin2.weight.detach().clone()
    rg.attach(lin2, rg.L1Prior(reduction="mean"), targets="linear").prox_(1.0, 2.0)
    assert torch.allclose(lin2.weight.detach(), w2.sign() * (w2.abs() - 2.0 / w2.numel()).clamp(min=0))
    gru = nn.GRU(3, 6)
    g0 = gru.weight_hh_l0.detach().clone()
    pg = rg.attach(gru, rg.ModuliPrior(catalog.build("torus"), rg.DifferenceOfGaussians()))
    cg = pg.terms["weight_hh_l0"].coefficients()
    pg.prox_(0.01, 1.0)
    assert torch.allclose(gru.weight_hh_l0.detach(), g0.sign() * (g0.abs() - 0.01 * cg).clamp(min=0))


def test_prox_shrinks_kernel_slices_as_groups_and_refuses_what_it_cannot_do():
    from moduli.manifolds import catalog

    torch.manual_seed(1)
    conv = nn.Conv2d(3, 4, 3)
    priors = rg.attach(conv, rg.ModuliPrior(catalog.build("circle"), rg.DifferenceOfGaussians()), targets="conv")
    c = priors.terms["weight"].coefficients()  # [out, in]
    t0 = conv.weight.detach().clone()
    priors.prox_(0.5, 1.0)
    norms = t0.flatten(2).norm(dim=-1)
    factor = (1 - 0.5 * c / norms).clamp(min=0)
    assert torch.allclose(conv.weight.detach(), t0 * factor[..., None, None], atol=1e-7)
    squared = rg.attach(nn.Linear(3, 3), rg.ModuliPrior(catalog.build("circle"), rg.DifferenceOfGaussians(),
                                                        exponent=2), targets="linear")
    with pytest.raises(ValueError, match="exponent 2"):
        squared.prox_(0.1, 1.0)
    trained = rg.attach(nn.RNN(2, 4), rg.ModuliPrior(catalog.build("torus"), rg.DifferenceOfGaussians(),
                                                      trainable=True))
    with pytest.raises(ValueError, match="freeze"):
        trained.prox_(0.1, 1.0)
    trained.freeze().prox_(0.1, 1.0)
    with pytest.raises(ValueError, match="lr"):
        trained.prox_(float("nan"), 1.0)
