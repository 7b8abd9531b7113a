"""The authors' navigation protocol as options (docs/protocol.md), and the breakdown sparsity."""

from __future__ import annotations

import copy
import dataclasses
import math

import pytest
import torch
import torch.nn.utils.prune as torch_prune

from moduli import pruning, targets
from moduli import regularizers as rg
from moduli.cli import main
from moduli.experiments.config import NavigationConfig, AddingConfig
from moduli.experiments.regimes import Regime, build_inhibitor, parse_regime
from moduli.experiments.registry import (
    PRESET_NAMES, config_from_dict, get_preset, make_task, preset_names, register_task,
)
from moduli.experiments.results import config_hash, read_results
from moduli.experiments.runner import run_sweep
from moduli.experiments.table import breakdown, breakdown_table
from moduli.experiments.tasks import NavigationTask
from moduli.experiments.train import check_lottery_prior

QUIET = dict(preset="smoke", progress=False, log=lambda *a: None)


def _bump(d):
    """The authors' DoG before inversion: 100 (exp(-d^2/5) - exp(-4 d^2))."""
    return 100 * (torch.exp(-d ** 2 / 5) - torch.exp(-4 * d ** 2))


# ------------------------------------------------------------------ inhibitor
def test_authors_coefficient_is_the_inverted_bump_with_zero_minimum():
    f = build_inhibitor(parse_regime("torus:authors"))
    d_star = math.sqrt(math.log(20) / 3.8)  # where the bump peaks: 0.88789...
    peak = float(_bump(torch.tensor(d_star, dtype=torch.float64)))
    assert peak == pytest.approx(81.1425, abs=1e-4)
    d = torch.linspace(0, 50 ** 0.5, 2001, dtype=torch.float64)
    # max g - g: the authors' invert() of their DoG (regularizer.py), up to the sampled max
    assert torch.allclose(f(d), peak - _bump(d), atol=1e-6)
    assert float(f(torch.tensor([d_star], dtype=torch.float64))) < 1e-9
    assert float(f(torch.tensor([0.89], dtype=torch.float64))) == pytest.approx(0.0, abs=1e-3)
    assert float(f(torch.tensor([0.0], dtype=torch.float64))) == pytest.approx(81.14, abs=0.01)
    assert float(f(torch.tensor([50 ** 0.5], dtype=torch.float64))) == pytest.approx(81.14, abs=0.01)
    assert float(f(d).min()) >= 0.0


def test_zero_minimum_shifts_any_inhibitor_and_keeps_its_derivative():
    base = rg.Ricker(sigma=1.5)
    f = rg.ZeroMinimum(base, diameter=10.0)
    d = torch.linspace(0, 10, 501, dtype=torch.float64)
    assert float(f(d).min()) == pytest.approx(0.0, abs=1e-6)
    assert torch.allclose(f(d), base(d) - f.minimum)
    assert torch.allclose(f.value_and_derivative(d)[1], base.value_and_derivative(d)[1])
    with pytest.raises(TypeError, match="base"):
        rg.ZeroMinimum(lambda d: d, diameter=1.0)
    with pytest.raises(ValueError, match="diameter"):
        rg.ZeroMinimum(base, diameter=0.0)


def test_attached_authors_prior_has_the_authors_coefficient_range_and_shuffled_permutes_it():
    model = torch.nn.RNN(2, 64, nonlinearity="relu", bias=False)
    coeffs = {}
    for name in ("torus:authors", "shuffled:authors"):
        regime = parse_regime(name)
        prior = rg.ModuliPrior(rg_manifold(regime), build_inhibitor(regime))
        if regime.kind == "shuffled":
            prior = rg.ShuffledPrior(prior)
        ps = rg.attach(model, prior, generator=torch.Generator().manual_seed(3))
        coeffs[name] = ps.terms["weight_hh_l0"].coefficients().reshape(64, 64)
    c = coeffs["torus:authors"]
    assert float(c.min()) >= 0.0 and float(c.min()) < 1.0  # some pair lies near d = 0.89
    assert torch.allclose(torch.diagonal(c), torch.full((64,), 81.1425), atol=1e-3)  # d = 0: self-connections
    s = coeffs["shuffled:authors"]
    assert not torch.equal(s, c)
    assert torch.equal(torch.sort(s.reshape(-1)).values, torch.sort(c.reshape(-1)).values)


