"""Neuron heatmaps: layer x neuron, diverging colour scale centred on zero.

Large layers are reduced before drawing: with more than ``max_neurons`` neurons per layer,
each row keeps its ``max_neurons`` neurons of largest magnitude, sorted by value (the x axis
becomes a rank; hover names the real neuron). This keeps a 12 x 3072 model's saved figure
well under 5 MB and responsive in a browser.

Example:
    >>> import torch
    >>> fig = neuron_heatmap(torch.randn(2, 8))
    >>> fig.data[0].zmid
    0.0
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from neuronscope.plots._inputs import NeuronValues, check_choice, neuron_values
from neuronscope.plots.theme import DIVERGING, apply_theme, symmetric_range

__all__ = ["before_after", "neuron_heatmap", "select_neurons"]

MODES = ("auto", "all", "top")


def select_neurons(key: np.ndarray, max_neurons: int = 512, mode: str = "auto",
                   order: np.ndarray | None = None) -> np.ndarray:
    """Neuron indices to draw per layer, shape [layer, shown].

    ``mode="all"`` keeps every neuron in index order; ``"top"`` keeps the ``max_neurons`` of
    largest ``|key|`` per layer, sorted by ``order`` (default ``key``) descending; ``"auto"``
    is ``"all"`` when a layer fits in ``max_neurons``, else ``"top"``.

    Example:
        >>> select_neurons(np.array([[0.1, -3.0, 2.0]]), max_neurons=2).tolist()
        [[2, 1]]
    """
    check_choice("mode", mode, MODES)
    if not isinstance(max_neurons, int) or max_neurons < 1:
        raise ValueError(f"max_neurons must be a positive integer, got {max_neurons!r}")
    n_layers, width = key.shape
    if mode == "all" or (mode == "auto" and width <= max_neurons):
        return np.tile(np.arange(width), (n_layers, 1))
    keep = min(max_neurons, width)
    order = key if order is None else order
    picked = np.argsort(-np.abs(key), axis=1, kind="stable")[:, :keep]
    ranks = np.argsort(-np.take_along_axis(order, picked, axis=1), axis=1, kind="stable")
    return np.take_along_axis(picked, ranks, axis=1)


def _top_facts(values: NeuronValues, index: np.ndarray, k: int) -> np.ndarray:
    """Per drawn cell, a short text naming the ``k`` facts with the largest |score|."""
    shape = index.shape
    if values.per_fact is None or k == 0:
        return np.full(shape, "", dtype=object)
    texts = np.empty(shape, dtype=object)
    k = min(k, values.per_fact.shape[0])
    for row in range(shape[0]):
        block = values.per_fact[:, row, index[row]]  # [fact, shown]
        best = np.argsort(-np.abs(block), axis=0, kind="stable")[:k]  # [k, shown]
        for col in range(shape[1]):
            texts[row, col] = "<br>  ".join(
                f"{values.fact_ids[f]} ({block[f, col]:+.3g})" for f in best[:, col])
    return texts


def _heatmap_trace(z: np.ndarray, neurons: np.ndarray, facts: np.ndarray, layers: list[int],
                   x: Sequence[Any], label: str, **kwargs: Any) -> go.Heatmap:
    custom = np.dstack([neurons.astype(object), facts])
    hover = f"layer %{{y}}<br>neuron %{{customdata[0]}}<br>{label} %{{z:.4g}}"
    if any(facts.flat):
        hover += "<br>matters most for:<br>  %{customdata[1]}"
    return go.Heatmap(z=z, x=list(x), y=[str(layer) for layer in layers], customdata=custom,
                      hovertemplate=hover + "<extra></extra>", **kwargs)


def _x_axis(index: np.ndarray, width: int) -> tuple[list[int], str]:
    shown = index.shape[1]
    if shown == width and (index == np.arange(width)).all():
        return list(range(width)), "neuron"
    return list(range(shown)), f"rank within layer (top {shown} of {width} neurons by |value|)"


def neuron_heatmap(
    values: Any,
    *,
    layers: Sequence[int] | None = None,
    fact_ids: Sequence[str] | None = None,
    title: str | None = None,
    max_neurons: int = 512,
    mode: str = "auto",
    top_facts: int = 3,
    label: str | None = None,
) -> go.Figure:
    """Layer x neuron heatmap of attribution (or any signed per-neuron value).

    ``values``: a ``NeuronAttribution`` (its mean over facts is drawn, and hover lists the
    facts each neuron matters most for; with several sites, hover names each unit
    ``site/index``), a [layer, neuron] or a [fact, layer, neuron] tensor.
    The colour scale is diverging and centred on 0 (symmetric ``zmin``/``zmax``).

    Example:
        >>> import torch
        >>> fig = neuron_heatmap(torch.randn(5, 4, 16), fact_ids=list("abcde"))
        >>> fig.data[0].z.shape
        (4, 16)
    """
    nv = neuron_values(values, "values", layers, fact_ids)
    index = select_neurons(nv.matrix, max_neurons, mode)
    z = np.take_along_axis(nv.matrix, index, axis=1)
    low, high = symmetric_range(z)
    x, x_title = _x_axis(index, nv.matrix.shape[1])
    name = label or nv.label
    trace = _heatmap_trace(z, nv.units(index), _top_facts(nv, index, top_facts), nv.layers, x, name,
                           colorscale=DIVERGING, zmid=0.0, zmin=low, zmax=high,
                           colorbar={"title": {"text": name}})
    fig = go.Figure(trace)
    fig.update_xaxes(title_text=x_title)
    fig.update_yaxes(title_text="layer", type="category", autorange="reversed")
    height = max(300, min(900, 140 + 40 * len(nv.layers)))
    return apply_theme(fig, title=title or f"Neuron {name} (mean over facts)", height=height)


def before_after(
    before: Any,
    after: Any,
    *,
    layers: Sequence[int] | None = None,
    titles: Sequence[str] = ("before", "after", "after − before"),
    title: str | None = None,
    max_neurons: int = 256,
    mode: str = "auto",
    label: str = "attribution",
) -> go.Figure:
    """Before, after and difference heatmaps side by side on one shared, zero-centred scale.

    ``before`` and ``after`` are ``NeuronAttribution`` results (or [layer, neuron] /
    [fact, layer, neuron] tensors) of the same shape. The same neurons are drawn in all three
    panels (for large layers: those with the largest ``|before| + |after|``, ordered by
    ``before``).

    Example:
        >>> import torch
        >>> fig = before_after(torch.randn(3, 10), torch.randn(3, 10))
        >>> len(fig.data), fig.layout.coloraxis.cmid
        (3, 0.0)
    """
    b = neuron_values(before, "before", layers)
    a = neuron_values(after, "after", layers)
    if b.matrix.shape != a.matrix.shape:
        raise ValueError(f"before and after differ in shape: {b.matrix.shape} vs {a.matrix.shape}")
    if b.layers != a.layers:
        raise ValueError(f"before and after cover different layers: {b.layers} vs {a.layers}")
    if len(titles) != 3:
        raise ValueError(f"titles must name the 3 panels, got {len(titles)}")
    diff = a.matrix - b.matrix
    index = select_neurons(np.abs(b.matrix) + np.abs(a.matrix), max_neurons, mode, order=b.matrix)
    panels = [np.take_along_axis(m, index, axis=1) for m in (b.matrix, a.matrix, diff)]
    low, high = symmetric_range(np.concatenate([p.ravel() for p in panels]))
    x, x_title = _x_axis(index, b.matrix.shape[1])
    fig = make_subplots(rows=1, cols=3, subplot_titles=list(titles), shared_yaxes=True,
                        horizontal_spacing=0.03)
    empty = np.full(index.shape, "", dtype=object)
    for col, (z, name) in enumerate(zip(panels, titles, strict=True), start=1):
        fig.add_trace(_heatmap_trace(z, b.units(index), empty, b.layers, x, f"{label} ({name})",
                                     coloraxis="coloraxis"), row=1, col=col)
        fig.update_xaxes(title_text=x_title if col == 2 else None, row=1, col=col)
    fig.update_layout(coloraxis={"colorscale": DIVERGING, "cmin": low, "cmax": high, "cmid": 0.0,
                                 "colorbar": {"title": {"text": label}}})
    fig.update_yaxes(title_text="layer", type="category", autorange="reversed", row=1, col=1)
    height = max(320, min(900, 160 + 40 * len(b.layers)))
    return apply_theme(fig, title=title or f"Neuron {label}: before vs after unlearning", height=height)


