"""The navigation task (Section 4.1, Appendix A.1 of the moduli-regularization paper).

An agent walks in a square box; a recurrent network receives the agent's
velocities and must report its position as a population code over ``Np``
place cells ("landmarks"). The architecture is the grid-cell RNN of Sorscher
et al. (2023) that the paper builds on: a linear encoder maps the place-cell
code of the start position to the initial hidden state, a ReLU RNN without
bias reads 2-D velocities, and a linear decoder maps every hidden state to
``Np`` logits, trained with the cross entropy against the true place-cell code.

Trajectory statistics follow that model: time step ``dt = 0.02`` s, forward
speeds Rayleigh-distributed with scale ``0.13 * 2 pi`` m/s, heading turns
``N(0, 11.52 rad/s) * dt`` and wall avoidance (within ``0.03`` m of a wall and
heading into it, the agent turns away by ``pi/2 - |angle|`` and slows to a
quarter of its speed).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import torch
from torch import Tensor, nn

from .._validate import integer, positive
from .devices import run_rnn, sampling_device

__all__ = [
    "Trajectories",
    "TrajectoryGenerator",
    "PlaceCells",
    "NavigationRNN",
    "navigation_loss",
    "decode_position",
    "position_error_cm",
]


@dataclass
class Trajectories:
    """A batch of trajectories.

    Attributes
    ----------
    velocity : Tensor, shape=[batch, seq_len, 2]
        Displacement per time step divided by ``dt`` (m/s), in world axes, so
        that ``position[:, t] = init_position + dt * velocity[:, :t+1].sum(1)``.
    position : Tensor, shape=[batch, seq_len, 2]
        Position after each velocity step (m), box centred at the origin.
    init_position : Tensor, shape=[batch, 2]
        Start position (m).
    head_direction : Tensor, shape=[batch, seq_len]
        Heading (rad, in ``[-pi, pi)``) used for each step.
    """

    velocity: Tensor
    position: Tensor
    init_position: Tensor
    head_direction: Tensor


class TrajectoryGenerator:
    """Random walks in a square box centred at the origin.

    Parameters
    ----------
    box_width : float
        Side of the square box in metres (the paper uses 2.2).
    seq_len : int
        Number of velocity steps per trajectory.
    dt : float
        Time step in seconds.
    speed_scale : float
        Scale of the Rayleigh distribution of forward speeds (m/s).
    turn_std : float
        Standard deviation of the angular velocity (rad/s); the heading turns
        by ``N(0, turn_std) * dt`` each step.
    border_region : float
        Distance to a wall (m) below which the agent avoids it.

    Examples
    --------
    >>> import torch
    >>> gen = TrajectoryGenerator(box_width=2.2, seq_len=20)
    >>> traj = gen.sample(4, generator=torch.Generator().manual_seed(0))
    >>> tuple(traj.velocity.shape), tuple(traj.position.shape)
    ((4, 20, 2), (4, 20, 2))
    >>> bool(traj.position.abs().max() <= 1.1)
    True
    """

    def __init__(
        self,
        box_width: float = 2.2,
        seq_len: int = 20,
        *,
        dt: float = 0.02,
        speed_scale: float = 0.13 * 2 * math.pi,
        turn_std: float = 11.52,
        border_region: float = 0.03,
    ):
        self.box_width = positive(box_width, "box_width")
        self.seq_len = integer(seq_len, "seq_len", minimum=1)
        self.dt = positive(dt, "dt")
        self.speed_scale = positive(speed_scale, "speed_scale")
        self.turn_std = positive(turn_std, "turn_std")
        self.border_region = positive(border_region, "border_region")

    def avoid_walls(self, position: Tensor, heading: Tensor) -> tuple[Tensor, Tensor]:
        """Which agents must turn away from a wall, and by how much.

        Parameters
        ----------
        position : Tensor, shape=[batch, 2]
        heading : Tensor, shape=[batch]

        Returns
        -------
        near_wall : Tensor of bool, shape=[batch]
            Within ``border_region`` of the nearest wall and heading into it.
        turn : Tensor, shape=[batch]
            ``sign(a) * (pi/2 - |a|)`` where ``a`` is the heading relative to
            the nearest wall's outward normal; zero where ``near_wall`` is false.
        """
        half = self.box_width / 2
        x, y = position[:, 0], position[:, 1]
        # distances to the walls whose outward normals point at 0, pi/2, pi, 3pi/2
        walls = torch.stack([half - x, half - y, half + x, half + y], dim=-1)
        d_wall, which = walls.min(dim=-1)
        normal = which.to(heading.dtype) * (math.pi / 2)
        rel = torch.remainder(heading - normal + math.pi, 2 * math.pi) - math.pi
        near = (d_wall < self.border_region) & (rel.abs() < math.pi / 2)
        turn = torch.where(near, torch.sign(rel) * (math.pi / 2 - rel.abs()), torch.zeros_like(rel))
        return near, turn

    def sample(
        self,
        batch_size: int,
        *,
        generator: Optional[torch.Generator] = None,
        dtype: Optional[torch.dtype] = None,
        device=None,
    ) -> Trajectories:
        """Draw ``batch_size`` trajectories.

        Parameters
        ----------
        batch_size : int
        generator : torch.Generator, optional
            Source of randomness; the trajectories are drawn on its device.
        dtype, device : optional
            Of the returned tensors (default: torch's default dtype; the
            generator's device, else the CPU).

        Returns
        -------
        Trajectories

        Raises
        ------
        ValueError
            If ``device`` and the generator's device differ (a generator draws
            only on its own device).
        """
        return self.sample_many(1, batch_size, generator=generator, dtype=dtype, device=device)[0]

    def sample_many(
        self,
        n: int,
        batch_size: int,
        *,
        generator: Optional[torch.Generator] = None,
        dtype: Optional[torch.dtype] = None,
        device=None,
    ) -> list[Trajectories]:
        """``n`` batches, equal to ``n`` calls of :meth:`sample` with the same generator, computed at once.

        The random numbers of each batch are drawn in the order :meth:`sample`
        draws them, then the walks of all ``n`` batches are integrated together
        (every operation of the walk is elementwise per agent), so the result is
        the same, bit for bit, at the cost of one batch's Python loop over the
        time steps instead of ``n``.

        Examples
        --------
        >>> import torch
        >>> gen = TrajectoryGenerator(seq_len=5)
        >>> many = gen.sample_many(3, 4, generator=torch.Generator().manual_seed(0))
        >>> g = torch.Generator().manual_seed(0)
        >>> all(torch.equal(m.position, gen.sample(4, generator=g).position) for m in many)
        True
        """
        n = integer(n, "n", minimum=1)
        batch_size = integer(batch_size, "batch_size", minimum=1)
        dtype = dtype or torch.get_default_dtype()
        device = sampling_device(generator, device)
        kw = dict(generator=generator, dtype=dtype, device=device)
        draws = [self._draw(batch_size, kw) for _ in range(n)]
        walk = self._integrate(*(torch.cat(parts) if n > 1 else parts[0] for parts in zip(*draws)))
        if n == 1:
            return [walk]
        return [Trajectories(*(t[i * batch_size:(i + 1) * batch_size] for t in
                               (walk.velocity, walk.position, walk.init_position, walk.head_direction)))
                for i in range(n)]

    def _draw(self, batch_size: int, kw: dict) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """The random numbers of one batch: start positions and headings, turns, uniforms for the speeds."""
        half = self.box_width / 2
        T = self.seq_len
        pos = (torch.rand(batch_size, 2, **kw) * 2 - 1) * half
        heading = torch.rand(batch_size, **kw) * (2 * math.pi)
        turns = torch.randn(batch_size, T, **kw) * self.turn_std
        # Rayleigh(scale) by inversion: scale * sqrt(-2 log U), U in (0, 1]
        u = 1.0 - torch.rand(batch_size, T, **kw)
        return pos, heading, turns, u

    def _integrate(self, pos: Tensor, heading: Tensor, turns: Tensor, u: Tensor) -> Trajectories:
        """The walks from the random numbers of :meth:`_draw` (any number of agents)."""
        half = self.box_width / 2
        batch_size, T = turns.shape
        dtype = pos.dtype
        speeds = self.speed_scale * torch.sqrt(-2.0 * torch.log(u))
        init = pos.clone()
        velocity = torch.empty(batch_size, T, 2, dtype=dtype, device=pos.device)
        position = torch.empty_like(velocity)
        headings = torch.empty(batch_size, T, dtype=dtype, device=pos.device)
        for t in range(T):
            near, turn = self.avoid_walls(pos, heading)
            speed = torch.where(near, 0.25 * speeds[:, t], speeds[:, t])
            heading = heading + turn
            # The wall turn applies before the step so the agent never leaves the box.
            direction = torch.stack([torch.cos(heading), torch.sin(heading)], dim=-1)
            new = pos + speed[:, None] * direction * self.dt
            # A long Rayleigh step started just outside the border region can
            # still cross a wall: reflect it back into the box, and report the
            # displacement actually made so that positions integrate velocities.
            new = torch.where(new > half, 2 * half - new, new)
            new = torch.where(new < -half, -2 * half - new, new)
            velocity[:, t] = (new - pos) / self.dt
            pos = new
            position[:, t] = pos
            headings[:, t] = torch.remainder(heading + math.pi, 2 * math.pi) - math.pi
            heading = heading + turns[:, t] * self.dt
        return Trajectories(velocity, position, init, headings)


class PlaceCells(nn.Module):
    """Gaussian place cells with centres uniform in the box; the code is a softmax.

    The code of a position ``x`` is ``softmax_i(-|x - c_i|^2 / (2 sigma^2))``.
    With ``surround=True`` a surround softmax with variance ``surround_scale *
    sigma^2`` is subtracted, the result shifted by its minimum to be
    non-negative and renormalised to sum to one (a difference of Gaussians).

    Parameters
    ----------
    n_cells : int
        Number of place cells ``Np``.
    box_width : float
        Side of the box (m); centres are uniform in ``[-w/2, w/2]^2``.
    sigma : float
        Width of a place field (m); the paper uses 0.12.
    surround : bool
        Subtract a wider surround softmax.
    surround_scale : float
        Variance ratio of the surround (2 in the grid-cell model).
    generator : torch.Generator, optional
        Draws the centres.

    Attributes
    ----------
    centres : Tensor, shape=[n_cells, 2]
        A buffer, so it moves with ``.to()`` and is saved in ``state_dict``.

    Examples
    --------
    >>> import torch
    >>> pc = PlaceCells(16, generator=torch.Generator().manual_seed(0))
    >>> code = pc(torch.zeros(3, 2))
    >>> tuple(code.shape), bool(torch.allclose(code.sum(-1), torch.ones(3)))
    ((3, 16), True)
    """

    def __init__(
        self,
        n_cells: int,
        box_width: float = 2.2,
        sigma: float = 0.12,
        *,
        surround: bool = False,
        surround_scale: float = 2.0,
        generator: Optional[torch.Generator] = None,
    ):
        super().__init__()
        self.n_cells = integer(n_cells, "n_cells", minimum=1)
        self.box_width = positive(box_width, "box_width")
        self.sigma = positive(sigma, "sigma")
        self.surround = bool(surround)
        self.surround_scale = positive(surround_scale, "surround_scale")
        if self.surround and self.surround_scale <= 1:
            raise ValueError(f"surround_scale must exceed 1 for a surround, got {surround_scale}")
        half = self.box_width / 2
        centres = (torch.rand(self.n_cells, 2, generator=generator) * 2 - 1) * half
        self.register_buffer("centres", centres)

    def forward(self, position: Tensor) -> Tensor:
        """Place-cell code of positions.

        Parameters
        ----------
        position : Tensor, shape=[..., 2]

        Returns
        -------
        Tensor, shape=[..., n_cells]
            Non-negative, sums to one over the last axis.
        """
        if not isinstance(position, Tensor):
            raise TypeError(f"position must be a Tensor, got {type(position).__name__}")
        if position.ndim < 1 or position.shape[-1] != 2:
            raise ValueError(f"position must have shape [..., 2], got {tuple(position.shape)}")
        c = self.centres.to(position.dtype)
        # (x - cx)^2 + (y - cy)^2 per coordinate, in place where no gradient is needed: the same numbers
        # as summing a trailing axis of 2, with a third of the passes over [..., n_cells]
        dx, dy = position[..., 0, None] - c[:, 0], position[..., 1, None] - c[:, 1]
        if torch.is_grad_enabled() and (position.requires_grad or c.requires_grad):
            d2 = dx * dx + dy * dy
        else:
            d2 = dx.mul_(dx).add_(dy.mul_(dy))
        code = torch.softmax(d2 / (-2 * self.sigma**2), dim=-1)
        if self.surround:
            code = code - torch.softmax(d2 / (-2 * self.surround_scale * self.sigma**2), dim=-1)
            code = code - code.amin(dim=-1, keepdim=True)
            code = code / code.sum(dim=-1, keepdim=True)
        return code


def decode_position(activity: Tensor, centres: Tensor, k: int = 3) -> Tensor:
    """Position read out as the mean centre of the ``k`` most active place cells.

    Parameters
    ----------
    activity : Tensor, shape=[..., n_cells]
        Logits, probabilities or any monotone score per place cell.
    centres : Tensor, shape=[n_cells, 2]
    k : int

    Returns
    -------
    Tensor, shape=[..., 2]
    """
    if activity.shape[-1] != centres.shape[0]:
        raise ValueError(
            f"activity has {activity.shape[-1]} cells in its last axis, centres has shape "
            f"{tuple(centres.shape)}; expected [n_cells, 2] with the same n_cells"
        )
    k = integer(k, "k", minimum=1)
    if k > centres.shape[0]:
        raise ValueError(f"k={k} exceeds the number of place cells {centres.shape[0]}")
    idx = activity.topk(k, dim=-1).indices
    return centres.to(activity.dtype)[idx].mean(dim=-2)


class NavigationRNN(nn.Module):
    """Encoder, bias-free ReLU RNN and decoder of the grid-cell navigation model.

    Parameters
    ----------
    n_place : int
        Number of place cells (input of the encoder, output of the decoder).
    n_hidden : int
        Hidden size ``Ng``.

    Attributes
    ----------
    encoder : nn.Linear
        ``Np -> Ng`` without bias: initial place-cell code to initial hidden state.
    rnn : nn.RNN
        ReLU, no bias, input size 2 (velocity). ``rnn.weight_hh_l0`` is the
        recurrent (hidden update) matrix, shape ``[Ng, Ng]``.
    decoder : nn.Linear
        ``Ng -> Np`` without bias: hidden state to place-cell logits.

    Examples
    --------
    >>> import torch
    >>> model = NavigationRNN(n_place=8, n_hidden=16)
    >>> logits = model(torch.zeros(5, 7, 2), torch.full((5, 8), 1 / 8))
    >>> tuple(logits.shape)
    (5, 7, 8)
    """

    def __init__(self, n_place: int, n_hidden: int):
        super().__init__()
        self.n_place = integer(n_place, "n_place", minimum=1)
        self.n_hidden = integer(n_hidden, "n_hidden", minimum=1)
        self.encoder = nn.Linear(n_place, n_hidden, bias=False)
        self.rnn = nn.RNN(2, n_hidden, nonlinearity="relu", bias=False, batch_first=True)
        self.decoder = nn.Linear(n_hidden, n_place, bias=False)

    def hidden(self, velocity: Tensor, init_code: Tensor) -> Tensor:
        """Hidden states, shape ``[batch, seq_len, n_hidden]``."""
        if velocity.ndim != 3 or velocity.shape[-1] != 2:
            raise ValueError(f"velocity must have shape [batch, seq_len, 2], got {tuple(velocity.shape)}")
        if init_code.shape != (velocity.shape[0], self.n_place):
            raise ValueError(
                f"init_code must have shape [batch, n_place] = [{velocity.shape[0]}, {self.n_place}], "
                f"got {tuple(init_code.shape)}"
            )
        h0 = self.encoder(init_code)[None]
        states, _ = run_rnn(self.rnn, velocity, h0)
        return states

    def forward(self, velocity: Tensor, init_code: Tensor) -> Tensor:
        """Place-cell logits at every step.

        Parameters
        ----------
        velocity : Tensor, shape=[batch, seq_len, 2]
        init_code : Tensor, shape=[batch, n_place]
            Place-cell code of the start position.

        Returns
        -------
        Tensor, shape=[batch, seq_len, n_place]
        """
        return self.decoder(self.hidden(velocity, init_code))


def navigation_loss(logits: Tensor, target_code: Tensor, *, readout: str = "all") -> Tensor:
    """Cross entropy of the decoded logits against the true place-cell code.

    Parameters
    ----------
    logits : Tensor, shape=[batch, seq_len, n_place]
    target_code : Tensor, shape=[batch, seq_len, n_place]
        Probability vectors.
    readout : {"all", "final"}
        Average over every step (as in the grid-cell model) or use the last only.

    Returns
    -------
    Tensor, scalar
    """
    if logits.shape != target_code.shape:
        raise ValueError(
            f"logits {tuple(logits.shape)} and target_code {tuple(target_code.shape)} must have the same shape"
        )
    if readout == "final":
        logits, target_code = logits[:, -1:], target_code[:, -1:]
    elif readout != "all":
        raise ValueError(f"readout must be 'all' or 'final', got {readout!r}")
    return -(target_code * torch.log_softmax(logits, dim=-1)).sum(-1).mean()


def position_error_cm(logits: Tensor, position: Tensor, centres: Tensor, *, k: int = 3, readout: str = "all") -> Tensor:
    """Mean distance (cm) between decoded and true positions.

    Parameters
    ----------
    logits : Tensor, shape=[batch, seq_len, n_place]
    position : Tensor, shape=[batch, seq_len, 2]
        True positions in metres.
    centres : Tensor, shape=[n_place, 2]
    k : int
        Number of most active cells averaged by the decoder.
    readout : {"all", "final"}

    Returns
    -------
    Tensor, scalar
    """
    if position.shape[:-1] != logits.shape[:-1] or position.shape[-1] != 2:
        raise ValueError(
            f"position must have shape {tuple(logits.shape[:-1]) + (2,)}, got {tuple(position.shape)}"
        )
    if readout == "final":
        logits, position = logits[:, -1:], position[:, -1:]
    elif readout != "all":
        raise ValueError(f"readout must be 'all' or 'final', got {readout!r}")
    pred = decode_position(logits, centres, k)
    return 100.0 * (pred - position).norm(dim=-1).mean()
