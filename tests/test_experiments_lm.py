"""Tests of the language model, the digits task and the λ sweep (moduli.experiments.lm/.digits/.sweep)."""

from __future__ import annotations

import dataclasses
import json
import math
import struct
import sys
import zlib

import pytest
import torch

from moduli import manifolds as mf
from moduli import regularizers as rg
from moduli.experiments import corpus as cp
from moduli.experiments import get_preset, make_task, parse_regime, read_results, run_sweep
from moduli.experiments.digits import DigitsCNN, DigitsConfig, DigitsTask, load_digits_tensors
from moduli.experiments.lm import LMConfig, LMTask, WordRNN, sequence_nll
from moduli.experiments.sweep import log_grid, plot_metric_vs_lambda
from moduli.experiments.registry import register_task


pytestmark = pytest.mark.usefixtures("one_thread")


def _write_wikitext(path, period: int = 7, n_lines=(60, 12, 12)):
    """A deterministic, perfectly predictable text: a cycle of ``period`` words, 5 per line."""
    words = [f"w{i}" for i in range(period)]
    k = 0
    for split, n in zip(("train", "valid", "test"), n_lines):
        lines = []
        for _ in range(n):
            lines.append(" ".join(words[(k + j) % period] for j in range(5)))
            k += 5
        (path / f"{split}.txt").write_text("\n".join(lines) + "\n")
    return path


def _lm_cfg(data, **kw):
    base = dict(data=str(data), emb_dim=8, n_hidden=8, n_layers=3, batch_size=2, seq_len=5, lr=1.0, grad_clip=0.25, steps=6,
                epochs=3, lam=1e-3, eval_size=100, valid_tokens=0, eval_batch_size=2)
    base.update(kw)
    return LMConfig(**base)


# ----------------------------------------------------------------------------- corpus

def test_build_corpus_vocabulary_unk_and_eos():
    c = cp.build_corpus(["b a b", "", "c"], ["a z"], ["b"])
    # frequency order (ties: first seen): b x2, <eos> x3 -> <eos> first
    assert c.vocab == ("<eos>", "b", "a", "c", "<unk>")
    assert c.decode(c.train) == ["b", "a", "b", "<eos>", "<eos>", "c", "<eos>"]
    assert c.decode(c.valid) == ["a", "<unk>", "<eos>"]
    capped = cp.build_corpus(["b a b", "", "c"], ["a z"], ["b"], max_vocab=3)
    assert capped.vocab == ("<eos>", "b", "<unk>")
    assert capped.decode(capped.train) == ["b", "<unk>", "b", "<eos>", "<eos>", "<unk>", "<eos>"]
    with pytest.raises(ValueError, match="max_vocab"):
        cp.build_corpus(["a b"], [], [], max_vocab=-1)


def test_read_wikitext_directory(tmp_path):
    _write_wikitext(tmp_path)
    c = cp.read_wikitext(tmp_path)
    assert len(c.vocab) == 8  # 7 words and <eos>; valid/test use no unknown word
    assert c.n_tokens == {"train": 60 * 6, "valid": 12 * 6, "test": 12 * 6}
    (tmp_path / "test.txt").unlink()
    with pytest.raises(FileNotFoundError, match="test.txt"):
        cp.read_wikitext(tmp_path)
    with pytest.raises(FileNotFoundError, match="not a directory"):
        cp.read_wikitext(tmp_path / "nowhere")


def test_batchify_layout_and_errors():
    b = cp.batchify(torch.arange(11), 3)
    assert b.shape == (3, 3)
    assert b[:, 1].tolist() == [3, 4, 5]  # column k is the k-th contiguous slice
    with pytest.raises(ValueError, match="1-D"):
        cp.batchify(torch.zeros(2, 3, dtype=torch.long), 2)
    with pytest.raises(ValueError, match="batch_size"):
        cp.batchify(torch.arange(10), 0)
    with pytest.raises(ValueError, match="too few"):
        cp.batchify(torch.arange(3), 2)


