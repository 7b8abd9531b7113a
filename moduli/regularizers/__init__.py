"""Inhibitor functions and moduli priors (Eq. 6 of the moduli-regularization paper).

- :mod:`.inhibitors` -- the functions ``f`` of a distance, and the
  :data:`INHIBITORS` table of their names;
- :mod:`.priors` -- :class:`Prior` and the built-in kinds, each owning what
  makes it different (its embeddings' space, its coefficients), including
  the weight-dependent :class:`CommunicabilityPrior` (seRNN) and
  :class:`TopoLossPrior` (TopoLoss);
- :mod:`.penalty` -- the stateless math (penalties, gradients, the
  trained-embedding pass);
- :mod:`.state` -- :func:`attach` and the modules holding the state
  (:class:`PriorSet`, :class:`Term`, :class:`NeuronEmbedding`);
- :mod:`.swaps` -- :func:`swap_neurons_`, neuron swaps that lower a moduli
  prior's cost (brain-inspired modular training).

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
from .priors import (
    CommunicabilityPrior, L1Prior, ModuliPrior, Prior, ShuffledPrior, TopoLossPrior, communicability_penalty, topo_loss,
)
from .state import NeuronEmbedding, PriorSet, Term, attach
from .swaps import GroupSwaps, SwapResult, swap_cost_changes, swap_neurons_

__all__ = [
    "Inhibitor", "DifferenceOfGaussians", "Ricker", "Diffusion", "Sinusoid", "DiagonalOnly",
    "ExpressionInhibitor", "ZeroMinimum", "INHIBITORS", "inhibitor_arguments", "make_inhibitor", "Prior", "ModuliPrior",
    "L1Prior", "ShuffledPrior", "CommunicabilityPrior", "TopoLossPrior", "attach", "PriorSet", "Term", "NeuronEmbedding",
    "coefficient_matrix", "magnitude", "weighted_penalty", "penalty_gradient", "communicability_penalty", "topo_loss",
    "swap_neurons_", "swap_cost_changes", "SwapResult", "GroupSwaps",
]
