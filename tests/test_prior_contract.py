"""The prior contract, run against every prior kind in ``CASES`` -- the built-ins and two user-defined ones.

Each case says how to build the prior and how to compute, independently of
the library, the coefficients it should give a term (from the term's own
points and layout). Every test below then runs on every case and on an LSTM
(gate blocks), an MLP (two neuron groups per layer) and a convolution
(kernel slices).
"""

from __future__ import annotations

import importlib.util
import pathlib
from dataclasses import dataclass
from typing import Callable

import numpy as np
import pytest
import torch
from torch import nn

from moduli import manifolds as mf
from moduli import regularizers as rg
from moduli import targets as tg

ROOT = pathlib.Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("custom_prior", ROOT / "docs" / "examples" / "custom_prior.py")
custom = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(custom)

TORUS = mf.FlatTorus(2, 10.0)
DOG = rg.DifferenceOfGaussians()


def np_torus_cdist(a, b, period=10.0):
    diff = np.abs(a[:, None, :] - b[None, :, :]) % period
    diff = np.minimum(diff, period - diff)
    return np.sqrt((diff**2).sum(-1))


def np_dog(d, c=1.0, s1=0.5, s2=5**0.5):
    return c - c * (np.exp(-d**2 / s2**2) - np.exp(-d**2 / s1**2))


def _np(t):
    return t.detach().cpu().double().numpy()


def _moduli_reference(term):
    lay = term.layout
    return np.tile(np_dog(np_torus_cdist(_np(term.points_out), _np(term.points_in))), (lay.blocks, 1))


def _band_reference(term, width=1):
    lay = term.layout
    i, j = np.arange(lay.n_out)[:, None], np.arange(lay.cols)[None, :]
    return np.tile((np.abs(i - j) > width).astype(float), (lay.blocks, 1))


def _gauss(po, pi):
    return 1.0 - torch.exp(-TORUS.cdist(po, pi) ** 2)


def _function_reference(term):
    d = np_torus_cdist(_np(term.points_out), _np(term.points_in))
    return np.tile(1.0 - np.exp(-d**2), (term.layout.blocks, 1))


@dataclass
class PriorCase:
    name: str
    make: Callable[[], rg.Prior]
    reference: Callable            # term -> expected coefficients, shape layout.coefficient_shape
    elementwise: bool = False      # every entry alike (kernel entries too): no slice norm
    permuted: bool = False         # the reference holds the right multiset, not the right order


CASES = [
    PriorCase("moduli", lambda: rg.ModuliPrior(TORUS, DOG), _moduli_reference),
    PriorCase("shuffled", lambda: rg.ShuffledPrior(rg.ModuliPrior(TORUS, DOG)), _moduli_reference, permuted=True),
    PriorCase("l1", lambda: rg.L1Prior(), lambda t: np.ones(t.layout.coefficient_shape), elementwise=True),
    PriorCase("band (user)", lambda: custom.BandPrior(width=1), _band_reference),
    PriorCase("function (user)", lambda: custom.FunctionPrior(TORUS, _gauss), _function_reference),
]

MODELS = {
    "lstm": (lambda: nn.LSTM(2, 4).double(), "recurrent"),
    "mlp": (lambda: nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2)).double(), "linear"),
    "conv": (lambda: nn.Conv2d(2, 3, 2).double(), "conv"),
}


def reference_penalty(case, term, exponent=1.0):
    """Eq. 6 in numpy from the term's weight, layout and the case's coefficients."""
    w = _np(term.weight)
    if case.elementwise:
        return float((np.abs(w) ** exponent).sum())
    c = case.reference(term)
    if case.permuted:
        c = _np(term.coefficients())
    if term.layout.slice_norm:
        mag = np.sqrt((w.reshape(w.shape[0], w.shape[1], -1) ** 2).sum(-1)) ** exponent
    else:
        mag = np.abs(w) ** exponent
    return float((c * mag).sum())


@pytest.fixture(params=CASES, ids=lambda c: c.name)
def case(request):
    return request.param


@pytest.fixture(params=list(MODELS))
def model_targets(request):
    make, targets = MODELS[request.param]
    torch.manual_seed(0)
    return make(), targets


def test_coefficients_match_the_reference(case, model_targets):
    model, targets = model_targets
    priors = rg.attach(model, case.make(), targets=targets, generator=torch.Generator().manual_seed(1))
    for term in priors.terms.values():
        got, want = _np(term.coefficients()), case.reference(term)
        assert got.shape == term.layout.coefficient_shape
        if case.permuted:
            np.testing.assert_allclose(np.sort(got, axis=None), np.sort(want, axis=None), rtol=1e-12)
        else:
            np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-15)