def rg_manifold(regime):
    from moduli.experiments.regimes import build_manifold

    return build_manifold(regime.manifold)


def test_zeromin_regime_labels_specs_and_errors():
    r = parse_regime("torus:authors")
    assert r.label == "torus:dog(c=100,sigma1=0.5):zeromin"
    assert parse_regime(r.label) == r
    assert Regime.from_dict(r.to_dict()) == r
    assert parse_regime("shuffled:klein:authors").label == "shuffled:klein:dog(c=100,sigma1=0.5):zeromin"
    assert parse_regime("torus:zeromin").label == "torus:zeromin"
    assert "zero_min" not in parse_regime("torus").to_dict()  # older records' specs stay as they were
    for bad in ("l1:zeromin", "none:authors"):
        with pytest.raises(ValueError, match="takes no options"):
            parse_regime(bad)
    with pytest.raises(ValueError, match="zeromin"):
        Regime("l1", zero_min=True)
    with pytest.raises(TypeError, match="zero_min"):
        Regime("moduli", "torus", "dog", zero_min="yes")


# --------------------------------------------------------------------- config
def test_added_fields_leave_old_configs_and_their_hashes_unchanged():
    # the hashes of these presets on main before the fields were added
    assert config_hash(get_preset("navigation", "cpu").to_dict()) == \
        "51f0762a4a3ce9c0458b237b3b5d04fcf15cb059e543b674d81973506804b1aa"
    assert config_hash(get_preset("navigation", "smoke").to_dict()) == \
        "752e1b99ac095ff091885fe2dfaa454ac24f2b008ced817fe1ddbe8a5cbbea42"
    assert config_hash(get_preset("adding", "cpu").to_dict()) == \
        "41c9c0eef18bc042893e3fa6f2c94471a830cb28d26b77c7a7dd56d6333401fd"
    cfg = get_preset("navigation", "authors")
    d = cfg.to_dict()
    assert d["optimizer"] == "adamw" and d["inputs"] == "displacement" and d["lottery_prior"] == "redraw"
    assert config_from_dict("navigation", d) == cfg
    assert config_from_dict("navigation", get_preset("navigation", "cpu").to_dict()) == get_preset("navigation", "cpu")


def test_authors_presets_differ_from_ours_only_in_protocol():
    def diff(a, b):
        return {f.name for f in dataclasses.fields(a) if getattr(a, f.name) != getattr(b, f.name)}

    protocol = {"lam", "reduction", "optimizer", "weight_decay", "prune_targets", "surround", "inputs",
                "lottery_prior"}
    assert diff(get_preset("navigation", "authors"), get_preset("navigation", "cpu")) == protocol
    assert diff(get_preset("navigation", "authors-paper"), get_preset("navigation", "paper")) == protocol | {"eval_size"}
    a = get_preset("navigation", "authors-paper")
    assert (a.n_hidden, a.n_place, a.batch_size, a.seq_len, a.lr, a.steps, a.epochs) == \
        (4096, 512, 200, 50, 1e-4, 30_000, 30)
    assert (a.lam, a.reduction, a.weight_decay, a.prune_scope) == (0.1, "mean", 0.01, "global")


@pytest.mark.parametrize("field, value, exc", [
    ("optimizer", "sgd", ValueError), ("weight_decay", -0.1, ValueError), ("weight_decay", "0.1", TypeError),
    ("inputs", "speed", ValueError), ("lottery_prior", "fresh", ValueError),
])
def test_new_fields_are_checked(field, value, exc):
    with pytest.raises(exc, match=field):
        NavigationConfig(**{field: value})
    if field in ("optimizer", "weight_decay"):
        with pytest.raises(exc, match=field):
            AddingConfig(**{field: value})


def test_lottery_redraw_refuses_trained_embeddings():
    cfg = dataclasses.replace(get_preset("navigation", "smoke"), lottery_prior="redraw")
    with pytest.raises(ValueError, match="lottery-prior redraw"):
        check_lottery_prior(parse_regime("torus:trained"), cfg)
    check_lottery_prior(parse_regime("torus"), cfg)


