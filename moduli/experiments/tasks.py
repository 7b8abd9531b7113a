"""Tasks as the runner sees them (data, model, loss, metric): the interface and the navigation and adding tasks.

Tasks are made by name through :mod:`moduli.experiments.registry`.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from .adding import AddingRNN, adding_batch
from .config import AddingConfig, NavigationConfig, TrainConfig
from .navigation import NavigationRNN, PlaceCells, TrajectoryGenerator, navigation_loss, position_error_cm

__all__ = ["Task", "NavigationTask", "AddingTask"]

# Offsets that keep the random streams of one seed apart.
_EVAL_STREAM, _TASK_STREAM = 1_000_003, 2_000_003


class Task:
    """Interface: ``build_model()``, ``sample(generator)``, ``loss(model, batch)``, ``evaluate(model)``.

    Attributes
    ----------
    metric : str
        Name of the reported number.
    higher_is_better : bool
        False (default) for errors and perplexities, True for accuracies.
    recurrent : list of str
        Qualified names of the recurrent (hidden update) matrices; for a
        non-recurrent task, the weights that carry the prior and are pruned
        under ``prior_targets="recurrent"`` / ``prune_targets="recurrent"``.

    Two optional hooks shape the training loop: :meth:`optimizer` (default:
    Adam with ``cfg.lr``) and :meth:`begin_epoch` (default: nothing), called at
    the start of every pruning epoch of a phase before that epoch's pruning
    step (epoch 0 starts a new phase).

    Devices: the runner builds a task on the CPU (its fixed data drawn there,
    the same on every device), calls :meth:`to` with the run's device, moves
    the model there, and passes :meth:`sample` a generator of that device, so
    training batches are drawn where they are used. ``sample`` should draw on
    ``generator.device``.
    """

    metric: str = ""
    higher_is_better: bool = False
    recurrent: list[str] = []

    def __init__(self, cfg: TrainConfig, seed: int):
        self.cfg = cfg
        self.seed = int(seed)
        self.device = torch.device("cpu")

    def to(self, device) -> "Task":
        """Move the task's fixed tensors (evaluation set, place cells, ...) to ``device``; return ``self``.

        The default moves every tensor, module and dataclass, tuple, list or
        dict of them among the task's attributes. Override it for data held
        elsewhere.
        """
        from .devices import move_to

        device = torch.device(device)
        for name, value in list(vars(self).items()):
            if name not in ("cfg", "device"):
                setattr(self, name, move_to(value, device))
        self.device = device
        return self

    def build_model(self) -> nn.Module:
        raise NotImplementedError

    def sample(self, generator: torch.Generator):
        raise NotImplementedError

    def loss(self, model: nn.Module, batch) -> Tensor:
        raise NotImplementedError

    @torch.no_grad()
    def evaluate(self, model: nn.Module) -> float:
        raise NotImplementedError

    def optimizer(self, params) -> torch.optim.Optimizer:
        """The optimizer of a training phase (a new one per phase).

        ``params`` is a list of tensors or of parameter groups (trained
        embeddings get their own group when ``cfg.embed_lr`` is set). Adam
        with ``cfg.lr``; a config with ``optimizer`` and ``weight_decay``
        fields (navigation, adding) chooses Adam or AdamW and the decay.
        """
        name = getattr(self.cfg, "optimizer", "adam")
        decay = getattr(self.cfg, "weight_decay", 0.0)
        if name == "adamw":
            return torch.optim.AdamW(params, lr=self.cfg.lr, weight_decay=decay)
        if name != "adam":
            raise ValueError(f"optimizer must be 'adam' or 'adamw', got {name!r}")
        if decay:
            return torch.optim.Adam(params, lr=self.cfg.lr, weight_decay=decay)
        return torch.optim.Adam(params, lr=self.cfg.lr)

    def begin_epoch(self, model: nn.Module, optimizer: torch.optim.Optimizer, epoch: int) -> None:
        """Called at the start of pruning epoch ``epoch`` (0, 1, ...) of a phase."""


class NavigationTask(Task):
    """Path integration with place-cell outputs; metric: mean position error in cm.

    The place-cell centres and the evaluation trajectories are fixed by the seed;
    training batches come from the generator passed to :meth:`sample`.
    """

    metric = "error_cm"
    recurrent = ["rnn.weight_hh_l0"]

    def __init__(self, cfg: NavigationConfig, seed: int):
        if not isinstance(cfg, NavigationConfig):
            raise TypeError(f"cfg must be a NavigationConfig, got {type(cfg).__name__}")
        super().__init__(cfg, seed)
        g = torch.Generator().manual_seed(_TASK_STREAM + self.seed)
        self.place_cells = PlaceCells(cfg.n_place, cfg.box_width, cfg.place_sigma, surround=cfg.surround, generator=g)
        self.trajectories = TrajectoryGenerator(cfg.box_width, cfg.seq_len)
        ev = torch.Generator().manual_seed(_EVAL_STREAM + self.seed)
        self.eval_set = self.trajectories.sample(cfg.eval_size, generator=ev)

    def build_model(self) -> nn.Module:
        return NavigationRNN(self.cfg.n_place, self.cfg.n_hidden)

    def _inputs(self, velocity: Tensor) -> Tensor:
        """The RNN's input: velocity (m/s), or displacement per step (m) under ``inputs="displacement"``."""
        return velocity * self.trajectories.dt if self.cfg.inputs == "displacement" else velocity

    #: Training batches whose walks are integrated together (the same numbers as one at a time, see
    #: :meth:`~moduli.experiments.navigation.TrajectoryGenerator.sample_many`).
    PREFETCH = 32

    def sample(self, generator):
        """One training batch: inputs, place-cell code of the start, place-cell codes along the walk.

        Walks are drawn :attr:`PREFETCH` batches at a time from ``generator``
        and handed out one per call, equal to drawing them one per call as long
        as nothing else draws from ``generator`` in between (a new generator
        starts a new set).
        """
        pending = getattr(self, "_pending", None)
        if pending is None or pending[0] is not generator or not pending[1]:
            pending = self._pending = (generator, self.trajectories.sample_many(
                self.PREFETCH, self.cfg.batch_size, generator=generator)[::-1])
        t = pending[1].pop()
        return self._inputs(t.velocity), self.place_cells(t.init_position), self.place_cells(t.position)

    def loss(self, model, batch):
        velocity, init_code, target = batch
        return navigation_loss(model(velocity, init_code), target, readout=self.cfg.readout)

    @torch.no_grad()
    def evaluate(self, model, chunk: int = 500) -> float:
        total, n = 0.0, 0
        ev = self.eval_set
        for i in range(0, ev.velocity.shape[0], chunk):
            v, p, p0 = ev.velocity[i:i + chunk], ev.position[i:i + chunk], ev.init_position[i:i + chunk]
            logits = model(self._inputs(v), self.place_cells(p0))
            err = position_error_cm(logits, p, self.place_cells.centres, k=self.cfg.decode_k, readout=self.cfg.readout)
            total += float(err) * v.shape[0]
            n += v.shape[0]
        return total / n


