"""moduli.targets: the one reader of torch model internals."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from moduli import targets as tg


def _model():
    torch.manual_seed(0)
    return nn.ModuleDict({"rnn": nn.LSTM(3, 4), "head": nn.Linear(4, 2)})


def test_names_are_pruning_free_and_resolve():
    model = _model()
    names = tg.weight_names(model)
    assert names == ["rnn.weight_ih_l0", "rnn.weight_hh_l0", "head.weight"]
    tg.install_mask(model, "rnn.weight_hh_l0", torch.rand(16, 4) > 0.5)
    assert tg.weight_names(model) == names
    assert tg.resolve(model, "rnn.weight_hh_l0") == (model["rnn"], "weight_hh_l0")
    assert [n for n, _, _ in tg.pruned_weights(model)] == ["rnn.weight_hh_l0"]
    with pytest.raises(ValueError, match="no parameter 'rnn.nope'"):
        tg.resolve(model, "rnn.nope")
    with pytest.raises(ValueError, match="no submodule 'missing'"):
        tg.effective_weight(model, "missing.weight")


def test_install_mask_is_effective_cumulative_and_zeroes_orig():
    model = _model()
    w0 = model["head"].weight.detach().clone()
    first = torch.tensor([[1, 0, 1, 1], [1, 1, 0, 1]], dtype=torch.bool)
    tg.install_mask(model, "head.weight", first)
    assert tg.is_pruned(model, "head.weight") and tg.is_pruned(model["head"], "weight")
    assert tg.stored_parameter(model, "head.weight") is model["head"].weight_orig
    assert torch.equal(tg.effective_weight(model, "head.weight"), w0 * first)
    second = torch.ones(2, 4, dtype=torch.bool)
    second[0, 0] = False
    tg.install_mask(model, "head.weight", second)  # never unprunes: the first mask's zeros stay
    assert torch.equal(tg.mask_of(model, "head.weight").bool(), first & second)
    assert torch.equal(model["head"].weight_orig.detach(), w0 * (first & second))
    assert tg.sparsity(model, names=["head.weight"]) == pytest.approx(3 / 8)


def test_masks_restore_into_a_fresh_model_and_state_reads():
    model = _model()
    tg.install_mask(model, "rnn.weight_hh_l0", torch.rand(16, 4) > 0.3)
    saved = tg.masks(model)
    assert list(saved) == ["rnn.weight_hh_l0"]
    fresh = _model()
    tg.restore_masks(fresh, saved)
    fresh.load_state_dict(model.state_dict())
    for name in tg.weight_names(model):
        assert torch.equal(tg.effective_weight(fresh, name), tg.effective_weight(model, name))
        assert torch.equal(tg.effective_from_state(model.state_dict(), name), tg.effective_weight(model, name))
    with pytest.raises(ValueError, match="has shape"):
        tg.restore_masks(_model(), {"rnn.weight_hh_l0": torch.ones(3, 3)})
    with pytest.raises(KeyError):
        tg.effective_from_state(model.state_dict(), "nope")


def test_strip_pruning_makes_masks_permanent():
    model = _model()
    tg.install_mask(model, "head.weight", torch.tensor([[1, 0, 1, 1], [1, 1, 0, 1]], dtype=torch.bool))
    expect = tg.effective_weight(model, "head.weight").detach().clone()
    tg.strip_pruning(model["head"])
    assert not tg.is_pruned(model, "head.weight")
    assert set(model["head"].state_dict()) == {"weight", "bias"}
    assert torch.equal(model["head"].weight.detach(), expect)


def test_sparsity_of_every_input_kind():
    t = torch.tensor([0.0, 1.0, 0.0, 2.0])
    assert tg.sparsity(t) == 0.5
    assert tg.sparsity({"a": t, "b": torch.zeros(4)}) == 0.75
    assert tg.sparsity([t, (nn.Linear(2, 2), "weight")]) == pytest.approx(2 / 8)
    with pytest.raises(ValueError, match="empty"):
        tg.sparsity([])
    with pytest.raises(TypeError, match="weights must be"):
        tg.sparsity(3)
    with pytest.raises(TypeError, match="names= is only accepted"):
        tg.sparsity(t, names=["x"])


def test_module_device_dtype():
    assert tg.module_device_dtype(nn.Linear(2, 2).double()) == (torch.device("cpu"), torch.float64)
    assert tg.module_device_dtype(nn.ReLU()) == (torch.device("cpu"), torch.get_default_dtype())
