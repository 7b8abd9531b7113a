"""Sparse inference for finalized models, and neuron orderings that make sparsity block-shaped.

* :class:`SparseLinear`, :class:`SparseRNN`, :func:`sparse_linear`,
  :func:`sparsify`: run a finalized (:func:`moduli.pruning.finalize`)
  ``nn.Linear`` / ``nn.RNN`` with a compressed weight -- CSR
  (``torch.sparse_csr``) or block-sparse BSR (``torch.sparse_bsr``) -- for
  inference, on any device torch supports for that layout.
* :func:`curve_order`, :func:`rcm_order`, :func:`permute_neurons`,
  :func:`block_stats`: order neurons along their embedding (a space-filling
  curve over a torus' fundamental domain) or along the kept-connection graph
  (reverse Cuthill--McKee), permute a model without changing its function,
  and measure how much kept mass dense blocks capture.

See ``docs/sparse.md`` for when a layout is faster than dense.
"""

from .execution import LAYOUTS, SparseLinear, SparseRNN, sparse_linear, sparsify
from .ordering import block_stats, curve_order, inverse_permutation, permute_neurons, rcm_order

__all__ = ["LAYOUTS", "SparseLinear", "SparseRNN", "sparse_linear", "sparsify", "block_stats", "curve_order",
           "rcm_order", "permute_neurons", "inverse_permutation"]
