"""Sparse execution, neuron orderings, permutations and ``moduli export``."""

from __future__ import annotations

import json
import warnings

import pytest
import torch
from torch import nn

from moduli import pruning, sparse
from moduli.experiments.navigation import NavigationRNN

warnings.filterwarnings("ignore", message=".*Sparse (CSR|BSR) tensor support is in beta.*")

NAV_ROWS = ["encoder.weight", "rnn.weight_ih_l0", "rnn.weight_hh_l0"]
NAV_COLS = ["rnn.weight_hh_l0", "decoder.weight"]


def _pruned_nav(n_hidden=32, sparsity=0.9, seed=0):
    torch.manual_seed(seed)
    model = NavigationRNN(8, n_hidden)
    pruning.GradualMagnitudePruning(model, sparsity, 1, targets=["rnn.weight_hh_l0", "decoder.weight"]).step()
    return model


def _nav_inputs(seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(4, 6, 2, generator=g), torch.rand(4, 8, generator=g)


# ------------------------------------------------------------------ execution
@pytest.mark.parametrize("layout, block", [("dense", None), ("csr", None), ("bsr", 4), ("bsr", (8, 8))])
def test_sparse_linear_equals_dense(layout, block):
    torch.manual_seed(0)
    layer = nn.Linear(16, 8)
    with torch.no_grad():
        layer.weight.mul_(torch.rand_like(layer.weight) > 0.8)
    x = torch.randn(3, 5, 16)
    out = sparse.sparse_linear(layer, layout, block)(x)
    assert out.shape == (3, 5, 8)
    torch.testing.assert_close(out, layer(x).detach(), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("nonlinearity, bias, batch_first, layers", [
    ("tanh", True, False, 2), ("relu", False, True, 1), ("tanh", False, True, 3)])
@pytest.mark.parametrize("layout", ["csr", "bsr", "dense"])
def test_sparse_rnn_equals_nn_rnn(nonlinearity, bias, batch_first, layers, layout):
    torch.manual_seed(0)
    rnn = nn.RNN(3, 16, num_layers=layers, nonlinearity=nonlinearity, bias=bias, batch_first=batch_first)
    targets = [f"weight_hh_l{k}" for k in range(layers)]
    pruning.GradualMagnitudePruning(rnn, 0.8, 1, targets=targets).step()
    x = torch.randn(5, 7, 3)
    h0 = torch.randn(layers, 5 if batch_first else 7, 16)
    ref_out, ref_h = rnn(x, h0)
    out, h = sparse.SparseRNN(rnn, layout=layout, block=8)(x, h0)
    torch.testing.assert_close(out, ref_out.detach(), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(h, ref_h.detach(), rtol=1e-5, atol=1e-6)
    un_out, un_h = sparse.SparseRNN(rnn, layout=layout, block=8)(x[0])  # unbatched, no h0
    ref_un = rnn(x[0])
    torch.testing.assert_close(un_out, ref_un[0].detach(), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(un_h, ref_un[1].detach(), rtol=1e-5, atol=1e-6)


def test_sparsify_runs_the_navigation_model_and_leaves_it_alone():
    model = _pruned_nav()
    v, c = _nav_inputs()
    ref = model(v, c).detach()
    for layout in ("csr", "bsr"):
        fast = sparse.sparsify(model, layout, block=8)
        assert isinstance(fast.rnn, sparse.SparseRNN) and isinstance(fast.decoder, sparse.SparseLinear)
        torch.testing.assert_close(fast(v, c), ref, rtol=1e-5, atol=1e-6)
    assert pruning.pruned_weights(model)  # the original is still pruned
    kept = sparse.sparsify(model, "csr", min_sparsity=0.5)
    assert isinstance(kept.encoder, nn.Linear) and isinstance(kept.rnn, sparse.SparseRNN)


def test_sparse_layout_errors_name_the_argument():
    w = torch.randn(6, 6)
    with pytest.raises(ValueError, match="layout"):
        sparse.SparseLinear(w, layout="coo")
    with pytest.raises(ValueError, match="block"):
        sparse.SparseLinear(w, layout="bsr", block=4)
    with pytest.raises(ValueError, match="block="):
        sparse.SparseLinear(w, layout="bsr")
    with pytest.raises(ValueError, match="square"):
        sparse.SparseLinear(w, layout="bsr", block=(2, 3))
    with pytest.raises(TypeError, match="nn.RNN"):
        sparse.SparseRNN(nn.LSTM(2, 4))
    with pytest.raises(ValueError, match="features"):
        sparse.SparseLinear(w)(torch.randn(2, 5))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_sparse_rnn_on_cuda_equals_cpu():
    model = _pruned_nav()
    v, c = _nav_inputs()
    ref = model(v, c).detach()
    fast = sparse.sparsify(model, "csr").to("cuda")
    torch.testing.assert_close(fast(v.cuda(), c.cuda()).cpu(), ref, rtol=1e-4, atol=1e-5)


# ------------------------------------------------------------------ orderings
def test_curve_order_is_a_permutation_keeping_neighbours_close():
    g = torch.Generator().manual_seed(0)
    pts = torch.rand(1024, 2, generator=g) * 10
    order = sparse.curve_order(pts, period=10.0)
    assert torch.equal(torch.sort(order).values, torch.arange(1024))
    step = (pts[order].diff(dim=0)).abs()
    step = torch.minimum(step, 10 - step).norm(dim=1)
    rand = (pts.diff(dim=0)).abs()
    rand = torch.minimum(rand, 10 - rand).norm(dim=1)
    assert step.median() < 0.2 * rand.median()
    assert torch.equal(sparse.curve_order(pts[:, :1], 10.0), torch.argsort(pts[:, 0]))


def _local_matrix(n=256, keep=0.05, seed=0):
    g = torch.Generator().manual_seed(seed)
    pts = torch.rand(n, 2, generator=g)
    d = (pts[:, None] - pts[None]).abs()
    d = torch.minimum(d, 1 - d).norm(dim=-1)
    w = torch.randn(n, n, generator=g) * (d < (keep / torch.pi) ** 0.5)
    return w, pts


def test_geometry_order_gathers_kept_mass_into_blocks():
    w, pts = _local_matrix()
    plain = sparse.block_stats(w, 16)
    curve = sparse.block_stats(w, 16, sparse.curve_order(pts))
    assert curve["nnz"] == plain["nnz"] == int(torch.count_nonzero(w))
    assert curve["blocks"] < 0.5 * plain["blocks"]
    assert curve["capture"] > plain["capture"] + 0.2
    rcm = sparse.block_stats(w, 16, sparse.rcm_order(w))
    assert rcm["blocks"] < plain["blocks"]


def test_block_stats_of_a_block_diagonal_matrix():
    w = torch.block_diag(*[torch.ones(8, 8)] * 4)
    st = sparse.block_stats(w, 8)
    assert (st["blocks"], st["total_blocks"], st["fill"], st["capture"]) == (4, 16, 1.0, 1.0)
    perm = torch.randperm(32, generator=torch.Generator().manual_seed(0))
    shuffled = w[perm][:, perm]
    assert sparse.block_stats(shuffled, 8)["fill"] < 1.0
    assert sparse.block_stats(shuffled, 8, sparse.inverse_permutation(perm))["fill"] == 1.0


def test_permute_neurons_keeps_the_function():
    model = _pruned_nav()
    pruning.finalize(model)
    v, c = _nav_inputs()
    ref_h, ref = model.hidden(v, c).detach(), model(v, c).detach()
    perm = torch.randperm(32, generator=torch.Generator().manual_seed(3))
    sparse.permute_neurons(model, perm, rows=NAV_ROWS, cols=NAV_COLS)
    torch.testing.assert_close(model(v, c), ref, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(model.hidden(v, c), ref_h[..., perm], rtol=1e-5, atol=1e-6)


def test_permute_neurons_lstm_gate_blocks():
    torch.manual_seed(0)
    lstm = nn.LSTM(3, 8)
    head = nn.Linear(8, 2)
    x = torch.randn(4, 2, 3)
    ref = head(lstm(x)[0]).detach()
    perm = torch.randperm(8)
    holder = nn.ModuleDict({"lstm": lstm, "head": head})
    sparse.permute_neurons(holder, perm, rows=["lstm.weight_ih_l0", "lstm.weight_hh_l0"],
                           cols=["lstm.weight_hh_l0", "head.weight"], vectors=["lstm.bias_ih_l0", "lstm.bias_hh_l0"])
    torch.testing.assert_close(head(lstm(x)[0]), ref, rtol=1e-5, atol=1e-6)


def test_permute_neurons_rejects_pruned_weights_and_bad_permutations():
    model = _pruned_nav()
    with pytest.raises(ValueError, match="finalize"):
        sparse.permute_neurons(model, torch.arange(32), rows=["rnn.weight_hh_l0"])
    pruning.finalize(model)
    with pytest.raises(ValueError, match="permutation"):
        sparse.permute_neurons(model, torch.zeros(32, dtype=torch.long), rows=["rnn.weight_hh_l0"])
    with pytest.raises(ValueError, match="columns"):
        sparse.permute_neurons(model, torch.arange(32), cols=["encoder.weight"])


def test_geometry_ordered_block_pruning_runs_as_bsr():
    torch.manual_seed(0)
    w, pts = _local_matrix(64, keep=0.2)
    rnn = nn.RNN(2, 64, nonlinearity="relu", bias=False)
    with torch.no_grad():
        rnn.weight_hh_l0.copy_(w)
    order = sparse.curve_order(pts)
    pruning.GradualMagnitudePruning(rnn, 0.75, 1, targets=["weight_hh_l0"], block=8, order=order).step()
    pruning.finalize(rnn)
    sparse.permute_neurons(rnn, order, rows=["weight_ih_l0", "weight_hh_l0"], cols=["weight_hh_l0"])
    st = sparse.block_stats(rnn.weight_hh_l0, 8)
    assert st["blocks"] == 16 and st["total_blocks"] == 64
    x = torch.randn(5, 3, 2)
    torch.testing.assert_close(sparse.SparseRNN(rnn, "bsr", block=8)(x)[0], rnn(x)[0].detach(), rtol=1e-5, atol=1e-6)


# ------------------------------------------------------------------ export
@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    from moduli.cli import main

    out = tmp_path_factory.mktemp("run")
    assert main(["run", "navigation", "--preset", "smoke", "--regime", "torus", "--sparsity", "50%", "--out", str(out),
                 "--no-progress", "--threads", "1"]) == 0
    (ckpt,) = (out / "checkpoints").glob("*-sparse.pt")
    return out, ckpt.name[: -len("-sparse.pt")]


def test_export_writes_a_finalized_model_equal_to_the_checkpoint(smoke_run, tmp_path, capsys):
    from moduli.cli import main
    from moduli.experiments import export
    from moduli.experiments.results import checkpoint_path, read_checkpoint

    out, run_id = smoke_run
    target = tmp_path / "model.pt"
    assert main(["export", str(out), "--run", run_id, "--out", str(target)]) == 0
    assert "parameters nonzero" in capsys.readouterr().out
    data = export.read_export(target)
    summary = json.loads((tmp_path / "model.json").read_text())
    assert summary == data["summary"] and summary["loads_into_fresh_model"] is True
    ckpt = read_checkpoint(checkpoint_path(out, run_id))
    pruned = NavigationRNN(16, 16)
    pruning.restore_masks(pruned, ckpt["masks"])
    pruned.load_state_dict(ckpt["model"])
    fresh = export.build_exported(target)
    v, c = torch.randn(3, 5, 2), torch.rand(3, 16)
    torch.testing.assert_close(fresh(v, c), pruned(v, c), rtol=0, atol=0)
    w = data["state_dict"]["rnn.weight_hh_l0"]
    assert summary["tensors"]["rnn.weight_hh_l0"]["nonzero"] == int(torch.count_nonzero(w)) == 128
    assert summary["params"] == sum(t.numel() for t in data["state_dict"].values())
    assert set(data["embeddings"]["rnn.weight_hh_l0"]) == {"points_out", "points_in"}
    # the recurrent layer loads into a plain nn.RNN
    rnn = nn.RNN(2, 16, nonlinearity="relu", bias=False, batch_first=True)
    rnn.load_state_dict({k[4:]: t for k, t in data["state_dict"].items() if k.startswith("rnn.")})
    torch.testing.assert_close(rnn(v, fresh.encoder(c)[None])[0], fresh.hidden(v, c))


def test_export_of_a_missing_run_fails_with_one_line(smoke_run, tmp_path, capsys):
    from moduli.cli import main

    out, run_id = smoke_run
    assert main(["export", str(out), "--run", "nope", "--out", str(tmp_path / "m.pt")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("moduli export: no checkpoint") and run_id in err
