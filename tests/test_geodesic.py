"""Tests for moduli.geodesic (functional-geodesic sparsification, Eq. 7)."""

from __future__ import annotations

import gzip
import math
import struct
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn

from moduli import geodesic, targets
from moduli.geodesic import FunctionalMetric, trust_region_step

DT = torch.float64


pytestmark = pytest.mark.usefixtures("one_thread")


def tiny_net(seed=0, dtype=DT):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2)).to(dtype)


def flat_params(model):
    return torch.cat([p.detach().reshape(-1) for p in model.parameters()])


def explicit_jacobian(model, x):
    """J of shape [B*m, n] built with autograd (the thing the library never forms)."""
    names = [n for n, _ in model.named_parameters()]
    shapes = [p.shape for p in model.parameters()]
    sizes = [p.numel() for p in model.parameters()]

    def f(flat):
        params = {n: t.view(s) for n, t, s in zip(names, flat.split(sizes), shapes)}
        return torch.func.functional_call(model, params, (x,)).reshape(-1)

    return torch.autograd.functional.jacobian(f, flat_params(model))


def explicit_metric(model, x, kind="output"):
    J = explicit_jacobian(model, x)
    B = x.shape[0]
    if kind == "output":
        return J.T @ J / B
    out = model(x).detach()
    m = out.shape[1]
    G = torch.zeros(J.shape[1], J.shape[1], dtype=J.dtype)
    for b in range(B):
        p = torch.softmax(out[b], 0)
        H = torch.diag(p) - torch.outer(p, p)
        Jb = J[b * m : (b + 1) * m]
        G += Jb.T @ H @ Jb
    return G / B


def metric_of(model, x, kind="output"):
    names = [n for n, _ in model.named_parameters()]
    shapes = [p.shape for p in model.parameters()]
    return FunctionalMetric(model, names, shapes, dict(model.named_buffers()), x, flat_params(model), kind)


def dense_eq7(G, v, eps, beta):
    """Explicit solution of Eq. 7 by bisection on the multiplier, dense solves only."""
    n = G.shape[0]
    I = torch.eye(n, dtype=G.dtype)
    evals = torch.linalg.eigvalsh(G)
    # interior candidate (G invertible on the relevant subspace): least-squares solve
    th0 = torch.linalg.lstsq(G, beta * v / 2).solution
    if evals.min() > 1e-10 and float(th0 @ th0) <= eps:
        return th0, 0.0
    lo, hi = 0.0, beta * float(v.norm()) / (2 * math.sqrt(eps)) + 1.0
    for _ in range(200):
        mid = (lo + hi) / 2
        th = torch.linalg.solve(G + mid * I, beta * v / 2)
        if float(th @ th) > eps:
            lo = mid
        else:
            hi = mid
    return torch.linalg.solve(G + hi * I, beta * v / 2), hi


# --------------------------------------------------------------------------- metric and step


@pytest.mark.parametrize("kind", ["output", "fisher"])
def test_matvec_matches_explicit_metric(kind):
    net = tiny_net()
    x = torch.randn(5, 3, dtype=DT, generator=torch.Generator().manual_seed(1))
    G = explicit_metric(net, x, kind)
    g = metric_of(net, x, kind)
    t = torch.randn(G.shape[0], dtype=DT, generator=torch.Generator().manual_seed(2))
    torch.testing.assert_close(g.matvec(t), G @ t, rtol=1e-10, atol=1e-12)
    assert g.sq_norm(t) == pytest.approx(float(t @ G @ t), rel=1e-10)


@pytest.mark.parametrize("kind", ["output", "fisher"])
@pytest.mark.parametrize("eps,beta", [(0.01, 1.0), (1e-4, 5.0), (0.05, 0.3)])
def test_step_matches_explicit_eq7_on_boundary(kind, eps, beta):
    net = tiny_net(3)
    x = torch.randn(5, 3, dtype=DT, generator=torch.Generator().manual_seed(4))
    G = explicit_metric(net, x, kind)  # 26 x 26, rank <= 10: constraint must be active
    n = G.shape[0]
    v = torch.randn(n, dtype=DT, generator=torch.Generator().manual_seed(5))
    theta, info = trust_region_step(metric_of(net, x, kind).matvec, v, eps=eps, beta=beta, max_iter=n)
    ref, lam = dense_eq7(G, v, eps, beta)
    torch.testing.assert_close(theta, ref, rtol=1e-6, atol=1e-9)
    assert info.boundary and float(theta @ theta) == pytest.approx(eps, rel=1e-9)
    assert info.lam == pytest.approx(lam, rel=1e-6)
    # KKT stationarity: (G + lam I) theta = beta v / 2
    torch.testing.assert_close(G @ theta + info.lam * theta, beta * v / 2, rtol=1e-6, atol=1e-9)
    assert info.quad == pytest.approx(float(theta @ G @ theta), rel=1e-8, abs=1e-14)
    assert info.lin == pytest.approx(float(theta @ v), rel=1e-10)


