"""The proximal sparsifier: soft thresholds of the prior, the factor's schedule, the fixed mask, and the runner's mode."""

import dataclasses
import json

import pytest
import torch
from torch import nn

from moduli import manifolds as mf
from moduli import regularizers as rg
from moduli import targets
from moduli.cli import main
from moduli.experiments import train
from moduli.experiments.config import NAVIGATION_PRESETS
from moduli.experiments.regimes import parse_regime
from moduli.pruning import ProximalSparsifier

pytestmark = pytest.mark.usefixtures("one_thread")


def _linear(seed=0, n=6):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(n, n, bias=False))


def test_after_step_is_the_soft_threshold_at_the_optimizers_rate():
    model = _linear()
    priors = rg.attach(model, rg.L1Prior(), targets="linear")
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    sp = ProximalSparsifier(model, priors, 0.5, epochs=2, steps=20, lam=0.2)
    w = model[0].weight.detach().clone()
    sp.after_step(opt)
    expected = w.sign() * (w.abs() - 0.5 * 0.2).clamp_min(0)  # threshold lr * lam * c, c = 1
    assert torch.equal(model[0].weight.detach(), expected)


def test_the_threshold_follows_each_entrys_moduli_coefficient():
    model = _linear()
    prior = rg.ModuliPrior(mf.Circle(4.0), rg.DifferenceOfGaussians(sigma1=1.0))
    priors = rg.attach(model, prior, targets="linear", generator=torch.Generator().manual_seed(1))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    w = model[0].weight.detach().clone()
    c = priors.terms["0.weight"].coefficients()
    ProximalSparsifier(model, priors, 0.5, epochs=2, steps=20, lam=0.3).after_step(opt)
    assert torch.allclose(model[0].weight.detach(), w.sign() * (w.abs() - 0.1 * 0.3 * c).clamp_min(0), atol=1e-7)


def test_the_factor_grows_below_the_ramp_and_falls_back_to_base_above_it():
    model = _linear()
    priors = rg.attach(model, rg.L1Prior(), targets="linear")
    opt = torch.optim.SGD(model.parameters(), lr=1e-6)  # thresholds too small to make zeros
    sp = ProximalSparsifier(model, priors, 0.5, epochs=5, steps=100, lam=1e-3, adjust_every=5, growth=2.0)
    assert sp.t_end == 80 and sp.ramp(40) == pytest.approx(0.25) and sp.ramp(100) == 0.5
    for _ in range(10):
        sp.after_step(opt)
    assert sp.lam == pytest.approx(1e-3 * 2**2)  # two adjustments, both below the ramp
    with torch.no_grad():
        model[0].weight.zero_()  # every entry zero: above any ramp
    for _ in range(15):
        sp.after_step(opt)
    assert sp.lam == pytest.approx(1e-3)  # halved back and floored at the base factor


def test_the_last_epoch_fixes_the_mask_at_the_target_with_the_exact_zeros_pruned_first():
    model = _linear(n=10)
    priors = rg.attach(model, rg.L1Prior(), targets="linear")
    with torch.no_grad():
        w = model[0].weight
        w[:, :3] = 0.0  # 30 exact zeros; the largest magnitudes elsewhere
        w[:, 3:] = w[:, 3:].sign() * (w[:, 3:].abs() + 0.01)
    sp = ProximalSparsifier(model, priors, 0.5, epochs=3, steps=30, lam=1e-3)
    sp.step()
    sp.step()
    assert not sp.fixed and targets.mask_of(model[0], "weight") is None
    sp.step()  # the third (last) epoch begins
    assert sp.fixed and sp.reached == pytest.approx(0.3) and sp.lam == 1e-3
    mask = targets.mask_of(model[0], "weight")
    assert int((mask == 0).sum()) == 50 and bool((mask[:, :3] == 0).all())
    assert targets.sparsity(model, names=["0.weight"]) == pytest.approx(0.5)