def _write_ztext(path, testaments):
    """A SWORD zText module: ``testaments`` maps 'ot'/'nt' to lists of blocks, each a list of verses (None: empty slot)."""
    for t, blocks in testaments.items():
        bzz, bzs, bzv = b"", b"", b""
        for bi, verses in enumerate(blocks):
            raw, start = b"", 0
            for v in verses:
                if v is None:
                    bzv += struct.pack("<IIH", 0, 0, 0)
                    continue
                data = v.encode()
                bzv += struct.pack("<IIH", bi, len(raw), len(data))
                raw += data
            comp = zlib.compress(raw)
            bzs += struct.pack("<III", len(bzz), len(comp), len(raw))
            bzz += comp
        (path / f"{t}.bzz").write_bytes(bzz)
        (path / f"{t}.bzs").write_bytes(bzs)
        (path / f"{t}.bzv").write_bytes(bzv)


def test_sword_ztext_reader(tmp_path):
    _write_ztext(tmp_path, {
        "ot": [["<w>In</w> the beginning.", None, "Second ’verse’."], ["Third<note>skip me</note> one."]],
        "nt": [["New <title>Heading</title>testament."]],
    })
    verses = cp.read_sword_ztext(tmp_path)
    assert verses == ["<w>In</w> the beginning.", "Second ’verse’.", "Third<note>skip me</note> one.",
                      "New <title>Heading</title>testament."]
    assert [cp.osis_to_text(v) for v in verses] == ["In the beginning.", "Second ’verse’.", "Third one.", "New testament."]
    assert cp.tokenize_english("Second ’verse’.") == ["Second", "'", "verse", "'", "."]
    # a damaged index is an error, not garbage
    (tmp_path / "nt.bzv").write_bytes(struct.pack("<IIH", 5, 0, 3))
    with pytest.raises(ValueError, match="out of range"):
        cp.read_sword_ztext(tmp_path)
    with pytest.raises(FileNotFoundError, match="zText"):
        cp.read_sword_ztext(tmp_path / "empty")


def test_default_split_rule_and_rare_words():
    verses = [f"common word{i % 3} v{i}." for i in range(2000)]  # v{i} is seen once: <unk>
    s = cp.default_corpus_splits(verses)
    assert {k: len(v) for k, v in s.items()} == {"train": 1600, "valid": 200, "test": 200}
    # verse 850 is in block 8 (valid), 950 in block 9 (test), 1000 in block 10 (train)
    assert s["valid"][50] == "common word1 <unk> ."  # 850 % 3 == 1
    assert s["test"][50] == "common word2 <unk> ."  # 950 % 3 == 2
    assert s["train"][800] == "common word1 <unk> ."  # verse 1000


def test_missing_default_corpus_says_how_to_install(monkeypatch, tmp_path):
    monkeypatch.setenv("MODULI_WEB_MODULE", str(tmp_path / "absent"))
    cp._cached.cache_clear()
    try:
        with pytest.raises(FileNotFoundError, match="apt-get install sword-text-web"):
            cp.load_corpus("")
    finally:
        cp._cached.cache_clear()


@pytest.mark.skipif(not cp.DEFAULT_SWORD_MODULE.is_dir(), reason="Debian package sword-text-web not installed")
def test_default_corpus_sizes():
    c = cp.load_corpus("")  # numbers documented in docs/results_lm.md
    assert len(c.vocab) == 8786
    assert c.n_tokens == {"train": 896048, "valid": 111916, "test": 110954}
    assert c.decode(c.train[:4]) == ["The", "Holy", "Bible", "is"]


# ----------------------------------------------------------------------------- language model

def test_word_rnn_shapes_layers_and_input_check():
    m = WordRNN(30, 6, 10, 3)
    logits, h = m(torch.zeros(4, 2, dtype=torch.long))
    assert logits.shape == (4, 2, 30) and h.shape == (3, 2, 10)
    assert m.rnn.nonlinearity == "tanh" and m.rnn.num_layers == 3 and m.rnn.bias
    assert float(m.encoder.weight.detach().abs().max()) <= 0.1 and float(m.decoder.bias.detach().abs().max()) == 0.0
    with pytest.raises(ValueError, match="int64"):
        m(torch.zeros(4, 2))
    with pytest.raises(ValueError, match="n_hidden"):
        WordRNN(30, 6, 0)


