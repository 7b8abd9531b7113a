"""Gradual magnitude pruning and lottery tickets (issue 3, section 4)."""

import copy
import math
import warnings

import pytest
import torch
from torch import nn

from moduli import manifolds as mf
from moduli import pruning
from moduli import regularizers as rg


def _weights(model):
    return [(m, a) for _, m, a in pruning.default_weights(model)]


def _effective(module, attr):
    if hasattr(module, attr + "_orig"):
        return getattr(module, attr + "_orig") * getattr(module, attr + "_mask")
    return getattr(module, attr)


@pytest.mark.parametrize("epochs,p", [(5, 0.9), (4, 0.75), (2, 0.5)])
def test_schedule_fractions_exact_global(epochs, p):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(20, 30), nn.ReLU(), nn.Linear(30, 10))
    gmp = pruning.GradualMagnitudePruning(model, target_sparsity=p, epochs=epochs)
    total = 20 * 30 + 30 * 10
    for k in range(1, epochs + 1):
        frac = gmp.step()
        assert frac == pytest.approx((k - 1) * p / (epochs - 1))
        zeros = sum(int((_effective(m, a) == 0).sum()) for m, a in _weights(model))
        assert zeros == round(frac * total)
        assert pruning.sparsity(model) == zeros / total
    gmp.step()  # after the last epoch the fraction stays at p
    assert gmp.fraction == p and pruning.sparsity(model) == round(p * total) / total


def test_global_threshold_separates_kept_from_pruned():
    torch.manual_seed(1)
    model = nn.Sequential(nn.Linear(8, 16), nn.Linear(16, 4))
    values = torch.cat([model[0].weight.detach().abs().flatten(), model[1].weight.detach().abs().flatten()])
    gmp = pruning.GradualMagnitudePruning(model, 0.6, 2)
    gmp.step(), gmp.step()
    masks = torch.cat([model[0].weight_mask.flatten(), model[1].weight_mask.flatten()])
    assert values[masks == 0].max() <= values[masks == 1].min()


def test_per_tensor_scope_prunes_each_tensor_exactly():
    torch.manual_seed(2)
    model = nn.Sequential(nn.Linear(10, 10), nn.Linear(10, 30))
    with torch.no_grad():
        model[1].weight.copy_(1 + torch.rand(30, 10))  # globally, only the first layer would be pruned
    gmp = pruning.GradualMagnitudePruning(model, 0.5, 2, scope="tensor")
    gmp.step(), gmp.step()
    assert int((model[0].weight == 0).sum()) == 50
    assert int((model[1].weight == 0).sum()) == 150
    glob = nn.Sequential(nn.Linear(10, 10), nn.Linear(10, 30))
    with torch.no_grad():
        glob[1].weight.copy_(1 + torch.rand(30, 10))
    g2 = pruning.GradualMagnitudePruning(glob, 0.2, 2)
    g2.step(), g2.step()
    assert int((glob[0].weight == 0).sum()) == 80 and int((glob[1].weight == 0).sum()) == 0


@pytest.mark.parametrize("make", [
    lambda: nn.RNN(3, 12, nonlinearity="relu"),
    lambda: nn.LSTM(3, 8, num_layers=2),
    lambda: nn.GRU(3, 8, bidirectional=True),
    lambda: nn.Conv1d(3, 6, 3),
])
def test_masks_survive_training_and_stay_zero(make):
    torch.manual_seed(3)
    model = make()
    gmp = pruning.GradualMagnitudePruning(model, 0.8, 3)
    opt = torch.optim.Adam(model.parameters(), lr=0.05, weight_decay=0.1)
    x = torch.randn(5, 2, 3) if not isinstance(model, nn.Conv1d) else torch.randn(2, 3, 7)
    for _ in range(3):
        gmp.step()
        masks = [getattr(m, a + "_mask").clone() for m, a in _weights(model)]
        for _ in range(4):
            out = model(x)
            out = out[0] if isinstance(out, tuple) else out
            opt.zero_grad()
            out.pow(2).mean().backward()
            opt.step()
        for (m, a), mask in zip(_weights(model), masks):
            assert torch.equal(getattr(m, a + "_mask"), mask)
            assert bool((_effective(m, a)[mask == 0] == 0).all())
    total = sum(getattr(m, a + "_mask").numel() for m, a in _weights(model))
    assert pruning.sparsity(model) == round(0.8 * total) / total
    # the layer itself computes with the pruned weight
    model(x)
    for m, a in _weights(model):
        assert bool((getattr(m, a)[getattr(m, a + "_mask") == 0] == 0).all())


