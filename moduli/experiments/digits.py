"""Moduli priors on non-recurrent layers (Appendix I): scikit-learn's digits as a runner task.

Two architectures, chosen by ``arch``:

* ``mlp`` -- ``64 -> n_hidden -> n_hidden -> 10`` with ReLU. The prior sits on
  every ``nn.Linear`` weight; each layer gets two embeddings, one for its
  input units and one for its output units (Appendix I.1).
* ``cnn`` -- ``conv(1 -> channels, 3x3) -> ReLU -> conv(channels -> 2 channels,
  3x3) -> ReLU -> 2x2 max-pool -> linear(32 channels -> 10)``. The prior sits on
  the two convolutions: channels are embedded and each kernel slice
  ``T[c', c]`` is penalised through its L2 norm (Appendix I.2.1).

The prior and the magnitude pruning act on these weights (the task's
``recurrent`` list, used by ``prior_targets``/``prune_targets="recurrent"``;
``"all"`` adds the CNN's linear readout). The data are the 1797 8x8 images
bundled with scikit-learn (no download), scaled to ``[0, 1]``; a fixed
permutation (``split_seed``, the same for every run seed) holds out
``test_size`` images. The metric is test accuracy (higher is better).
The runner knows it as the task ``digits`` (:mod:`moduli.experiments.registry`).

Examples
--------
>>> import torch
>>> DigitsCNN(channels=4)(torch.zeros(2, 1, 8, 8)).shape
torch.Size([2, 10])
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from .config import TrainConfig, _f
from .tasks import Task

__all__ = ["DigitsConfig", "DigitsMLP", "DigitsCNN", "DigitsTask", "DIGITS_PRESETS", "load_digits_tensors"]


class DigitsMLP(nn.Module):
    """``64 -> n_hidden -> n_hidden -> 10`` with ReLU; input ``[B, 64]`` or ``[B, 1, 8, 8]``, output logits ``[B, 10]``."""

    def __init__(self, n_hidden: int = 128):
        super().__init__()
        if isinstance(n_hidden, bool) or not isinstance(n_hidden, int) or n_hidden < 1:
            raise ValueError(f"n_hidden must be a positive int, got {n_hidden!r}")
        self.net = nn.Sequential(
            nn.Linear(64, n_hidden), nn.ReLU(), nn.Linear(n_hidden, n_hidden), nn.ReLU(), nn.Linear(n_hidden, 10),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x.reshape(x.shape[0], 64))


class DigitsCNN(nn.Module):
    """Two 3x3 convolutions (``channels``, ``2 channels``), a 2x2 max-pool and a linear readout.

    Input ``[B, 1, 8, 8]`` (or ``[B, 64]``), output logits ``[B, 10]``.
    """

    def __init__(self, channels: int = 16):
        super().__init__()
        if isinstance(channels, bool) or not isinstance(channels, int) or channels < 1:
            raise ValueError(f"channels must be a positive int, got {channels!r}")
        self.conv1 = nn.Conv2d(1, channels, 3, padding=1)
        self.conv2 = nn.Conv2d(channels, 2 * channels, 3, padding=1)
        self.readout = nn.Linear(2 * channels * 16, 10)

    def forward(self, x: Tensor) -> Tensor:
        x = x.reshape(x.shape[0], 1, 8, 8)
        x = torch.relu(self.conv2(torch.relu(self.conv1(x))))
        return self.readout(nn.functional.max_pool2d(x, 2).flatten(1))


@dataclass(frozen=True)
class DigitsConfig(TrainConfig):
    """Hyperparameters of the digits task (Adam; ``seq_len`` is unused)."""

    arch: str = _f("mlp", "digits architecture: MLP with priors on its Linear layers, or CNN with channel embeddings", ("mlp", "cnn"))
    n_hidden: int = _f(128, "digits MLP: units in each of the two hidden layers")
    channels: int = _f(16, "digits CNN: channels of the first convolution (the second has twice as many)")
    test_size: int = _f(497, "digits: images held out for the test accuracy")
    split_seed: int = _f(0, "digits: seed of the fixed train/test permutation (the same for every run seed)")

    def __post_init__(self):
        super().__post_init__()
        for name in ("n_hidden", "channels", "test_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.test_size > 1797 - self.batch_size:
            raise ValueError(f"test_size ({self.test_size}) leaves fewer training images than batch_size ({self.batch_size})")


DIGITS_PRESETS = {
    # Appendix I gives no hyperparameters; ours.
    "paper": DigitsConfig(arch="mlp", n_hidden=256, batch_size=64, lr=1e-3, steps=6000, epochs=30, lam=1e-4, seq_len=1),
    "cpu": DigitsConfig(arch="mlp", n_hidden=128, batch_size=64, lr=1e-3, steps=2000, epochs=10, lam=1e-4, seq_len=1),
    "smoke": DigitsConfig(arch="mlp", n_hidden=16, channels=4, batch_size=16, lr=1e-3, steps=6, epochs=3, lam=1e-4,
                          seq_len=1, test_size=200),
}


def load_digits_tensors() -> tuple[Tensor, Tensor]:
    """scikit-learn's bundled digits: images ``[1797, 1, 8, 8]`` in ``[0, 1]`` (float32), labels ``[1797]``."""
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.as_tensor(d.images, dtype=torch.float32).unsqueeze(1) / 16.0
    return x, torch.as_tensor(d.target, dtype=torch.long)


class DigitsTask(Task):
    """Digit classification; metric: test accuracy (higher is better)."""

    metric = "accuracy"
    higher_is_better = True

    def __init__(self, cfg: DigitsConfig, seed: int):
        if not isinstance(cfg, DigitsConfig):
            raise TypeError(f"cfg must be a DigitsConfig, got {type(cfg).__name__}")
        super().__init__(cfg, seed)
        x, y = load_digits_tensors()
        perm = torch.randperm(x.shape[0], generator=torch.Generator().manual_seed(cfg.split_seed))
        test, train = perm[: cfg.test_size], perm[cfg.test_size:]
        self.x_train, self.y_train = x[train], y[train]
        self.x_test, self.y_test = x[test], y[test]
        if cfg.arch == "mlp":
            self.recurrent = ["net.0.weight", "net.2.weight", "net.4.weight"]
        else:
            self.recurrent = ["conv1.weight", "conv2.weight"]

    def build_model(self) -> nn.Module:
        return DigitsMLP(self.cfg.n_hidden) if self.cfg.arch == "mlp" else DigitsCNN(self.cfg.channels)

    def sample(self, generator: torch.Generator):
        idx = torch.randint(0, self.x_train.shape[0], (self.cfg.batch_size,), generator=generator,
                            device=self.x_train.device)
        return self.x_train[idx], self.y_train[idx]

    def loss(self, model, batch) -> Tensor:
        x, y = batch
        p = next(model.parameters())
        return nn.functional.cross_entropy(model(x.to(p.device, p.dtype)), y.to(p.device))

    @torch.no_grad()
    def evaluate(self, model) -> float:
        p = next(model.parameters())
        was_training = model.training
        model.eval()
        pred = model(self.x_test.to(p.device, p.dtype)).argmax(-1).cpu()
        model.train(was_training)
        return float((pred == self.y_test).float().mean())
