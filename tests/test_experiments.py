"""Tests of moduli.experiments: tasks, configs, runner/resume, tables, the command line."""

from __future__ import annotations

import argparse
import dataclasses
import json
import math

import pytest
import torch

from moduli.experiments import (
    AddingTask, NavigationTask, PlaceCells, TrajectoryGenerator, adding_batch, decode_position,
    get_preset, markdown_table, navigation_loss, parse_regime, read_results, run_sweep, summarize,
)
from moduli.experiments.config import NavigationConfig
from moduli.experiments.registry import add_config_arguments, config_from_args, make_task
from moduli.experiments.runner import append_result, initial_embeddings, plan_runs


pytestmark = pytest.mark.usefixtures("one_thread")


# ----------------------------------------------------------------------------- trajectories

def test_trajectories_stay_in_box_and_integrate_velocity():
    gen = TrajectoryGenerator(box_width=0.6, seq_len=50)  # a small box: many wall encounters
    t = gen.sample(400, generator=torch.Generator().manual_seed(1))
    assert t.position.abs().max() <= 0.3 + 1e-6
    assert t.init_position.abs().max() <= 0.3
    rebuilt = t.init_position[:, None] + gen.dt * t.velocity.cumsum(1)
    torch.testing.assert_close(rebuilt, t.position, atol=1e-5, rtol=0)
    assert t.head_direction.min() >= -math.pi and t.head_direction.max() < math.pi


def test_speed_is_rayleigh_away_from_walls():
    # In a huge box the walls are never reached: speeds are Rayleigh(0.13 * 2 pi).
    gen = TrajectoryGenerator(box_width=1000.0, seq_len=20)
    t = gen.sample(2000, generator=torch.Generator().manual_seed(2))
    speed = t.velocity.norm(dim=-1).flatten().double()
    scale = 0.13 * 2 * math.pi
    assert abs(speed.mean().item() - scale * math.sqrt(math.pi / 2)) < 0.02 * scale
    assert abs((speed**2).mean().item() - 2 * scale**2) < 0.04 * scale**2


def test_heading_turns_have_the_specified_spread():
    gen = TrajectoryGenerator(box_width=1000.0, seq_len=30)
    t = gen.sample(1000, generator=torch.Generator().manual_seed(3))
    turn = torch.remainder(t.head_direction.diff(dim=1) + math.pi, 2 * math.pi) - math.pi
    assert abs(turn.std().item() - 11.52 * 0.02) < 0.01


def test_wall_avoidance_turns_parallel_and_slows():
    gen = TrajectoryGenerator(box_width=2.2, seq_len=5)
    pos = torch.tensor([[1.09, 0.0], [1.09, 0.0], [0.0, 0.0], [0.0, -1.09]])
    heading = torch.tensor([0.3, math.pi, 0.3, -math.pi / 2 - 0.4])
    near, turn = gen.avoid_walls(pos, heading)
    assert near.tolist() == [True, False, False, True]
    # after the turn the agent runs parallel to the wall it was heading into
    torch.testing.assert_close(heading[0] + turn[0], torch.tensor(math.pi / 2))
    torch.testing.assert_close(heading[3] + turn[3], torch.tensor(-math.pi))
    assert turn[1] == 0 and turn[2] == 0
    # near walls the agent slows to a quarter: steps started within the border are shorter
    t = TrajectoryGenerator(box_width=0.5, seq_len=40).sample(500, generator=torch.Generator().manual_seed(4))
    prev = torch.cat([t.init_position[:, None], t.position[:, :-1]], dim=1)
    d_wall = (0.25 - prev.abs()).amin(-1)
    speed = t.velocity.norm(dim=-1)
    assert speed[d_wall < 0.03].mean() < 0.7 * speed[d_wall > 0.1].mean()


def test_trajectory_bad_input():
    with pytest.raises(ValueError, match="box_width"):
        TrajectoryGenerator(box_width=-1.0)
    with pytest.raises(TypeError, match="seq_len"):
        TrajectoryGenerator(seq_len=2.5)
    with pytest.raises(ValueError, match="batch_size"):
        TrajectoryGenerator().sample(0)


# ----------------------------------------------------------------------------- place cells

@pytest.mark.parametrize("surround", [False, True])
def test_place_code_is_a_distribution_peaked_at_the_nearest_centre(surround):
    pc = PlaceCells(32, surround=surround, generator=torch.Generator().manual_seed(0))
    x = (torch.rand(50, 2, generator=torch.Generator().manual_seed(1)) * 2 - 1) * 1.1
    code = pc(x)
    torch.testing.assert_close(code.sum(-1), torch.ones(50))
    assert code.min() >= 0
    nearest = torch.cdist(x, pc.centres).argmin(-1)
    assert torch.equal(code.argmax(-1), nearest)


def test_place_code_known_value():
    pc = PlaceCells(2, sigma=0.5)
    pc.centres.copy_(torch.tensor([[0.0, 0.0], [1.0, 0.0]]))
    code = pc(torch.tensor([0.0, 0.0]))
    # softmax(0, -1/(2*0.25)) = softmax(0, -2)
    torch.testing.assert_close(code, torch.tensor([1 / (1 + math.exp(-2)), math.exp(-2) / (1 + math.exp(-2))]))
    with pytest.raises(ValueError, match="shape"):
        pc(torch.zeros(3, 3))


def test_decode_position_mean_of_top3():
    centres = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [5.0, 5.0]])
    act = torch.tensor([3.0, 2.0, 1.0, -1.0])
    torch.testing.assert_close(decode_position(act, centres), torch.tensor([1 / 3, 1 / 3]))
    with pytest.raises(ValueError, match="centres"):
        decode_position(torch.zeros(3), centres)


