"""Gradual magnitude pruning and lottery-ticket retraining (paper, Section 4); proximal sparsification.

Built on ``torch.nn.utils.prune``: masks are buffers ``<name>_mask`` next to
parameters ``<name>_orig``; the layer computes with ``orig * mask``. The
reparametrization is read and written only through :mod:`moduli.targets`;
``masks``/``restore_masks`` save and reinstall the masks of a model;
``finalize`` makes them permanent (plain parameters with exact zeros).
"""

from ..targets import masks, pruned_weights, restore_masks
from .finalize import finalize, keep_zeros
from .gradual import GradualMagnitudePruning, default_weights, schedule, sparsity
from .lottery import lottery_reset
from .proximal import ProximalSparsifier

__all__ = ["GradualMagnitudePruning", "ProximalSparsifier", "sparsity", "lottery_reset", "default_weights", "schedule",
           "pruned_weights", "masks", "restore_masks", "finalize", "keep_zeros"]