def test_bad_arguments_are_named():
    model = _linear()
    priors = rg.attach(model, rg.L1Prior(), targets="linear")
    with pytest.raises(ValueError, match="exponent 1"):
        ProximalSparsifier(model, rg.attach(model, rg.ModuliPrior(mf.Circle(4.0), rg.DifferenceOfGaussians(),
                                                                  exponent=2), targets="linear"),
                           0.5, epochs=2, steps=10, lam=1e-3)
    with pytest.raises(TypeError, match="priors must be a moduli.regularizers.PriorSet"):
        ProximalSparsifier(model, None, 0.5, epochs=2, steps=10, lam=1e-3)
    for kwargs, match in ((dict(lam=0.0), "lam must be positive"), (dict(growth=1.0), "growth must be > 1"),
                          (dict(epochs=11), r"epochs \(11\) cannot exceed steps"),
                          (dict(adjust_every=0), "adjust_every must be a positive integer")):
        args = dict(epochs=2, steps=10, lam=1e-3) | kwargs
        with pytest.raises(ValueError, match=match):
            ProximalSparsifier(model, priors, 0.5, **args)
    with pytest.raises(ValueError, match=r"target_sparsity must be in \[0, 1\)"):
        ProximalSparsifier(model, priors, 1.0, epochs=2, steps=10, lam=1e-3)


def test_runner_prox_mode_reaches_the_target_and_records_what_the_thresholds_made(tmp_path, capsys):
    out = tmp_path / "prox"
    rc = main(["run", "navigation", "--preset", "smoke", "--regime", "torus", "--sparsity", "75%",
               "--sparsifier", "prox", "--steps", "60", "--epochs", "3", "--lam", "0.01",
               "--out", str(out), "--no-progress"])
    assert rc == 0
    recs = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    sparse, lottery = (next(r for r in recs if r["phase"] == p) for p in ("sparse", "lottery"))
    assert sparse["config"]["sparsifier"] == "prox"
    assert sparse["recurrent_sparsity"] == pytest.approx(0.75, abs=1 / 256)
    assert 0 <= sparse["prox_sparsity"] <= 1 and sparse["prox_lam"] == pytest.approx(0.01)
    assert lottery["recurrent_sparsity"] == sparse["recurrent_sparsity"] and "prox_sparsity" not in lottery
    curve = [json.loads(line) for line in next((out / "curves").glob("*-sparse.jsonl")).read_text().splitlines()]
    assert all("prox_lam" in row for row in curve)
    assert max(row["prox_lam"] for row in curve) > 0.01  # the factor was raised on the way


def test_runner_refuses_prox_where_it_has_no_meaning(capsys):
    cfg = dataclasses.replace(NAVIGATION_PRESETS["smoke"], sparsifier="prox")
    with pytest.raises(ValueError, match="regime 'none' has no prior"):
        train.check_sparsifier(parse_regime("none"), cfg)
    with pytest.raises(ValueError, match="trains its embedding"):
        train.check_sparsifier(parse_regime("torus:trained"), cfg)
    mixed = dataclasses.replace(cfg, prune_targets="all")
    with pytest.raises(ValueError, match="prior_targets .* and prune_targets .* must be the same"):
        train.check_sparsifier(parse_regime("l1"), mixed)
    train.check_sparsifier(parse_regime("shuffled"), cfg)  # a fixed prior: accepted
    assert main(["run", "navigation", "--preset", "smoke", "--regime", "none", "--sparsity", "50%",
                 "--sparsifier", "prox", "--dry-run"]) == 2
    assert "regime 'none' has no prior" in capsys.readouterr().err
    assert main(["run", "navigation", "--preset", "smoke", "--regime", "l1", "--sparsity", "50%",
                 "--sparsifier", "prox", "--lam", "0", "--dry-run"]) == 2
    assert "--lam must be positive" in capsys.readouterr().err


def test_the_default_sparsifier_leaves_configs_and_their_hashes_unchanged():
    cfg = NAVIGATION_PRESETS["cpu"]
    assert cfg.sparsifier == "magnitude" and "sparsifier" not in cfg.to_dict()