def test_lm_config_validation():
    with pytest.raises(ValueError, match="lr_decay"):
        LMConfig(lr_decay=0.0)
    with pytest.raises(ValueError, match="max_vocab"):
        LMConfig(max_vocab=-3)
    p = get_preset("lm", "paper")
    assert (p.emb_dim, p.n_hidden, p.n_layers, p.batch_size, p.seq_len, p.lr, p.grad_clip, p.lr_decay) == \
        (650, 650, 3, 20, 35, 20.0, 0.25, 0.25)


def test_uniform_model_has_perplexity_equal_to_vocabulary(tmp_path):
    task = LMTask(_lm_cfg(_write_wikitext(tmp_path)), seed=0)
    model = task.build_model()
    with torch.no_grad():
        model.decoder.weight.zero_()  # logits all zero: uniform prediction
    assert task.evaluate(model) == pytest.approx(len(task.corpus.vocab), rel=1e-5)
    total, count = sequence_nll(model, task.test_data, 5)
    assert count == (task.test_data.shape[0] - 1) * task.test_data.shape[1]
    assert total == pytest.approx(count * math.log(len(task.corpus.vocab)), rel=1e-5)


def test_training_batches_are_contiguous_and_wrap(tmp_path):
    task = LMTask(_lm_cfg(_write_wikitext(tmp_path)), seed=0)
    model = task.build_model()
    task.begin_epoch(model, task.optimizer(model.parameters()), 0)
    x1, y1 = task.sample()
    assert torch.equal(x1[1:], y1[:-1])
    task.loss(model, (x1, y1))
    assert task._hidden is not None and not task._hidden.requires_grad
    x2, _ = task.sample()
    assert torch.equal(x2[0], y1[-1])  # the next batch continues the streams
    rows = task.train_data.shape[0]
    seen = 2 * 5
    while seen < rows - 1:
        seen += task.sample()[0].shape[0]
    assert seen == rows - 1
    x, _ = task.sample()  # wrapped around: back to the start, hidden state reset
    assert torch.equal(x, task.train_data[:5]) and task._hidden is None


def test_learning_rate_anneals_when_validation_stalls(tmp_path):
    task = LMTask(_lm_cfg(_write_wikitext(tmp_path), lr=20.0), seed=0)
    model = task.build_model()
    opt = task.optimizer(model.parameters())
    assert isinstance(opt, torch.optim.SGD) and opt.param_groups[0]["lr"] == 20.0
    task.begin_epoch(model, opt, 0)
    task.begin_epoch(model, opt, 1)  # first validation: an improvement over inf
    assert opt.param_groups[0]["lr"] == 20.0
    task.begin_epoch(model, opt, 2)  # same model, same loss: no improvement
    assert opt.param_groups[0]["lr"] == 5.0
    assert task.lr_history == [20.0, 5.0]


def test_lm_learns_a_predictable_text(tmp_path):
    cfg = _lm_cfg(_write_wikitext(tmp_path), n_layers=1, emb_dim=16, n_hidden=16, lr=2.0, steps=120, epochs=1)
    torch.manual_seed(0)
    task = LMTask(cfg, seed=0)
    model = task.build_model()
    before = task.evaluate(model)
    opt = task.optimizer(model.parameters())
    task.begin_epoch(model, opt, 0)
    for _ in range(cfg.steps):
        loss = task.loss(model, task.sample())
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        opt.step()
    after = task.evaluate(model)
    assert before > 6.0 and after < 2.0  # vocabulary 8; the cycle is deterministic


def test_lm_runner_prunes_every_layer_with_its_own_embedding(tmp_path):
    (tmp_path / "data").mkdir()
    cfg = _lm_cfg(_write_wikitext(tmp_path / "data"))
    out = tmp_path / "out"
    recs = run_sweep("lm", cfg, [parse_regime("torus")], [0.9], [0], out, preset="smoke", progress=False, log=lambda *a: None)
    assert [r["phase"] for r in recs] == ["sparse", "lottery"]
    for r in recs:
        assert r["metric"] == "perplexity" and r["value"] > 1 and not r["diverged"]
        assert r["pruned_weights"] == ["rnn.weight_hh_l0", "rnn.weight_hh_l1", "rnn.weight_hh_l2"]
        assert abs(r["recurrent_sparsity"] - 0.9) < 0.01
    ckpt = torch.load(out / "checkpoints" / f"{recs[0]['run_id']}-sparse.pt", weights_only=False)
    emb = ckpt["embeddings"]
    assert sorted(emb) == ["rnn.weight_hh_l0", "rnn.weight_hh_l1", "rnn.weight_hh_l2"]
    pts = [emb[k][0] for k in sorted(emb)]
    assert all(p.shape == (8, 2) for p in pts)
    assert not torch.equal(pts[0], pts[1]) and not torch.equal(pts[1], pts[2])


