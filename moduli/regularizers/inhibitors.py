"""Inhibitor functions ``f : [0, inf) -> [0, inf)`` of Eq. 6.

An inhibitor turns the distance ``d`` between two embedded neurons into the
coefficient ``f(d)`` that multiplies ``|w|^l`` in the moduli penalty. Large
values inhibit a connection, small values allow it.

Inhibitors are plain callables on tensors (no ``nn.Module``): they follow the
device and dtype of ``d`` and are differentiable wherever their formula is.
"""

from __future__ import annotations

import inspect
import math
import numbers
import warnings
from typing import Any, Callable

import torch
from torch import Tensor

__all__ = [
    "Inhibitor", "DifferenceOfGaussians", "Ricker", "Diffusion", "Sinusoid", "DiagonalOnly",
    "ExpressionInhibitor", "ZeroMinimum", "INHIBITORS", "inhibitor_arguments", "make_inhibitor",
]

# Where to look for negative values when a space is unbounded (R^k).
_UNBOUNDED_RANGE = 1000.0
_GRID = 4097


def _positive(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a positive real number; got {type(value).__name__}")
    value = float(value)
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a finite positive number; got {value}")
    return value


def _nonnegative(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a non-negative real number; got {type(value).__name__}")
    value = float(value)
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite non-negative number; got {value}")
    return value


class Inhibitor:
    """Base class of inhibitor functions.

    Subclasses implement :meth:`forward` on a tensor of distances. Calling the
    inhibitor validates the input (a floating tensor without NaN) and applies
    :meth:`forward` elementwise.

    Attributes
    ----------
    differentiable : bool
        Whether ``f`` has a useful derivative (trained embeddings need it).
    """

    differentiable: bool = True

    def forward(self, d: Tensor) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError(f"{type(self).__name__} must implement forward(d)")

    def __call__(self, d: Tensor) -> Tensor:
        """Evaluate ``f`` elementwise.

        Parameters
        ----------
        d : Tensor, shape=[...]
            Non-negative distances.

        Returns
        -------
        Tensor, shape=[...]
        """
        if not isinstance(d, Tensor):
            raise TypeError(f"d must be a torch.Tensor of distances; got {type(d).__name__}")
        if not d.is_floating_point():
            raise TypeError(f"d must have a floating-point dtype; got {d.dtype}")
        if bool(torch.isnan(d).any()):
            raise ValueError(f"d contains NaN distances ({int(torch.isnan(d).sum())} of {d.numel()})")
        return self.forward(d)

    def value_and_derivative(self, d: Tensor) -> tuple[Tensor, Tensor]:
        """``f(d)`` and ``f'(d)`` elementwise, without building an autograd graph.

        The base class differentiates :meth:`forward` with autograd; built-in
        inhibitors override this with closed forms (used by trained
        embeddings, where it saves most of the inhibitor's cost).

        Parameters
        ----------
        d : Tensor, shape=[...]

        Returns
        -------
        value, derivative : Tensor, shape=[...]
        """
        with torch.enable_grad():
            dd = d.detach().requires_grad_(True)
            value = self.forward(dd)
            (grad,) = torch.autograd.grad(value.sum(), dd, allow_unused=True)
        if grad is None:
            grad = torch.zeros_like(dd)
        return value.detach(), grad

    # --------------------------------------------------------------- checks
    def check_range(self, diameter: float, *, dtype: torch.dtype = torch.float64) -> tuple[float, float]:
        """Evaluate ``f`` on a grid of ``[0, diameter]`` and return its min and max.

        Unbounded spaces (``diameter = inf``) are checked on ``[0, 1000]``.

        Raises
        ------
        ValueError
            If ``f`` is negative or not finite somewhere on the grid.
        """
        top = _UNBOUNDED_RANGE if not math.isfinite(diameter) else float(diameter)
        grid = torch.linspace(0.0, top, _GRID, dtype=dtype)
        with torch.no_grad():
            values = self(grid)
        if values.shape != grid.shape:
            raise ValueError(
                f"{self!r} must map distances elementwise: d of shape {tuple(grid.shape)} gave "
                f"shape {tuple(values.shape)}"
            )
        if not bool(torch.isfinite(values).all()):
            bad = float(grid[~torch.isfinite(values)][0])
            raise ValueError(f"{self!r} is not finite at d = {bad:.4g} (checked on [0, {top:g}])")
        low = float(values.min())
        if low < -1e-12 * max(1.0, float(values.abs().max())):
            where = float(grid[int(values.argmin())])
            raise ValueError(
                f"{self!r} takes the negative value {low:.4g} at d = {where:.4g}; an inhibitor must "
                f"be non-negative on [0, {top:g}] (the distances of this space)"
            )
        return low, float(values.max())

    def check_derivative(self, diameter: float) -> None:
        """Check that ``f'`` is finite on a grid of ``[0, diameter]``, ``d = 0`` included.

        Trained embeddings differentiate ``f(d(x, y))``: distances are 0 on a
        recurrent matrix's diagonal, where the distance's gradient is 0, so an
        infinite ``f'(0)`` (``sqrt(d)``, ``d**0.5``) makes ``inf * 0 = NaN`` in
        every embedding gradient.

        Raises
        ------
        ValueError
            If ``f'`` is infinite or NaN somewhere on the grid.
        """
        top = _UNBOUNDED_RANGE if not math.isfinite(diameter) else float(diameter)
        grid = torch.linspace(0.0, top, _GRID, dtype=torch.float64)
        _, deriv = self.value_and_derivative(grid)
        if not bool(torch.isfinite(deriv).all()):
            bad = float(grid[~torch.isfinite(deriv)][0])
            raise ValueError(
                f"{self!r} has a non-finite derivative at d = {bad:.4g}: trained embeddings need f' finite "
                f"on [0, {top:g}] (distances are 0 on a recurrent matrix's diagonal); fix the embedding "
                "or use an inhibitor that is smooth at 0"
            )

    def collapse_minimizes(self, diameter: float) -> bool:
        """Whether ``f(0)`` is the minimum of ``f`` on ``[0, diameter]``.

        Then mapping every neuron to one point minimizes the prior for any
        weights, so a trained embedding degenerates to L_l regularization with
        coefficient ``f(0)`` (Section 2.3). Monotonically increasing inhibitors
        are the main case.
        """
        top = _UNBOUNDED_RANGE if not math.isfinite(diameter) else float(diameter)
        grid = torch.linspace(0.0, top, _GRID, dtype=torch.float64)
        with torch.no_grad():
            values = self(grid)
        scale = max(1.0, float(values.abs().max()))
        return bool(float(values[0]) <= float(values.min()) + 1e-9 * scale)

    def validate_for(self, manifold, *, trainable: bool = False) -> None:
        """Check this inhibitor against a space (called by :class:`ModuliPrior`).

        Raises ``ValueError`` if ``f`` is negative on ``[0, manifold.diameter]``
        (and, for a space whose distances can be infinite, at ``inf``) or if a trained embedding is asked for with a non-differentiable ``f``
        or space; warns if ``f(0)`` is the minimum of ``f`` with a trained
        embedding (the prior then degenerates to L1).
        """
        self.check_range(manifold.diameter)
        if math.isinf(manifold.diameter) and getattr(manifold, "attains_infinity", False):
            # a space whose distances can be inf (DisjointUnion's modules): f must be finite and >= 0 there too
            with torch.no_grad():
                far = float(self(torch.tensor([math.inf], dtype=torch.float64))[0])
            if not math.isfinite(far) or far < 0:
                raise ValueError(f"{self!r} is {far:g} at d = inf, a distance of {manifold!r}: use an inhibitor "
                                 "with a finite non-negative limit (a difference of Gaussians), or a finite distance")
        if trainable:
            if not self.differentiable:
                raise ValueError(
                    f"trainable=True needs a differentiable inhibitor; {self!r} is not"
                )
            if not getattr(manifold, "differentiable", True):
                raise ValueError(f"trainable=True needs a differentiable space; {manifold!r} is not")
            self.check_derivative(manifold.diameter)
            if self.collapse_minimizes(manifold.diameter):
                warnings.warn(
                    f"{self!r} is smallest at d = 0 on {manifold!r} (for example because it is "
                    "monotonically increasing): with trained embeddings the prior is minimized by "
                    "collapsing all neurons to one point and degenerates to L1 regularization with "
                    "coefficient f(0) (paper, Section 2.3). Use a difference of Gaussians or a "
                    "sinusoid, or fix the embedding.",
                    UserWarning,
                    stacklevel=3,
                )

    # ---------------------------------------------------------- constructor
    @staticmethod
    def from_expression(expression: str, **constants: float) -> "ExpressionInhibitor":
        """An inhibitor from a formula in the distance ``d``.

        The string is parsed by sympy (``sympy.sympify``, which evaluates
        Python syntax: pass only trusted strings) and compiled to a
        differentiable torch function. Every symbol other than ``d`` must be
        given as a keyword constant.

        Parameters
        ----------
        expression : str
            For example ``"c - c*(exp(-d**2/s2**2) - exp(-d**2/s1**2))"``.
            Supported: ``+ - * / **``, ``exp log sqrt sin cos tan tanh
            sinh cosh atan Abs Min Max Heaviside Piecewise`` and the
            constants ``pi``, ``E``.
        **constants : float
            Values of the other symbols.

        Examples
        --------
        >>> import torch
        >>> from moduli import regularizers as rg
        >>> f = rg.Inhibitor.from_expression("c*d**2", c=2.0)
        >>> f(torch.tensor([0.0, 1.0, 3.0]))
        tensor([ 0.,  2., 18.])
        """
        return ExpressionInhibitor(expression, **constants)


class DifferenceOfGaussians(Inhibitor):
    """Difference of Gaussians, Eq. 8: ``f(d) = c - c (exp(-d^2/s2^2) - exp(-d^2/s1^2))``.

    ``f(0) = c``; ``f`` dips below ``c`` around ``d ~ s1..s2`` (connections
    there are allowed) and returns to ``c`` far away. Values lie in
    ``(0, c]``, so it is non-negative on every space.

    Parameters
    ----------
    c : float
        Scale, > 0.
    sigma1, sigma2 : float
        Widths with ``sigma2 > sigma1 > 0``.

    Examples
    --------
    >>> import torch
    >>> from moduli import regularizers as rg
    >>> f = rg.DifferenceOfGaussians(c=1.0, sigma1=0.5, sigma2=5**0.5)
    >>> f(torch.tensor([0.0])).item()
    1.0
    """

    def __init__(self, c: float = 1.0, sigma1: float = 0.5, sigma2: float = 5**0.5):
        self.c = _positive(c, "c")
        self.sigma1 = _positive(sigma1, "sigma1")
        self.sigma2 = _positive(sigma2, "sigma2")
        if not self.sigma2 > self.sigma1:
            raise ValueError(
                f"DifferenceOfGaussians needs sigma2 > sigma1 > 0 (Eq. 8); got sigma1={self.sigma1}, "
                f"sigma2={self.sigma2}"
            )

    def forward(self, d: Tensor) -> Tensor:
        d2 = d * d
        return self.c - self.c * (torch.exp(-d2 / self.sigma2**2) - torch.exp(-d2 / self.sigma1**2))

    @torch.no_grad()
    def value_and_derivative(self, d: Tensor) -> tuple[Tensor, Tensor]:
        # f' = 2 c d (e2 / s2^2 - e1 / s1^2) with e_i = exp(-d^2 / s_i^2)
        d2 = d * d
        e2 = torch.mul(d2, -1.0 / self.sigma2**2).exp_()
        e1 = d2.mul_(-1.0 / self.sigma1**2).exp_()
        value = torch.sub(e1, e2).mul_(self.c).add_(self.c)
        deriv = e2.mul_(1.0 / self.sigma2**2).sub_(e1.mul_(1.0 / self.sigma1**2)).mul_(d).mul_(2.0 * self.c)
        return value, deriv

    def __repr__(self) -> str:
        return f"DifferenceOfGaussians(c={self.c:g}, sigma1={self.sigma1:g}, sigma2={self.sigma2:g})"


class Ricker(Inhibitor):
    """The Ricker wavelet of Eq. 7, turned into a non-negative inhibitor.

    Eq. 7 is the connectivity of hand-built attractor networks,
    ``psi(d) = A (1 - d^2/s^2) exp(-d^2 / (2 s^2))`` with
    ``A = 2 / sqrt(3 s sqrt(pi))``: strongly excitatory at ``d = 0``,
    inhibitory (negative) for ``d > s``. A penalty coefficient must be
    non-negative and small where connections are wanted, so we use

    ``f(d) = c (psi(0) - psi(d)) / psi(0) = c (1 - (1 - d^2/s^2) exp(-d^2/(2 s^2)))``.

    The constant ``A`` cancels. ``f(0) = 0`` (self and nearby connections are
    free), ``f`` rises to its maximum ``c (1 + 2 e^{-3/2}) ~ 1.446 c`` at
    ``d = s sqrt(3)`` (the inhibitory surround of the wavelet is penalized
    most) and tends to ``c`` far away.

    Because ``f(0) = 0`` is its minimum, a trained embedding can lower this
    prior by collapsing the neurons to one point; :class:`ModuliPrior` warns
    about that (the paper's Section 2.3 lists the Ricker wavelet among the
    inhibitors that do not degenerate; under this -- or any -- non-negative
    transform with the minimum at 0 it does).

    Parameters
    ----------
    sigma : float
        Width ``s`` of the wavelet, > 0.
    c : float
        Scale, > 0.
    """

    def __init__(self, sigma: float = 1.0, c: float = 1.0):
        self.sigma = _positive(sigma, "sigma")
        self.c = _positive(c, "c")

    @staticmethod
    def wavelet(d: Tensor, sigma: float) -> Tensor:
        """Eq. 7 itself (may be negative)."""
        a = 2.0 / math.sqrt(3.0 * sigma * math.sqrt(math.pi))
        r = d * d / sigma**2
        return a * (1.0 - r) * torch.exp(-0.5 * r)

    def forward(self, d: Tensor) -> Tensor:
        r = d * d / self.sigma**2
        return self.c * (1.0 - (1.0 - r) * torch.exp(-0.5 * r))

    @torch.no_grad()
    def value_and_derivative(self, d: Tensor) -> tuple[Tensor, Tensor]:
        # with r = d^2/s^2 and e = exp(-r/2): f = c (1 - (1 - r) e), f' = c e (3 - r) d / s^2
        r = torch.mul(d, d).mul_(1.0 / self.sigma**2)
        e = torch.mul(r, -0.5).exp_()
        value = torch.sub(r, 1.0).mul_(e).add_(1.0).mul_(self.c)
        deriv = r.neg_().add_(3.0).mul_(e).mul_(d).mul_(self.c / self.sigma**2)
        return value, deriv

    def __repr__(self) -> str:
        return f"Ricker(sigma={self.sigma:g}, c={self.c:g})"


class Diffusion(Inhibitor):
    """Diffusion inhibitor ``f(d) = c d^n`` (Appendix E).

    Monotonically increasing: with a trained embedding it degenerates to L1
    (a warning is raised), as the paper notes.

    Parameters
    ----------
    c : float
        Scale, > 0.
    power : float
        Exponent ``n`` > 0. For ``n < 1`` the derivative at ``d = 0`` is
        infinite, so ``n >= 1`` is required.
    """

    def __init__(self, c: float = 1.0, power: float = 2):
        self.c = _positive(c, "c")
        self.power = _positive(power, "power")
        if self.power < 1:
            raise ValueError(
                f"power must be >= 1 (the derivative of d**power is infinite at d = 0 otherwise); "
                f"got {self.power}"
            )

    def forward(self, d: Tensor) -> Tensor:
        if self.power == 2:
            return self.c * d * d
        if self.power == 1:
            return self.c * d
        return self.c * d.abs().pow(self.power)

    @torch.no_grad()
    def value_and_derivative(self, d: Tensor) -> tuple[Tensor, Tensor]:
        if self.power == 1:
            return self.c * d, torch.full_like(d, self.c)
        if self.power == 2:
            return self.c * d * d, (2.0 * self.c) * d
        a = d.abs()
        return self.c * a.pow(self.power), (self.c * self.power) * a.pow(self.power - 1.0)

    def __repr__(self) -> str:
        return f"Diffusion(c={self.c:g}, power={self.power:g})"


class Sinusoid(Inhibitor):
    """Sinusoid inhibitor ``f(d) = c + c cos(mu d)`` (Appendix E), values in ``[0, 2c]``.

    Parameters
    ----------
    c : float
        Scale, > 0.
    mu : float
        Angular frequency, > 0.
    """

    def __init__(self, c: float = 1.0, mu: float = 2.0):
        self.c = _positive(c, "c")
        self.mu = _positive(mu, "mu")

    def forward(self, d: Tensor) -> Tensor:
        return self.c + self.c * torch.cos(self.mu * d)

    @torch.no_grad()
    def value_and_derivative(self, d: Tensor) -> tuple[Tensor, Tensor]:
        md = self.mu * d
        return torch.cos(md).mul_(self.c).add_(self.c), md.sin_().mul_(-self.c * self.mu)

    def __repr__(self) -> str:
        return f"Sinusoid(c={self.c:g}, mu={self.mu:g})"


class DiagonalOnly(Inhibitor):
    """Hard "diagonal only" inhibitor: ``f(d) = 0`` if ``d <= eps`` else ``value``.

    The IndRNN special case of Section 4.3 (``f(0) = 0``, ``f(d) = inf`` for
    ``d > 0``) with a large finite value so penalties stay finite. With a
    recurrent matrix, only self-connections (``d = 0`` on the diagonal) are
    free; every other weight is pushed to zero. Not differentiable in ``d``,
    so it cannot train an embedding.

    Parameters
    ----------
    value : float
        Coefficient of every connection at distance > ``eps``; default 1e4.
    eps : float
        Distances up to ``eps`` count as "same neuron"; default 0.
    """

    differentiable = False

    def __init__(self, value: float = 1e4, eps: float = 0.0):
        self.value = _positive(value, "value")
        self.eps = _nonnegative(eps, "eps")

    def forward(self, d: Tensor) -> Tensor:
        return torch.where(d > self.eps, torch.full_like(d, self.value), torch.zeros_like(d))

    def __repr__(self) -> str:
        return f"DiagonalOnly(value={self.value:g}, eps={self.eps:g})"


class ZeroMinimum(Inhibitor):
    """An inhibitor shifted down by its minimum on a space: ``f(d) - min f``, so that its minimum is 0.

    ``min f`` is taken over ``[0, diameter]`` (the distances the space can
    have) on a grid refined twice around its smallest value, in float64. A
    difference of Gaussians with ``c = 100``, ``sigma1 = 0.5``,
    ``sigma2 = sqrt(5)`` becomes ``max g - g`` for the bump
    ``g(d) = 100 (exp(-d^2/5) - exp(-4 d^2))``: the "inverted" coefficient of
    the authors' public navigation code (``docs/protocol.md``), 0 near
    ``d = 0.888`` and about 81.14 at ``d = 0`` and far away. Values below the
    minimum by rounding are clipped to 0.

    Parameters
    ----------
    base : Inhibitor
    diameter : float
        Largest distance of the space (``manifold.diameter``; ``inf`` for an
        unbounded one, checked on ``[0, 1000]``).

    Attributes
    ----------
    minimum : float
        The value subtracted.

    Examples
    --------
    >>> import torch
    >>> f = ZeroMinimum(DifferenceOfGaussians(c=100.0, sigma1=0.5), diameter=50 ** 0.5)
    >>> round(f.minimum, 2), round(float(f(torch.tensor([0.0]))), 2)
    (18.86, 81.14)
    """

    def __init__(self, base: Inhibitor, diameter: float):
        if not isinstance(base, Inhibitor):
            raise TypeError(f"base must be an Inhibitor; got {type(base).__name__}")
        if isinstance(diameter, bool) or not isinstance(diameter, numbers.Real) or math.isnan(diameter) \
                or diameter <= 0:
            raise ValueError(f"diameter must be a positive number or inf; got {diameter!r}")
        self.base = base
        self.diameter = float(diameter)
        self.differentiable = base.differentiable
        top = _UNBOUNDED_RANGE if not math.isfinite(self.diameter) else self.diameter
        lo, hi = 0.0, top
        best = math.inf
        with torch.no_grad():
            for _ in range(3):
                grid = torch.linspace(lo, hi, _GRID, dtype=torch.float64)
                values = base(grid)
                if not bool(torch.isfinite(values).all()):
                    raise ValueError(f"{base!r} is not finite on [0, {top:g}]")
                i = int(values.argmin())
                best = min(best, float(values[i]))
                step = (hi - lo) / (_GRID - 1)
                lo, hi = max(0.0, float(grid[i]) - step), min(top, float(grid[i]) + step)
        self.minimum = best

    def forward(self, d: Tensor) -> Tensor:
        return (self.base.forward(d) - self.minimum).clamp_min(0.0)

    def value_and_derivative(self, d: Tensor) -> tuple[Tensor, Tensor]:
        value, deriv = self.base.value_and_derivative(d)
        return (value - self.minimum).clamp_min_(0.0), deriv

    def __repr__(self) -> str:
        return f"ZeroMinimum({self.base!r}, diameter={self.diameter:g})"


# ---------------------------------------------------------------- expressions
def _sympy_to_torch(expr, d_symbol) -> Callable[[Tensor], Any]:
    """Compile a sympy expression in ``d`` into a function of a tensor ``d``."""
    import sympy as sp

    unary = {
        sp.exp: torch.exp, sp.log: torch.log, sp.sin: torch.sin, sp.cos: torch.cos,
        sp.tan: torch.tan, sp.tanh: torch.tanh, sp.sinh: torch.sinh, sp.cosh: torch.cosh,
        sp.atan: torch.atan, sp.Abs: torch.abs, sp.sign: torch.sign,
    }

    def compile_(e) -> Callable[[Tensor], Any]:
        if e == d_symbol:
            return lambda d: d
        if e.is_Number or e in (sp.pi, sp.E) or (e.is_number and not e.free_symbols):
            value = complex(sp.N(e))
            if value.imag != 0:
                raise ValueError(f"expression has the non-real constant {e}")
            v = value.real
            return lambda d: v
        if isinstance(e, sp.Add):
            parts = [compile_(a) for a in e.args]

            def add(d, parts=parts):
                out = parts[0](d)
                for p in parts[1:]:
                    out = out + p(d)
                return out

            return add
        if isinstance(e, sp.Mul):
            parts = [compile_(a) for a in e.args]

            def mul(d, parts=parts):
                out = parts[0](d)
                for p in parts[1:]:
                    out = out * p(d)
                return out

            return mul
        if isinstance(e, sp.Pow):
            base, exponent = compile_(e.args[0]), e.args[1]
            if exponent == sp.Rational(1, 2):
                return lambda d: torch.sqrt(_as_tensor(base(d), d))
            if exponent.is_Integer and int(exponent) == 2:
                return lambda d: (lambda b: b * b)(base(d))
            expo = compile_(exponent)
            return lambda d: torch.pow(_as_tensor(base(d), d), expo(d))
        for sym_fn, torch_fn in unary.items():
            if isinstance(e, sym_fn):
                inner = compile_(e.args[0])
                return lambda d, f=torch_fn, inner=inner: f(_as_tensor(inner(d), d))
        if isinstance(e, (sp.Min, sp.Max)):
            parts = [compile_(a) for a in e.args]
            op = torch.minimum if isinstance(e, sp.Min) else torch.maximum

            def extremum(d, parts=parts, op=op):
                out = _as_tensor(parts[0](d), d)
                for p in parts[1:]:
                    out = op(out, _as_tensor(p(d), d))
                return out

            return extremum
        if isinstance(e, sp.Heaviside):
            inner = compile_(e.args[0])
            half = float(e.args[1]) if len(e.args) > 1 else 0.5
            return lambda d: torch.heaviside(_as_tensor(inner(d), d), torch.tensor(half, dtype=d.dtype, device=d.device))
        if isinstance(e, sp.Piecewise):
            pieces = [(compile_(val), _compile_condition(cond, compile_)) for val, cond in e.args]

            def piecewise(d, pieces=pieces):
                out = torch.full_like(d, float("nan"))
                done = torch.zeros_like(d, dtype=torch.bool)
                for val, cond in pieces:
                    c = cond(d) & ~done
                    out = torch.where(c, _as_tensor(val(d), d), out)
                    done = done | c
                return out

            return piecewise
        raise ValueError(
            f"unsupported function in inhibitor expression: {e.func.__name__} (in {e}); supported: "
            "+ - * / **, exp log sqrt sin cos tan tanh sinh cosh atan Abs sign Min Max Heaviside "
            "Piecewise"
        )

    return compile_(expr)


def _compile_condition(cond, compile_):
    import sympy as sp

    if cond is sp.true or cond == True:  # noqa: E712 - sympy booleans
        return lambda d: torch.ones_like(d, dtype=torch.bool)
    ops = {
        sp.StrictLessThan: torch.lt, sp.LessThan: torch.le, sp.StrictGreaterThan: torch.gt,
        sp.GreaterThan: torch.ge,
    }
    for cls, op in ops.items():
        if isinstance(cond, cls):
            lhs, rhs = compile_(cond.args[0]), compile_(cond.args[1])
            return lambda d, op=op, lhs=lhs, rhs=rhs: op(_as_tensor(lhs(d), d), _as_tensor(rhs(d), d))
    if isinstance(cond, sp.And):
        parts = [_compile_condition(c, compile_) for c in cond.args]
        return lambda d, parts=parts: _reduce_bool(parts, d, torch.logical_and)
    if isinstance(cond, sp.Or):
        parts = [_compile_condition(c, compile_) for c in cond.args]
        return lambda d, parts=parts: _reduce_bool(parts, d, torch.logical_or)
    raise ValueError(f"unsupported condition in Piecewise: {cond}")


def _reduce_bool(parts, d, op):
    out = parts[0](d)
    for p in parts[1:]:
        out = op(out, p(d))
    return out


def _as_tensor(value, d: Tensor) -> Tensor:
    if isinstance(value, Tensor):
        return value
    return torch.full_like(d, float(value))


class ExpressionInhibitor(Inhibitor):
    """An inhibitor written as a formula of ``d`` (see :meth:`Inhibitor.from_expression`).

    Attributes
    ----------
    expression : sympy.Expr
        The parsed formula with the constants substituted.
    """

    def __init__(self, expression: str, **constants: float):
        import sympy as sp

        if not isinstance(expression, str):
            raise TypeError(f"expression must be a str; got {type(expression).__name__}")
        d = sp.Symbol("d", real=True, nonnegative=True)
        names = {"d": d}
        for key, value in constants.items():
            if isinstance(value, bool) or not isinstance(value, numbers.Real):
                raise TypeError(f"constant {key} must be a real number; got {type(value).__name__}")
            if not math.isfinite(float(value)):
                raise ValueError(f"constant {key} must be finite; got {value}")
            names[key] = sp.Symbol(key, real=True)
        try:
            parsed = sp.sympify(expression, locals=names)
        except (sp.SympifyError, SyntaxError, TypeError) as err:
            raise ValueError(f"could not parse inhibitor expression {expression!r}: {err}") from None
        if not isinstance(parsed, sp.Expr):
            raise ValueError(f"inhibitor expression {expression!r} is not a formula (got {parsed!r})")
        parsed = parsed.subs({names[k]: sp.Float(float(v)) for k, v in constants.items()})
        unknown = sorted(str(s) for s in parsed.free_symbols if s != d)
        if unknown:
            raise ValueError(
                f"inhibitor expression {expression!r} has symbols without values: {', '.join(unknown)}; "
                f"pass them as keywords, e.g. Inhibitor.from_expression(expr, {unknown[0]}=1.0)"
            )
        unused = sorted(k for k in constants if names[k] not in sp.sympify(expression, locals=names).free_symbols)
        if unused:
            raise ValueError(f"constants not used by the expression {expression!r}: {', '.join(unused)}")
        self.source = expression
        self.constants = dict(constants)
        self.expression = parsed
        self._fn = _sympy_to_torch(parsed, d)
        self.differentiable = not parsed.has(sp.Heaviside, sp.sign, sp.Piecewise)

    def forward(self, d: Tensor) -> Tensor:
        return _as_tensor(self._fn(d), d)

    def __repr__(self) -> str:
        consts = "".join(f", {k}={v:g}" for k, v in self.constants.items())
        return f"Inhibitor.from_expression({self.source!r}{consts})"


#: Inhibitors by name (the regime option of ``moduli run``, e.g. ``torus:ricker``).
#: A new inhibitor is one :class:`Inhibitor` subclass plus one entry here; its
#: ``__init__`` keyword arguments become its settable arguments.
INHIBITORS: dict[str, type] = {
    "dog": DifferenceOfGaussians,
    "ricker": Ricker,
    "diffusion": Diffusion,
    "sinusoid": Sinusoid,
    "diagonal": DiagonalOnly,
}


def inhibitor_arguments(name: str) -> dict[str, Any]:
    """The keyword arguments of the inhibitor ``name`` with their defaults.

    >>> inhibitor_arguments("ricker")
    {'sigma': 1.0, 'c': 1.0}
    """
    if name not in INHIBITORS:
        raise ValueError(f"inhibitor must be one of {list(INHIBITORS)}; got {name!r}")
    sig = inspect.signature(INHIBITORS[name].__init__)
    return {p.name: p.default for p in list(sig.parameters.values())[1:]
            if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}


def make_inhibitor(name: str, **arguments: float) -> Inhibitor:
    """The inhibitor ``name`` of :data:`INHIBITORS` with ``arguments`` (the rest at their defaults).

    Raises
    ------
    ValueError
        If ``name`` is unknown, an argument is not one of the inhibitor's, or a
        value is out of range.

    Examples
    --------
    >>> make_inhibitor("ricker", sigma=2.0)
    Ricker(sigma=2, c=1)
    """
    known = inhibitor_arguments(name)
    unknown = sorted(set(arguments) - set(known))
    if unknown:
        raise ValueError(f"inhibitor {name!r} takes the arguments {list(known)}; got {unknown}")
    return INHIBITORS[name](**arguments)
