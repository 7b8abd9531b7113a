"""Device-agnostic checks shared by ``tests/test_cuda.py`` and ``tests/test_devices.py``.

Each ``check_*`` function runs one piece of the library on ``device`` in
float32 and compares it with the same computation on the CPU in float64 (the
reference), from inputs drawn once on the CPU. ``test_cuda.py`` calls them with
``"cuda"`` (skipped without a GPU); ``test_devices.py`` calls them with
``"cpu"``, so the bodies -- device moves, dtype casts, reference comparison --
run in every CI job, and with ``"meta"`` where shapes and devices alone are
meaningful (:func:`check_meta_cdist`, :func:`check_meta_trained_prior`).

This is a helper module, not a test module (pytest collects ``test_*.py`` only).
"""

from __future__ import annotations

import copy
import math

import torch
from torch import nn

from moduli import analysis, geodesic, pruning, targets
from moduli import manifolds as mf
from moduli import regularizers as rg
from moduli.manifolds import catalog

#: float32 against the float64 reference: relative tolerance, and the absolute one
#: per unit of a distance's scale (as ``moduli.manifolds.testing.check_manifold``).
RTOL = 1e-4
ATOL = 1e-4

#: Spaces whose ``cdist`` has no data-dependent control flow, so it runs on ``meta``.
#: (The sphere's no-grad fast path selects nearly antipodal pairs with ``nonzero``, and
#: ``QuotientSpace.canonical`` iterates until every point is in the domain: both read values.)
META_SPACES = ("circle", "torus", "klein", "torus6", "r3")


def quotient_spaces() -> dict:
    """User-defined quotients as in ``docs/manifolds.md``: the Klein bottle and a hexagonal torus."""
    s = 10.0
    eye, flip = torch.eye(2), torch.tensor([[1.0, 0.0], [0.0, -1.0]])
    klein = mf.QuotientSpace([(eye, [0.0, s]), (flip, [s, s])], domain=[s, s], name="klein",
                              diameter=s / math.sqrt(2.0))
    L = 4.0
    u, v = [L, 0.0], [L / 2, L * math.sqrt(3) / 2]
    hexagonal = mf.QuotientSpace([(eye, u), (eye, v)], domain=torch.tensor([u, v]).T, name="hexagonal",
                                  diameter=L / math.sqrt(3.0))  # the centre of a lattice triangle
    return {"quotient-klein": klein, "quotient-hexagonal": hexagonal}


def all_spaces() -> dict:
    """Every space of :mod:`moduli.manifolds.catalog`, the quotients above, a product and a graph."""
    import networkx as nx

    spaces = {name: catalog.build(name) for name in catalog.NAMES}
    spaces.update(quotient_spaces())
    spaces["product-circle-sphere"] = mf.Product(mf.Circle(5.0), mf.Sphere(2, 5.0))
    spaces["graph-grid"] = mf.GraphSpace(nx.grid_2d_graph(5, 6))
    return spaces


def _scale(space) -> float:
    d = space.diameter
    return max(1.0, d if math.isfinite(d) else 10.0 * math.sqrt(space.coord_dim))


def assert_close(actual, expected, *, scale: float = 1.0, rtol: float = RTOL, what: str = "") -> None:
    """``actual`` (any device) equals ``expected`` (CPU reference) at float32 tolerance."""
    actual = torch.as_tensor(actual).detach().to("cpu", torch.float64)
    expected = torch.as_tensor(expected).detach().to("cpu", torch.float64)
    torch.testing.assert_close(actual, expected, rtol=rtol, atol=ATOL * scale, msg=lambda m: f"{what}: {m}")


# ------------------------------------------------------------------ manifolds
def cdist_outputs(space, device, dtype, *, n: int = 48, m: int = 17, seed: int = 0) -> dict:
    """``cdist(x)``, ``cdist(x, y)`` and the gradient of ``cdist(x, y).sum()`` in ``x``."""
    g = torch.Generator().manual_seed(seed)
    x = space.random_uniform(n, generator=g, dtype=torch.float64)
    y = space.random_uniform(m, generator=g, dtype=torch.float64)
    x, y = x.to(device, dtype), y.to(device, dtype)
    out = {"cdist(x)": space.cdist(x), "cdist(x, y)": space.cdist(x, y)}
    if space.differentiable:
        xg = x.clone().requires_grad_(True)
        space.cdist(xg, y).sum().backward()
        out["grad"] = xg.grad
    for value in out.values():
        assert value.device.type == torch.device(device).type, f"{space!r} returned a tensor on {value.device}"
        assert value.dtype == dtype
    return out


