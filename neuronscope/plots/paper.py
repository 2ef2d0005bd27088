"""Plots of the paper's diagnostics: cumulative D+ / D- (fig. 3b), the module x layer map
(fig. 5), the logit lens (fig. 4) and attribution stability under an attack (fig. 6b).

The numbers come from ``Diagnosis.cumulative()``, ``Diagnosis.module_layer_map()``,
``ns.logit_lens`` and ``ns.attribution_stability``; these functions only draw them.

Example:
    >>> import torch
    >>> from neuronscope.diagnostics import AttributionStability
    >>> s = AttributionStability(0.9, 0.8, torch.tensor([1.0, 2.0]), torch.tensor([1.0, 2.5]))
    >>> [t.name for t in attribution_stability(s).data]
    ['before', 'after', 'neurons']
"""

from __future__ import annotations

from typing import Any

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from neuronscope.plots.theme import ERASE, HIDE, NEUTRAL, apply_theme, method_color

__all__ = ["attribution_stability", "cumulative_variation", "logit_lens", "module_layer_map"]


def _named(value: Any, name: str) -> dict[str, Any]:
    return dict(value) if isinstance(value, dict) else {name: value}


def cumulative_variation(diagnoses: Any, *, title: str | None = None) -> go.Figure:
    """Cumulative D+ (solid) and D- (dotted) over neurons sorted from the largest, one pair
    of lines per diagnosis (a ``Diagnosis`` or a dict name -> ``Diagnosis``).

    Example:
        >>> import torch
        >>> class D:  # anything with cumulative()
        ...     def cumulative(self):
        ...         return {"d_plus": torch.tensor([2.0, 3.0]), "d_minus": torch.tensor([1.0, 1.5])}
        >>> [float(t.y[-1]) for t in cumulative_variation(D()).data]
        [3.0, 1.5]
    """
    traces = []
    for index, (name, diag) in enumerate(_named(diagnoses, "diagnosis").items()):
        curves = diag.cumulative()
        color = method_color(name, index)
        for key, dash, label in (("d_plus", "solid", "D+"), ("d_minus", "dot", "D−")):
            y = np.asarray(curves[key], dtype=float)
            traces.append(go.Scatter(x=np.arange(1, len(y) + 1), y=y, mode="lines", name=f"{name} {label}",
                                     line={"color": color, "dash": dash},
                                     hovertemplate="top %{x} neurons<br>sum %{y:.4g}<extra></extra>"))
    fig = go.Figure(traces)
    fig.update_xaxes(title_text="number of neurons (sorted by D, largest first)", type="log")
    fig.update_yaxes(title_text="cumulative D (clipped at 0)")
    return apply_theme(fig, title=title or "Cumulative D+ (erase) and D− (hide)", height=380)


def module_layer_map(diagnosis: Any, *, m: int = 100, title: str | None = None) -> go.Figure:
    """Two heatmaps, module (site) x layer: the mean of the top-``m`` D+ and D- of each module
    in each layer (``Diagnosis.module_layer_map``)."""
    maps = diagnosis.module_layer_map(m)
    sites = [name for name, _ in diagnosis.site_widths]
    layers = [str(layer) for layer in diagnosis.layers]
    fig = make_subplots(rows=1, cols=2, subplot_titles=(f"D+ (top {m} mean)", f"D− (top {m} mean)"),
                        horizontal_spacing=0.12)
    for col, (key, color) in enumerate((("d_plus", ERASE), ("d_minus", HIDE)), start=1):
        z = np.asarray(maps[key], dtype=float)
        fig.add_trace(go.Heatmap(z=z, x=layers, y=sites, colorscale=[[0, "#ffffff"], [1, color]], zmin=0,
                                 colorbar={"x": 0.45 if col == 1 else 1.0, "len": 0.9},
                                 hovertemplate="layer %{x}, %{y}<br>%{z:.4g}<extra></extra>"), row=1, col=col)
    fig.update_xaxes(title_text="layer", type="category")
    return apply_theme(fig, title=title or "Where D+ and D− sit: module x layer", height=360)


def logit_lens(lenses: Any, *, title: str | None = None) -> go.Figure:
    """Per-layer accuracy of gold vs distractor (``ns.logit_lens``) for one or several models
    (a dict name -> ``LogitLens``, e.g. before and after unlearning), with the 0.5 chance line."""
    traces = []
    chance = 0.5
    for index, (name, lens) in enumerate(_named(lenses, "model").items()):
        chance = lens.chance
        traces.append(go.Scatter(x=[str(x) for x in lens.layers], y=np.asarray(lens.accuracy, dtype=float),
                                 mode="lines+markers", name=name, line={"color": method_color(name, index)},
                                 hovertemplate="layer %{x}<br>accuracy %{y:.3f}<extra></extra>"))
    fig = go.Figure(traces)
    fig.add_hline(y=chance, line={"color": NEUTRAL, "dash": "dot"}, annotation_text="chance")
    fig.update_xaxes(title_text="layer (residual stream after the block)", type="category")
    fig.update_yaxes(title_text="gold beats distractor", range=[0, 1])
    heading = title or "Logit lens: gold answer vs a same-relation distractor"
    return apply_theme(fig, title=heading, height=360)


def attribution_stability(stability: Any, *, title: str | None = None) -> go.Figure:
    """Distribution of per-neuron attributions before and after (overlaid histograms) and
    each neuron's before-after pair (scatter), from ``ns.attribution_stability``."""
    before = np.asarray(stability.before, dtype=float)
    after = np.asarray(stability.after, dtype=float)
    fig = make_subplots(rows=1, cols=2, subplot_titles=("distribution", "per neuron"),
                        horizontal_spacing=0.12)
    fig.add_trace(go.Histogram(x=before, name="before", opacity=0.6, marker_color=ERASE), row=1, col=1)
    fig.add_trace(go.Histogram(x=after, name="after", opacity=0.6, marker_color=HIDE), row=1, col=1)
    fig.add_trace(go.Scattergl(x=before, y=after, mode="markers", name="neurons",
                               marker={"color": NEUTRAL, "size": 4, "opacity": 0.5}), row=1, col=2)
    fig.update_layout(barmode="overlay")
    fig.update_xaxes(title_text="attribution (fact mean)", row=1, col=1)
    fig.update_xaxes(title_text="before", row=1, col=2)
    fig.update_yaxes(title_text="after", row=1, col=2)
    heading = title or (f"Attribution stability: Pearson r = {stability.pearson:.3f}, "
                        f"Spearman = {stability.spearman:.3f}")
    return apply_theme(fig, title=heading, height=360)
