"""The result of a walk: the end model, its history and the kept points."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

from torch import Tensor, nn

from ._params import load_flat

__all__ = ["GeodesicPath"]


@dataclass
class GeodesicPath:
    """The result of :func:`sparsify` or :func:`transfer`.

    Attributes
    ----------
    model : nn.Module
        A new model (deep copy of the input) holding the weights at the end of
        the path; for :func:`sparsify` exactly on the sparse hyperplane.  Its
        train/eval flag is that of the input model.
    history : list of dict
        One record per point of the path.  Row 0 is the start; each later row
        is the point after one step; :func:`sparsify` appends a last row with
        ``kind="projection"`` for the final exact projection.  Keys:
        ``step``, ``kind`` (``"start"``, ``"step"``, ``"projection"``),
        ``distance`` (Euclidean distance to the hyperplane / target network),
        ``step_norm`` (``|θ_t|``), ``step_length`` (``sqrt(θ_tᵀ g_t θ_t)`` =
        ``|J_t θ_t| / sqrt(B)`` for the output metric), ``path_length``
        (cumulative sum of ``step_length``), ``energy`` (cumulative sum of
        ``θ_tᵀ g_t θ_t``), ``euclidean_length`` (cumulative ``|θ_t|``),
        ``lam`` (multiplier of the trust-region constraint), ``drift`` (mean
        squared output difference ``|f(w) − f(w_0)|² / B`` to the starting
        network on the step's batch, measured where the step began),
        ``products``
        (cumulative products with ``g``), ``time`` (seconds since the start)
        and, on evaluated rows, every key returned by ``evaluate``.
    names : list of str
        Parameter names of the flat weight vector (walk order).
    masks : dict of str to Tensor or None
        For :func:`sparsify`: keep-masks of the final projection by parameter
        name (element masks, or unit masks of shape ``[out_units]`` for
        structured targets, applied to the weight and its bias).
    points : list of (int, Tensor)
        ``(step, flat weights)`` pairs kept every ``keep_every`` steps.
    reached : bool
        Whether the walk got within ``tol`` of the hyperplane / target before
        the step budget ran out.
    """

    model: nn.Module
    history: list[dict] = field(default_factory=list)
    names: list[str] = field(default_factory=list)
    masks: dict[str, Tensor] | None = None
    points: list[tuple[int, Tensor]] = field(default_factory=list)
    reached: bool = False

    def model_at(self, index: int) -> nn.Module:
        """A copy of :attr:`model` holding the weights of ``points[index]``."""
        _, w = self.points[index]
        m = copy.deepcopy(self.model)
        load_flat(m, self.names, w)
        return m

    def column(self, key: str) -> list:
        """Values of ``key`` over the history rows that have it."""
        return [row[key] for row in self.history if key in row]