def test_step_interior_solution_is_newton_step():
    # SPD metric and a wide trust region: theta = beta/2 G^{-1} v, lam = 0
    A = torch.randn(6, 6, dtype=DT, generator=torch.Generator().manual_seed(0))
    G = A @ A.T + torch.eye(6, dtype=DT)
    v = torch.randn(6, dtype=DT, generator=torch.Generator().manual_seed(1))
    theta, info = trust_region_step(lambda z: G @ z, v, eps=1e6, beta=0.7, max_iter=6)
    torch.testing.assert_close(theta, torch.linalg.solve(G, 0.35 * v))
    assert info.lam == 0.0 and not info.boundary


def test_truncated_lanczos_is_feasible_descent_and_not_better_than_exact():
    net = tiny_net(7)
    x = torch.randn(8, 3, dtype=DT, generator=torch.Generator().manual_seed(8))
    G = explicit_metric(net, x)
    v = torch.randn(G.shape[0], dtype=DT, generator=torch.Generator().manual_seed(9))
    ref, _ = dense_eq7(G, v, 0.01, 1.0)
    best = float(ref @ G @ ref - ref @ v)
    prev = 0.0
    for k in (1, 2, 4, 8, 26):
        th, info = trust_region_step(lambda z: G @ z, v, eps=0.01, beta=1.0, max_iter=k)
        obj = float(th @ G @ th - th @ v)
        assert float(th @ th) <= 0.01 * (1 + 1e-9)
        assert best - 1e-12 <= obj <= prev + 1e-12  # nested Krylov spaces only improve
        assert info.iterations <= k
        prev = obj
    assert prev == pytest.approx(best, rel=1e-8)


def test_step_zero_direction_is_zero():
    th, info = trust_region_step(lambda z: z, torch.zeros(4), eps=0.01, beta=1.0)
    assert torch.equal(th, torch.zeros(4)) and info.iterations == 0


# --------------------------------------------------------------------------- projections


def test_magnitude_masks_exact_count_and_threshold():
    g = torch.Generator().manual_seed(0)
    ws = {"a": torch.randn(7, 5, generator=g), "b": torch.randn(11, generator=g)}
    masks = geodesic.magnitude_masks(ws, 0.6)
    kept = torch.cat([ws[n][masks[n]].abs().reshape(-1) for n in ws])
    dropped = torch.cat([ws[n][~masks[n]].abs().reshape(-1) for n in ws])
    assert dropped.numel() == round(0.6 * 46)
    assert float(dropped.max()) <= float(kept.min())


def test_unit_masks_remove_smallest_rows_per_layer():
    w = torch.tensor([[3.0, 0.0], [0.1, 0.1], [0.0, 2.0], [0.5, 0.0]])
    conv = torch.zeros(4, 2, 3, 3)
    conv[0] += 1.0
    conv[3] += 0.2
    m = geodesic.unit_masks({"fc": w, "conv": conv}, 0.5)
    assert m["fc"].tolist() == [True, False, True, False]
    assert m["conv"].tolist() == [True, False, False, True]


# --------------------------------------------------------------------------- sparsify


def small_mlp(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(6, 10), nn.ReLU(), nn.Linear(10, 4))  # 60 + 40 = 100 weights


def test_sparsify_exact_target_sparsity_and_untouched_input():
    net = small_mlp()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    x = torch.randn(40, 6, generator=torch.Generator().manual_seed(1))
    path = geodesic.sparsify(net, (x, torch.zeros(40)), 0.9, mode="eq7", steps=150, eps=0.01, beta_absolute=2.0,
                             progress=False)
    ws = [path.model[0].weight, path.model[2].weight]
    assert sum(int((w == 0).sum()) for w in ws) == 90
    assert targets.sparsity(ws) == 0.9
    # the masks describe the zeros, biases were not sparsified
    assert torch.equal(path.masks["0.weight"], path.model[0].weight != 0)
    assert bool((path.model[0].bias != 0).all())
    for k, v in net.state_dict().items():
        assert torch.equal(v, before[k])
    assert path.history[-1]["kind"] == "projection" and path.history[-1]["distance"] == 0.0