def test_pruned_weights_stay_pruned_when_fraction_drops():
    torch.manual_seed(4)
    lin = nn.Linear(10, 10)
    gmp = pruning.GradualMagnitudePruning(lin, 0.5, 2)
    gmp.prune_to(0.5)
    gmp.prune_to(0.2)
    assert pruning.sparsity(lin) == 0.5


def test_targets_and_pairs():
    torch.manual_seed(5)
    model = nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 4))
    gmp = pruning.GradualMagnitudePruning([(model[1], "weight")], 0.5, 2)
    gmp.step(), gmp.step()
    assert not hasattr(model[0], "weight_mask")
    assert pruning.sparsity([(model[1], "weight")]) == 0.5
    rnn = nn.Sequential(nn.Linear(3, 3))
    with pytest.raises(ValueError, match="matched no weight"):
        pruning.GradualMagnitudePruning(rnn, 0.5, 2, targets="recurrent")
    lstm = nn.LSTM(2, 4)
    gmp = pruning.GradualMagnitudePruning(lstm, 0.5, 2, targets="recurrent")
    assert gmp.names == ["weight_hh_l0"]


def test_bad_arguments():
    lin = nn.Linear(3, 3)
    with pytest.raises(ValueError, match="target_sparsity must be in \\[0, 1\\].*got 1.2"):
        pruning.GradualMagnitudePruning(lin, 1.2, 3)
    with pytest.raises(ValueError, match="epochs"):
        pruning.GradualMagnitudePruning(lin, 0.5, 0)
    with pytest.raises(TypeError, match="epochs"):
        pruning.GradualMagnitudePruning(lin, 0.5, 2.5)
    with pytest.raises(ValueError, match="scope"):
        pruning.GradualMagnitudePruning(lin, 0.5, 3, scope="layer")
    with pytest.raises(TypeError, match="model_or_params"):
        pruning.GradualMagnitudePruning(torch.zeros(3, 3), 0.5, 3)
    with pytest.raises(ValueError, match="no parameter"):
        pruning.GradualMagnitudePruning([(lin, "kernel")], 0.5, 3)
    with pytest.raises(ValueError, match="pruned model"):
        pruning.lottery_reset(lin)
    with torch.no_grad():
        lin.weight[0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        pruning.GradualMagnitudePruning(lin, 0.5, 2).step()


def test_sparsity_of_tensors():
    assert pruning.sparsity(torch.tensor([0.0, 1.0, 0.0, 2.0])) == 0.5
    assert pruning.sparsity([torch.zeros(3), torch.ones(1)]) == 0.75
    with pytest.raises(TypeError):
        pruning.sparsity(3)


def _pruned_rnn(seed=6):
    torch.manual_seed(seed)
    model = nn.Sequential()
    model.rnn = nn.RNN(3, 10, nonlinearity="relu")
    model.out = nn.Linear(10, 2)
    init = copy.deepcopy(model.state_dict())
    priors = rg.attach(model, rg.ModuliPrior(mf.FlatTorus(2, 10.0), rg.DifferenceOfGaussians(), trainable=True))
    gmp = pruning.GradualMagnitudePruning(model, 0.7, 3)
    opt = torch.optim.Adam(list(model.parameters()) + list(priors.parameters()), lr=0.05)
    x = torch.randn(6, 4, 3)
    for _ in range(3):
        gmp.step()
        for _ in range(3):
            h, _ = model.rnn(x)
            loss = model.out(h[-1]).pow(2).mean() + 1e-3 * priors.penalty()
            opt.zero_grad()
            loss.backward()
            opt.step()
    return model, init, priors


def test_lottery_reinit_keeps_masks_changes_kept_weights_and_freezes_prior():
    model, _, priors = _pruned_rnn()
    masks = {n: getattr(m, a + "_mask").clone() for n, m, a in pruning.pruned_weights(model)}
    before = {n: _effective(m, a).detach().clone() for n, m, a in pruning.pruned_weights(model)}
    pruning.lottery_reset(model, "reinit", seed=0, priors=priors)
    for n, m, a in pruning.pruned_weights(model):
        assert torch.equal(getattr(m, a + "_mask"), masks[n])
        w = _effective(m, a)
        kept = masks[n] == 1
        assert bool((w[~kept] == 0).all())
        assert bool((getattr(m, a + "_orig")[~kept] == 0).all())
        assert bool((w[kept] != before[n][kept]).all())
    assert priors.frozen and all(not p.requires_grad for p in priors.parameters())
    assert list(priors.terms) == ["rnn.weight_hh_l0"]
    value = priors.penalty()
    assert torch.isfinite(value) and value.item() > 0
    # the reinitialized values come from the layer's own initialization range
    bound = 1 / 10**0.5
    assert float(model.rnn.weight_hh_l0_orig.detach().abs().max()) <= bound


def test_lottery_rewind_restores_initial_values():
    model, init, priors = _pruned_rnn(7)
    pruning.lottery_reset(model, "rewind", initial_state=init, priors=[priors])
    for n, m, a in pruning.pruned_weights(model):
        mask = getattr(m, a + "_mask")
        assert torch.equal(_effective(m, a), init[n] * mask)
    assert torch.equal(model.rnn.bias_hh_l0, init["rnn.bias_hh_l0"])
    assert priors.frozen
    with pytest.raises(ValueError, match="initial_state"):
        pruning.lottery_reset(model, "rewind")
    with pytest.raises(ValueError, match="mode"):
        pruning.lottery_reset(model, "random")
    bad = dict(init)
    bad["rnn.weight_hh_l0"] = torch.zeros(3, 3)
    with pytest.raises(ValueError, match="shape"):
        pruning.lottery_reset(model, "rewind", initial_state=bad)


def test_reinit_warns_for_modules_without_reset_parameters():
    class Raw(nn.Module):
        def __init__(self):
            super().__init__()
            self.weight = nn.Parameter(torch.randn(4, 4))

    torch.manual_seed(8)
    model = nn.Sequential(Raw(), nn.Linear(4, 4))
    gmp = pruning.GradualMagnitudePruning(model, 0.5, 1)
    gmp.step()
    kept = model[0].weight_orig.detach().clone()
    with pytest.warns(UserWarning, match="without reset_parameters"):
        pruning.lottery_reset(model, "reinit")
    assert torch.equal(model[0].weight_orig, kept)
    assert pruning.sparsity(model) == 0.5


def test_pruning_state_dict_and_model_keys():
    torch.manual_seed(9)
    lin = nn.Linear(6, 6)
    gmp = pruning.GradualMagnitudePruning(lin, 0.5, 3)
    gmp.step(), gmp.step()
    assert set(lin.state_dict()) == {"weight_orig", "weight_mask", "bias"}
    other = pruning.GradualMagnitudePruning(lin, 0.5, 3)
    other.load_state_dict(gmp.state_dict())
    assert other.epoch == 2 and other.step() == 0.5


def test_lottery_freezes_only_the_prior_sets_it_is_handed():
    model, _, handed = _pruned_rnn(3)
    other = rg.attach(model, rg.ModuliPrior(mf.FlatTorus(2, 10.0), rg.DifferenceOfGaussians(), trainable=True))
    pruning.lottery_reset(model, "reinit", seed=0, priors=handed)
    assert handed.frozen and not other.frozen
    assert all(p.requires_grad for p in other.parameters())
    with pytest.raises(TypeError, match="priors\\[0\\] must be a prior set"):
        pruning.lottery_reset(model, "reinit", priors=["not a prior set"])


def test_global_ranking_that_empties_a_layer_warns_and_min_kept_prevents_it():
    torch.manual_seed(0)
    mlp = nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 4))
    with torch.no_grad():
        mlp[2].weight.mul_(1e-3)  # the small output layer ranks last globally
    with pytest.warns(UserWarning, match="left 2.weight with 0 kept entries for its 4 rows \\(emptied\\)"):
        pruning.GradualMagnitudePruning(mlp, 0.9, epochs=1).step()
    assert pruning.sparsity(mlp[2].weight) == 1.0

    torch.manual_seed(0)
    mlp = nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 4))
    with torch.no_grad():
        mlp[2].weight.mul_(1e-3)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        gmp = pruning.GradualMagnitudePruning(mlp, 0.9, epochs=1, min_kept=0.05)
        gmp.step()
    kept = int((mlp[2].weight != 0).sum())
    assert kept == math.ceil(0.05 * 128)
    assert gmp.sparsity() == pytest.approx(0.9, abs=1 / (64 * 32 + 128))  # the target is still met exactly
    with pytest.raises(ValueError, match="cannot be met while keeping min_kept=0.5"):
        pruning.GradualMagnitudePruning(mlp, 0.9, epochs=1, min_kept=0.5)
    with pytest.raises(ValueError, match="min_kept must be in"):
        pruning.GradualMagnitudePruning(mlp, 0.9, epochs=1, min_kept=1.0)