def test_navigation_loss_minimised_by_the_target():
    target = torch.softmax(torch.randn(2, 3, 5, generator=torch.Generator().manual_seed(0)), -1)
    best = navigation_loss(torch.log(target), target)
    entropy = -(target * target.log()).sum(-1).mean()
    torch.testing.assert_close(best, entropy)
    assert navigation_loss(torch.zeros(2, 3, 5), target) > best
    with pytest.raises(ValueError, match="readout"):
        navigation_loss(target, target, readout="middle")


def test_untrained_navigation_error_is_about_a_metre():
    cfg = dataclasses.replace(get_preset("navigation", "smoke"), n_place=64, n_hidden=32, eval_size=200, seq_len=10)
    task = NavigationTask(cfg, seed=0)
    torch.manual_seed(0)
    err = task.evaluate(task.build_model())
    assert 60 < err < 150


# ----------------------------------------------------------------------------- adding problem

def test_adding_batch_and_constant_baseline():
    x, y = adding_batch(20000, 12, generator=torch.Generator().manual_seed(0))
    assert x.shape == (20000, 12, 2)
    assert torch.all(x[..., 1].sum(-1) == 2)
    torch.testing.assert_close(y, (x[..., 0] * x[..., 1]).sum(-1))
    rmse_one = torch.sqrt(((y - 1) ** 2).mean()).item()
    assert abs(rmse_one - math.sqrt(1 / 6)) < 0.01  # the paper's ~0.41
    with pytest.raises(ValueError, match="seq_len"):
        adding_batch(4, 1)


def test_adding_task_rmse_of_a_zero_model_matches_the_target_norm():
    task = AddingTask(get_preset("adding", "smoke"), seed=0)
    model = task.build_model()
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
    x, y = task.eval_set
    assert task.evaluate(model) == pytest.approx(torch.sqrt((y**2).mean()).item(), rel=1e-5)


# ----------------------------------------------------------------------------- configs & regimes

def test_config_validation():
    with pytest.raises(ValueError, match="readout"):
        NavigationConfig(readout="middle")
    with pytest.raises(ValueError, match="lr"):
        NavigationConfig(lr=-1.0)
    with pytest.raises(TypeError, match="steps"):
        NavigationConfig(steps=1.5)
    with pytest.raises(TypeError, match="sigma1"):  # inhibitor constants belong to the regime now
        NavigationConfig(sigma1=3.0)


def test_regime_parsing():
    assert parse_regime("none").label == "none"
    assert parse_regime("torus").kind == "moduli"
    assert parse_regime("torus", trained=True).label == "torus:trained"
    assert parse_regime("r3:trained:diffusion").label == "r3:trained:diffusion"
    r = parse_regime("shuffled:klein")
    assert (r.kind, r.manifold, r.label) == ("shuffled", "klein", "shuffled:klein")
    for bad in ("bottle", "l1:trained", "torus:hot", "shuffled:trained"):
        with pytest.raises(ValueError, match="regime"):
            parse_regime(bad)


# ----------------------------------------------------------------------------- runner & resume

FIELDS = {"task", "regime", "sparsity", "seed", "phase", "metric", "value", "config", "version", "timings",
          "recurrent_sparsity", "lam", "run_id"}


def _smoke(task="navigation"):
    return get_preset(task, "smoke")


def test_results_have_fields_and_resume_never_duplicates(tmp_path):
    cfg = _smoke()
    regimes = [parse_regime("none")]
    first = run_sweep("navigation", cfg, regimes, [0.0], [0, 1], tmp_path, preset="smoke", progress=False, log=lambda m: None)
    assert len(first) == 2
    lines = (tmp_path / "results.jsonl").read_text().splitlines()
    assert len(lines) == 2
    for line in lines:
        rec = json.loads(line)
        assert FIELDS <= set(rec)
        assert rec["metric"] == "error_cm" and rec["phase"] == "sparse" and rec["value"] > 0
        assert rec["config"]["n_hidden"] == cfg.n_hidden
    before = (tmp_path / "results.jsonl").read_text()
    again = run_sweep("navigation", cfg, regimes, [0.0], [0, 1, 2], tmp_path, preset="smoke", progress=False, log=lambda m: None)
    assert [r["seed"] for r in again] == [2]  # only the new seed ran
    after = (tmp_path / "results.jsonl").read_text()
    assert after.startswith(before)  # nothing rewritten
    keys = [(r["run_id"], r["phase"]) for r in read_results(tmp_path)]
    assert len(keys) == len(set(keys)) == 3


def test_resume_refuses_a_different_config(tmp_path):
    cfg = _smoke()
    run_sweep("navigation", cfg, [parse_regime("none")], [0.0], [0], tmp_path, preset="smoke", progress=False, log=lambda m: None)
    with pytest.raises(ValueError, match="different config"):
        run_sweep("navigation", dataclasses.replace(cfg, n_hidden=12), [parse_regime("none")], [0.0], [0],
                  tmp_path, preset="smoke", progress=False, log=lambda m: None)


def test_incomplete_last_line_is_ignored_and_not_overwritten(tmp_path):
    append_result(tmp_path, {"task": "x", "run_id": "a", "phase": "sparse"})
    with open(tmp_path / "results.jsonl", "a") as fh:
        fh.write('{"task": "x", "run_i')  # a crash mid-write
    assert [r["run_id"] for r in read_results(tmp_path)] == ["a"]
    append_result(tmp_path, {"task": "x", "run_id": "b", "phase": "sparse"})
    text = (tmp_path / "results.jsonl").read_text()
    assert '{"task": "x", "run_i\n' in text
    assert [r["run_id"] for r in read_results(tmp_path)] == ["a", "b"] or pytest.fail(text)


def test_invalid_sparsity_is_rejected(tmp_path):
    with pytest.raises(ValueError, match="sparsity"):
        run_sweep("navigation", _smoke(), [parse_regime("none")], [1.2], [0], tmp_path, preset="smoke", progress=False)


