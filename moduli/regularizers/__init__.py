"""Inhibitor functions and moduli priors (filled by the regularizer issue)."""
