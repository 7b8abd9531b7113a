"""The backend protocol's contract, run against every backend in ``CASES``.

A second backend (JAX/flax, say) adds a :class:`BackendCase` describing how
to build its small models, read arrays as numpy, prune, and take gradients;
every test below then runs on it unchanged. Reference values are computed
in numpy from the term's own points, so they do not depend on the backend.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import pytest
import torch

from moduli import backends
from moduli import manifolds as mf
from moduli import regularizers as rg
from moduli.backends import PriorSetProtocol, TargetLayout


@dataclass
class BackendCase:
    """How the contract suite drives one backend."""

    backend: backends.Backend
    make_lstm: Callable[[int, int], Any]        # (input, hidden) -> model with one LSTM layer
    make_mlp: Callable[[int, int, int], Any]    # (in, hidden, out) -> two linear layers
    make_conv: Callable[[int, int, int], Any]   # (in_ch, out_ch, kernel) -> one 2-d convolution
    to_numpy: Callable[[Any], np.ndarray]
    prune: Callable[[Any, str, np.ndarray], None]          # zero entries where mask == 0
    grads: Callable[[Any, Any, str], np.ndarray]           # (model, scalar, name) -> d scalar / d weight
    zero_grads: Callable[[Any, Any], None]                 # (model, prior set)
    fused_grad: Callable[[Any, str], np.ndarray]           # (model, name) -> accumulated .grad


def _torch_prune(model, name, mask):
    from torch.nn.utils import prune

    mod_name, _, attr = name.rpartition(".")
    module = model.get_submodule(mod_name) if mod_name else model
    prune.custom_from_mask(module, attr, torch.as_tensor(mask, dtype=torch.bool))


def _torch_param(model, name):
    from moduli.backends.torch import _resolve, stored_parameter

    return stored_parameter(*_resolve(model, name))


def _torch_grads(model, scalar, name):
    p = _torch_param(model, name)
    (g,) = torch.autograd.grad(scalar, p)
    return g.detach().double().numpy()


def _torch_zero(model, priors):
    for p in list(model.parameters()) + list(priors.parameters()):
        p.grad = None


TORCH = BackendCase(
    backend=next(b for b in backends.registered_backends() if b.name == "torch"),
    make_lstm=lambda i, h: torch.nn.LSTM(i, h).double(),
    make_mlp=lambda i, h, o: torch.nn.Sequential(torch.nn.Linear(i, h), torch.nn.Tanh(), torch.nn.Linear(h, o)).double(),
    make_conv=lambda i, o, k: torch.nn.Conv2d(i, o, k).double(),
    to_numpy=lambda t: t.detach().cpu().double().numpy(),
    prune=_torch_prune,
    grads=_torch_grads,
    zero_grads=_torch_zero,
    fused_grad=lambda model, name: _torch_param(model, name).grad.detach().double().numpy(),
)

CASES = [TORCH]

TORUS = mf.FlatTorus(2, 10.0)
DOG = rg.DifferenceOfGaussians()


def np_torus_cdist(a, b, period=10.0):
    diff = np.abs(a[:, None, :] - b[None, :, :]) % period
    diff = np.minimum(diff, period - diff)
    return np.sqrt((diff**2).sum(-1))


def np_dog(d, c=1.0, s1=0.5, s2=5**0.5):
    return c - c * (np.exp(-d**2 / s2**2) - np.exp(-d**2 / s1**2))


def reference_penalty(case, term, weight, exponent=1.0):
    """Eq. 6 in numpy from the term's points and layout."""
    lay = term.layout
    c = np_dog(np_torus_cdist(case.to_numpy(term.points_out), case.to_numpy(term.points_in)))
    w = case.to_numpy(weight)
    if lay.slice_norm:
        mag = np.sqrt((w.reshape(w.shape[0], w.shape[1], -1) ** 2).sum(-1)) ** exponent
    else:
        mag = np.abs(w) ** exponent
    return float((np.tile(c, (lay.blocks, 1)) * mag).sum())


@pytest.fixture(params=CASES, ids=lambda c: c.backend.name)
def case(request):
    return request.param


def test_backend_is_registered_and_chosen(case):
    model = case.make_lstm(2, 3)
    assert backends.get_backend(model) is case.backend
    assert case.backend.accepts(model) and not case.backend.accepts(object())