# ----------------------------------------------------------------------------- tables

def _fake(regime, sparsity, phase, seed, value, lam=1e-6):
    return {"task": "navigation", "regime": regime, "lam": lam, "sparsity": sparsity, "phase": phase,
            "metric": "error_cm", "value": value, "seed": seed, "recurrent_sparsity": sparsity}


def test_table_mean_and_std():
    recs = [_fake("torus", 0.9, "sparse", s, v) for s, v in enumerate([4.0, 6.0, 8.0])]
    recs += [_fake("none", 0.9, "sparse", 0, 50.0), _fake("none", 0.9, "lottery", 0, None)]
    rows = {(r["column"], r["phase"]): r for r in summarize(recs)}
    assert rows[("torus", "sparse")]["mean"] == pytest.approx(6.0)
    assert rows[("torus", "sparse")]["std"] == pytest.approx(2.0)
    assert rows[("none", "lottery")]["n_diverged"] == 1
    md = markdown_table(recs)
    assert "| 90% Sparse | 50.00 n=1 | 6.00 (2.00) n=3 |" in md
    assert "diverged" in md


# ----------------------------------------------------------------------------- command line

def _parser():
    import moduli.experiments.cli  # noqa: F401  registers the subcommands
    from moduli.cli import build_parser

    return build_parser()


def test_cli_parses_and_builds_the_config():
    args = _parser().parse_args([
        "run", "navigation", "--preset", "smoke", "--regime", "torus:trained", "--regime", "l1",
        "--sparsity", "90%", "--sparsity", "0.75", "--seeds", "2", "--lam", "1e-6", "--n-hidden", "24",
        "--no-surround",
    ])
    assert args.sparsity == [0.9, 0.75] and args.regime == ["torus:trained", "l1"] and args.lam == [1e-6]
    cfg = config_from_args("navigation", "smoke", args, exclude=("lam",))
    assert cfg.n_hidden == 24 and cfg.surround is False and cfg.steps == get_preset("navigation", "smoke").steps
    for bad in (["--sparsity", "1.2"], ["--sparsity", "100%"], ["--seeds", "0"], ["--preset", "tpu"],
                ["--device", "gpu"], ["--gpus-per-run", "0"]):
        with pytest.raises(SystemExit):
            _parser().parse_args(["run", "navigation", *bad])
    assert _parser().parse_args(["table", "somewhere"]).dir.name == "somewhere"
    assert (args.workers, args.ray) == (1, None)
    for argv, expected in ((["--workers", "2"], (2, None)), (["--ray"], (1, "local")), (["--ray", "auto"], (1, "auto"))):
        args = _parser().parse_args(["sweep", "navigation", *argv])
        assert (args.workers, args.ray) == expected
    with pytest.raises(SystemExit):
        _parser().parse_args(["run", "navigation", "--workers", "0"])


def test_cli_rejects_an_option_of_the_other_task():
    p = argparse.ArgumentParser()
    add_config_arguments(p)
    args = p.parse_args(["--n-place", "64"])
    with pytest.raises(ValueError, match="n-place"):
        config_from_args("adding", "smoke", args)


def test_cli_run_table_end_to_end(tmp_path, capsys):
    from moduli.cli import main

    _parser()
    out = tmp_path / "r"
    code = main(["run", "adding", "--preset", "smoke", "--regime", "none", "--seeds", "1", "--out", str(out), "--no-progress"])
    assert code == 0
    assert (out / "table.csv").exists()
    assert main(["table", str(out)]) == 0
    assert "| 0% Sparse |" in capsys.readouterr().out
    assert main(["table", str(out), "--lam", "0.5"]) == 0  # regime none is always kept
    assert "| 0% Sparse |" in capsys.readouterr().out
    assert main(["table", str(tmp_path / "empty")]) == 1
    assert main(["table", str(out / "results.jsonl")]) == 0  # a results file directly: CSV beside it
    assert (out / "results-table.csv").exists()
    assert main(["table", str(out), "--inventory"]) == 0
    inventory = capsys.readouterr().out
    assert "| adding | 0% | none | 0 | sparse | 0 |" in inventory and "1 results in total." in inventory
    assert main(["plot", str(out)]) == 0
    assert (out / "plots" / "adding_vs_sparsity.png").stat().st_size > 0


# ----------------------------------------------------------------------------- pruning, priors, lottery