def check_cdist(space, device) -> None:
    """``cdist`` (and its gradient) of ``space`` on ``device`` equals the CPU float64 result."""
    got = cdist_outputs(space, device, torch.float32)
    ref = cdist_outputs(space, "cpu", torch.float64)
    for key in ref:
        assert_close(got[key], ref[key], scale=_scale(space), what=f"{space!r} {key} on {device}")
    # bit-for-bit symmetry and a zero diagonal hold on every device
    d = got["cdist(x)"]
    assert torch.equal(d, d.T) or "quotient" in repr(space).lower()
    assert torch.all(torch.diagonal(d) == 0)


def check_meta_cdist(name: str) -> None:
    """``cdist`` on the ``meta`` device: every intermediate is created on the points' device."""
    space = catalog.build(name)
    x = space.random_uniform(12, device="meta")
    y = space.random_uniform(5, device="meta")
    assert x.device.type == "meta"
    d = space.cdist(x, validate=False)
    d2 = space.cdist(x, y, validate=False)
    assert d.device.type == d2.device.type == "meta"
    assert d.shape == (12, 12) and d2.shape == (12, 5)
    u = space.to_unconstrained(x).requires_grad_(True)
    space.cdist(space.from_unconstrained(u), y, validate=False).sum().backward()
    assert u.grad.device.type == "meta" and u.grad.shape == u.shape


# --------------------------------------------------------------------- priors
class SmallRNN(nn.Module):
    """A ReLU RNN and a readout: a recurrent target and a linear one."""

    def __init__(self, hidden: int = 24):
        super().__init__()
        self.rnn = nn.RNN(3, hidden, nonlinearity="relu", batch_first=True)
        self.out = nn.Linear(hidden, 2)

    def forward(self, x):
        h, _ = self.rnn(x)
        return self.out(h[:, -1])


def make_prior(manifold_name: str = "torus", trainable: bool = False) -> rg.ModuliPrior:
    return rg.ModuliPrior(catalog.build(manifold_name), rg.DifferenceOfGaussians(), trainable=trainable)


def prior_outputs(device, dtype, *, manifold_name: str, trainable: bool, move: str, lam: float = 1e-2) -> dict:
    """Penalty, its autograd gradient and the fused gradient of a prior on a small RNN.

    ``move`` says how the prior set reaches ``device``: ``"attach-on-device"``
    (model moved first), ``"move-both"`` (attached on the CPU, then model and
    prior set moved with ``.to``) or ``"follow"`` (attached on the CPU, only the
    model moved: the prior set follows at its next call).
    """
    torch.manual_seed(0)
    model = SmallRNN()
    g = torch.Generator().manual_seed(1)
    targets_spec = ["recurrent", "linear"]
    if move == "attach-on-device":
        # the same points in every dtype: torch.rand draws other numbers in float32 than in float64
        drawn = rg.attach(model.to(dtype=torch.float64), make_prior(manifold_name, trainable), targets_spec,
                          generator=g)
        points = {k: e.points.detach().to(device, dtype) for k, e in drawn.embeddings.items()}
        model = model.to(device, dtype)
        priors = rg.attach(model, make_prior(manifold_name, trainable), targets_spec, points=points)
    else:
        priors = rg.attach(model.to(dtype=torch.float64), make_prior(manifold_name, trainable), targets_spec,
                           generator=g)
        model = model.to(device, dtype)
        if move == "move-both":
            priors = priors.to(device, dtype)
        elif move != "follow":
            raise ValueError(f"unknown move {move!r}")
    value = priors.penalty()
    for t in priors.terms.values():
        assert t.coeff.device.type == torch.device(device).type, f"{t.name}'s coefficients stayed on {t.coeff.device}"
    for emb in priors.embeddings.values():
        assert emb.points.device.type == torch.device(device).type
    params = list(model.parameters())
    emb_params = list(priors.parameters())
    auto = torch.autograd.grad(lam * value, params + emb_params, allow_unused=True)
    for p in params + emb_params:
        p.grad = None
    fused_value = priors.add_penalty_grad_(lam)
    out = {"penalty": value, "fused value": fused_value}
    for i, (name, p) in enumerate(list(model.named_parameters()) + list(priors.named_parameters())):
        if auto[i] is None:
            assert p.grad is None or not bool(p.grad.any()), f"{name} got a fused gradient but no autograd one"
            continue
        out[f"autograd d/d{name}"] = auto[i]
        out[f"fused d/d{name}"] = p.grad
        assert p.grad.device.type == torch.device(device).type
    return out


