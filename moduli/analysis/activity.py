"""Topology of population activity (hidden states) against a time-shuffle null.

The recipe of grid-cell studies: collect the states ``(n_states, n_neurons)``,
centre and project them on their leading principal components, subsample to
a few hundred max–min landmarks, and compute Rips persistence. The null
permutes each neuron's activity independently in time -- single-neuron
statistics survive, the joint (population) structure does not -- and runs
the same pipeline. A bar is significant when it is longer than the
``quantile`` of the longest bar of that dimension across the shuffles.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import numpy as np
import torch

from ._checks import check_int, check_nonnegative, to_numpy
from .homology import PersistenceResult, persistence

__all__ = ["ActivityTopology", "activity_topology", "hidden_state_topology", "collect_hidden_states"]


@dataclass
class ActivityTopology:
    """Persistence of activity and its shuffle null.

    Attributes
    ----------
    result : PersistenceResult
        Diagrams of the (projected, subsampled) activity.
    null_longest : ndarray, shape=[n_shuffles, maxdim + 1]
        Longest finite bar of each dimension in each shuffle.
    threshold : list of float, length maxdim + 1
        ``quantile`` of ``null_longest`` per dimension.
    significant : list of int, length maxdim + 1
        Bars of ``result`` longer than ``threshold`` (the essential H0 class counts).
    explained_variance : float
        Fraction of the variance kept by the principal components.
    n_states : int
        States before subsampling.
    """

    result: PersistenceResult
    null_longest: np.ndarray
    threshold: list
    significant: list
    explained_variance: float
    n_states: int
    notes: list = field(default_factory=list)

    def significant_bars(self, dim: int) -> np.ndarray:
        """(birth, death) pairs of dimension ``dim`` longer than the null threshold.

        Returns
        -------
        ndarray, shape=[n_significant, 2]
        """
        dim = check_int(dim, "dim", 0, self.result.maxdim)
        keep = self.result.lifetimes(dim) > self.threshold[dim]
        return self.result.diagrams[dim][keep]


def _project(S: np.ndarray, k: int) -> tuple:
    S = S - S.mean(0, keepdims=True)
    U, sing, Vt = np.linalg.svd(S, full_matrices=False)
    k = min(k, len(sing))
    total = float((sing ** 2).sum())
    kept = float((sing[:k] ** 2).sum()) / total if total > 0 else 1.0
    return U[:, :k] * sing[:k], kept


def _maxmin_points(P: np.ndarray, k: int) -> np.ndarray:
    """Max–min landmarks of Euclidean points without an n x n matrix (O(n k) time, O(n) memory)."""
    n = P.shape[0]
    k = min(k, n)
    idx = np.empty(k, dtype=np.int64)
    idx[0] = 0
    mind = ((P - P[0]) ** 2).sum(1)
    for i in range(1, k):
        j = int(np.argmax(mind))
        idx[i] = j
        np.minimum(mind, ((P - P[j]) ** 2).sum(1), out=mind)
    return idx


def _pipeline(S: np.ndarray, n_components: int, n_points: int, maxdim: int, coeff: int,
              sparse) -> tuple:
    P, kept = _project(S, n_components)
    if P.shape[0] > n_points:
        P = P[_maxmin_points(P, n_points)]
    return persistence(P, maxdim=maxdim, coeff=coeff, sparse=sparse), kept


def activity_topology(
    states: Any,
    *,
    n_components: int = 6,
    n_points: int = 300,
    maxdim: int = 1,
    coeff: int = 2,
    n_shuffles: int = 10,
    quantile: float = 1.0,
    sparse="auto",
    seed: int = 0,
    progress: bool = False,
) -> ActivityTopology:
    """Persistent homology of population activity with a time-shuffle null.

    Parameters
    ----------
    states : Tensor or array, shape=[..., n_neurons]
        Activity; all leading axes are flattened into samples (time points).
    n_components : int
        Principal components kept (6 in grid-cell studies of a torus).
    n_points : int
        Max–min landmarks kept after projection.
    maxdim, coeff :
        As in :func:`moduli.analysis.persistence`.
    n_shuffles : int
        Independent time shuffles for the null (>= 1).
    quantile : float in (0, 1]
        Quantile of the shuffles' longest bars used as threshold (1: their maximum).
    sparse :
        Passed to :func:`persistence`.
    seed : int
        Seeds the shuffles.
    progress : bool
        tqdm bar over shuffles.

    Returns
    -------
    ActivityTopology

    Examples
    --------
    >>> import math, torch
    >>> from moduli import analysis
    >>> t = torch.rand(500, generator=torch.Generator().manual_seed(0)) * 2 * math.pi
    >>> ring = torch.stack([t.cos(), t.sin(), (2 * t).cos()], 1)   # a closed curve in R^3
    >>> analysis.activity_topology(ring, n_points=120, n_shuffles=3).significant
    [1, 1]
    """
    from tqdm.auto import tqdm

    S = to_numpy(states, "states")
    if S.ndim < 2:
        raise ValueError(f"states must have shape (..., n_neurons) with at least 2 axes; got shape {S.shape}")
    S = S.reshape(-1, S.shape[-1])
    if S.shape[0] < 4 or S.shape[1] < 1:
        raise ValueError(f"states must hold at least 4 samples of at least 1 neuron; got {S.shape[0]} "
                         f"samples of {S.shape[1]} neurons (shape {S.shape})")
    if not np.isfinite(S).all():
        raise ValueError(f"states of shape {S.shape} contains NaN or infinite values")
    n_components = check_int(n_components, "n_components", 1)
    n_points = check_int(n_points, "n_points", 4)
    maxdim = check_int(maxdim, "maxdim", 0)
    n_shuffles = check_int(n_shuffles, "n_shuffles", 1)
    q = check_nonnegative(quantile, "quantile", positive=True)
    if q > 1:
        raise ValueError(f"quantile must be in (0, 1]; got {q}")
    seed = check_int(seed, "seed", 0)
    result, kept = _pipeline(S, n_components, n_points, maxdim, coeff, sparse)
    rng = np.random.default_rng(seed)
    null = np.zeros((n_shuffles, maxdim + 1))
    for s in tqdm(range(n_shuffles), desc="shuffle null", disable=not progress):
        shuffled = np.empty_like(S)
        for j in range(S.shape[1]):
            shuffled[:, j] = S[rng.permutation(S.shape[0]), j]
        res, _ = _pipeline(shuffled, n_components, n_points, maxdim, coeff, sparse)
        for k in range(maxdim + 1):
            life = res.lifetimes(k)
            life = life[np.isfinite(life)]
            null[s, k] = life.max() if life.size else 0.0
    threshold = [float(np.quantile(null[:, k], q)) for k in range(maxdim + 1)]
    significant = [int((result.lifetimes(k) > threshold[k]).sum()) for k in range(maxdim + 1)]
    notes = [f"PCA to {min(n_components, S.shape[1])} components ({100 * kept:.1f}% variance), "
             f"{result.diagrams[0].shape[0]} max-min landmarks of {S.shape[0]} states, "
             f"{n_shuffles} shuffles, threshold = quantile {q:g} of the null's longest bars"]
    return ActivityTopology(result=result, null_longest=null, threshold=threshold, significant=significant,
                            explained_variance=kept, n_states=S.shape[0], notes=notes)


def collect_hidden_states(model: Any, inputs: Any) -> torch.Tensor:
    """Run ``model`` on ``inputs`` without gradients and return its hidden states.

    Parameters
    ----------
    model : torch.nn.RNNBase (RNN, GRU, LSTM) or callable
        An ``nn.RNNBase`` returns its top-layer output sequence; any other
        callable must return a Tensor of shape (..., n_neurons) or a tuple whose
        first element is one.
    inputs : Tensor
        Passed to ``model`` unchanged. The module's train/eval mode is left as
        it is: call ``model.eval()`` first to switch dropout off.

    Returns
    -------
    Tensor, shape=[n_states, n_neurons]
        All time steps of all sequences.
    """
    if not callable(model):
        raise TypeError(f"model must be an nn.RNNBase or a callable; got {type(model).__name__}")
    with torch.no_grad():
        out = model(inputs)
    if isinstance(out, (tuple, list)):
        out = out[0]
    if not isinstance(out, torch.Tensor):
        raise TypeError(f"model(inputs) must return a Tensor (or a tuple starting with one); got "
                        f"{type(out).__name__}")
    if out.ndim < 2:
        raise ValueError(f"model(inputs) must return states of shape (..., n_neurons); got shape {tuple(out.shape)}")
    return out.detach().reshape(-1, out.shape[-1])


def hidden_state_topology(model: Any, inputs: Any, **kwargs) -> ActivityTopology:
    """Hidden-state topology of a recurrent network against a time-shuffle null.

    Runs ``model`` over ``inputs`` (:func:`collect_hidden_states`) and passes the
    states to :func:`activity_topology` with ``kwargs``.

    Returns
    -------
    ActivityTopology
    """
    return activity_topology(collect_hidden_states(model, inputs), **kwargs)