# ----------------------------------------------------------------------------- digits

def test_digits_data_and_fixed_split():
    x, y = load_digits_tensors()
    assert x.shape == (1797, 1, 8, 8) and y.shape == (1797,)
    assert float(x.min()) == 0.0 and float(x.max()) == 1.0 and set(y.tolist()) == set(range(10))
    cfg = get_preset("digits", "smoke")
    a, b = DigitsTask(cfg, seed=0), DigitsTask(cfg, seed=5)
    assert torch.equal(a.x_test, b.x_test)  # the split does not depend on the run seed
    assert a.x_test.shape[0] == cfg.test_size and a.x_train.shape[0] == 1797 - cfg.test_size
    with pytest.raises(ValueError, match="arch"):
        DigitsConfig(arch="rnn")


def test_mlp_prior_has_two_embeddings_per_linear_layer():
    cfg = dataclasses.replace(get_preset("digits", "smoke"), n_hidden=12)
    task = DigitsTask(cfg, seed=0)
    model = task.build_model()
    prior = rg.ModuliPrior(mf.FlatTorus(2, 10.0), rg.DifferenceOfGaussians())
    priors = rg.attach(model, prior, targets=task.recurrent, generator=torch.Generator().manual_seed(0))
    shapes = {n: (tuple(t.points_out.shape), tuple(t.points_in.shape)) for n, t in priors.terms.items()}
    assert shapes == {"net.0.weight": ((12, 2), (64, 2)), "net.2.weight": ((12, 2), (12, 2)),
                      "net.4.weight": ((10, 2), (12, 2))}
    t = priors.terms["net.2.weight"]
    assert not torch.equal(t.points_out, t.points_in)  # rows and columns are different neurons


def test_cnn_prior_penalises_kernel_slices_by_channel_distance():
    model = DigitsCNN(channels=3)
    prior = rg.ModuliPrior(mf.Circle(5.0), rg.DifferenceOfGaussians())
    priors = rg.attach(model, prior, targets=["conv1.weight", "conv2.weight"], generator=torch.Generator().manual_seed(1))
    t = priors.terms["conv2.weight"]
    assert t.points_out.shape == (6, 2) and t.points_in.shape == (3, 2)
    coeff = rg.DifferenceOfGaussians()(mf.Circle(5.0).cdist(t.points_out, t.points_in))
    slices = model.conv2.weight.detach().flatten(2).norm(dim=2)  # (6, 3) L2 norms of 3x3 kernels
    torch.testing.assert_close(t.penalty().detach(), (coeff * slices).sum())


def test_digits_mlp_learns_and_cnn_pruning_spares_the_readout(tmp_path):
    cfg = dataclasses.replace(get_preset("digits", "cpu"), steps=300, epochs=3)
    recs = run_sweep("digits", cfg, [parse_regime("none")], [0.0], [0], tmp_path / "mlp", preset="cpu",
                     progress=False, log=lambda *a: None)
    assert recs[0]["metric"] == "accuracy" and recs[0]["value"] > 0.9
    cnn = dataclasses.replace(get_preset("digits", "smoke"), arch="cnn", channels=4)
    recs = run_sweep("digits", cnn, [parse_regime("shuffled")], [0.9], [0], tmp_path / "cnn", preset="smoke",
                     progress=False, log=lambda *a: None)
    for r in recs:
        assert r["pruned_weights"] == ["conv1.weight", "conv2.weight"]
        assert abs(r["recurrent_sparsity"] - 0.9) < 0.01
        assert r["model_sparsity"] < 0.5  # the readout (512 x 10) is not pruned
        assert 0.0 <= r["value"] <= 1.0
    from moduli.experiments.plot import plot_directory

    paths = plot_directory(tmp_path / "cnn")  # no W_hh to draw: only the metric plot
    assert [p.name for p in paths] == ["digits_vs_sparsity.png"]