def test_penalty_gradient_and_fused_step(case, model_targets):
    model, targets = model_targets
    priors = rg.attach(model, case.make(), targets=targets)
    assert isinstance(priors, rg.PriorSet)
    expected = sum(reference_penalty(case, t) for t in priors.terms.values())
    assert float(priors.penalty().detach()) == pytest.approx(expected, rel=1e-10)
    for name, term in priors.terms.items():
        (auto,) = torch.autograd.grad(priors.penalty(), term.parameter)
        for p in model.parameters():
            p.grad = None
        priors.add_penalty_grad_(2.0)
        np.testing.assert_allclose(_np(term.parameter.grad), 2.0 * _np(auto), rtol=1e-10, atol=1e-12)


def test_penalty_after_pruning_uses_effective_weight(case):
    lstm = nn.LSTM(2, 4).double()
    priors = rg.attach(lstm, case.make())
    name = next(iter(priors.terms))
    w = _np(tg.effective_weight(lstm, name))
    mask = np.abs(w) > np.median(np.abs(w))
    tg.install_mask(lstm, name, torch.as_tensor(mask))
    assert list(priors.terms) == [name]
    term = priors.terms[name]
    assert float(priors.penalty().detach()) == pytest.approx(reference_penalty(case, term), rel=1e-10)
    (g,) = torch.autograd.grad(priors.penalty(), term.parameter)
    assert np.all(_np(g)[~mask] == 0)


def test_state_roundtrip(case):
    lstm = nn.LSTM(2, 4).double()
    a = rg.attach(lstm, case.make(), generator=torch.Generator().manual_seed(2))
    b = rg.attach(lstm, case.make(), generator=torch.Generator().manual_seed(3))
    b.load_state_dict(a.state_dict())
    name = next(iter(a.terms))
    np.testing.assert_array_equal(_np(a.terms[name].coefficients()), _np(b.terms[name].coefficients()))
    assert float(a.penalty().detach()) == float(b.penalty().detach())


def test_coefficients_follow_the_model_dtype(case):
    model = nn.Linear(3, 4)
    priors = rg.attach(model, case.make(), targets="linear")
    assert priors.terms["weight"].coefficients().dtype == torch.float32
    model.double()
    assert priors.penalty().dtype == torch.float64


def test_trained_embeddings_freeze_and_roundtrip():
    lstm = nn.LSTM(2, 4).double()
    prior = rg.ModuliPrior(TORUS, DOG, trainable=True)
    a = rg.attach(lstm, prior)
    b = rg.attach(lstm, prior)
    assert len(list(a.parameters())) == 1
    a.freeze()
    assert a.frozen
    b.load_state_dict(a.state_dict())
    assert b.frozen
    name = next(iter(a.terms))
    np.testing.assert_array_equal(_np(a.terms[name].coefficients()), _np(b.terms[name].coefficients()))
    assert float(a.penalty().detach()) == float(b.penalty().detach())


def test_a_prior_without_coefficients_is_a_type_error_naming_it():
    class NoCoefficients(rg.Prior):
        pass

    with pytest.raises(TypeError, match="coefficients"):
        NoCoefficients()


def test_bad_coefficients_are_reported_by_prior_and_weight():
    class WrongShape(rg.Prior):
        def coefficients(self, layout, points_out, points_in, *, generator=None):
            return torch.ones(layout.n_out + 1, layout.cols)

    class Negative(rg.Prior):
        def coefficients(self, layout, points_out, points_in, *, generator=None):
            return -torch.ones(layout.n_out, layout.cols)

    class NotATensor(rg.Prior):
        def coefficients(self, layout, points_out, points_in, *, generator=None):
            return 1.0

    model = nn.RNN(2, 3)
    with pytest.raises(ValueError, match=r"WrongShape.coefficients for weight_hh_l0 must have shape"):
        rg.attach(model, WrongShape())
    with pytest.raises(ValueError, match="Negative.coefficients for weight_hh_l0 must be finite and non-negative"):
        rg.attach(model, Negative())
    with pytest.raises(TypeError, match="NotATensor.coefficients must return a floating torch.Tensor"):
        rg.attach(model, NotATensor())
    with pytest.raises(ValueError, match="no manifold"):
        rg.attach(model, custom.BandPrior(1), points={"weight_hh_l0": torch.zeros(3, 2)})


def test_user_prior_options_are_validated_by_the_base_class():
    with pytest.raises(ValueError, match="exponent must be"):
        custom.BandPrior(1, exponent=0.5)
    with pytest.raises(ValueError, match="reduction must be one of"):
        custom.BandPrior(1, reduction="max")
    prior = custom.BandPrior(1, exponent=2, reduction="mean")
    model = nn.RNN(2, 5).double()
    priors = rg.attach(model, prior)
    term = priors.terms["weight_hh_l0"]
    want = float((_band_reference(term) * _np(term.weight) ** 2).mean())
    assert float(priors.penalty().detach()) == pytest.approx(want, rel=1e-12)