def test_sparsify_bookkeeping_matches_explicit_metric():
    net = tiny_net(11)
    x = torch.randn(6, 3, dtype=DT, generator=torch.Generator().manual_seed(12))
    path = geodesic.sparsify(net, x, 0.5, mode="eq7", steps=40, eps=0.004, beta_absolute=1.0, keep_every=1, lanczos_iters=26,
                             progress=False)
    h = path.history
    steps = [r for r in h if r["kind"] == "step"]
    assert len(steps) >= 2
    assert h[0]["path_length"] == 0.0 and h[0]["distance"] > 0
    lengths = [r["step_length"] for r in h]
    assert h[-1]["path_length"] == pytest.approx(sum(lengths), rel=1e-12)
    assert h[-1]["energy"] == pytest.approx(sum(s * s for s in lengths), rel=1e-12)
    assert h[-1]["euclidean_length"] == pytest.approx(sum(r["step_norm"] for r in h), rel=1e-12)
    assert all(r["step_norm"] <= math.sqrt(0.004) * (1 + 1e-9) for r in steps)
    # each step's length is sqrt(Δᵀ G(w_t) Δ) with G built explicitly at w_t
    probe = tiny_net(11)
    for (t0, w0), (t1, w1), row in zip(path.points[:-2], path.points[1:-1], steps):
        assert t1 == t0 + 1 == row["step"]
        torch.nn.utils.vector_to_parameters(w0, probe.parameters())
        G = explicit_metric(probe, x)
        d = w1 - w0
        assert row["step_length"] == pytest.approx(math.sqrt(float(d @ G @ d)), rel=1e-6, abs=1e-12)
        assert row["step_norm"] == pytest.approx(float(d.norm()), rel=1e-10)
    # the Cauchy-Schwarz relation between length and energy
    assert h[-1]["path_length"] ** 2 <= len(lengths) * h[-1]["energy"] * (1 + 1e-12)


def test_geodesic_preserves_function_better_than_one_shot_projection():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 3))
    x = torch.randn(100, 8, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        y0 = net(x)
    path = geodesic.sparsify(net, x, 0.7, mode="eq7", steps=120, eps=0.1, beta_absolute=0.05, lanczos_iters=10,
                             progress=False)
    assert path.reached
    masks = geodesic.magnitude_masks({"0": net[0].weight, "2": net[2].weight}, 0.7)
    one = nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 3))
    one.load_state_dict(net.state_dict())
    with torch.no_grad():
        one[0].weight.mul_(masks["0"])
        one[2].weight.mul_(masks["2"])
        err_geo = float(((path.model(x) - y0) ** 2).sum(1).mean())
        err_one = float(((one(x) - y0) ** 2).sum(1).mean())
    # measured: 0.050 vs 0.130
    assert err_geo < 0.5 * err_one


def test_structured_removes_whole_units_and_biases():
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(1, 6, 3), nn.ReLU(), nn.Flatten(), nn.Linear(6 * 4 * 4, 5), nn.ReLU(), nn.Linear(5, 3)
    )
    x = torch.randn(16, 1, 6, 6, generator=torch.Generator().manual_seed(1))
    path = geodesic.sparsify(net, x, 4 / 6, structured="filters", steps=60, eps=0.02, progress=False)
    conv = path.model[0]
    zero_filters = (conv.weight.reshape(6, -1) == 0).all(1)
    assert int(zero_filters.sum()) == 4
    assert bool((conv.bias[zero_filters] == 0).all())
    assert torch.equal(path.masks["0.weight"], ~zero_filters)
    # Linear layers were not targets
    assert bool((path.model[3].weight != 0).all())
    # "units" targets every layer but the output layer
    assert list(geodesic.target_weights(net, structured="units")) == ["0", "3"]
    p2 = geodesic.sparsify(net, x, 0.4, structured="units", steps=5, progress=False)
    assert int((p2.model[3].weight == 0).all(1).sum()) == 2
    assert int((p2.model[0].weight.reshape(6, -1) == 0).all(1).sum()) == 2


def test_batchnorm_and_dropout_handled_in_eval_mode():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(5, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Dropout(0.5), nn.Linear(8, 3))
    net.train()
    x = torch.randn(32, 5, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        for _ in range(3):
            net(x)  # non-trivial running statistics
    stats = net[1].running_mean.clone()
    path = geodesic.sparsify(net, x, 0.5, steps=30, progress=False)
    assert net.training and path.model.training  # flag restored, input untouched
    assert torch.equal(net[1].running_mean, stats)
    assert torch.equal(path.model[1].running_mean, stats)  # BN statistics frozen during the walk
    assert targets.sparsity([path.model[0].weight, path.model[4].weight]) == 0.5
    # BN affine parameters moved with the rest (the walk moves every trainable parameter)
    assert not torch.equal(path.model[1].weight, net[1].weight)


def test_evaluate_and_dataloader():
    net = small_mlp(1)
    x = torch.randn(64, 6, generator=torch.Generator().manual_seed(3))
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, torch.zeros(64)), batch_size=16)
    calls = []

    def evaluate(m):
        calls.append(1)
        return {"out_norm": float(m(x).norm())}

    path = geodesic.sparsify(net, loader, 0.5, steps=12, eval_every=5, evaluate=evaluate, progress=False)
    evaluated = [r["step"] for r in path.history if "out_norm" in r]
    assert evaluated[0] == 0 and evaluated[-1] == path.history[-1]["step"]
    assert all(s % 5 == 0 for s in evaluated[:-1]) and len(calls) == len(evaluated)
    assert path.column("out_norm") == [r["out_norm"] for r in path.history if "out_norm" in r]