@pytest.mark.parametrize("train", [True, False])
def test_pruned_transformer_layer_trains_and_evaluates(train):
    torch.manual_seed(0)
    layer = nn.TransformerEncoderLayer(16, 2, 32, dropout=0.0)
    gmp = pruning.GradualMagnitudePruning(layer, 0.5, epochs=2)
    assert "self_attn.out_proj.weight" in gmp.names
    opt = torch.optim.SGD(layer.parameters(), lr=0.1)
    x = torch.randn(5, 3, 16)
    for step in range(4):
        if step in (0, 2):
            gmp.step()
        loss = layer(x).pow(2).mean()
        opt.zero_grad()
        loss.backward()  # a stale out_proj weight would be backpropagated twice here
        opt.step()
    out = layer.self_attn.out_proj
    assert bool((out.weight_orig[out.weight_mask == 0] == 0).all())
    layer.train(train)
    with torch.no_grad():
        y = layer(x)
    # the same layer with its masks applied by hand computes the same function
    plain = nn.TransformerEncoderLayer(16, 2, 32, dropout=0.0)
    pruning.restore_masks(plain, pruning.masks(layer))
    plain.load_state_dict(layer.state_dict())
    plain.train(train)
    with torch.no_grad():
        assert torch.allclose(plain(x), y, atol=1e-6)


