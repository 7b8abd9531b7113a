"""Import geomstats without letting it change torch's global state.

geomstats' pytorch backend (chosen by GEOMSTATS_BACKEND before its first
import) sets torch's default dtype to float64 at import time. moduli imports
geomstats only when a geomstats object is asked for, inside this guard.
geomstats is an optional extra (``pip install 'moduli[geomstats]'``): without it
the guard turns the import failure into an error that says so.
"""

from __future__ import annotations

import contextlib

import torch


@contextlib.contextmanager
def geomstats_import():
    """Context in which geomstats may be imported; restores torch's defaults."""
    dtype = torch.get_default_dtype()
    grad = torch.is_grad_enabled()
    try:
        yield
    except ModuleNotFoundError as err:
        if (err.name or "").split(".")[0] != "geomstats":
            raise
        raise ModuleNotFoundError(
            "geomstats_equivalent() needs geomstats, an optional extra of moduli: "
            "pip install 'moduli[geomstats]' (it caps numpy below 2.4)", name="geomstats") from err
    finally:
        torch.set_default_dtype(dtype)
        torch.set_grad_enabled(grad)