def test_find_targets_layouts(case):
    lstm = case.make_lstm(2, 5)
    (lay,) = case.backend.find_targets(lstm, "recurrent")
    assert isinstance(lay, TargetLayout)
    assert (lay.kind, lay.blocks, lay.n_out, lay.n_in, lay.shared) == ("recurrent", 4, 5, 5, True)
    assert lay.coefficient_shape == (20, 5)
    mlp = case.make_mlp(3, 4, 2)
    lays = case.backend.find_targets(mlp, "linear")
    assert [(x.n_out, x.n_in, x.shared, x.kind) for x in lays] == [(4, 3, False, "linear"), (2, 4, False, "linear")]
    assert len({x.out_group for x in lays} | {x.in_group for x in lays}) == 4
    (conv,) = case.backend.find_targets(case.make_conv(3, 4, 2), "conv")
    assert conv.slice_norm and conv.coefficient_shape == (4, 3)
    with pytest.raises(ValueError):
        case.backend.find_targets(mlp, "recurrent")
    with pytest.raises(ValueError):
        case.backend.find_targets(mlp, [lays[0].name.replace("weight", "bias")])


def test_read_weight_follows_pruning(case):
    mlp = case.make_mlp(3, 4, 2)
    (lay, _) = case.backend.find_targets(mlp, "linear")
    raw = case.to_numpy(case.backend.read_weight(mlp, lay.name))
    mask = np.arange(raw.size).reshape(raw.shape) % 3 != 0
    case.prune(mlp, lay.name, mask)
    assert np.array_equal(case.to_numpy(case.backend.read_weight(mlp, lay.name)), raw * mask)
    # the layout keeps the original name after pruning
    assert case.backend.find_targets(mlp, "linear")[0].name == lay.name


@pytest.mark.parametrize("which", ["lstm", "mlp", "conv"])
def test_penalty_gradient_and_fused_step(case, which):
    model = {"lstm": lambda: case.make_lstm(2, 4), "mlp": lambda: case.make_mlp(3, 4, 2),
             "conv": lambda: case.make_conv(2, 3, 2)}[which]()
    targets = {"lstm": "recurrent", "mlp": "linear", "conv": "conv"}[which]
    priors = rg.attach(model, rg.ModuliPrior(TORUS, DOG), targets=targets)
    assert isinstance(priors, PriorSetProtocol)
    value = priors.penalty()
    expected = sum(reference_penalty(case, t, case.backend.read_weight(model, n)) for n, t in priors.terms.items())
    assert float(case.to_numpy(value)) == pytest.approx(expected, rel=1e-10)
    name = next(iter(priors.terms))
    auto = case.grads(model, priors.penalty(), name)
    case.zero_grads(model, priors)
    priors.add_penalty_grad_(2.0)
    np.testing.assert_allclose(case.fused_grad(model, name), 2.0 * auto, rtol=1e-10, atol=1e-12)


def test_penalty_after_pruning_uses_effective_weight(case):
    lstm = case.make_lstm(2, 4)
    priors = rg.attach(lstm, rg.ModuliPrior(TORUS, DOG))
    name = next(iter(priors.terms))
    w = case.to_numpy(case.backend.read_weight(lstm, name))
    mask = np.abs(w) > np.median(np.abs(w))
    case.prune(lstm, name, mask)
    assert list(priors.terms) == [name]
    expected = reference_penalty(case, priors.terms[name], case.backend.read_weight(lstm, name))
    assert float(case.to_numpy(priors.penalty())) == pytest.approx(expected, rel=1e-10)
    g = case.grads(lstm, priors.penalty(), name)
    assert np.all(g[~mask] == 0)


def test_state_roundtrip_and_freeze(case):
    lstm = case.make_lstm(2, 4)
    prior = rg.ModuliPrior(TORUS, DOG, trainable=True)
    a = rg.attach(lstm, prior)
    b = rg.attach(lstm, prior)
    assert len(list(a.parameters())) == 1
    a.freeze()
    assert a.frozen
    b.load_state_dict(a.state_dict())
    assert b.frozen
    name = next(iter(a.terms))
    np.testing.assert_array_equal(case.to_numpy(a.terms[name].coefficients()),
                                  case.to_numpy(b.terms[name].coefficients()))
    assert float(case.to_numpy(a.penalty())) == float(case.to_numpy(b.penalty()))
