"""Quadrature rules for integrated gradients over the path ``alpha`` in [0, 1].

``quadrature_rule(name, steps)`` returns the points ``alpha`` and weights ``w`` such that
``sum_k w_k g(alpha_k)`` approximates ``integral_0^1 g(alpha) d alpha``.

Example:
    >>> alphas, weights = quadrature_rule("riemann_right", 4)
    >>> alphas.tolist(), weights.tolist()
    ([0.25, 0.5, 0.75, 1.0], [0.25, 0.25, 0.25, 0.25])
    >>> round(float(weights.sum()), 12)
    1.0
"""

from __future__ import annotations

import numpy as np
import torch
from jaxtyping import Float
from torch import Tensor

__all__ = ["QUADRATURES", "canonical_quadrature", "quadrature_rule"]

QUADRATURES: tuple[str, ...] = (
    "gauss_legendre",
    "riemann_left",
    "riemann_right",
    "riemann_middle",
    "riemann_trapezoid",
)


# Other spellings accepted for the names above: hyphens for underscores (``"gauss-legendre"``, the
# earlier spelling), and captum's ``"gausslegendre"``.
_ALIASES = {"gausslegendre": "gauss_legendre"}


def canonical_quadrature(name: str) -> str:
    """The one spelling of a quadrature name (``"gauss-legendre"`` -> ``"gauss_legendre"``), or
    ``ValueError`` listing the names.

    Example:
        >>> canonical_quadrature("gauss-legendre"), canonical_quadrature("riemann_left")
        ('gauss_legendre', 'riemann_left')
    """
    if isinstance(name, str):
        spelled = name.strip().lower().replace("-", "_")
        spelled = _ALIASES.get(spelled, spelled)
        if spelled in QUADRATURES:
            return spelled
    raise ValueError(f"unknown quadrature {name!r}; expected one of {QUADRATURES}")


def check_steps(steps: int) -> int:
    """``steps`` as a positive int, or ``ValueError``."""
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)):
        raise ValueError(f"steps must be an integer >= 1, got {steps!r}")
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    return int(steps)


def quadrature_rule(name: str, steps: int) -> tuple[Float[Tensor, " step"], Float[Tensor, " step"]]:
    """Points and weights (float64) of quadrature ``name`` with ``steps`` points on [0, 1].

    ``riemann_trapezoid`` uses ``steps`` equally spaced points including both ends and
    needs ``steps >= 2``; Gauss-Legendre is exact for polynomials of degree ``2 * steps - 1``.
    """
    steps = check_steps(steps)
    name = canonical_quadrature(name)
    n = steps
    if name == "riemann_left":
        alphas = np.arange(n) / n
        weights = np.full(n, 1.0 / n)
    elif name == "riemann_right":
        alphas = np.arange(1, n + 1) / n
        weights = np.full(n, 1.0 / n)
    elif name == "riemann_middle":
        alphas = (np.arange(n) + 0.5) / n
        weights = np.full(n, 1.0 / n)
    elif name == "riemann_trapezoid":
        if n < 2:
            raise ValueError("quadrature 'riemann_trapezoid' needs steps >= 2 (both ends of the path)")
        alphas = np.linspace(0.0, 1.0, n)
        weights = np.full(n, 1.0 / (n - 1))
        weights[0] = weights[-1] = 0.5 / (n - 1)
    elif name == "gauss_legendre":
        nodes, w = np.polynomial.legendre.leggauss(n)
        alphas = (nodes + 1.0) / 2.0
        weights = w / 2.0
    else:  # pragma: no cover - canonical_quadrature lets only QUADRATURES through
        raise AssertionError(name)
    return torch.tensor(alphas, dtype=torch.float64), torch.tensor(weights, dtype=torch.float64)
