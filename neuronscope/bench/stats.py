"""Mean and spread over seeds, and the ``mean ± std`` cells of the benchmark's tables.

Example:
    >>> cell([0.1, 0.3], scale=100, digits=1)
    '20.0 ± 14.1'
"""

from __future__ import annotations

import math

__all__ = ["cell", "mean_std"]


def mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof=1; NaN for a single value), NaNs dropped.

    Example:
        >>> mean_std([0.1, 0.3])
        (0.2, 0.1414213562373095)
    """
    values = [float(v) for v in values if not math.isnan(float(v))]
    if not values:
        return math.nan, math.nan
    mean = sum(values) / len(values)
    if len(values) < 2:
        return mean, math.nan
    return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))


def cell(values: list[float], signed: bool = False, scale: float = 1.0, digits: int = 2) -> str:
    """``mean ± std`` of ``values`` times ``scale`` (``n/a`` when empty; no ``±`` for one value)."""
    mean, std = mean_std(values)
    if math.isnan(mean):
        return "n/a"
    text = f"{scale * mean:{'+' if signed else ''}.{digits}f}"
    return text if math.isnan(std) else f"{text} ± {scale * std:.{digits}f}"