# --------------------------------------------------------------------------- transfer and line length


def test_transfer_reaches_target_and_keeps_points():
    torch.manual_seed(0)
    a, b = nn.Linear(4, 3), nn.Linear(4, 3)
    x = torch.randn(30, 4, generator=torch.Generator().manual_seed(1))
    path = geodesic.transfer(a, b, x, steps=400, eps=0.04, beta_absolute=2.0, keep_every=5, progress=False)
    assert path.reached
    d = path.column("distance")
    assert d[0] == pytest.approx(float((flat_params(a) - flat_params(b)).norm()))
    assert d[-1] <= 1e-2 * d[0]
    mid = path.model_at(len(path.points) // 2)
    assert isinstance(mid, nn.Linear)
    torch.testing.assert_close(flat_params(path.model_at(-1)), flat_params(path.model))


def test_line_length_of_linear_model_is_exact():
    # a linear model has a constant metric: the line's length is sqrt(Δᵀ G Δ)
    torch.manual_seed(0)
    a, b = nn.Linear(3, 2).to(DT), nn.Linear(3, 2).to(DT)
    x = torch.randn(10, 3, dtype=DT, generator=torch.Generator().manual_seed(1))
    G = explicit_metric(a, x)
    d = flat_params(b) - flat_params(a)
    out = geodesic.line_length(a, b, x, segments=3)
    assert out["path_length"] == pytest.approx(math.sqrt(float(d @ G @ d)), rel=1e-10)
    assert out["energy"] == pytest.approx(float(d @ G @ d) / 3, rel=1e-10)
    assert out["euclidean_length"] == pytest.approx(float(d.norm()), rel=1e-12)


# --------------------------------------------------------------------------- bad inputs


@pytest.mark.parametrize(
    "kwargs,exc,match",
    [
        ({"target_sparsity": 1.2}, ValueError, "target_sparsity"),
        ({"target_sparsity": -0.1}, ValueError, "target_sparsity"),
        ({"target_sparsity": True}, TypeError, "target_sparsity"),
        ({"target_sparsity": "0.5"}, TypeError, "target_sparsity"),
        ({"eps": -1.0}, ValueError, "eps"),
        ({"eps": float("nan")}, ValueError, "eps"),
        ({"beta": 0.0}, ValueError, "beta"),
        ({"metric": "kl"}, ValueError, "metric"),
        ({"structured": "rows"}, ValueError, "structured"),
        ({"targets": ["nope"]}, ValueError, "nope"),
        ({"steps": -3}, ValueError, "steps"),
        ({"batch_size": 0}, ValueError, "batch_size"),
        ({"evaluate": 3}, TypeError, "evaluate"),
        ({"restore": -1.0}, ValueError, "restore"),
        ({"trust": 0.0}, ValueError, "trust"),
        ({"beta_absolute": -1.0}, ValueError, "beta_absolute"),
        ({"lanczos_tol": 0.0}, ValueError, "lanczos_tol"),
    ],
)
def test_sparsify_bad_arguments(kwargs, exc, match):
    net = small_mlp()
    args = {"target_sparsity": 0.5, **kwargs}
    with pytest.raises(exc, match=match):
        geodesic.sparsify(net, torch.randn(8, 6), args.pop("target_sparsity"), progress=False, **args)


def test_bad_data_and_models():
    net = small_mlp()
    x = torch.randn(8, 6)
    x[3, 2] = float("nan")
    with pytest.raises(ValueError, match=r"NaN.*|.*shape \(8, 6\)"):
        geodesic.sparsify(net, x, 0.5, progress=False)
    with pytest.raises(TypeError, match="data"):
        geodesic.sparsify(net, "digits", 0.5, progress=False)
    with pytest.raises(ValueError, match="rows"):
        geodesic.sparsify(net, (torch.randn(8, 6), torch.zeros(7)), 0.5, progress=False)
    with pytest.raises(TypeError, match="model"):
        geodesic.sparsify("net", torch.randn(8, 6), 0.5, progress=False)
    with pytest.raises(ValueError, match="same trainable parameters"):
        geodesic.transfer(nn.Linear(6, 3), nn.Linear(6, 4), torch.randn(8, 6), progress=False)
    with pytest.raises(TypeError, match="1-D"):
        trust_region_step(lambda z: z, torch.ones(2, 2), eps=0.1, beta=1.0)
    with pytest.raises(ValueError, match="eps"):
        trust_region_step(lambda z: z, torch.ones(2), eps=0.0, beta=1.0)


# --------------------------------------------------------------------------- IDX loader


def _write_idx(path, arr, code, compress=False):
    arr = np.asarray(arr)
    head = bytes([0, 0, code, arr.ndim]) + struct.pack(">" + "I" * arr.ndim, *arr.shape)
    be = {0x08: ">u1", 0x0D: ">f4"}[code]
    data = head + arr.astype(be).tobytes()
    with (gzip.open if compress else open)(path, "wb") as fh:
        fh.write(data)


@pytest.mark.parametrize("compress", [False, True])
def test_load_mnist_from_small_idx_files(tmp_path, compress):
    rng = np.random.default_rng(0)
    imgs = rng.integers(0, 256, size=(5, 4, 3), dtype=np.uint8)
    labels = np.array([3, 1, 4, 1, 5], dtype=np.uint8)
    sfx = ".gz" if compress else ""
    _write_idx(tmp_path / f"t10k-images-idx3-ubyte{sfx}", imgs, 0x08, compress)
    _write_idx(tmp_path / f"t10k-labels-idx1-ubyte{sfx}", labels, 0x08, compress)
    x, y = geodesic.load_mnist(tmp_path, "test")
    assert x.shape == (5, 12) and x.dtype == torch.float32
    torch.testing.assert_close(x, torch.tensor(imgs.reshape(5, 12) / 255.0, dtype=torch.float32))
    assert y.tolist() == [3, 1, 4, 1, 5] and y.dtype == torch.int64
    x4, _ = geodesic.load_mnist(tmp_path, "test", flatten=False)
    assert x4.shape == (5, 1, 4, 3)
    with pytest.raises(FileNotFoundError, match="train-images"):
        geodesic.load_mnist(tmp_path, "train")
    with pytest.raises(ValueError, match="split"):
        geodesic.load_mnist(tmp_path, "val")


def test_load_idx_float_and_malformed(tmp_path):
    arr = np.arange(6, dtype=np.float32).reshape(2, 3) / 7
    _write_idx(tmp_path / "f.idx", arr, 0x0D)
    np.testing.assert_array_equal(geodesic.load_idx(tmp_path / "f.idx"), arr)
    (tmp_path / "bad").write_bytes(b"\x01\x02\x08\x01\x00\x00\x00\x01\x00")
    with pytest.raises(ValueError, match="magic"):
        geodesic.load_idx(tmp_path / "bad")
    (tmp_path / "short").write_bytes(bytes([0, 0, 8, 1]) + struct.pack(">I", 10) + b"\x00" * 3)
    with pytest.raises(ValueError, match="payload"):
        geodesic.load_idx(tmp_path / "short")


def test_compensate_mode_lands_exactly_on_the_hyperplane():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 3))
    x = torch.randn(100, 8, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        y0 = net(x)
    errs = {}
    for restore in (0.0, 1.0):
        path = geodesic.sparsify(net, x, 0.7, steps=30, eps=0.05, mode="compensate", restore=restore,
                                 lanczos_iters=10, progress=False)
        h = path.history
        assert [r["step"] for r in h if r["kind"] == "step"] == list(range(1, 31))
        assert h[-2]["distance"] == 0.0 and h[-1]["step_norm"] == 0.0  # no final jump
        zeros = int((path.model[0].weight == 0).sum() + (path.model[2].weight == 0).sum())
        assert path.reached and zeros == round(0.7 * 176)
        with torch.no_grad():
            errs[restore] = float(((path.model(x) - y0) ** 2).sum(1).mean())
    one = geodesic.magnitude_masks({"0": net[0].weight, "2": net[2].weight}, 0.7)
    with torch.no_grad():
        h1 = torch.tanh(x @ (net[0].weight * one["0"]).T + net[0].bias)
        err_one = float(((h1 @ (net[2].weight * one["2"]).T + net[2].bias - y0) ** 2).sum(1).mean())
    # measured: 0.051 (restore 0), 0.067 (restore 1) vs 0.130 one-shot
    assert errs[0.0] < 0.6 * err_one and errs[1.0] < 0.6 * err_one


# --------------------------------------------------------------------------- scale-free defaults


class Scaled(nn.Module):
    """``s · net(x)``: the same network with its metric multiplied by ``s²``."""

    def __init__(self, net, s):
        super().__init__()
        self.net, self.s = net, s

    def forward(self, x):
        return self.s * self.net(x)


@pytest.mark.parametrize("mode", ["eq7", "compensate"])
def test_defaults_do_not_depend_on_the_units_of_the_outputs(mode):
    # multiplying the outputs by 30 multiplies the metric by 900; with the relative beta
    # and trust radius the walk is the same, with the paper's absolute beta it is not
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(6, 12), nn.Tanh(), nn.Linear(12, 3)).double()
    x = torch.randn(40, 6, dtype=DT, generator=torch.Generator().manual_seed(1))
    kw = dict(mode=mode, steps=15, lanczos_iters=12, progress=False)
    a = geodesic.sparsify(Scaled(net, 1.0), x, 0.8, **kw)
    b = geodesic.sparsify(Scaled(net, 30.0), x, 0.8, **kw)
    da, db = [r["distance"] for r in a.history], [r["distance"] for r in b.history]
    assert da == pytest.approx(db, rel=1e-6, abs=1e-9)
    if mode == "eq7":
        kw.update(beta_absolute=1.0)
        c = geodesic.sparsify(Scaled(net, 1.0), x, 0.8, **kw)
        d = geodesic.sparsify(Scaled(net, 30.0), x, 0.8, **kw)
        dc, dd = [r["distance"] for r in c.history], [r["distance"] for r in d.history]
        assert len(dc) != len(dd) or max(abs(u - w) for u, w in zip(dc, dd)) > 1e-3