def test_sparse_and_lottery_phases_with_priors_and_resume(tmp_path):
    cfg = dataclasses.replace(_smoke(), lam=1e-2)
    regimes = [parse_regime("none"), parse_regime("torus:trained")]
    quiet = dict(preset="smoke", progress=False, log=lambda m: None)
    recs = run_sweep("navigation", cfg, regimes, [0.5], [0], tmp_path, **quiet)
    assert [(r["regime"], r["phase"]) for r in recs] == [
        ("none", "sparse"), ("none", "lottery"), ("torus:trained", "sparse"), ("torus:trained", "lottery")]
    n = cfg.n_hidden**2
    for r in recs:
        # only the recurrent matrix is pruned (the preset's choice), to exactly round(0.5 n) zeros
        assert r["recurrent_sparsity"] == pytest.approx(round(0.5 * n) / n)
        assert r["pruned_weights"] == ["rnn.weight_hh_l0"]
        assert r["model_sparsity"] < r["recurrent_sparsity"]
    assert len(list((tmp_path / "checkpoints").glob("*-sparse.pt"))) == 2
    state = torch.load(tmp_path / "checkpoints" / f"{recs[2]['run_id']}-sparse.pt", weights_only=False)
    trained_points = state["embeddings"]["rnn.weight_hh_l0"][0]
    assert trained_points.shape == (cfg.n_hidden, 2)
    # the embedding was trained: it left its initial (seeded) position
    spec = plan_runs("navigation", "smoke", [regimes[1]], [cfg.lam], [0.5], [0])[0]
    initial = initial_embeddings(spec, cfg)["rnn.weight_hh_l0"][0]
    assert not torch.allclose(initial, trained_points)
    assert (initial - trained_points).abs().max() < 1.0  # a few small Adam steps

    # moduli plot: the metric curve, then the trained moduli run's matrix, heatmap and persistence pictures
    from moduli.experiments.plot import plot_directory

    rid = recs[2]["run_id"]
    paths = plot_directory(tmp_path)
    assert [p.name for p in paths] == ["navigation_vs_sparsity.png", f"{rid}_matrix.png", f"{rid}_heatmap.png",
                                       f"{rid}_persistence.png"]
    assert all(p.stat().st_size > 0 for p in paths)

    # an interrupted sweep: the lottery lines are lost; re-running trains only them, from the checkpoints
    lines = (tmp_path / "results.jsonl").read_text().splitlines()
    kept = [ln for ln in lines if json.loads(ln)["phase"] == "sparse"]
    (tmp_path / "results.jsonl").write_text("\n".join(kept) + "\n")
    again = run_sweep("navigation", cfg, regimes, [0.5], [0], tmp_path, **quiet)
    assert [r["phase"] for r in again] == ["lottery", "lottery"]
    for old, new in zip([recs[1], recs[3]], again):
        assert new["value"] == pytest.approx(old["value"], rel=1e-4)  # same mask, same seeds
    assert run_sweep("navigation", cfg, regimes, [0.5], [0], tmp_path, **quiet) == []
    keys = [(r["run_id"], r["phase"]) for r in read_results(tmp_path)]
    assert len(keys) == len(set(keys)) == 4


def test_pruning_every_weight_reports_the_recurrent_matrix_separately(tmp_path):
    cfg = dataclasses.replace(_smoke(), prune_targets="all")
    (rec, _) = run_sweep("navigation", cfg, [parse_regime("none")], [0.8], [0], tmp_path, preset="smoke",
                         progress=False, log=lambda m: None)
    assert set(rec["pruned_weights"]) == {"encoder.weight", "rnn.weight_ih_l0", "rnn.weight_hh_l0", "decoder.weight"}
    assert rec["pruned_sparsity"] == pytest.approx(0.8, abs=1e-3)
    assert 0 <= rec["recurrent_sparsity"] <= 1 and rec["model_sparsity"] == pytest.approx(rec["pruned_sparsity"])
    per = rec["tensor_sparsity"]
    assert set(per) == set(rec["pruned_weights"]) and per["rnn.weight_hh_l0"] == rec["recurrent_sparsity"]
    model = make_task("navigation", cfg, 0).build_model()
    sizes = {n: p.numel() for n, p in model.named_parameters()}
    total = sum(per[n] * sizes[n] for n in per) / sum(sizes.values())
    assert total == pytest.approx(rec["pruned_sparsity"])


def test_table_orders_lambda_columns_numerically():
    from moduli.experiments.table import markdown_table

    recs = [dict(task="t", regime=reg, lam=lam, sparsity=0.9, phase="sparse", metric="m", value=1.0,
                 seed=0, recurrent_sparsity=0.9)
            for reg in ["torus", "none"] for lam in [1e-5, 0.1, 1e-3]]
    header = next(line for line in markdown_table(recs).splitlines() if line.startswith("| |"))
    assert header.index("none (λ=1e-05)") < header.index("none (λ=0.001)") < header.index("none (λ=0.1)")
    assert header.index("none (λ=0.1)") < header.index("torus (λ=1e-05)")


# ----------------------------------------------------------------------------- workers and Ray

def _detached_case(tmp_path, **execution):
    """A serial sweep, then the same sweep in workers: same numbers, and a lottery-only resume."""
    cfg = dataclasses.replace(_smoke("adding"), lam=1e-2)
    regimes = [parse_regime("none"), parse_regime("torus")]
    quiet = dict(preset="smoke", progress=False, log=lambda m: None)
    serial = run_sweep("adding", cfg, regimes, [0.0, 0.5], [0], tmp_path / "serial", **quiet)
    par = tmp_path / "par"
    parallel = run_sweep("adding", cfg, regimes, [0.0, 0.5], [0], par, threads=1, **quiet, **execution)
    key = lambda r: (r["run_id"], r["phase"])  # noqa: E731
    assert sorted(map(key, parallel)) == sorted(map(key, serial))
    by_key = {key(r): r["value"] for r in serial}
    for r in parallel:
        assert r["value"] == pytest.approx(by_key[key(r)], rel=1e-5)
    assert sorted(map(key, read_results(par))) == sorted(map(key, serial))
    # checkpoints come back to the driver; a sweep that lost its lottery lines resumes from them
    assert len(list((par / "checkpoints").glob("*-sparse.pt"))) == 2
    lines = (par / "results.jsonl").read_text().splitlines()
    (par / "results.jsonl").write_text("\n".join(ln for ln in lines if json.loads(ln)["phase"] != "lottery") + "\n")
    again = run_sweep("adding", cfg, regimes, [0.0, 0.5], [0], par, threads=1, **quiet, **execution)
    assert sorted(r["phase"] for r in again) == ["lottery", "lottery"]
    for r in again:
        assert r["value"] == pytest.approx(by_key[key(r)], rel=1e-5)
    return par, cfg, regimes, quiet


