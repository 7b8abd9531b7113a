"""The tutorials in docs/tutorials run as plain scripts (quick sizes) and render to Markdown."""

from __future__ import annotations

import importlib.util
import os
import pathlib
import re
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
TUTORIALS = ROOT / "docs" / "tutorials"


def _env(**extra):
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODULI_TUTORIAL_")}
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env["MPLBACKEND"] = "Agg"
    env.update(extra)
    return env


def _run(script, cwd, **extra):
    proc = subprocess.run([sys.executable, str(TUTORIALS / script)], cwd=cwd, env=_env(**extra),
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"{script} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


def _render_module():
    spec = importlib.util.spec_from_file_location("tutorial_render", TUTORIALS / "render.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_tutorials_run_as_scripts_in_quick_mode(tmp_path):
    out = _run("torus_prior_in_five_minutes.py", tmp_path, MODULI_TUTORIAL_QUICK="1")
    assert "quick=True" in out
    assert "sparse phase: recurrent sparsity 0.900" in out
    assert "lottery phase: recurrent sparsity 0.900" in out
    assert "prior frozen: True" in out
    errors = [float(e) for e in re.findall(r"phase: recurrent sparsity 0\.900, error ([\d.]+) cm", out)]
    assert len(errors) == 2 and all(0 < e < 300 for e in errors)      # finite distances inside a 2.2 m box
    assert (tmp_path / "heatmap.png").stat().st_size > 1000
    assert (tmp_path / "torus_rnn.pt").exists()

    out2 = _run("analyse_a_trained_rnn.py", tmp_path, MODULI_TUTORIAL_QUICK="1")
    assert "recurrent sparsity 0.900" in out2
    # the fixed torus embedding of 128 neurons: one component and the torus's two loops
    assert "embedding Betti numbers (H0, H1) counting bars longer than 2: [1, 2]" in out2
    assert re.search(r"null=gaussian\s*: significant bars \(H0, H1\) \[\d+, \d+\]", out2)
    ranking = re.search(r"^embedding\s+\[\('(\w+)'", out2, re.M)
    assert ranking and ranking.group(1) in ("torus", "klein")         # the same Betti numbers over Z/2
    ratio = re.search(r"^edge_length_ratio\s+([-\d.]+)\s+([-\d.]+)$", out2, re.M)
    assert ratio, out2
    assert 0 < float(ratio.group(1)) and 0.8 < float(ratio.group(2)) < 1.2   # a random mask: about 1
    for png in ("embedding_diagram.png", "activity_barcode.png", "edge_lengths.png"):
        assert (tmp_path / png).stat().st_size > 1000
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["heatmap.png", "torus_rnn.pt", "embedding_diagram.png", "activity_barcode.png", "edge_lengths.png"])


def test_second_tutorial_says_what_is_missing(tmp_path):
    proc = subprocess.run([sys.executable, str(TUTORIALS / "analyse_a_trained_rnn.py")], cwd=tmp_path,
                          env=_env(MODULI_TUTORIAL_QUICK="1"), capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0
    assert "torus_rnn.pt not found: run torus_prior_in_five_minutes.py" in proc.stderr


def test_parse_cells():
    render = _render_module()
    text = "# ---\n# jupyter:\n#   x: 1\n# ---\n\n# %% [markdown]\n# # Title\n#\n# prose\n\n# %%\nx = 1\n\nprint(x)\n\n# %%\n\n"
    assert render.parse_cells(text) == [("markdown", "# Title\n\nprose"), ("code", "x = 1\n\nprint(x)")]
    with pytest.raises(ValueError, match="not closed"):
        render.parse_cells("# ---\n# jupyter:\n")


def test_render_quick(tmp_path):
    proc = subprocess.run([sys.executable, str(TUTORIALS / "render.py"), "--quick", "--dest", str(tmp_path)],
                          cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    md = (tmp_path / "torus_prior_in_five_minutes.md").read_text()
    assert "render.py --quick" in md and "load average" in md
    assert "```python\nimport os" in md and "sparse phase: recurrent sparsity 0.900" in md
    assert "![heatmap.png](img/torus_prior_in_five_minutes-heatmap.png)" in md
    md2 = (tmp_path / "analyse_a_trained_rnn.md").read_text()
    for link in re.findall(r"\]\((img/[^)]+)\)", md + md2):
        assert (tmp_path / link).stat().st_size < 200_000


def test_committed_renderings_link_existing_small_images():
    for name in ("torus_prior_in_five_minutes", "analyse_a_trained_rnn"):
        md = (TUTORIALS / f"{name}.md").read_text()
        assert "render.py" in md and "load average" in md
        links = re.findall(r"\]\((img/[^)]+)\)", md)
        assert links, name
        for link in links:
            assert (TUTORIALS / link).stat().st_size < 200_000
