"""The Fashion-MNIST path of the geodesic benchmarks.

Small synthetic IDX files stand in for the data everywhere except the tests
marked ``real``, which need Debian's ``dataset-fashion-mnist`` (files in
``/usr/share/datasets/fashion-mnist``) and skip without it.
"""

import gzip
import importlib.util
import json
import struct
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from moduli import geodesic

pytestmark = pytest.mark.usefixtures("one_thread")

ROOT = Path(__file__).resolve().parents[1]
FASHION = Path("/usr/share/datasets/fashion-mnist")
real = pytest.mark.skipif(not FASHION.is_dir(),
                          reason=f"{FASHION} absent (apt-get install dataset-fashion-mnist)")


def _bench(name):
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def gf():
    return _bench("geodesic_fashion")


def _write_idx(path, arr):
    arr = np.asarray(arr, dtype=np.uint8)
    head = bytes([0, 0, 0x08, arr.ndim]) + struct.pack(">" + "I" * arr.ndim, *arr.shape)
    with gzip.open(path, "wb") as fh:
        fh.write(head + arr.tobytes())


@pytest.fixture
def fake_fashion(tmp_path):
    """120 training and 20 test 28x28 images; training image i is the constant i (so it can be identified
    after pooling) plus a class-dependent bright square; labels cycle 0..9."""
    def images(n, offset):
        x = np.zeros((n, 28, 28), dtype=np.uint8)
        for i in range(n):
            x[i] = offset + i
            c = i % 10
            x[i, 2 * c:2 * c + 4, 4:8] = 250
        return x

    _write_idx(tmp_path / "train-images-idx3-ubyte.gz", images(120, 0))
    _write_idx(tmp_path / "train-labels-idx1-ubyte.gz", np.arange(120) % 10)
    _write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", images(20, 100))
    _write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", np.arange(20) % 10)
    return tmp_path


def test_pool_images_is_the_block_mean_and_checks_input(gf):
    x = torch.rand(3, 1, 28, 28)
    pooled = gf.pool_images(x, 14)
    assert pooled.shape == (3, 1, 14, 14)
    torch.testing.assert_close(pooled, x.view(3, 1, 14, 2, 14, 2).mean((3, 5)))
    assert gf.pool_images(x[:, 0], 7).shape == (3, 1, 7, 7)
    with pytest.raises(ValueError, match="side"):
        gf.pool_images(x, 0)
    with pytest.raises(ValueError, match="side"):
        gf.pool_images(x, 29)
    with pytest.raises(ValueError, match="x must be"):
        gf.pool_images(torch.rand(3, 784), 14)


def test_fashion_splits_are_seeded_disjoint_and_pooled(gf, fake_fashion):
    fit, val, test = gf.fashion_splits(fake_fashion, side=14, n_fit=30, n_val=20, seed=1)
    assert fit[0].shape == (30, 1, 14, 14) and val[0].shape == (20, 1, 14, 14) and test[0].shape == (20, 1, 14, 14)
    assert fit[1].dtype == torch.int64 and float(fit[0].max()) <= 1.0

    def ids(x):  # the top-right 4x4 block of each image holds only the constant i / 255
        return set((x[:, 0, 0, -1] * 255).round().long().tolist())

    f, v = ids(fit[0]), ids(val[0])
    assert len(f) == 30 and len(v) == 20 and not f & v and f | v <= set(range(120))
    assert ids(test[0]) == set(range(100, 120))
    # each label goes with its own image
    assert all(int(i) % 10 == int(y) for i, y in zip((fit[0][:, 0, 0, -1] * 255).round(), fit[1]))
    again = gf.fashion_splits(fake_fashion, side=14, n_fit=30, n_val=20, seed=1)
    torch.testing.assert_close(again[0][0], fit[0])
    other = gf.fashion_splits(fake_fashion, side=14, n_fit=30, n_val=20, seed=2)
    assert ids(other[0][0]) != f
    assert gf.fashion_splits(fake_fashion, side=8, n_fit=5, n_val=5, seed=0, n_test=7)[2][0].shape == (7, 1, 8, 8)
    with pytest.raises(ValueError, match="exceeds"):
        gf.fashion_splits(fake_fashion, side=14, n_fit=110, n_val=20, seed=0)
    with pytest.raises(ValueError, match="n_val"):
        gf.fashion_splits(fake_fashion, side=14, n_fit=5, n_val=0, seed=0)