def test_workers_give_the_serial_results_and_resume(tmp_path):
    par, cfg, regimes, quiet = _detached_case(tmp_path, workers=2)
    # a corrupt checkpoint is named and its run trained again in its worker, to the same numbers
    lines = (par / "results.jsonl").read_text().splitlines()
    (par / "results.jsonl").write_text("\n".join(ln for ln in lines if json.loads(ln)["phase"] != "lottery") + "\n")
    before = {(r["run_id"], r["phase"]): r["value"] for r in read_results(par)}
    bad, good = sorted((par / "checkpoints").glob("*-sparse.pt"))
    bad.write_bytes(b"not a checkpoint")
    messages = []
    again = run_sweep("adding", cfg, regimes, [0.0, 0.5], [0], par, threads=1, workers=2, preset="smoke",
                      progress=False, log=messages.append)
    rid = bad.name[: -len("-sparse.pt")]
    assert sorted((r["run_id"], r["phase"]) for r in again) == sorted(
        [(rid, "sparse"), (rid, "lottery"), (good.name[: -len("-sparse.pt")], "lottery")])
    assert any(m.startswith(f"checkpoint {bad} cannot be read") for m in messages), messages
    after = {(r["run_id"], r["phase"]): r["value"] for r in read_results(par) if r["phase"] == "sparse"}
    assert after == before  # one record per (run id, phase): the new sparse record, the same numbers
    # one run fails in its worker (a regime the worker cannot build): the other run's result is still recorded
    broken = parse_regime("torus")
    object.__setattr__(broken, "manifold", "no-such-space")  # past the validation of the parent process only
    with pytest.raises(RuntimeError, match="1 of 2 runs failed"):
        run_sweep("adding", cfg, [parse_regime("l1"), broken], [0.0], [0], par, threads=1, workers=2, **quiet)
    assert [r["regime"] for r in read_results(par) if r["phase"] == "sparse"][-1] == "l1"


def test_ray_gives_the_serial_results_and_resume(tmp_path):
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)  # one session for both sweeps
    try:
        _detached_case(tmp_path, ray="local")
    finally:
        ray.shutdown()


@pytest.mark.parametrize("bad", [dict(workers=0), dict(workers=1.5), dict(ray="")])
def test_bad_execution_options_are_rejected(tmp_path, bad):
    with pytest.raises(ValueError, match="workers|ray"):
        run_sweep("adding", _smoke("adding"), [parse_regime("none")], [0.0], [0], tmp_path, preset="smoke",
                  progress=False, **bad)


# ----------------------------------------------------------------------------- trained embeddings' learning rate

def _embedding_moved(cfg, out) -> float:
    """Largest coordinate change of the torus:trained embedding after the sparse phase (seed 0)."""
    regime = parse_regime("torus:trained")
    recs = run_sweep("navigation", cfg, [regime], [0.5], [0], out, preset="smoke", progress=False, log=lambda m: None)
    state = torch.load(out / "checkpoints" / f"{recs[0]['run_id']}-sparse.pt", weights_only=False)
    spec = plan_runs("navigation", "smoke", [regime], [cfg.lam], [0.5], [0])[0]
    before = initial_embeddings(spec, cfg)["rnn.weight_hh_l0"][0]
    return float((state["embeddings"]["rnn.weight_hh_l0"][0] - before).abs().max())


def test_embed_lr_sets_how_far_trained_embeddings_move(tmp_path):
    base = dataclasses.replace(_smoke(), lam=1e-2)
    slow = _embedding_moved(dataclasses.replace(base, embed_lr=1e-7), tmp_path / "slow")
    default = _embedding_moved(base, tmp_path / "default")
    assert slow <= 2 * 1e-7 * base.steps  # Adam moves a coordinate by about lr per step at most
    assert default > 100 * slow

    # results written before a config field existed resume as if they had its default
    lines = (tmp_path / "default" / "results.jsonl").read_text().splitlines()
    old = [json.loads(ln) for ln in lines]
    for r in old:
        del r["config"]["embed_lr"]
    (tmp_path / "default" / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in old))
    quiet = dict(preset="smoke", progress=False, log=lambda m: None)
    assert run_sweep("navigation", base, [parse_regime("torus:trained")], [0.5], [0], tmp_path / "default", **quiet) == []
    with pytest.raises(ValueError, match="embed_lr"):
        run_sweep("navigation", dataclasses.replace(base, embed_lr=1e-3), [parse_regime("torus:trained")], [0.5], [0],
                  tmp_path / "default", **quiet)


# ----------------------------------------------------------------------------- inhibitors owned by the regime

def test_default_regimes_build_the_runners_inhibitor_constants():
    from moduli import regularizers as rg
    from moduli.experiments.regimes import REGIME_DEFAULTS, build_inhibitor

    dog = build_inhibitor(parse_regime("torus"))
    assert isinstance(dog, rg.DifferenceOfGaussians)
    assert (dog.c, dog.sigma1, dog.sigma2) == (1.0, 1.0, math.sqrt(5.0))  # sigma1 = 1, not the class's 0.5
    assert REGIME_DEFAULTS == {"dog": {"sigma1": 1.0}}
    diffusion, sinusoid = build_inhibitor(parse_regime("klein:diffusion")), build_inhibitor(parse_regime("torus:sinusoid"))
    assert (diffusion.c, diffusion.power, sinusoid.c, sinusoid.mu) == (1.0, 2.0, 1.0, 2.0)
    assert isinstance(build_inhibitor(parse_regime("torus:ricker")), rg.Ricker)
    assert isinstance(build_inhibitor(parse_regime("shuffled:diagonal")), rg.DiagonalOnly)