def check_prior(device, *, manifold_name: str = "torus", trainable: bool = False, move: str = "attach-on-device"):
    """Penalty, autograd and fused gradients on ``device`` equal the CPU float64 reference,
    and the fused gradient equals the autograd one on ``device`` itself."""
    got = prior_outputs(device, torch.float32, manifold_name=manifold_name, trainable=trainable, move=move)
    ref = prior_outputs("cpu", torch.float64, manifold_name=manifold_name, trainable=trainable, move=move)
    assert set(got) == set(ref)
    assert any(k.startswith("fused d/d") for k in got)
    if trainable:
        assert any("emb" in k for k in got), "trained embeddings received no gradient"
    for key in ref:
        assert_close(got[key], ref[key], rtol=3e-4, scale=float(ref[key].detach().abs().max()) * 1e-2,
                     what=f"{manifold_name} trainable={trainable} {move} {key} on {device}")
    for key in got:
        if key.startswith("fused d/d"):
            name = key[len("fused d/d"):]
            a = got[f"autograd d/d{name}"]
            assert_close(got[key], a, rtol=3e-4, scale=float(a.detach().abs().max()) * 1e-2,
                         what=f"fused == autograd for {name} on {device}")


def check_meta_trained_prior() -> None:
    """A trained-embedding prior on a ``meta`` model: penalty and fused gradient stay on ``meta``.

    (A fixed embedding is not meta-able: :func:`attach` validates the inhibitor's
    values and the points, which reads them.)
    """
    model = SmallRNN().to("meta")
    priors = rg.attach(model, make_prior("torus", trainable=True), ["recurrent", "linear"])
    priors.check_finite = False  # the finiteness check reads a value
    value = priors.penalty()
    assert value.device.type == "meta" and value.shape == ()
    value.backward()
    for p in priors.parameters():
        assert p.grad is not None and p.grad.device.type == "meta"
    model.zero_grad(set_to_none=True)
    assert priors.add_penalty_grad_(1e-3) is None
    for name in ("rnn.weight_hh_l0", "out.weight"):
        grad = dict(model.named_parameters())[name].grad
        assert grad is not None and grad.device.type == "meta"


# -------------------------------------------------------------------- pruning
def pruning_outputs(device, dtype, *, mode: str) -> dict:
    """Gradual magnitude pruning of an LSTM to 75% over 3 epochs, then a lottery reset."""
    torch.manual_seed(0)
    lstm = nn.LSTM(3, 16, batch_first=True)  # float32 init: exact in float64, same magnitude order
    x = torch.randn(4, 6, 3, generator=torch.Generator().manual_seed(2))
    lstm = lstm.to(device, dtype)
    x = x.to(device, dtype)
    initial = copy.deepcopy(lstm.state_dict())
    gmp = pruning.GradualMagnitudePruning(lstm, 0.75, epochs=3)
    fractions = [gmp.step() for _ in range(3)]
    assert fractions == [0.0, 0.375, 0.75]
    masks = {name: m.clone() for name, m in pruning.masks(lstm).items()}
    for name, m in masks.items():
        assert m.device.type == torch.device(device).type, f"mask {name} on {m.device}"
    out_pruned, _ = lstm(x)
    before = {n: p.detach().clone() for n, p in lstm.named_parameters()}
    pruning.lottery_reset(lstm, mode, initial_state=initial if mode == "rewind" else None, seed=0)
    after_masks = pruning.masks(lstm)
    assert set(after_masks) == set(masks)
    for name in masks:
        assert torch.equal(after_masks[name], masks[name]), f"lottery_reset changed the mask of {name}"
    for name in masks:
        module, attr = targets.resolve(lstm, name)
        w = targets.effective_weight(module, attr)
        assert w.device.type == torch.device(device).type
        assert bool((w[masks[name] == 0] == 0).all()), f"a pruned entry of {name} is nonzero after the reset"
    if mode == "reinit":  # (a rewind of weights that never trained gives them back as they were)
        changed = [n for n, p in lstm.named_parameters() if not torch.equal(before[n], p.detach())]
        assert len(changed) == len(before), f"reinit left {set(before) - set(changed)} as they were"
    out_reset, _ = lstm(x)
    return {"masks": masks, "sparsity": targets.sparsity(lstm, names=list(masks)), "out pruned": out_pruned,
            "out reset": out_reset, "state": {k: v.clone() for k, v in lstm.state_dict().items()}}