def test_prior_strength_changes_the_trained_digits_model(tmp_path):
    base = dataclasses.replace(get_preset("digits", "smoke"), steps=40, epochs=1)
    values = {}
    for lam in (0.0, 1.0):
        recs = run_sweep("digits", dataclasses.replace(base, lam=lam), [parse_regime("l1")], [0.0], [0],
                         tmp_path / f"l{lam}", preset="smoke", progress=False, log=lambda *a: None)
        values[lam] = recs[0]["final_train_loss"]
    assert values[1.0] > values[0.0]  # the L1 term is part of the objective: a worse fit of the data


# ----------------------------------------------------------------------------- registry and sweep

def test_task_registry():
    assert isinstance(make_task("digits", get_preset("digits", "smoke"), 0), DigitsTask)
    with pytest.raises(ValueError, match="digits"):
        make_task("nope", get_preset("digits", "smoke"), 0)
    with pytest.raises(ValueError, match="missing"):
        register_task("broken", DigitsTask, DigitsConfig, {"cpu": get_preset("digits", "cpu")})


def test_log_grid():
    assert log_grid(1e-4, 1.0, 5) == [1e-4, 1e-3, 1e-2, 1e-1, 1.0]
    assert log_grid(5e-4, 5.0, 3) == [5e-4, 0.05, 5.0]
    for bad in [(0.0, 1.0, 3), (1.0, 0.1, 3), (1e-3, 1.0, 0)]:
        with pytest.raises(ValueError):
            log_grid(*bad)


def test_plot_metric_vs_lambda(tmp_path):
    recs = []
    for regime, lam in [("none", 0.0), ("l1", 0.01), ("l1", 0.1), ("torus", 0.01), ("torus", 0.1)]:
        for seed in (0, 1):
            for phase in ("sparse", "lottery"):
                recs.append({"task": "digits", "regime": regime, "lam": lam, "sparsity": 0.9, "phase": phase,
                             "metric": "accuracy", "value": 0.5 + lam + 0.01 * seed, "seed": seed,
                             "recurrent_sparsity": 0.9})
    png = plot_metric_vs_lambda(recs, tmp_path / "p" / "x.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError, match="sparsity 0.5"):
        plot_metric_vs_lambda(recs, tmp_path / "y.png", sparsity=0.5)


def test_sweep_command(tmp_path, capsys):
    from moduli.cli import main
    import moduli.experiments.sweep  # noqa: F401  (registers the command)

    out = tmp_path / "sw"
    code = main(["sweep", "digits", "--preset", "smoke", "--lam-min", "1e-3", "--lam-max", "1e-1", "--num", "2",
                 "--steps", "3", "--epochs", "1", "--out", str(out), "--no-progress"])
    assert code == 0
    recs = read_results(out)
    keys = {(r["regime"], r["lam"]) for r in recs}
    assert keys == {("none", 0.0)} | {(g, lam) for g in ("l1", "torus", "shuffled") for lam in (1e-3, 0.1)}
    assert all(r["sparsity"] == 0.9 for r in recs)
    assert (out / "plots" / "digits_vs_lambda.png").exists() and (out / "sweep.csv").exists()
    assert main(["sweep", "digits", "--preset", "smoke", "--regime", "bogus", "--out", str(out)]) == 2
    assert "bogus" in capsys.readouterr().err


def test_run_command_on_a_wikitext_directory(tmp_path, capsys):
    from moduli.cli import main
    import moduli.experiments.cli  # noqa: F401

    data = tmp_path / "wt"
    data.mkdir()
    _write_wikitext(data)
    code = main(["run", "lm", "--preset", "smoke", "--data", str(data), "--eval-batch-size", "2",
                 "--out", str(tmp_path / "o"), "--no-progress"])
    assert code == 0
    (rec,) = read_results(tmp_path / "o")
    assert rec["config"]["data"] == str(data) and rec["metric"] == "perplexity" and rec["value"] > 1
    assert "perplexity" in capsys.readouterr().out
