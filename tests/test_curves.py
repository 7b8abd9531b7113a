"""Learning curves: DIR/curves/RUN_ID-PHASE.jsonl beside every record, through workers too, and their plot."""

import json

import pytest

from moduli.cli import main
from moduli.experiments import get_preset, parse_regime, run_sweep
from moduli.experiments.results import curve_path, read_curve, read_results, record_phase
from moduli.experiments.train import CHECK_EVERY, git_commit

pytestmark = pytest.mark.usefixtures("one_thread")
QUIET = dict(preset="smoke", progress=False, log=lambda m: None)


def _cfg():
    import dataclasses

    return dataclasses.replace(get_preset("navigation", "smoke"), steps=2 * CHECK_EVERY + 7, epochs=3)


def _check(out, records, cfg):
    for r in records:
        rows = read_curve(out, r["run_id"], r["phase"])
        assert r["curve_file"] == f"curves/{r['run_id']}-{r['phase']}.jsonl" and "curve" not in r
        steps = [row["step"] for row in rows]
        epoch_starts = [round(k * cfg.steps / cfg.epochs) for k in range(1, cfg.epochs)]
        assert steps == sorted(set([CHECK_EVERY, 2 * CHECK_EVERY, cfg.steps] + epoch_starts))
        assert rows[-1]["error_cm"] == r["value"]  # the last row holds the phase's evaluation
        evaluated = [row["step"] for row in rows if "error_cm" in row]
        assert evaluated == epoch_starts + [cfg.steps]
        assert all(row["loss"] > 0 and row["time_s"] >= 0 for row in rows)
        if r["regime"] == "none":
            assert all(row["penalty"] is None for row in rows)
        else:
            assert all(row["penalty"] > 0 for row in rows)
        if r["phase"] == "sparse":  # the sparsity a row reports is that of the epoch before it
            assert rows[-1]["pruned_sparsity"] == pytest.approx(r["pruned_sparsity"])
            assert rows[0]["pruned_sparsity"] == 0.0


def test_every_phase_writes_its_curve_serially_and_in_workers(tmp_path):
    cfg = _cfg()
    regimes = [parse_regime("none"), parse_regime("torus")]
    serial = run_sweep("navigation", cfg, regimes, [0.5], [0], tmp_path / "a", **QUIET)
    _check(tmp_path / "a", serial, cfg)
    par = run_sweep("navigation", cfg, regimes, [0.5], [0], tmp_path / "b", workers=2, threads=1, **QUIET)
    _check(tmp_path / "b", par, cfg)
    for r in serial:  # the same curves either way (apart from wall times)
        a, b = (read_curve(tmp_path / d, r["run_id"], r["phase"]) for d in "ab")
        assert [{k: v for k, v in x.items() if k != "time_s"} for x in a] == \
               [{k: v for k, v in x.items() if k != "time_s"} for x in b]
    assert all(rec["git_commit"] == git_commit() for rec in read_results(tmp_path / "a"))


def test_a_resumed_lottery_phase_writes_its_curve(tmp_path):
    cfg = _cfg()
    run_sweep("navigation", cfg, [parse_regime("torus")], [0.5], [0], tmp_path, **QUIET)
    lines = (tmp_path / "results.jsonl").read_text().splitlines()
    (tmp_path / "results.jsonl").write_text(lines[0] + "\n")
    (lottery,) = [json.loads(line) for line in lines[1:]]
    curve_path(tmp_path, lottery["run_id"], "lottery").unlink()
    (again,) = run_sweep("navigation", cfg, [parse_regime("torus")], [0.5], [0], tmp_path, **QUIET)
    assert again["phase"] == "lottery" and again["value"] == lottery["value"]
    _check(tmp_path, [again], cfg)


def test_record_phase_writes_the_curve_before_the_record(tmp_path, monkeypatch):
    from moduli.experiments import results

    seen = []
    monkeypatch.setattr(results, "append_result",
                        lambda out, rec: seen.append(curve_path(out, rec["run_id"], rec["phase"]).exists()))
    rec = record_phase(tmp_path, {"run_id": "r", "phase": "sparse", "curve": [{"step": 1, "loss": 2.0}]})
    assert seen == [True] and "curve" not in rec and read_curve(tmp_path, "r", "sparse") == [{"step": 1, "loss": 2.0}]
    curve_path(tmp_path, "r", "sparse").write_text("[1, 2]\n")
    with pytest.raises(ValueError, match="line 1: not a learning-curve row"):
        read_curve(tmp_path, "r", "sparse")


def test_plot_curves_draws_them_and_says_when_there_are_none(tmp_path, capsys):
    cfg = _cfg()
    run_sweep("navigation", cfg, [parse_regime("none"), parse_regime("torus")], [0.5], [0, 1], tmp_path, **QUIET)
    assert main(["plot", str(tmp_path), "--curves"]) == 0
    png = tmp_path / "plots" / "navigation_curves_s50.png"
    assert str(png) in capsys.readouterr().out and png.stat().st_size > 10_000
    for f in (tmp_path / "curves").iterdir():
        f.unlink()
    assert main(["plot", str(tmp_path), "--curves"]) == 1
    assert "no learning curves" in capsys.readouterr().err