def test_default_sparsify_preserves_function_better_than_one_shot():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 3))
    x = torch.randn(100, 8, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        y0 = net(x)
    path = geodesic.sparsify(net, x, 0.7, steps=30, progress=False)  # the other settings are defaults
    assert targets.sparsity(path.model) == pytest.approx(0.7, abs=1 / 176)
    masks = geodesic.magnitude_masks({"0": net[0].weight, "2": net[2].weight}, 0.7)
    with torch.no_grad():
        h1 = torch.tanh(x @ (net[0].weight * masks["0"]).T + net[0].bias)
        err_one = float(((h1 @ (net[2].weight * masks["2"]).T + net[2].bias - y0) ** 2).sum(1).mean())
        err_geo = float(((path.model(x) - y0) ** 2).sum(1).mean())
    # measured: 0.067 against 0.130 one-shot
    assert err_geo < 0.6 * err_one


def test_early_stopped_lanczos_meets_its_residual():
    net = tiny_net(7)
    x = torch.randn(8, 3, dtype=DT, generator=torch.Generator().manual_seed(8))
    G = explicit_metric(net, x) + 1e-3 * torch.eye(26, dtype=DT)
    v = torch.randn(26, dtype=DT, generator=torch.Generator().manual_seed(9))
    for eps in (1e-4, 1e4):  # boundary and interior
        full, info_full = trust_region_step(lambda z: G @ z, v, eps=eps, beta=1.0, max_iter=26)
        th, info = trust_region_step(lambda z: G @ z, v, eps=eps, beta=1.0, max_iter=26, rtol=1e-3)
        assert info.iterations < info_full.iterations
        # the reported residual is the true one of the KKT system 2 (G + lam I) theta = beta v
        true = float((2 * (G @ th + info.lam * th) - v).norm() / v.norm())
        assert true == pytest.approx(info.residual, rel=1e-4, abs=1e-10) and info.residual <= 1e-3
        assert float(th @ th) <= eps * (1 + 1e-9)
        assert float((th - full).norm() / full.norm()) < 0.05


# --------------------------------------------------------------------------- recurrent weights


class RNNNet(nn.Module):
    def __init__(self, cls=nn.RNN):
        super().__init__()
        torch.manual_seed(0)
        self.rnn, self.fc = cls(3, 6, batch_first=True), nn.Linear(6, 2)

    def forward(self, x):
        out, _ = self.rnn(x)
        return self.fc(out[:, -1])


@pytest.mark.parametrize("cls", [nn.RNN, nn.GRU])
def test_recurrent_weights_are_sparsified_too(cls):
    net = RNNNet(cls)
    x = torch.randn(12, 5, 3, generator=torch.Generator().manual_seed(1))
    path = geodesic.sparsify(net, x, 0.5, steps=5, lanczos_iters=8, progress=False)
    assert targets.sparsity(path.model) == pytest.approx(0.5, abs=1e-9)  # over every weight matrix
    assert set(path.masks) == {"rnn.weight_ih_l0", "rnn.weight_hh_l0", "fc.weight"}
    assert float((path.model.rnn.weight_hh_l0 == 0).float().mean()) > 0
    # a parameter name selects one recurrent weight
    only = geodesic.sparsify(net, x, 0.5, targets=["rnn.weight_hh_l0"], steps=3, progress=False)
    assert set(only.masks) == {"rnn.weight_hh_l0"}
    assert float((only.model.rnn.weight_hh_l0 == 0).float().mean()) == 0.5


def test_weights_the_walk_cannot_move_are_refused_by_name():
    net = RNNNet()
    net.rnn.weight_hh_l0.requires_grad_(False)
    with pytest.raises(ValueError, match=r"'rnn\.weight_hh_l0'.*miss target_sparsity=0\.5"):
        geodesic.sparsify(net, torch.randn(4, 5, 3), 0.5, steps=2, progress=False)
    # leaving it out explicitly is fine
    path = geodesic.sparsify(net, torch.randn(4, 5, 3), 0.5, targets=["rnn.weight_ih_l0", "fc"], steps=2,
                             progress=False)
    assert set(path.masks) == {"rnn.weight_ih_l0", "fc.weight"}


# --------------------------------------------------------------------------- options


@pytest.mark.parametrize(
    "field,value,exc",
    [("steps", -1, ValueError), ("steps", 2.0, TypeError), ("eps", 0.0, ValueError), ("beta", "1", TypeError),
     ("metric", "kl", ValueError), ("restore", -0.5, ValueError), ("evaluate", 3, TypeError),
     ("eval_every", 0, ValueError), ("batch_size", 0, ValueError), ("lanczos_iters", True, TypeError),
     ("tol", float("inf"), ValueError), ("keep_every", 0, ValueError), ("seed", 1.5, TypeError),
     ("progress", "yes", TypeError)],
)
def test_options_reject_bad_values_naming_the_field(field, value, exc):
    with pytest.raises(exc, match=field):
        geodesic.GeodesicOptions(**{field: value})


def test_options_object_equals_keywords_and_unknown_keyword_is_type_error():
    net = small_mlp()
    x = torch.randn(20, 6, generator=torch.Generator().manual_seed(1))
    opts = geodesic.GeodesicOptions(steps=5, eps=0.02, beta=0.5, progress=False)
    a = geodesic.sparsify(net, x, 0.5, options=opts)
    b = geodesic.sparsify(net, x, 0.5, steps=5, eps=0.02, beta=0.5, progress=False)
    assert [r["distance"] for r in a.history] == [r["distance"] for r in b.history]
    # an override replaces the field of the options object
    c = geodesic.sparsify(net, x, 0.5, options=opts, steps=2)
    assert [r["step"] for r in c.history] == [0, 1, 2, 3]
    with pytest.raises(TypeError, match=r"'stepz'.*valid options: steps, trust, eps"):
        geodesic.sparsify(net, x, 0.5, stepz=3)
    with pytest.raises(TypeError, match="options"):
        geodesic.transfer(net, net, x, options={"steps": 3})
    # transfer keeps every 10th point unless given options
    assert geodesic.transfer(nn.Linear(2, 1), nn.Linear(2, 1), torch.randn(4, 2), steps=10,
                             progress=False).points[0][0] == 0
    assert geodesic.transfer(nn.Linear(2, 1), nn.Linear(2, 1), torch.randn(4, 2), options=opts).points == []


# --------------------------------------------------------------------------- inputs that do not fit the model


def _conv_net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 2, 3), nn.Flatten(), nn.Linear(2 * 4 * 4, 2))