def test_inhibitor_arguments_have_one_canonical_label_and_run_id():
    from moduli.experiments.regimes import Regime, build_inhibitor
    from moduli.experiments.plan import RunSpec

    r = parse_regime("torus:ricker(sigma=1.50)")
    assert r.label == "torus:ricker(sigma=1.5)" and r.inhibitor_args == (("sigma", 1.5),)
    assert build_inhibitor(r).sigma == 1.5
    # the same setting spelled three ways is one regime; a default value is dropped
    assert parse_regime("torus", inhibitor="ricker", inhibitor_args={"sigma": 1.5}) == r
    assert parse_regime("torus:ricker(sigma=1.5)", inhibitor_args={"sigma": 9.0}) == r  # inline wins
    assert parse_regime("torus:dog(sigma1=1,c=1)").label == "torus"
    two = parse_regime("r3:trained:dog(sigma2=3,sigma1=0.7)")
    assert two.label == "r3:trained:dog(sigma1=0.7,sigma2=3)"
    assert parse_regime(two.label) == two and Regime.from_dict(two.to_dict()) == two
    for label in ("none", "l1", "shuffled:klein", "torus:trained"):  # hashable, and equal after a round trip
        r = parse_regime(label)
        assert Regime.from_dict(r.to_dict()) == r and hash(Regime.from_dict(r.to_dict())) == hash(r)
    spec = RunSpec("navigation", "smoke", two, 1e-4, 0.9, 0)
    assert spec.run_id == "navigation-smoke-r3-trained-dog-sigma1=0.7-sigma2=3-lam0.0001-s0.9-seed0"
    assert RunSpec("navigation", "smoke", parse_regime("torus"), 1e-4, 0.9, 0).run_id == \
        "navigation-smoke-torus-lam0.0001-s0.9-seed0"  # default runs keep their ids


@pytest.mark.parametrize("spec, message", [
    ("torus:ricker(sigma1=2)", r"inhibitor 'ricker' takes the arguments \['sigma', 'c'\]; got \['sigma1'\]"),
    ("torus:dog(sigma1=3)", "sigma2 > sigma1"),
    ("torus:ricker(sigma)", "NAME=NUMBER"),
    ("torus:ricker(sigma=nan)", "NAME=NUMBER"),
    ("torus:sinusoid(mu=1,mu=2)", "twice"),
    ("torus:ricker(sigma=-1)", "sigma"),
])
def test_bad_inhibitor_arguments_are_rejected(spec, message):
    with pytest.raises(ValueError, match=message):
        parse_regime(spec)


def test_inhibitor_arg_option_and_its_errors(tmp_path, capsys):
    from moduli.cli import main
    from moduli.experiments.cli import regimes_from_args

    args = _parser().parse_args(["run", "navigation", "--regime", "none", "--regime", "torus:ricker",
                                 "--regime", "klein", "--inhibitor", "sinusoid", "--inhibitor-arg", "c=2"])
    assert [r.label for r in regimes_from_args(args, ["none"])] == ["none", "torus:ricker(c=2)", "klein:sinusoid(c=2)"]
    for bad, message in ((["--regime", "torus", "--inhibitor-arg", "sigma=1"], "takes the arguments ['c', 'sigma1', 'sigma2']"),
                         (["--regime", "torus", "--inhibitor-arg", "sigma1"], "NAME=NUMBER")):
        code = main(["run", "navigation", "--preset", "smoke", *bad, "--out", str(tmp_path), "--no-progress"])
        err = capsys.readouterr().err
        assert code == 2 and err.startswith("moduli run: ") and message in err
    assert not (tmp_path / "results.jsonl").exists()


def test_ricker_and_diagonal_inhibitors_run_from_the_command_line(tmp_path, capsys):
    from moduli.cli import main

    _parser()
    code = main(["run", "navigation", "--preset", "smoke", "--steps", "4", "--epochs", "2", "--regime", "torus:ricker",
                 "--regime", "torus:diagonal", "--regime", "torus:ricker(sigma=1.5)", "--sparsity", "50%",
                 "--out", str(tmp_path), "--no-progress"])
    assert code == 0
    records = read_results(tmp_path)
    assert sorted({r["regime"] for r in records}) == ["torus:diagonal", "torus:ricker", "torus:ricker(sigma=1.5)"]
    assert len(records) == 6 and all(math.isfinite(r["value"]) and r["recurrent_sparsity"] == 0.5 for r in records)
    assert {r["regime_spec"]["inhibitor_args"].get("sigma") for r in records} == {None, 1.5}
    assert "torus:ricker(sigma=1.5)" in capsys.readouterr().out
    # the diagonal inhibitor penalises only off-diagonal entries (f(0) = 0): its prior differs from ricker's
    by = {r["regime"]: r for r in records if r["phase"] == "sparse"}
    assert by["torus:diagonal"]["final_train_loss"] != by["torus:ricker"]["final_train_loss"]


# ----------------------------------------------------------------------------- migration of old records

# sha256 (first 16 hex digits) of markdown_table(records) + inventory_table(records) printed by the code
# before the inhibitor constants moved to the regime (commit bbfa270d), and the number of records.
_OLD_TABLES = {
    "add-cpu-results.jsonl": ("91e33e094143d885", 36),
    "lm-cpu-results.jsonl": ("7c98ebffc14eb2e7", 156),
    "lm-trained-results.jsonl": ("6c33a071c57e5ace", 45),
    "nav-cpu-results.jsonl": ("2b65e1e981342c3d", 126),
    "nav-trained-embedlr-results.jsonl": ("1ea283397fe9b58b", 12),
    "nav-trained-results.jsonl": ("f6f1fc001e0fdc10", 18),
}


def test_old_records_migrate_and_tabulate_as_before():
    import hashlib
    from pathlib import Path

    from moduli.experiments.table import inventory_table

    root = Path(__file__).resolve().parent.parent / "docs" / "results"
    assert sorted(p.name for p in root.glob("*.jsonl")) == sorted(_OLD_TABLES)
    for name, (digest, n) in _OLD_TABLES.items():
        records = read_results(root / name)
        assert len(records) == n
        text = markdown_table(records) + inventory_table(records)
        assert hashlib.sha256(text.encode()).hexdigest()[:16] == digest, name
        for r in records:
            assert "sigma1" not in r["config"] and "inhibitor" not in r["config"]
            assert r["regime_spec"]["inhibitor_args"] == {} and parse_regime(r["regime"]).label == r["regime"]


