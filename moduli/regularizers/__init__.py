"""Inhibitor functions and moduli priors (Eq. 6 of the moduli-regularization paper).

- :mod:`.inhibitors` -- the functions ``f`` of a distance, and the
  :data:`INHIBITORS` table of their names;
- :mod:`.priors` -- :class:`Prior` and the built-in kinds, each owning what
  makes it different (its embeddings' space, its coefficients);
- :mod:`.penalty` -- the stateless math (penalties, gradients, the
  trained-embedding pass);
- :mod:`.state` -- :func:`attach` and the modules holding the state
  (:class:`PriorSet`, :class:`Term`, :class:`NeuronEmbedding`).

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

from .inhibitors import (
    INHIBITORS, DiagonalOnly, DifferenceOfGaussians, Diffusion, ExpressionInhibitor, Inhibitor, Ricker, Sinusoid,
    ZeroMinimum, inhibitor_arguments, make_inhibitor,
)
from .penalty import coefficient_matrix, magnitude, penalty_gradient, weighted_penalty
from .priors import L1Prior, ModuliPrior, Prior, ShuffledPrior
from .state import NeuronEmbedding, PriorSet, Term, attach
from .swaps import GroupSwaps, SwapResult, swap_cost_changes, swap_neurons_

__all__ = [
    "Inhibitor", "DifferenceOfGaussians", "Ricker", "Diffusion", "Sinusoid", "DiagonalOnly",
    "ExpressionInhibitor", "ZeroMinimum", "INHIBITORS", "inhibitor_arguments", "make_inhibitor", "Prior", "ModuliPrior",
    "L1Prior", "ShuffledPrior", "attach", "PriorSet", "Term", "NeuronEmbedding",
    "coefficient_matrix", "magnitude", "weighted_penalty", "penalty_gradient",
    "swap_neurons_", "swap_cost_changes", "SwapResult", "GroupSwaps",
]
