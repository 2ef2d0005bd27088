"""Tables: the top-k neurons of an attribution result, or any results table.

Example:
    >>> import torch
    >>> fig = top_table(torch.tensor([[0.0, -5.0], [2.0, 1.0]]), k=2)
    >>> list(fig.data[0].cells.values[2])
    [1, 0]
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import plotly.graph_objects as go

from neuronscope.plots._inputs import neuron_values, records
from neuronscope.plots.theme import apply_theme

__all__ = ["table", "top_table"]

_HEADER = {"fill_color": "#eef1f5", "font": {"size": 13}, "align": "left", "line_color": "#d0d4da"}
_CELLS = {"fill_color": "white", "font": {"size": 12}, "align": "left", "line_color": "#e3e6ea", "height": 24}


def _fmt(value: Any) -> Any:
    if isinstance(value, (float, np.floating)):
        return f"{value:.4g}"
    return value


def _fit(fig: go.Figure, n_rows: int) -> go.Figure:
    """Height that shows every row without an inner scroll bar (rows are 24 px plus borders)."""
    top = 60 if fig.layout.title.text else 20
    fig.update_layout(margin={"t": top, "b": 10}, height=min(1200, top + 20 + 26 * (n_rows + 1)))
    return fig


def table(rows: Any, *, title: str | None = None, columns: Sequence[str] | None = None) -> go.Figure:
    """A plotly table from a DataFrame, a results object with ``to_pandas()`` or a list of dicts.

    Example:
        >>> table([{"method": "GA", "forget": 0.0}]).data[0].header.values
        ('method', 'forget')
    """
    rows = records(rows, "rows")
    columns = list(columns) if columns is not None else list(dict.fromkeys(k for r in rows for k in r))
    cells = [[_fmt(r.get(c, "")) for r in rows] for c in columns]
    fig = go.Figure(go.Table(header=dict(values=columns, **_HEADER), cells=dict(values=cells, **_CELLS)))
    return _fit(apply_theme(fig, title=title), len(rows))


def top_table(values: Any, k: int = 10, *, sign: str = "abs", layers: Sequence[int] | None = None,
              fact_ids: Sequence[str] | None = None, title: str | None = None, top_facts: int = 2
              ) -> go.Figure:
    """The ``k`` neurons with the largest mean attribution (``sign``: "abs", "pos" or "neg").

    ``values`` is a ``NeuronAttribution`` or a [layer, neuron] / [fact, layer, neuron] tensor.
    With per-fact scores, a column lists the facts each neuron matters most for.
    """
    if not isinstance(k, int) or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}")
    if sign not in ("abs", "pos", "neg"):
        raise ValueError(f"sign must be 'abs', 'pos' or 'neg', got {sign!r}")
    nv = neuron_values(values, "values", layers, fact_ids)
    flat = nv.matrix.ravel()
    key = {"abs": -np.abs(flat), "pos": -flat, "neg": flat}[sign]
    best = np.argsort(key, kind="stable")[: min(k, flat.size)]
    rows, cols = np.unravel_index(best, nv.matrix.shape)
    columns = {"rank": list(range(1, len(best) + 1)),
               "layer": [nv.layers[r] for r in rows],
               "neuron": [int(c) for c in cols],
               f"mean {nv.label}": [f"{flat[i]:+.4g}" for i in best]}
    if nv.per_fact is not None:
        facts = []
        for r, c in zip(rows, cols, strict=True):
            column = nv.per_fact[:, r, c]
            top = np.argsort(-np.abs(column), kind="stable")[:top_facts]
            facts.append(", ".join(f"{nv.fact_ids[f]} ({column[f]:+.3g})" for f in top))
        columns["matters most for"] = facts
    fig = go.Figure(go.Table(header=dict(values=list(columns), **_HEADER),
                             cells=dict(values=list(columns.values()), **_CELLS),
                             columnwidth=[0.5, 0.6, 0.7, 1.2, 4][: len(columns)]))
    title = title or f"Top {len(best)} neurons by {sign} mean {nv.label}"
    return _fit(apply_theme(fig, title=title), len(best))