@pytest.mark.parametrize(
    "net,x,exc,match",
    [
        # wrong width: the first layer's expected width, from a dry forward, is in the message
        (lambda: small_mlp(), lambda: torch.randn(8, 5),
         ValueError, r"^data: inputs of shape \(8, 5\).*first layer '0' \(Linear\).*expects 6 input features.*got 5"),
        # a Flatten in front: the received shape is stated too
        (lambda: nn.Sequential(nn.Flatten(), nn.Linear(12, 2)), lambda: torch.randn(4, 3, 5),
         ValueError, r"^data: .*first layer '1' \(Linear\).*expects 12 input features.*got 15.*receives shape \(4, 15\)"),
        (_conv_net, lambda: torch.randn(4, 4, 6, 6),
         ValueError, r"^data: .*first layer '0' \(Conv2d\).*expects 3 input channels.*got 4"),
        # floating inputs of another dtype: both dtypes named
        (lambda: small_mlp(), lambda: torch.randn(8, 6, dtype=torch.float64),
         TypeError, r"^data: .*dtype torch\.float64.*model's parameters, torch\.float32"),
        # integer inputs to a Linear layer
        (lambda: small_mlp(), lambda: torch.randint(0, 3, (8, 6)),
         TypeError, r"^data: .*dtype torch\.int64.*needs floating-point inputs of dtype torch\.float32"),
    ],
)
def test_sparsify_data_that_does_not_fit_the_model_names_data(net, x, exc, match):
    with pytest.raises(exc, match=match):
        geodesic.sparsify(net(), x(), 0.5, steps=2, progress=False)


