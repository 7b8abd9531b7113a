"""Topology of population activity (hidden states) against a surrogate null.

The recipe of grid-cell studies: collect the states ``(n_states, n_neurons)``,
centre and project them on their leading principal components, subsample to
a few hundred max–min landmarks, and compute Rips persistence. Surrogate data
sets drawn under a null hypothesis run through the same pipeline, and a bar is
significant when it is longer than the ``quantile`` of the longest bar of that
dimension across the surrogates.

Nulls (``null=``):

``"gaussian"`` (default)
    Each surrogate holds ``n_states`` independent draws from the Gaussian with
    the data's mean and covariance. It keeps everything PCA sees (the
    principal axes and their variances, hence the scale of the cloud), so it
    tests *"is there more topology than in a loop-free Gaussian cloud of the
    same shape?"*.
``"phase"``
    Multivariate phase randomisation: the Fourier transform in time of every
    neuron is rotated by the same random phase at each frequency. It keeps
    each neuron's power spectrum and every cross-spectrum, hence the
    covariance at every lag (lag 0 exactly), so it tests *"is there more
    topology than in a stationary linear Gaussian process with the same
    spectra?"* -- the null to use when the states are a slowly varying time
    series, whose few independent samples make clumpy clouds with bars of
    their own.
``"time-shuffle"``
    Each neuron's activity is permuted independently in time. It keeps every
    single-neuron distribution but destroys the correlations between neurons,
    so it tests *"are the neurons independent?"* -- not whether there is a
    loop: correlated, loop-free activity (a Gaussian blob mixed into many
    neurons, an untrained RNN driven by noise) beats it with spurious bars.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import numpy as np
import torch

from ._checks import check_int, check_nonnegative, to_numpy
from .homology import PersistenceResult, persistence

__all__ = ["ActivityTopology", "activity_topology", "hidden_state_topology", "collect_hidden_states", "NULLS"]

#: Null hypotheses accepted by ``activity_topology(null=...)``.
NULLS = ("gaussian", "phase", "time-shuffle")


@dataclass
class ActivityTopology:
    """Persistence of activity and its surrogate null.

    Attributes
    ----------
    result : PersistenceResult
        Diagrams of the (projected, subsampled) activity.
    null_longest : ndarray, shape=[n_surrogates, maxdim + 1]
        Longest finite bar of each dimension in each surrogate.
    threshold : list of float, length maxdim + 1
        ``quantile`` of ``null_longest`` per dimension.
    significant : list of int, length maxdim + 1
        Bars of ``result`` longer than ``threshold`` (the essential H0 class counts).
    explained_variance : float
        Fraction of the variance kept by the principal components.
    n_states : int
        States before subsampling.
    notes : list of str
        How the diagrams and the null were computed.
    null : str
        The null hypothesis (one of :data:`NULLS`).
    """

    result: PersistenceResult
    null_longest: np.ndarray
    threshold: list
    significant: list
    explained_variance: float
    n_states: int
    notes: list = field(default_factory=list)
    null: str = "gaussian"

    def significant_bars(self, dim: int) -> np.ndarray:
        """(birth, death) pairs of dimension ``dim`` longer than the null threshold.

        Returns
        -------
        ndarray, shape=[n_significant, 2]
        """
        dim = check_int(dim, "dim", 0, self.result.maxdim)
        keep = self.result.lifetimes(dim) > self.threshold[dim]
        return self.result.diagrams[dim][keep]


def _principal_axes(S: np.ndarray) -> tuple:
    """Mean, variances along the principal axes (sums of squares, descending) and the axes (columns).

    With more samples than neurons this diagonalises the small ``d x d`` scatter
    matrix instead of taking the SVD of the ``n x d`` data: same axes, and tens
    of times faster on a loaded machine, which matters with a null of many
    surrogates.
    """
    mean = S.mean(0, keepdims=True)
    Sc = S - mean
    if S.shape[0] >= S.shape[1]:
        var, axes = np.linalg.eigh(Sc.T @ Sc)
        var, axes = np.clip(var[::-1], 0.0, None), axes[:, ::-1]
    else:
        _, sing, Vt = np.linalg.svd(Sc, full_matrices=False)
        var, axes = sing ** 2, Vt.T
    return mean, var, axes


def _project(S: np.ndarray, k: int) -> tuple:
    mean, var, axes = _principal_axes(S)
    k = min(k, len(var))
    total = float(var.sum())
    kept = float(var[:k].sum()) / total if total > 0 else 1.0
    return (S - mean) @ axes[:, :k], kept


def _pipeline(S: np.ndarray, n_components: int, n_points: int, maxdim: int, coeff: int,
              sparse) -> tuple:
    P, kept = _project(S, n_components)
    if P.shape[0] > n_points:
        from gudhi.subsampling import choose_n_farthest_points  # max-min landmarks, O(n k), no n x n matrix

        P = np.asarray(choose_n_farthest_points(points=P, nb_points=n_points, starting_point=0))
    return persistence(P, maxdim=maxdim, coeff=coeff, sparse=sparse), kept


def _gaussian_null(S: np.ndarray) -> Callable:
    """Sampler of ``n`` i.i.d. draws from N(mean(S), cov(S)) (rank-deficient covariances allowed)."""
    n = S.shape[0]
    mean, var, axes = _principal_axes(S)
    var = np.where(var > var[0] * S.shape[1] * np.finfo(float).eps, var, 0.0)  # rounding, not variance
    # cov(S) = axes diag(var / (n - 1)) axes.T, so G diag(sqrt(var / (n - 1))) axes.T, G standard
    # normal, has covariance cov(S).
    factor = np.sqrt(var / max(n - 1, 1))[:, None] * axes.T

    def draw(rng: np.random.Generator) -> np.ndarray:
        return mean + rng.standard_normal((n, var.size)) @ factor

    return draw


def _phase_null(S: np.ndarray) -> Callable:
    """Sampler of multivariate phase-randomised copies of ``S`` (same random phase for all columns)."""
    n = S.shape[0]
    mean = S.mean(0, keepdims=True)
    F = np.fft.rfft(S - mean, axis=0)

    def draw(rng: np.random.Generator) -> np.ndarray:
        phase = np.exp(2j * np.pi * rng.random(F.shape[0]))
        phase[0] = 1.0  # the mean (zero after centring)
        if n % 2 == 0:
            phase[-1] = rng.choice((-1.0, 1.0))  # the Nyquist coefficient stays real
        return mean + np.fft.irfft(F * phase[:, None], n=n, axis=0)

    return draw


def _time_shuffle_null(S: np.ndarray) -> Callable:
    """Sampler of ``S`` with each column permuted independently."""

    def draw(rng: np.random.Generator) -> np.ndarray:
        out = np.empty_like(S)
        for j in range(S.shape[1]):
            out[:, j] = S[rng.permutation(S.shape[0]), j]
        return out

    return draw


_NULL_SAMPLERS = {"gaussian": _gaussian_null, "phase": _phase_null, "time-shuffle": _time_shuffle_null}


def activity_topology(
    states: Any,
    *,
    null: str = "gaussian",
    n_components: int = 6,
    n_points: int = 300,
    maxdim: int = 1,
    coeff: int = 2,
    n_surrogates: Optional[int] = None,
    quantile: float = 1.0,
    sparse="auto",
    seed: int = 0,
    progress: bool = False,
    n_shuffles: Optional[int] = None,
) -> ActivityTopology:
    """Persistent homology of population activity against a surrogate null.

    Parameters
    ----------
    states : Tensor or array, shape=[..., n_neurons]
        Activity; all leading axes are flattened into samples (time points).
    null : {"gaussian", "phase", "time-shuffle"}
        Null hypothesis the surrogates are drawn under.

        ``"gaussian"`` (default): ``n_states`` i.i.d. draws from the Gaussian
        with the data's mean and (full, neuron x neuron) covariance. Its
        clouds have the data's principal axes and variances but no loops, so
        a significant bar means more topology than a loop-free Gaussian cloud
        of the same shape produces. Non-Gaussian but loop-free activity
        (clusters, sharp edges, heavy tails) can still beat it, chiefly in H0:
        read a significant bar as "not Gaussian here", then look at it. It
        ignores the order of the states, so it suits states sampled
        independently (random inputs, many trials); a slowly varying time
        series has fewer independent samples than states, and its clumpy
        cloud can beat it (use ``"phase"``).

        ``"phase"``: multivariate phase randomisation (Prichard & Theiler,
        1994): the real FFT in time of all neurons is multiplied by one
        random phase per frequency. Each neuron's power spectrum and every
        cross-spectrum survive, hence the mean and the covariance at every
        (circular) lag, lag 0 included, exactly; the surrogate is
        approximately Gaussian. It tests for more topology than a stationary
        linear Gaussian process with the data's spectra produces. The states
        must be one time series in order: sequences of a batch are pooled end
        to end, and the seams count as jumps. A loop traced periodically (a
        ring at constant speed) is itself such a process, so this null keeps
        it and cannot detect it; use ``"gaussian"`` there.

        ``"time-shuffle"``: each neuron's activity permuted independently in
        time. It keeps single-neuron distributions and destroys all
        correlations between neurons, so it tests whether the neurons are
        independent; any correlated activity, loop or not, beats it (a
        Gaussian blob mixed into 32 neurons gives spurious H1 bars). Kept for
        comparison with older results.
    n_components : int
        Principal components kept (6 in grid-cell studies of a torus).
    n_points : int
        Max–min landmarks kept after projection.
    maxdim, coeff :
        As in :func:`moduli.analysis.persistence`.
    n_surrogates : int, default 19
        Surrogate data sets drawn under the null (>= 1). With ``quantile=1``
        the chance that activity drawn from the null itself shows a
        significant bar of a given dimension is at most
        ``1 / (n_surrogates + 1)``: 5% for the default 19.
    quantile : float in (0, 1]
        Quantile of the surrogates' longest bars used as threshold (1: their maximum).
    sparse :
        Passed to :func:`persistence`.
    seed : int
        Seeds the surrogates.
    progress : bool
        tqdm bar over surrogates.
    n_shuffles : int, optional
        Older name of ``n_surrogates``; pass one of the two.

    Returns
    -------
    ActivityTopology

    Notes
    -----
    Significance rule: in each dimension ``k`` the threshold is the
    ``quantile`` of the surrogates' longest finite bars, and every bar of the
    data longer than it counts (the essential H0 class always does). The
    statistic compared is the *longest* bar, so the rule bounds the
    family-wise error: if the activity is drawn from the null, it and the
    ``n_surrogates`` surrogates are exchangeable, and the chance that its
    longest bar of dimension ``k`` beats all of theirs (``quantile=1``) is at
    most ``1 / (n_surrogates + 1)`` -- the chance of even one spurious bar.
    Exchangeability needs the surrogates to go through the same pipeline
    (centring, PCA to their own leading components, max–min landmarks) as
    the data, which they do, and to come from the null fitted to the data;
    the Gaussian null uses the sample mean and covariance, a negligible
    difference for hundreds of independent states; the phase null keeps the
    data's spectra exactly, and the time-shuffle null is an exact permutation
    test of its hypothesis (independent neurons, states exchangeable in time).
    A quantile below 1 gives a false-alarm
    rate of about ``1 - quantile`` with more surrogates needed to estimate it.
    Second and later bars are compared with the null's *longest* bar, which is
    conservative for them.

    Examples
    --------
    >>> import math, torch
    >>> from moduli import analysis
    >>> t = torch.rand(500, generator=torch.Generator().manual_seed(0)) * 2 * math.pi
    >>> ring = torch.stack([t.cos(), t.sin(), (2 * t).cos()], 1)   # a closed curve in R^3
    >>> analysis.activity_topology(ring, n_points=120, n_surrogates=3).significant
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
    if not isinstance(null, str):
        raise TypeError(f"null must be one of {', '.join(map(repr, NULLS))}; got {type(null).__name__}")
    if null not in _NULL_SAMPLERS:
        raise ValueError(f"null must be one of {', '.join(map(repr, NULLS))}; got {null!r}")
    if n_shuffles is not None:
        if n_surrogates is not None:
            raise TypeError("pass n_surrogates or its older name n_shuffles, not both")
        n_surrogates = check_int(n_shuffles, "n_shuffles", 1)
    n_surrogates = 19 if n_surrogates is None else check_int(n_surrogates, "n_surrogates", 1)
    q = check_nonnegative(quantile, "quantile", positive=True)
    if q > 1:
        raise ValueError(f"quantile must be in (0, 1]; got {q}")
    seed = check_int(seed, "seed", 0)
    result, kept = _pipeline(S, n_components, n_points, maxdim, coeff, sparse)
    draw = _NULL_SAMPLERS[null](S)
    rng = np.random.default_rng(seed)
    longest = np.zeros((n_surrogates, maxdim + 1))
    for s in tqdm(range(n_surrogates), desc=f"{null} null", disable=not progress):
        res, _ = _pipeline(draw(rng), n_components, n_points, maxdim, coeff, sparse)
        for k in range(maxdim + 1):
            life = res.lifetimes(k)
            life = life[np.isfinite(life)]
            longest[s, k] = life.max() if life.size else 0.0
    threshold = [float(np.quantile(longest[:, k], q)) for k in range(maxdim + 1)]
    significant = [int((result.lifetimes(k) > threshold[k]).sum()) for k in range(maxdim + 1)]
    notes = [f"PCA to {min(n_components, S.shape[1])} components ({100 * kept:.1f}% variance), "
             f"{result.diagrams[0].shape[0]} max-min landmarks of {S.shape[0]} states, "
             f"{n_surrogates} {null} surrogates, threshold = quantile {q:g} of the null's longest bars"]
    return ActivityTopology(result=result, null_longest=longest, threshold=threshold, significant=significant,
                            explained_variance=kept, n_states=S.shape[0], notes=notes, null=null)


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
    """Hidden-state topology of a recurrent network against a surrogate null.

    Runs ``model`` over ``inputs`` (:func:`collect_hidden_states`) and passes the
    states to :func:`activity_topology` with ``kwargs`` (``null="gaussian"``
    by default: surrogates with the states' mean and covariance; see there).

    Returns
    -------
    ActivityTopology
    """
    return activity_topology(collect_hidden_states(model, inputs), **kwargs)