def test_registry_allows_task_presets_beyond_the_required_ones():
    assert preset_names("navigation") == list(PRESET_NAMES) + ["authors", "authors-paper", "gpu"]
    assert preset_names("adding") == list(PRESET_NAMES)
    with pytest.raises(ValueError, match=r"adding task must be one of \['paper', 'cpu', 'smoke'\], got 'authors'"):
        get_preset("adding", "authors")
    presets = {p: get_preset("navigation", p) for p in PRESET_NAMES}
    with pytest.raises(ValueError, match="dashes"):
        register_task("nav_copy", NavigationTask, NavigationConfig, presets | {"My Preset": presets["cpu"]})
    with pytest.raises(ValueError, match="missing"):
        register_task("nav_copy", NavigationTask, NavigationConfig, {"cpu": presets["cpu"]})


# ---------------------------------------------------------------- the options
def test_optimizer_and_inputs_options():
    base = get_preset("navigation", "smoke")
    opt = make_task("navigation", base, 0).optimizer([torch.nn.Parameter(torch.zeros(2))])
    assert type(opt) is torch.optim.Adam and opt.defaults["weight_decay"] == 0
    cfg = dataclasses.replace(base, optimizer="adamw", weight_decay=0.01)
    opt = make_task("navigation", cfg, 0).optimizer([torch.nn.Parameter(torch.zeros(2))])
    assert type(opt) is torch.optim.AdamW and opt.defaults["weight_decay"] == 0.01
    v = make_task("navigation", base, 0).sample(torch.Generator().manual_seed(1))[0]
    task = make_task("navigation", dataclasses.replace(base, inputs="displacement"), 0)
    disp = task.sample(torch.Generator().manual_seed(1))[0]
    assert torch.allclose(disp, v * 0.02)  # displacement per step = velocity * dt


@pytest.mark.filterwarnings("ignore:pruning to .* left")  # global ranking starves the tiny W_ih
def test_every_new_flag_runs_on_the_smoke_preset(tmp_path, capsys):
    code = main(["run", "navigation", "--preset", "smoke", "--regime", "none", "--regime", "torus:authors",
                 "--regime", "shuffled:authors", "--sparsity", "0.9", "--optimizer", "adamw", "--weight-decay",
                 "0.01", "--inputs", "displacement", "--lottery-prior", "redraw", "--reduction", "mean",
                 "--lam", "0.1", "--prune-targets", "all", "--surround", "--no-progress", "--out", str(tmp_path)])
    assert code == 0, capsys.readouterr().err
    recs = read_results(tmp_path)
    assert len(recs) == 6 and all(r["value"] is not None for r in recs)
    for r in recs:
        assert r["config"]["optimizer"] == "adamw" and r["config"]["lottery_prior"] == "redraw"
        assert r["pruned_weights"] == ["encoder.weight", "rnn.weight_ih_l0", "rnn.weight_hh_l0", "decoder.weight"]
        assert r["pruned_sparsity"] == pytest.approx(0.9, abs=1e-3)
    assert {r["regime"] for r in recs} == {"none", "torus:dog(c=100,sigma1=0.5):zeromin",
                                           "shuffled:dog(c=100,sigma1=0.5):zeromin"}
    # the authors preset itself, cut to smoke size
    small = {k: getattr(get_preset("navigation", "smoke"), k)
             for k in ("n_hidden", "n_place", "batch_size", "seq_len", "steps", "epochs", "eval_size")}
    code = main(["run", "navigation", "--preset", "authors", "--regime", "torus:authors", "--sparsity", "0.5",
                 "--no-progress", "--out", str(tmp_path / "a")] +
                [a for k, v in small.items() for a in ("--" + k.replace("_", "-"), str(v))])
    assert code == 0, capsys.readouterr().err
    assert [r["preset"] for r in read_results(tmp_path / "a")] == ["authors", "authors"]
    # redraw with a trained embedding: refused before training, naming the option
    code = main(["run", "navigation", "--preset", "smoke", "--regime", "torus:trained", "--lottery-prior", "redraw",
                 "--sparsity", "0.5", "--no-progress", "--out", str(tmp_path / "b")])
    assert code == 2 and "lottery-prior redraw" in capsys.readouterr().err


