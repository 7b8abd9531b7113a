"""Inhibitor functions and moduli priors (Eq. 6 of the moduli-regularization paper).

>>> import torch
>>> from moduli import manifolds as mf, regularizers as rg
>>> model = torch.nn.RNN(3, 16, nonlinearity="relu")
>>> prior = rg.ModuliPrior(mf.FlatTorus(2, 10.0), rg.DifferenceOfGaussians())
>>> priors = rg.attach(model, prior, generator=torch.Generator().manual_seed(0))
>>> list(priors.terms)
['weight_hh_l0']
>>> priors.penalty().shape
torch.Size([])
"""

from __future__ import annotations

from typing import Optional

from .inhibitors import (
    INHIBITORS, DiagonalOnly, DifferenceOfGaussians, Diffusion, ExpressionInhibitor, Inhibitor, Ricker, Sinusoid,
    inhibitor_arguments, make_inhibitor,
)
from .priors import (
    L1Prior, ModuliPrior, Prior, ShuffledPrior, coefficient_matrix, magnitude, penalty_gradient,
    weighted_penalty,
)

__all__ = [
    "Inhibitor", "DifferenceOfGaussians", "Ricker", "Diffusion", "Sinusoid", "DiagonalOnly",
    "ExpressionInhibitor", "INHIBITORS", "inhibitor_arguments", "make_inhibitor", "Prior", "ModuliPrior", "L1Prior", "ShuffledPrior", "attach",
    "coefficient_matrix", "magnitude", "weighted_penalty", "penalty_gradient",
]


def attach(model, prior: Prior, targets="recurrent", *, points: Optional[dict] = None, generator=None):
    """Apply a prior to the target weights of a model; return the prior set.

    The model is not modified (same class, same ``state_dict`` keys). The
    returned prior set (a ``torch.nn.Module`` for torch models) holds the
    embeddings and coefficients.

    Parameters
    ----------
    model : torch.nn.Module
        Any model; the backend is chosen from its type.
    prior : ModuliPrior, L1Prior or ShuffledPrior
    targets : str, list of str, or callable
        ``"recurrent"`` (default: every ``weight_hh_l{k}[_reverse]`` of
        ``nn.RNN``/``nn.LSTM``/``nn.GRU`` and ``weight_hh`` of RNN cells, one
        embedding per layer and direction shared by the gate blocks),
        ``"linear"`` (``nn.Linear`` weights, one embedding for the inputs and
        one for the outputs of each layer), ``"conv"`` (``nn.Conv1d/2d/3d``
        weights, channels embedded, L2 norm per kernel slice), a list of
        those kinds and/or parameter names (as in ``model.named_parameters()``;
        ``"<name>_orig"`` of a pruned weight is accepted too), or a predicate
        ``(name, weight) -> bool`` called on every parameter with at least two
        dimensions (biases are never targets).
    points : dict, optional
        Embeddings to use instead of random ones: keys are neuron groups
        (``priors.embeddings``) or target names; values are tensors of shape
        ``(n, coord_dim)`` (or a pair ``(points_out, points_in)`` for a
        target whose rows and columns are different neurons).
    generator : torch.Generator, optional
        Seeds the random embeddings (and the shuffled permutation).

    Returns
    -------
    PriorSet
        With ``.penalty()``, ``.terms[name]`` (``.points_out``, ``.points_in``,
        ``.coefficients()``), ``.parameters()`` (trained embeddings),
        ``.freeze()``/``.unfreeze()``, ``.add_penalty_grad_(lam)``,
        ``state_dict()``/``load_state_dict()``.

    Raises
    ------
    ValueError
        If no weight matches ``targets``, a name is unknown or a matched
        parameter is not a weight matrix, or ``points`` has the wrong size.
    TypeError
        If the model has no backend or ``prior`` is not a prior.
    """
    from ..backends import get_backend

    if not isinstance(prior, Prior):
        raise TypeError(f"prior must be a ModuliPrior, L1Prior or ShuffledPrior; got {type(prior).__name__}")
    backend = get_backend(model)
    layouts = backend.find_targets(model, targets)
    return backend.build(model, prior, layouts, points=points, generator=generator)