# ------------------------------------------------------------------ finalize
@pytest.mark.parametrize("make, call", [
    (lambda: nn.Linear(12, 10), lambda m, x: m(x[:, 0, :12])),
    (lambda: nn.RNN(12, 16, num_layers=2), lambda m, x: m(x)[0]),
    (lambda: nn.LSTM(12, 16), lambda m, x: m(x)[0]),
])
def test_finalize_makes_masks_permanent_and_loads_into_a_fresh_instance(make, call):
    from moduli import targets

    torch.manual_seed(0)
    model = make()
    gmp = pruning.GradualMagnitudePruning(model, target_sparsity=0.7, epochs=1)
    gmp.step()
    x = torch.randn(5, 3, 12)
    before = call(model, x).detach()
    zeros = {name: int((mask == 0).sum()) for name, mask in pruning.masks(model).items()}
    stored = {name: targets.stored_parameter(model, name) for name in zeros}
    saved = pruning.finalize(model)
    assert set(saved) == set(zeros) and pruning.pruned_weights(model) == []
    fresh = make()
    assert sorted(model.state_dict()) == sorted(fresh.state_dict())
    for name, n_zero in zeros.items():
        param = dict(model.named_parameters())[name]
        assert param is stored[name]  # the former w_orig: optimizers built before keep working
        assert int((param == 0).sum()) == n_zero
    torch.testing.assert_close(call(model, x), before, rtol=0, atol=0)
    fresh.load_state_dict(model.state_dict())
    torch.testing.assert_close(call(fresh, x), before, rtol=0, atol=0)