def test_old_directories_resume_without_training(tmp_path, monkeypatch):
    """Plan every recorded run again over a copy of docs/results/*.jsonl: nothing is left to train."""
    import shutil
    from pathlib import Path

    import moduli.experiments.runner as runner
    from moduli.experiments.registry import config_from_dict

    def no_training(*a, **k):
        raise AssertionError("a recorded phase was trained again")

    monkeypatch.setattr(runner, "run_one", no_training)
    root = Path(__file__).resolve().parent.parent / "docs" / "results"
    for path in sorted(root.glob("*.jsonl")):
        out = tmp_path / path.stem
        out.mkdir()
        shutil.copy(path, out / "results.jsonl")
        records = read_results(out)
        phases = {}
        for r in records:
            phases.setdefault(r["run_id"], set()).add(r["phase"])
        groups = {}
        for r in records:
            if phases[r["run_id"]] != ({"sparse", "lottery"} if r["sparsity"] > 0 else {"sparse"}):
                continue  # a run cut short when the record was made: it would (rightly) train
            cfg = {k: v for k, v in r["config"].items() if k != "lam"}
            key = (r["task"], r["preset"], json.dumps(cfg, sort_keys=True), r["regime"], r["lam"], r["sparsity"])
            groups.setdefault(key, set()).add(r["seed"])
        assert groups
        for (task, preset, cfg, label, lam, sparsity), seeds in groups.items():
            config = config_from_dict(task, {**json.loads(cfg), "lam": lam})
            messages = []
            assert runner.run_sweep(task, config, [parse_regime(label)], [sparsity], sorted(seeds), out,
                                    preset=preset, lams=[lam], progress=False, log=messages.append) == []
            assert messages[0].endswith(f"already in {out / 'results.jsonl'}")
            n = len(seeds) * (2 if sparsity > 0 else 1)
            assert messages[0].startswith(f"{len(seeds)} runs ({n} results) planned, {n} already"), messages[0]


def test_an_old_record_of_other_inhibitor_constants_gets_their_label():
    from moduli.experiments.results import migrate_record

    old = {"run_id": "navigation-cpu-klein-lam0.0001-s0.9-seed0", "task": "navigation", "preset": "cpu",
           "regime": "klein", "lam": 1e-4, "sparsity": 0.9, "seed": 0, "phase": "sparse",
           "regime_spec": {"kind": "moduli", "manifold": "klein", "inhibitor": "dog", "trained": False, "label": "klein"},
           "config": {"steps": 10, "inhibitor": "dog", "inhibitor_c": 1.0, "sigma1": 0.7, "sigma2": math.sqrt(5.0),
                      "power": 3.0, "mu": 2.0}}
    new = migrate_record(old)
    assert new["config"] == {"steps": 10} and old["config"]["sigma1"] == 0.7  # the input is not changed
    assert new["regime"] == "klein:dog(sigma1=0.7)" and new["regime_spec"]["inhibitor_args"] == {"sigma1": 0.7}
    assert new["run_id"] == "navigation-cpu-klein-dog-sigma1=0.7-lam0.0001-s0.9-seed0"
    assert migrate_record(new) == new


# ----------------------------------------------------------------------------- a user's task

def test_a_registered_task_runs_from_the_command_line(tmp_path, monkeypatch, capsys):
    from dataclasses import dataclass

    from torch import nn

    from moduli.cli import main
    from moduli.experiments import registry
    from moduli.experiments.config import TrainConfig, _f
    from moduli.experiments.tasks import Task

    @dataclass(frozen=True)
    class SumConfig(TrainConfig):
        width: int = _f(6, "sum task: hidden units")

    class SumTask(Task):
        """Predict the sum of three numbers; metric: mean squared error."""

        metric = "mse"
        recurrent = ["0.weight"]

        def build_model(self):
            return nn.Sequential(nn.Linear(3, self.cfg.width), nn.Linear(self.cfg.width, 1))

        def sample(self, generator):
            x = torch.randn(self.cfg.batch_size, 3, generator=generator)
            return x, x.sum(1, keepdim=True)

        def loss(self, model, batch):
            x, y = batch
            return ((model(x) - y) ** 2).mean()

        @torch.no_grad()
        def evaluate(self, model):
            x = torch.randn(self.cfg.eval_size, 3, generator=torch.Generator().manual_seed(self.seed))
            return float(((model(x) - x.sum(1, keepdim=True)) ** 2).mean())

    monkeypatch.setattr(registry, "TASKS", dict(registry.TASKS))
    smoke = SumConfig(steps=4, epochs=2, batch_size=8, eval_size=8, lam=1e-3)
    registry.register_task("sum", SumTask, SumConfig, {"paper": smoke, "cpu": smoke, "smoke": smoke})
    with pytest.raises(ValueError, match="already registered"):
        registry.register_task("sum", SumTask, SumConfig, {"paper": smoke, "cpu": smoke, "smoke": smoke})
    with pytest.raises(TypeError, match="Task subclass"):
        registry.register_task("other", SumConfig, SumConfig, {"paper": smoke, "cpu": smoke, "smoke": smoke})
    code = main(["run", "sum", "--preset", "smoke", "--regime", "torus", "--sparsity", "50%", "--width", "4",
                 "--out", str(tmp_path), "--no-progress"])
    assert code == 0
    records = read_results(tmp_path)
    assert [r["phase"] for r in records] == ["sparse", "lottery"]
    assert all(r["metric"] == "mse" and r["config"]["width"] == 4 and r["recurrent_sparsity"] == 0.5 for r in records)
    assert "**sum** — mse" in capsys.readouterr().out


