"""The runner's neuron swaps (``--swap-every``): records, curves, refusals, unchanged defaults."""

import dataclasses
import json

import pytest
import torch

from moduli.cli import main
from moduli.experiments import train
from moduli.experiments.config import NAVIGATION_PRESETS
from moduli.experiments.regimes import parse_regime

pytestmark = pytest.mark.usefixtures("one_thread")


def _records(out):
    return [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]


def test_swaps_lower_the_prior_cost_and_are_recorded(tmp_path):
    out = tmp_path / "swaps"
    args = ["run", "navigation", "--preset", "smoke", "--regime", "torus", "--sparsity", "50%", "--steps", "30",
            "--epochs", "3", "--no-progress"]
    assert main(args + ["--swap-every", "10", "--out", str(out)]) == 0
    assert main(args + ["--out", str(tmp_path / "plain")]) == 0
    sparse = next(r for r in _records(out) if r["phase"] == "sparse")
    lottery = next(r for r in _records(out) if r["phase"] == "lottery")
    plain = next(r for r in _records(tmp_path / "plain") if r["phase"] == "sparse")
    assert sparse["config"]["swap_every"] == 10 and "swap_every" not in plain["config"]
    assert sparse["swaps"] > 0 and sparse["swap_gain"] > 0  # a random embedding of a trained matrix is improvable
    assert sparse["lam_penalty"] > 0 and "swaps" not in lottery  # the lottery phase keeps the swapped embedding
    curve = [json.loads(line) for line in next((out / "curves").glob("*-sparse.jsonl")).read_text().splitlines()]
    assert [row["swaps"] for row in curve] == sorted(row["swaps"] for row in curve)
    ckpt = torch.load(next((out / "checkpoints").glob("*-sparse.pt")), map_location="cpu", weights_only=False)
    plain_ckpt = torch.load(next((tmp_path / "plain" / "checkpoints").glob("*-sparse.pt")), map_location="cpu",
                            weights_only=False)
    p_swapped, p_plain = ckpt["embeddings"]["rnn.weight_hh_l0"][0], plain_ckpt["embeddings"]["rnn.weight_hh_l0"][0]
    # the same points, in another order: swaps permute the embedding
    assert not torch.equal(p_swapped, p_plain)
    key = lambda p: sorted(map(tuple, p.tolist()))  # noqa: E731
    assert key(p_swapped) == key(p_plain)


def test_swaps_are_refused_for_regimes_without_an_embedding_that_shapes_the_coefficients(capsys):
    cfg = dataclasses.replace(NAVIGATION_PRESETS["smoke"], swap_every=5)
    for name in ("none", "l1", "shuffled"):
        with pytest.raises(ValueError, match="swap_every .* exchanges neurons' embedding points"):
            train.check_swaps(parse_regime(name), cfg)
    train.check_swaps(parse_regime("torus:trained"), cfg)
    assert main(["run", "navigation", "--preset", "smoke", "--regime", "l1", "--swap-every", "5", "--dry-run"]) == 2
    assert "regime 'l1' has no coefficients that follow an embedding" in capsys.readouterr().err
    with pytest.raises(ValueError, match="swap_every must be non-negative"):
        dataclasses.replace(cfg, swap_every=-1)