def test_finalize_of_an_unpruned_model_changes_nothing():
    model = nn.Linear(3, 3)
    state = copy.deepcopy(model.state_dict())
    assert pruning.finalize(model) == {}
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())
    with pytest.raises(TypeError, match="model"):
        pruning.finalize("model")


def test_plain_state_equals_the_finalized_state_dict():
    from moduli import targets

    torch.manual_seed(0)
    model = nn.RNN(4, 8)
    pruning.GradualMagnitudePruning(model, 0.5, 1).step()
    folded = targets.plain_state(model.state_dict())
    pruning.finalize(model)
    assert folded.keys() == model.state_dict().keys()
    assert all(torch.equal(folded[k], v) for k, v in model.state_dict().items())


def test_keep_zeros_holds_sparsity_under_adam_and_without_it_zeros_move():
    torch.manual_seed(0)
    x, y = torch.randn(32, 8), torch.randn(32, 8)
    results = {}
    for keep in (False, True):
        model = nn.Linear(8, 8)
        opt = torch.optim.Adam(model.parameters(), lr=1e-2)
        gmp = pruning.GradualMagnitudePruning(model, 0.75, 1)
        gmp.step()
        for _ in range(3):  # Adam's moments see the unpruned gradients first
            opt.zero_grad()
            ((model(x) - y) ** 2).mean().backward()
            opt.step()
        pruning.finalize(model, optimizer=opt if keep else None)
        for _ in range(3):
            opt.zero_grad()
            ((model(x) - y) ** 2).mean().backward()
            opt.step()
        results[keep] = pruning.sparsity(model.weight)
    assert results[True] == 0.75
    assert results[False] < 0.75


# ------------------------------------------------------------------ block pruning
def test_block_pruning_keeps_whole_tiles_in_the_given_order():
    torch.manual_seed(0)
    w = nn.Linear(32, 32, bias=False)
    order = torch.randperm(32)
    gmp = pruning.GradualMagnitudePruning(w, 0.75, 3, block=8, order=order)
    fractions = [gmp.step() for _ in range(3)]
    assert fractions == [0.0, 0.375, 0.75]
    mask = pruning.masks(w)["weight"][order][:, order]
    tiles = mask.reshape(4, 8, 4, 8).sum((1, 3))
    assert set(tiles.unique().tolist()) == {0, 64} and int((tiles == 64).sum()) == 4
    assert pruning.sparsity(w) == 0.75


def test_block_pruning_scores_choose_the_tiles():
    w = nn.Linear(16, 16, bias=False)
    prefer = torch.zeros(16, 16)
    prefer[:8, :8] = 1.0  # the prior's favourite tile
    pruning.GradualMagnitudePruning(w, 0.75, 1, block=(8, 8), scores=lambda name, weight: prefer).step()
    torch.testing.assert_close(pruning.masks(w)["weight"].float(), prefer)


def test_block_pruning_rejects_bad_arguments():
    w = nn.Linear(10, 12)
    with pytest.raises(ValueError, match="tile"):
        pruning.GradualMagnitudePruning(w, 0.5, 1, block=4)
    with pytest.raises(ValueError, match="order="):
        pruning.GradualMagnitudePruning(nn.Linear(8, 8), 0.5, 1, order=torch.arange(8))
    with pytest.raises(ValueError, match="permutation"):
        pruning.GradualMagnitudePruning(nn.Linear(8, 8), 0.5, 1, block=4, order=torch.zeros(8))
    with pytest.raises(TypeError, match="scores"):
        pruning.GradualMagnitudePruning(nn.Linear(8, 8), 0.5, 1, block=4, scores=3)
    bad = pruning.GradualMagnitudePruning(nn.Linear(8, 8), 0.5, 1, block=4, scores=lambda n, x: torch.ones(3))
    with pytest.raises(ValueError, match="shape"):
        bad.step()