def test_lottery_redraw_changes_only_the_lottery_phase(tmp_path):
    cfg = dataclasses.replace(get_preset("navigation", "smoke"), lam=1.0)
    regime = [parse_regime("torus")]
    keep = run_sweep("navigation", cfg, regime, [0.5], [0], tmp_path / "keep", **QUIET)
    redraw = run_sweep("navigation", dataclasses.replace(cfg, lottery_prior="redraw"), regime, [0.5], [0],
                       tmp_path / "redraw", **QUIET)
    assert keep[0]["final_train_loss"] == redraw[0]["final_train_loss"]  # the sparse phase is the same
    assert keep[1]["final_train_loss"] != redraw[1]["final_train_loss"]  # a new embedding in the lottery phase


# -------------------------------------------------------------------- pruning
@pytest.mark.filterwarnings("ignore:pruning to .* left")
def test_authors_schedule_is_global_over_the_four_matrices_and_matches_torch():
    """GradualMagnitudePruning over the four matrices equals the authors' loop: prune.global_unstructured at
    target * k / (n - 1) from the second epoch on, with prune.remove before each re-pruning (trainer.py)."""
    cfg = dataclasses.replace(get_preset("navigation", "smoke"), n_hidden=24, n_place=12)
    task = make_task("navigation", cfg, 0)
    torch.manual_seed(0)
    ours = task.build_model()
    theirs = copy.deepcopy(ours)
    names = targets.weight_names(ours)
    assert names == ["encoder.weight", "rnn.weight_ih_l0", "rnn.weight_hh_l0", "decoder.weight"]
    target, n = 0.9, 5
    gmp = pruning.GradualMagnitudePruning(ours, target_sparsity=target, epochs=n, scope="global", targets=names)
    params = [(theirs.encoder, "weight"), (theirs.rnn, "weight_hh_l0"), (theirs.rnn, "weight_ih_l0"),
              (theirs.decoder, "weight")]
    g = torch.Generator().manual_seed(1)
    for epoch in range(n):
        frac = gmp.step()
        assert frac == pytest.approx(target * epoch / (n - 1))
        if epoch > 1:
            for m, a in params:
                torch_prune.remove(m, a)
        if epoch > 0:
            torch_prune.global_unstructured(params, pruning_method=torch_prune.L1Unstructured,
                                            amount=target * epoch / (n - 1))
        for name in names:  # the same masks
            mod, attr = name.rsplit(".", 1)
            theirs_mask = getattr(theirs.get_submodule(mod), attr + "_mask", None)
            ours_mask = targets.mask_of(ours.get_submodule(mod), attr)
            if theirs_mask is None:
                assert epoch == 0 and (ours_mask is None or bool(ours_mask.all()))
            else:
                assert torch.equal(ours_mask.bool(), theirs_mask.bool())
        with torch.no_grad():  # "training": the same change to every stored weight of both models
            for name in names:
                mod, attr = name.rsplit(".", 1)
                noise = 0.05 * torch.randn(targets.stored_parameter(ours.get_submodule(mod), attr).shape, generator=g)
                targets.stored_parameter(ours.get_submodule(mod), attr).add_(noise)
                getattr(theirs.get_submodule(mod), attr + ("_orig" if epoch > 0 else "")).add_(noise)
    zeros = sum(int((targets.effective_weight(ours.get_submodule(nm.rsplit('.', 1)[0]), nm.rsplit('.', 1)[1]) == 0)
                    .sum()) for nm in names)
    total = sum(targets.stored_parameter(ours.get_submodule(nm.rsplit('.', 1)[0]), nm.rsplit('.', 1)[1]).numel()
                for nm in names)
    assert zeros == round(target * total)  # the target, reached over the four matrices together


# ------------------------------------------------------------------ breakdown
def _rec(regime, sparsity, seed, value, phase="sparse", task="navigation", preset="authors", metric="error_cm"):
    return {"task": task, "preset": preset, "regime": regime, "lam": 0.0 if regime == "none" else 0.1,
            "sparsity": sparsity, "seed": seed, "phase": phase, "metric": metric, "value": value,
            "diverged": value is None, "recurrent_sparsity": sparsity}