def test_data_errors_name_the_argument_in_transfer_line_length_and_loaders():
    a, b = small_mlp(), small_mlp()
    with torch.no_grad():
        b[0].weight.add_(1.0)
    with pytest.raises(ValueError, match=r"^data_a: .*expects 6 input features.*got 7"):
        geodesic.transfer(a, b, torch.randn(8, 7), steps=2, progress=False)
    with pytest.raises(TypeError, match=r"^data: .*torch\.float64.*torch\.float32"):
        geodesic.line_length(a, b, torch.randn(8, 6, dtype=torch.float64), segments=2)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.randn(8, 4), torch.zeros(8)),
                                         batch_size=4)
    with pytest.raises(ValueError, match=r"^data: inputs of shape \(4, 4\).*expects 6 input features"):
        geodesic.sparsify(a, loader, 0.5, steps=2, progress=False)


def test_models_with_nan_weights_name_the_model_and_the_parameter():
    bad = small_mlp()
    with torch.no_grad():
        bad[2].weight[0, 1] = float("nan")
        bad[2].bias[0] = float("inf")
    x = torch.randn(8, 6)
    with pytest.raises(ValueError, match=r"^model has NaN or infinite weights in parameter\(s\) "
                                         r"'2\.weight' \(1 of \d+ entries\), '2\.bias' \(1 of \d+ entries\)"):
        geodesic.sparsify(bad, x, 0.5, steps=2, progress=False)
    with pytest.raises(ValueError, match=r"^model_b has NaN.*'2\.weight'"):
        geodesic.transfer(small_mlp(), bad, x, steps=2, progress=False)
    with pytest.raises(ValueError, match=r"^model_a has NaN.*'2\.weight'"):
        geodesic.transfer(bad, small_mlp(), x, steps=2, progress=False)
    with pytest.raises(ValueError, match=r"^model_end has NaN.*'2\.bias'"):
        geodesic.line_length(small_mlp(), bad, x, segments=2)