def test_built_in_tasks_run_from_a_fresh_process(tmp_path):
    import subprocess
    import sys

    cmd = [sys.executable, "-m", "moduli.cli", "run", "digits", "--preset", "smoke", "--steps", "3", "--epochs", "1",
           "--out", str(tmp_path), "--no-progress", "--threads", "1"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert read_results(tmp_path)[0]["metric"] == "accuracy"
    helped = subprocess.run([sys.executable, "-m", "moduli.cli", "run", "--help"], capture_output=True, text=True,
                            timeout=300)
    assert "{adding,digits,lm,navigation}" in helped.stdout and "--inhibitor-arg" in helped.stdout


def test_a_short_write_is_completed_and_a_failed_write_leaves_the_file_unchanged(tmp_path, monkeypatch):
    import errno
    import os as _os

    from moduli.experiments import results as store

    real_write = _os.write
    calls = []

    def short(fd, data):  # a disk that takes 10 bytes at a time
        calls.append(len(data))
        return real_write(fd, bytes(data[:10]))

    append_result(tmp_path, {"run_id": "a", "phase": "sparse", "value": 1.0})
    monkeypatch.setattr(store.os, "write", short)
    append_result(tmp_path, {"run_id": "b", "phase": "sparse", "value": 2.0, "pad": "x" * 50})
    assert len(calls) > 1 and [r["run_id"] for r in read_results(tmp_path)] == ["a", "b"]
    before = (tmp_path / "results.jsonl").read_bytes()

    def full(fd, data):  # 10 bytes, then the disk is full
        if len(calls) % 2:
            calls.append(0)
            raise OSError(errno.ENOSPC, "No space left on device")
        calls.append(len(data))
        return real_write(fd, bytes(data[:10]))

    monkeypatch.setattr(store.os, "write", full)
    with pytest.raises(store.RecordWriteError, match="record of c \\(lottery\\).*No space left"):
        append_result(tmp_path, {"run_id": "c", "phase": "lottery", "value": 3.0})
    assert (tmp_path / "results.jsonl").read_bytes() == before


def test_run_exits_nonzero_when_a_record_cannot_be_written(tmp_path, monkeypatch, capsys):
    import errno

    from moduli import cli
    from moduli.experiments import results as store

    def full(fd, data):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(store.os, "write", full)
    code = cli.main(["run", "navigation", "--preset", "smoke", "--steps", "3", "--epochs", "1", "--no-progress",
                     "--out", str(tmp_path)])
    assert code == 1
    assert "No space left on device" in capsys.readouterr().err
    assert read_results(tmp_path) == []


def test_spellings_of_one_sparsity_or_lambda_plan_one_run():
    from moduli.experiments.cli import parse_sparsity

    regimes = [parse_regime("torus")]
    runs = plan_runs("navigation", "smoke", regimes, [1e-4, 0.0001], [parse_sparsity("99.9%"), parse_sparsity("0.999")],
                     [0])
    assert len(runs) == 1 and runs[0].sparsity == 0.999
    with pytest.warns(UserWarning, match="planned twice"):
        runs = plan_runs("navigation", "smoke", regimes, [1e-4], [0.9, 0.9000001], [0])  # one run id, two values
    assert [r.sparsity for r in runs] == [0.9]


def test_records_count_parameters_and_table_params_shows_them(tmp_path, capsys):
    """Every record carries the model's parameter and nonzero counts and each pruned weight's nonzeros."""
    from moduli.cli import main

    cfg = _smoke()
    recs = run_sweep("navigation", cfg, [parse_regime("none")], [0.0, 0.5], [0], tmp_path, preset="smoke",
                     progress=False, log=lambda m: None)
    ng, npl = cfg.n_hidden, cfg.n_place
    total = npl * ng + 2 * ng + ng * ng + ng * npl  # encoder, W_ih, W_hh, decoder (no biases)
    for r in recs:
        assert r["params"] == total
        kept = round((1 - r["sparsity"]) * ng * ng)
        assert r["tensor_nonzeros"] == {"rnn.weight_hh_l0": kept}
        # the unpruned weights are dense (a random init has no exact zeros)
        assert r["nonzero_params"] == total - ng * ng + kept
    assert main(["table", str(tmp_path), "--params"]) == 0
    out = capsys.readouterr().out
    dense = f"{total:,} of {total:,} (100.0%)"
    assert dense in out and f"{total - ng * ng // 2:,} of {total:,}" in out
    assert f"| 50% | lottery | none | {ng * ng // 2:,} |" in out


def test_prefetched_batches_and_the_place_code_are_the_numbers_of_one_batch_at_a_time():
    """The task draws PREFETCH walks at once: bit for bit the batches of one sample() call per step."""
    cfg = dataclasses.replace(_smoke(), batch_size=5, seq_len=7, surround=True)
    task = NavigationTask(cfg, 0)
    k = task.PREFETCH + 3  # across a refill
    g1, g2 = torch.Generator().manual_seed(4), torch.Generator().manual_seed(4)
    cells = task.place_cells

    def code(p):  # the place-cell code as a sum over a trailing axis of 2
        d2 = ((p[..., None, :] - cells.centres) ** 2).sum(-1)
        c = torch.softmax(-d2 / (2 * cells.sigma ** 2), -1) - torch.softmax(-d2 / (4 * cells.sigma ** 2), -1)
        c = c - c.amin(-1, keepdim=True)
        return c / c.sum(-1, keepdim=True)

    for _ in range(k):
        v, c0, c = task.sample(g1)
        t = task.trajectories.sample(cfg.batch_size, generator=g2)
        assert torch.equal(v, t.velocity) and torch.equal(c0, code(t.init_position)) and torch.equal(c, code(t.position))
    # a new generator starts a new set of batches
    fresh = task.sample(torch.Generator().manual_seed(4))[0]
    assert torch.equal(fresh, task.trajectories.sample(cfg.batch_size, generator=torch.Generator().manual_seed(4)).velocity)
    # gradients still flow to positions (the out-of-place path)
    p = torch.zeros(3, 2, requires_grad=True)
    cells(p).square().sum().backward()
    assert p.grad is not None and torch.isfinite(p.grad).all()