def test_structured_baselines_remove_filters_with_biases(gf):
    net = gf.vgg_small(0, 14)
    m = gf.one_shot(net, 10 / 12, ["0"], structured=True)
    assert gf.units_left(m, "0") == 2
    assert int((m[0].bias != 0).sum()) == 2
    assert gf.units_left(net, "0") == 12  # the input model is untouched
    u = gf.one_shot(gf.mlp(0, 196), 0.7)
    assert gf.sparsity_of(u) == pytest.approx(0.7, abs=1e-4)


def test_best_point_maximises_the_smaller_validation_accuracy(gf):
    pts = [dict(val_a=0.9, val_b=0.1), dict(val_a=0.6, val_b=0.55), dict(val_a=0.5, val_b=0.7)]
    assert gf.best_point(pts) == 1


def test_benchmark_end_to_end_on_synthetic_files(gf, fake_fashion, tmp_path):
    out = tmp_path / "out"
    rc = gf.main(["--root", str(fake_fashion), "--out", str(out), "--only", "mlp", "cnn", "--seeds", "0",
                  "--n-fit", "30", "--n-val", "20", "--dense-updates", "20", "--sparsities", "0.7",
                  "--short-steps", "--ft-lrs", "1e-2", "--long-epochs", "2", "--long-ft-lrs", "1e-2",
                  "--iterative-rounds", "2"])
    assert rc == 0
    rows = json.loads((out / "results.json").read_text())["rows"]
    walks = [r for r in rows if r["method"] == "geodesic.sparsify, defaults"]
    assert {r["experiment"] for r in walks} == {"mlp", "cnn"}
    assert all(r["steps"] == 100 for r in walks)  # the default number of steps
    mlp_walk = next(r for r in walks if r["experiment"] == "mlp")
    assert mlp_walk["sparsity_measured"] == pytest.approx(0.7, abs=1e-4)
    assert next(r for r in walks if r["experiment"] == "cnn")["filters_left"] == 2
    table = (out / "table.md").read_text()
    assert "geodesic.sparsify, defaults" in table and "10 of 12 first-layer filters" in table
    assert gf.main(["--root", str(fake_fashion), "--out", str(out), "--replot"]) == 0
    assert (out / "table.md").read_text() == table


def test_benchmark_refuses_a_missing_root(gf, tmp_path):
    assert gf.main(["--root", str(tmp_path / "absent"), "--out", str(tmp_path / "o")]) == 1


def test_heldout_fashion_features_are_pooled_images(fake_fashion, monkeypatch):
    h = _bench("geodesic_heldout")
    monkeypatch.setattr(h, "FASHION", fake_fashion)
    (xf, yf), (xv, _), (xt, _) = h.fashion(0, n=120, side=14)
    x, y = geodesic.load_mnist(fake_fashion, "train", flatten=False)
    assert xf.shape[1] == 196 and len(xf) + len(xv) + len(xt) == 120
    # every row is the 2x2 block mean of one training image, with its label
    pooled = torch.nn.functional.adaptive_avg_pool2d(x, 14).reshape(120, -1)
    for row, label in zip(xf, yf):
        i = int(torch.cdist(row[None], pooled).argmin())
        torch.testing.assert_close(row, pooled[i])
        assert int(y[i]) == int(label)


@real
def test_installed_fashion_mnist_loads():
    x, y = geodesic.load_mnist(FASHION, "train")
    xt, yt = geodesic.load_mnist(FASHION, "test", flatten=False)
    assert x.shape == (60000, 784) and xt.shape == (10000, 1, 28, 28)
    assert torch.bincount(y).tolist() == [6000] * 10 and torch.bincount(yt).tolist() == [1000] * 10
    assert float(x.min()) == 0.0 and float(x.max()) == 1.0


@real
def test_installed_fashion_mnist_splits(gf):
    fit, val, test = gf.fashion_splits(FASHION, side=14, n_fit=300, n_val=100, seed=1)
    assert fit[0].shape == (300, 1, 14, 14) and test[0].shape == (10000, 1, 14, 14)
    assert len(torch.unique(fit[1])) == 10
    # a linear read-out of the pooled images is far above chance: the pixels and labels are paired
    def feats(x):
        return torch.cat([gf.pool_images(x, 7).flatten(1), torch.ones(len(x), 1)], 1)

    w = torch.linalg.lstsq(feats(fit[0]), torch.nn.functional.one_hot(fit[1], 10).float()).solution
    assert float((feats(val[0]) @ w).argmax(1).eq(val[1]).float().mean()) > 0.4