def test_models_that_cast_their_inputs_still_run():
    # the checks only explain failures: a model accepting float64 or integer inputs is not refused
    class Casting(nn.Module):
        def __init__(self):
            super().__init__()
            self.emb = nn.Embedding(5, 3)
            self.lin = nn.Linear(3, 2)

        def forward(self, idx):
            return self.lin(self.emb(idx))

    torch.manual_seed(0)
    path = geodesic.sparsify(Casting(), torch.randint(0, 5, (8,)), 0.5, steps=3, progress=False)
    assert targets.sparsity(path.model.lin.weight) == 0.5


# --------------------------------------------------------------------------- numpy scalars


def _walk_of(path):
    return [(r["step"], r["distance"], r["step_norm"]) for r in path.history], flat_params(path.model)


@pytest.mark.parametrize(
    "call",
    [
        lambda net, x, n: geodesic.sparsify(net, x, n.f(0.5), steps=n.i(4), eps=n.f(2**-5), beta=n.f(0.5),
                                            tol=n.f(2**-7), lanczos_iters=n.i(6), batch_size=n.i(8), seed=n.i(3),
                                            eval_every=n.i(2), keep_every=n.i(2), restore=n.f(0.25),
                                            evaluate=lambda m: n.f(0.5), progress=False),
        lambda net, x, n: geodesic.sparsify(net, x, n.f(0.5), mode="compensate", steps=n.i(3),
                                            evaluate=lambda m: {"acc": n.f(0.75)}, progress=False),
        lambda net, x, n: geodesic.sparsify(net, x, n.f(0.5), options=geodesic.GeodesicOptions(
            steps=n.i(3), eps=n.f(2**-4), seed=n.i(1), batch_size=n.i(5), progress=False)),
        lambda net, x, n: geodesic.transfer(net, small_mlp(1), x, steps=n.i(3), eps=n.f(2**-4), batch_size=n.i(6),
                                            seed=n.i(2), keep_every=n.i(1), progress=False),
        lambda net, x, n: geodesic.line_length(net, small_mlp(1), x, segments=n.i(3), batch_size=n.i(4), seed=n.i(5)),
    ],
)
def test_numpy_scalars_behave_like_python_numbers(call):
    py = SimpleNamespace(f=float, i=int)
    # np.float64 is a float subclass; np.float32 and np.int64 are not Python numbers.
    # Values exact in float32 so that both calls see the same numbers.
    npy = SimpleNamespace(f=np.float32, i=np.int64)
    x = torch.randn(12, 6, generator=torch.Generator().manual_seed(0))
    a, b = call(small_mlp(), x, py), call(small_mlp(), x, npy)
    if isinstance(a, dict):
        assert a == b
        return
    assert _walk_of(b)[0] == _walk_of(a)[0]
    assert torch.equal(_walk_of(b)[1], _walk_of(a)[1])
    assert [k for k, _ in b.points] == [k for k, _ in a.points]
    assert all(r.get("metric", r.get("acc")) in (None, 0.5, 0.75) for r in b.history)


def test_options_store_numpy_scalars_as_python_numbers():
    o = geodesic.GeodesicOptions(steps=np.int64(7), eps=np.float32(0.25), batch_size=np.int64(3), seed=np.int64(2))
    assert (type(o.steps), type(o.eps), type(o.batch_size), type(o.seed)) == (int, float, int, int)
    assert o == geodesic.GeodesicOptions(steps=7, eps=0.25, batch_size=3, seed=2)