def _synthetic():
    recs = [_rec("none", 0.0, s, 5.0 + 0.1 * s) for s in range(3)]  # dense 5.0, 5.1, 5.2
    curves = {  # seed -> error at 0.75, 0.9, 0.95, 0.98, 0.99
        0: [5.0, 6.0, 10.5, 30.0, 60.0],  # breaks at 0.95 (10.5 > 10.0)
        1: [5.0, 6.0, 9.0, 10.5, 60.0],   # 10.5 is not above 2 x 5.1 = 10.2? it is: breaks at 0.98
        2: [5.0, 6.0, 9.0, 10.0, 10.3],   # never above 10.4: censored
    }
    for seed, values in curves.items():
        for s, v in zip([0.75, 0.9, 0.95, 0.98, 0.99], values):
            recs.append(_rec("torus", s, seed, v))
    recs += [_rec("l1", 0.75, 0, 20.0), _rec("l1", 0.9, 0, 3.0), _rec("l1", 0.75, 1, None), _rec("l1", 0.9, 1, 3.0)]
    recs.append(_rec("torus", 0.9, 0, 50.0, phase="lottery"))
    return recs


def test_breakdown_of_a_synthetic_grid():
    rows = {(r["column"], r["phase"]): r for r in breakdown(_synthetic())}
    torus = rows[("torus", "sparse")]
    assert torus["per_seed"] == {0: 0.95, 1: 0.98, 2: None}
    assert torus["n"] == 2 and torus["n_censored"] == 1 and torus["max_sparsity"] == 0.99
    assert torus["mean"] == pytest.approx(0.965)
    assert torus["std"] == pytest.approx(math.sqrt(2 * 0.015 ** 2))
    assert torus["dense"] == pytest.approx(5.1)
    l1 = rows[("l1", "sparse")]
    assert l1["per_seed"] == {0: 0.75, 1: 0.75}  # the first crossing (a later dip does not count); diverged breaks
    assert rows[("torus", "lottery")]["per_seed"] == {0: 0.9}
    # a larger factor moves the breakdown up
    high = {(r["column"], r["phase"]): r["per_seed"] for r in breakdown(_synthetic(), factor=5)}
    assert high[("torus", "sparse")] == {0: 0.98, 1: 0.99, 2: None}
    text = breakdown_table(_synthetic())
    assert "| torus | 96.5% (2.1) n=2, 1 > 99%" in text


def test_breakdown_errors():
    with pytest.raises(ValueError, match="dense baseline"):
        breakdown([r for r in _synthetic() if r["regime"] != "none"])
    with pytest.raises(ValueError, match="factor"):
        breakdown(_synthetic(), factor=1.0)
    acc = [_rec("none", 0.0, 0, 0.9, task="digits", metric="accuracy"),
           _rec("torus", 0.9, 0, 0.5, task="digits", metric="accuracy")]
    with pytest.raises(ValueError, match="higher-is-better"):
        breakdown(acc)


def test_breakdown_cli_and_plot(tmp_path, capsys):
    import json

    from moduli.experiments.plot import plot_breakdown

    recs = _synthetic()
    path = plot_breakdown(recs, tmp_path / "b.png")
    assert path.stat().st_size > 0
    with pytest.raises(ValueError, match="one task and preset"):
        plot_breakdown(recs + [_rec("none", 0.0, 0, 5.0, preset="cpu")], tmp_path / "c.png")
    full = []
    for i, r in enumerate(recs):
        full.append({**r, "run_id": f"r{i}", "regime_spec": {"kind": "none"}, "config": {}, "timings": {"train_s": 1.0}})
    (tmp_path / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in full))
    assert main(["table", str(tmp_path), "--breakdown"]) == 0
    out = capsys.readouterr().out
    assert "breakdown sparsity" in out and (tmp_path / "breakdown.csv").exists()
    with pytest.raises(SystemExit) as exc:
        main(["table", str(tmp_path), "--breakdown", "--factor", "1"])
    assert exc.value.code == 2 and "above 1" in capsys.readouterr().err
