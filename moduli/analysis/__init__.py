"""Persistent homology, connectivity-graph statistics and pictures (filled by the analysis issue)."""
