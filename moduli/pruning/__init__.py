"""Gradual magnitude pruning and lottery-ticket retraining (paper, Section 4).

Built on ``torch.nn.utils.prune``: masks are buffers ``<name>_mask`` next to
parameters ``<name>_orig``; the layer computes with ``orig * mask``.
"""

from .gradual import GradualMagnitudePruning, default_weights, schedule, sparsity
from .lottery import lottery_reset, pruned_weights

__all__ = ["GradualMagnitudePruning", "sparsity", "lottery_reset", "default_weights", "schedule",
           "pruned_weights"]