def check_pruning(device) -> None:
    """Masks, sparsity and (rewind) weights and outputs on ``device`` equal the CPU float64 run;
    ``reinit`` draws its fresh values on the CPU, so they equal the CPU float32 run's exactly."""
    for mode in ("rewind", "reinit"):
        got = pruning_outputs(device, torch.float32, mode=mode)
        ref = pruning_outputs("cpu", torch.float64, mode=mode)
        assert got["sparsity"] == ref["sparsity"] == 0.75
        for name in ref["masks"]:
            assert torch.equal(got["masks"][name].cpu(), ref["masks"][name]), f"mask {name} differs on {device}"
        assert_close(got["out pruned"], ref["out pruned"], what=f"pruned LSTM output on {device}")
        if mode == "reinit":  # float32 and float64 draws differ: compare with the CPU float32 reset
            ref = pruning_outputs("cpu", torch.float32, mode=mode)
            for key in ref["state"]:
                assert torch.equal(got["state"][key].cpu(), ref["state"][key]), f"reinit {key} differs on {device}"
        assert_close(got["out reset"], ref["out reset"], what=f"{mode} LSTM output on {device}")
        for key in ref["state"]:
            assert_close(got["state"][key], ref["state"][key], what=f"{mode} {key} on {device}")


# ------------------------------------------------------------------- geodesic
def geodesic_outputs(device, dtype) -> dict:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))
    data = torch.randn(64, 4, generator=torch.Generator().manual_seed(3))
    net, data = net.to(device, dtype), data.to(device, dtype)
    path = geodesic.sparsify(net, data, 0.5, steps=30, progress=False)
    for p in path.model.parameters():
        assert p.device.type == torch.device(device).type
    with torch.no_grad():
        dense, sparse = net(data), path.model(data)
    return {"sparsity": targets.sparsity(path.model), "dense": dense, "sparse": sparse, "reached": path.reached}


def check_geodesic(device) -> None:
    """``geodesic.sparsify`` on ``device``: exact sparsity, and outputs close to the CPU float64 walk."""
    got = geodesic_outputs(device, torch.float32)
    ref = geodesic_outputs("cpu", torch.float64)
    assert got["sparsity"] == ref["sparsity"] == 0.5
    assert_close(got["dense"], ref["dense"], what=f"dense MLP on {device}")
    # the walk compounds float32 rounding over 30 trust-region steps: a looser tolerance
    assert_close(got["sparse"], ref["sparse"], rtol=1e-2, scale=1e2, what=f"sparsified MLP on {device}")


# ------------------------------------------------------------------- analysis
def check_persistence(device) -> None:
    """``analysis.persistence`` of points on ``device`` equals that of the CPU float64 points."""
    for name, maxdim, betti in (("circle", 1, [1, 1]), ("torus", 1, [1, 2])):
        space = catalog.build(name)
        x = space.random_uniform(100 if name == "torus" else 60, generator=torch.Generator().manual_seed(0),
                                 dtype=torch.float64)
        got = analysis.persistence(x.to(device, torch.float32), manifold=space, maxdim=maxdim)
        ref = analysis.persistence(x, manifold=space, maxdim=maxdim)
        for k in range(maxdim + 1):
            # bars shorter than the float32 tolerance may appear or vanish with rounding: compare the rest
            a, b = (torch.as_tensor(r.diagrams[k]) for r in (got, ref))
            a, b = (d[(d[:, 1] - d[:, 0]) > 10 * ATOL * _scale(space)] for d in (a, b))
            assert a.shape == b.shape, f"{name} H{k}: {len(a)} bars on {device}, {len(b)} in the reference"
            finite = torch.isfinite(b)
            assert torch.equal(torch.isfinite(a), finite)
            assert_close(a[finite], b[finite], scale=_scale(space), what=f"{name} H{k} diagram on {device}")
        threshold = 0.25 * space.diameter
        assert got.betti(min_persistence=threshold) == ref.betti(min_persistence=threshold) == betti
