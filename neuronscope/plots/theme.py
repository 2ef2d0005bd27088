"""One visual theme for every neuronscope figure.

All plot functions finish with :func:`apply_theme`, so figures share fonts, margins, a
diverging colour scale for signed attributions and one colour per unlearning method.

Example:
    >>> import plotly.graph_objects as go
    >>> fig = apply_theme(go.Figure(), title="hello")
    >>> fig.layout.title.text
    'hello'
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go

__all__ = [
    "DIVERGING",
    "ERASE",
    "FLAGGED",
    "FONT",
    "HIDE",
    "NEUTRAL",
    "apply_theme",
    "method_color",
    "symmetric_range",
]

FONT = "Inter, Helvetica Neue, Arial, sans-serif"
# Blue for negative, white at zero, red for positive (ColorBrewer RdBu, reversed).
DIVERGING: list[list[float | str]] = [
    [0.0, "#053061"], [0.1, "#2166ac"], [0.2, "#4393c3"], [0.3, "#92c5de"], [0.4, "#d1e5f0"],
    [0.5, "#f7f7f7"], [0.6, "#fddbc7"], [0.7, "#f4a582"], [0.8, "#d6604d"], [0.9, "#b2182b"],
    [1.0, "#67001f"],
]
ERASE = "#2c7fb8"  # D+: positive influence removed
HIDE = "#d95f0e"  # D-: negative influence added
FLAGGED = "#c51b7d"
NEUTRAL = "#8c8c8c"
_METHODS = {
    "original": "#111111", "oracle": "#6b6b6b", "ga": "#e6550d", "gd": "#756bb1",
    "npo": "#31a354", "simnpo": "#74c476", "dpo": "#3182bd", "rmu": "#de2d26",
}
_CYCLE = ("#e6550d", "#756bb1", "#3182bd", "#31a354", "#de2d26", "#636363", "#e7ba52", "#7b4173")


def method_color(name: str, index: int = 0) -> str:
    """A stable colour for an unlearning method; anything with SSIUU in it is teal-green.

    Example:
        >>> method_color("GD+SSIUU") == method_color("ga+ssiuu")
        True
    """
    key = name.lower().replace(" ", "")
    if "ssiuu" in key:
        return "#00897b"
    return _METHODS.get(key, _CYCLE[index % len(_CYCLE)])


def symmetric_range(values: Sequence[float] | object, floor: float = 1e-12) -> tuple[float, float]:
    """``(-m, m)`` with ``m`` the largest absolute finite value, so zero sits mid-scale.

    Example:
        >>> symmetric_range([-1.0, 3.0])
        (-3.0, 3.0)
    """
    array = np.asarray(values, dtype=float)
    finite = array[np.isfinite(array)]
    bound = float(np.abs(finite).max()) if finite.size else 0.0
    bound = max(bound, floor)
    return (-bound, bound)


def apply_theme(fig: go.Figure, *, title: str | None = None, height: int | None = None,
                width: int | None = None) -> go.Figure:
    """Apply the neuronscope look to ``fig`` in place and return it."""
    fig.update_layout(
        template="plotly_white",
        font={"family": FONT, "size": 13, "color": "#222"},
        title={"text": title, "x": 0.01, "xanchor": "left", "font": {"size": 16}} if title else None,
        margin={"l": 70, "r": 30, "t": 60 if title else 30, "b": 55},
        hoverlabel={"font": {"family": FONT, "size": 12}, "bgcolor": "white"},
        legend={"bgcolor": "rgba(255,255,255,0.8)"},
        colorway=list(_CYCLE),
    )
    if height is not None:
        fig.update_layout(height=height)
    if width is not None:
        fig.update_layout(width=width)
    return fig
