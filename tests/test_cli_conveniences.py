"""moduli run/sweep --config, --print-config, --dry-run, and moduli --import for a user's task module."""

import json
import sys
import textwrap

import pytest

from moduli.cli import main


def _printed(capsys, argv):
    assert main(argv) == 0
    return json.loads(capsys.readouterr().out)


def test_print_config_round_trips_through_config_and_options_win(tmp_path, capsys):
    cfg = _printed(capsys, ["run", "navigation", "--preset", "smoke", "--n-hidden", "12", "--print-config"])
    assert cfg["n_hidden"] == 12 and cfg["steps"] == 6 and cfg["amp"] == "off"
    path = tmp_path / "c.json"
    path.write_text(json.dumps(cfg))
    again = _printed(capsys, ["run", "navigation", "--preset", "cpu", "--config", str(path), "--print-config"])
    assert again == cfg  # every field, over another preset
    # an option beats the file, even where the file alone would make the preset's combination invalid
    mixed = _printed(capsys, ["run", "navigation", "--preset", "cpu", "--config", str(path), "--steps", "5",
                              "--print-config"])
    assert mixed["steps"] == 5 and mixed["epochs"] == 3 and mixed["n_hidden"] == 12
    # a record works as a config file (its "config")
    record = {"run_id": "x", "config": {"n_hidden": 20, "lam": 0.003}}
    path.write_text(json.dumps(record))
    cfg = _printed(capsys, ["sweep", "navigation", "--preset", "smoke", "--config", str(path), "--print-config"])
    assert cfg["n_hidden"] == 20 and cfg["lam"] == 0.003


@pytest.mark.parametrize("content, message", [
    ('{"nope": 1}', "the navigation config has no fields ['nope']"),
    ("[1, 2]", "expected a JSON object of config fields, got list"),
    ("{not json", "not JSON"),
    ('{"n_hidden": "wide"}', "n_hidden must be an int"),
])
def test_a_bad_config_file_is_one_line_naming_it(tmp_path, capsys, content, message):
    path = tmp_path / "bad.json"
    path.write_text(content)
    assert main(["run", "navigation", "--config", str(path), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "o").exists()
    assert main(["run", "navigation", "--config", str(tmp_path / "missing.json")]) == 2
    assert "missing.json: No such file or directory" in capsys.readouterr().err


def test_dry_run_lists_the_plan_and_what_is_recorded(tmp_path, capsys):
    base = ["run", "navigation", "--preset", "smoke", "--regime", "none", "--sparsity", "50%", "--out", str(tmp_path),
            "--no-progress"]
    assert main([*base, "--regime", "torus", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "navigation-smoke-torus-lam0.0001-s0.5-seed0: sparse (to train), lottery (to train)" in out
    assert "2 runs, 4 phases to train" in out and not (tmp_path / "results.jsonl").exists()
    assert main(base) == 0
    capsys.readouterr()
    assert main([*base, "--regime", "torus", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "navigation-smoke-none-lam0-s0.5-seed0: sparse (recorded), lottery (recorded)" in out
    assert "2 runs, 2 phases to train" in out
    assert main(["sweep", "navigation", "--preset", "smoke", "--lam", "0.1", "--lam", "1", "--out", str(tmp_path / "s"),
                 "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "7 runs, 14 phases to train" in out  # none + (l1, torus, shuffled) x 2 lambdas


def test_import_makes_a_users_task_runnable(tmp_path, monkeypatch, capsys):
    (tmp_path / "my_tasks.py").write_text(textwrap.dedent("""
        import dataclasses
        from moduli.experiments import register_task
        from moduli.experiments.config import AddingConfig
        from moduli.experiments.tasks import AddingTask

        class Twice(AddingTask):
            pass

        presets = {p: dataclasses.replace(AddingConfig(), steps=6, epochs=3, n_hidden=8, batch_size=8, seq_len=6,
                                          eval_size=16) for p in ("paper", "cpu", "smoke")}
        register_task("twice", Twice, AddingConfig, presets, replace=True)
    """))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))
    try:
        assert main(["--import", "my_tasks", "run", "twice", "--preset", "smoke", "--out", str(tmp_path / "r"),
                     "--no-progress"]) == 0
        assert "twice" in capsys.readouterr().out
    finally:
        from moduli.experiments.registry import TASKS

        TASKS.pop("twice", None)
        sys.modules.pop("my_tasks", None)
    with pytest.raises(SystemExit) as exc:
        main(["--import", "no_such_module_here", "run", "navigation"])
    assert exc.value.code == 2
    assert "--import no_such_module_here: ModuleNotFoundError" in capsys.readouterr().err


def test_import_moduli_and_the_top_level_help_do_not_import_torch():
    import subprocess

    code = ("import sys, moduli; assert 'torch' not in sys.modules; "
            "from moduli.cli import main\n"
            "try:\n    main(['--help'])\nexcept SystemExit as e:\n    assert e.code == 0\n"
            "assert 'torch' not in sys.modules, 'moduli --help imported torch'\n"
            "from moduli import manifolds\nassert 'torch' in sys.modules")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "train a sweep" in done.stdout  # the subcommands are listed with their help