class AddingTask(Task):
    """The adding problem; metric: root mean squared error on fresh sequences."""

    metric = "rmse"
    recurrent = ["rnn.weight_hh_l0"]

    def __init__(self, cfg: AddingConfig, seed: int):
        if not isinstance(cfg, AddingConfig):
            raise TypeError(f"cfg must be an AddingConfig, got {type(cfg).__name__}")
        super().__init__(cfg, seed)
        ev = torch.Generator().manual_seed(_EVAL_STREAM + self.seed)
        self.eval_set = adding_batch(cfg.eval_size, cfg.seq_len, generator=ev)

    def build_model(self) -> nn.Module:
        return AddingRNN(self.cfg.n_hidden, bias=self.cfg.bias, init=self.cfg.init)

    def sample(self, generator):
        return adding_batch(self.cfg.batch_size, self.cfg.seq_len, generator=generator)

    def loss(self, model, batch):
        x, y = batch
        return torch.mean((model(x) - y) ** 2)

    @torch.no_grad()
    def evaluate(self, model, chunk: int = 2000) -> float:
        x, y = self.eval_set
        sq = 0.0
        for i in range(0, x.shape[0], chunk):
            sq += float(((model(x[i:i + chunk]) - y[i:i + chunk]) ** 2).sum())
        return math.sqrt(sq / x.shape[0])
