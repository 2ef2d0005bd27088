"""Erase-or-hide plots: D+ and D- per layer, and D+ against D- per neuron.

D+ (decrease of positive influence: erasing) and D- (increase of negative influence:
hiding) come from ``ns.diagnose``; these functions only draw them.

Example:
    >>> import torch
    >>> fig = d_scatter((torch.rand(2, 8), torch.rand(2, 8), [(1, 3)]))
    >>> [t.name for t in fig.data]
    ['neurons', 'flagged (1)']
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import plotly.graph_objects as go

from neuronscope.plots._inputs import as_array
from neuronscope.plots.theme import ERASE, FLAGGED, HIDE, NEUTRAL, apply_theme

__all__ = ["d_per_layer", "d_scatter", "diagnosis_parts"]


def _flag_mask(flagged: Any, shape: tuple[int, int], layers: list[int]) -> np.ndarray:
    """A bool [layer, neuron] mask from a mask or from (layer, neuron) pairs (layer labels)."""
    if flagged is None:
        return np.zeros(shape, dtype=bool)
    if hasattr(flagged, "detach"):
        flagged = flagged.detach().cpu().numpy()
    array = np.asarray(flagged)
    if array.dtype == bool:
        if array.shape != shape:
            raise ValueError(f"flagged mask has shape {array.shape}, expected {shape}")
        return array
    mask = np.zeros(shape, dtype=bool)
    if array.size == 0:
        return mask
    if array.ndim != 2 or array.shape[1] != 2:
        raise ValueError("flagged must be a bool [layer, neuron] mask or a list of (layer, neuron) pairs, "
                         f"got shape {array.shape}")
    rows = {layer: i for i, layer in enumerate(layers)}
    for layer, neuron in array.astype(int).tolist():
        if layer not in rows or not 0 <= neuron < shape[1]:
            raise ValueError(f"flagged neuron (layer {layer}, neuron {neuron}) is outside "
                             f"layers {layers} x {shape[1]} neurons")
        mask[rows[layer], neuron] = True
    return mask


def diagnosis_parts(diagnosis: Any, layers: Sequence[int] | None = None
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[int]]:
    """``(d_plus, d_minus, flagged_mask, layers)`` from a ``Diagnosis`` or a tuple of tensors.

    Tuples are ``(d_plus, d_minus)`` or ``(d_plus, d_minus, flagged)``; D+ and D- are
    [layer, neuron]; flagged is a bool mask or (layer, neuron) pairs.
    """
    if isinstance(diagnosis, tuple):
        if len(diagnosis) not in (2, 3):
            raise ValueError(f"expected (d_plus, d_minus[, flagged]), got a tuple of {len(diagnosis)}")
        d_plus, d_minus = diagnosis[0], diagnosis[1]
        flagged = diagnosis[2] if len(diagnosis) == 3 else None
    elif hasattr(diagnosis, "d_plus") and hasattr(diagnosis, "d_minus"):
        d_plus, d_minus = diagnosis.d_plus, diagnosis.d_minus
        flagged = None
        for name in ("flag_mask", "flagged_mask", "flagged"):
            flagged = getattr(diagnosis, name, None)
            if flagged is not None:
                break
        if layers is None and getattr(diagnosis, "layers", None) is not None:
            layers = list(diagnosis.layers)
    else:
        raise ValueError("expected a Diagnosis (with d_plus and d_minus) or a (d_plus, d_minus[, flagged]) "
                         f"tuple, got {type(diagnosis).__name__}")
    plus = as_array(d_plus, "d_plus", 2)
    minus = as_array(d_minus, "d_minus", 2)
    if plus.shape != minus.shape:
        raise ValueError(f"d_plus {plus.shape} and d_minus {minus.shape} differ in shape")
    layers = list(range(plus.shape[0])) if layers is None else [int(x) for x in layers]
    if len(layers) != plus.shape[0]:
        raise ValueError(f"{len(layers)} layer labels for {plus.shape[0]} layers")
    if hasattr(flagged, "to_pandas") and not hasattr(flagged, "shape"):
        flagged = flagged.to_pandas()
    if hasattr(flagged, "columns"):  # a DataFrame of flagged neurons
        flagged = flagged[["layer", "neuron"]].to_numpy()
    elif isinstance(flagged, Sequence) and flagged and hasattr(flagged[0], "layer"):
        flagged = [(f.layer, f.neuron) for f in flagged]
    return plus, minus, _flag_mask(flagged, plus.shape, layers), layers


def d_per_layer(diagnosis: Any, *, layers: Sequence[int] | None = None, title: str | None = None
                ) -> go.Figure:
    """Total D+ (erased) and D- (hidden) per layer as grouped bars.

    Uses ``Diagnosis.per_layer()`` when given a ``Diagnosis``; for a ``(d_plus, d_minus)``
    tuple, per-neuron values are clipped at 0 and summed over the neurons of each layer.

    Example:
        >>> import torch
        >>> fig = d_per_layer((torch.ones(3, 4), torch.zeros(3, 4)))
        >>> fig.data[0].y.tolist()
        [4.0, 4.0, 4.0]
    """
    plus, minus, _, layers = diagnosis_parts(diagnosis, layers)
    names = [str(layer) for layer in layers]
    summary = diagnosis.per_layer() if callable(getattr(diagnosis, "per_layer", None)) else None
    if summary is not None and list(summary) == layers:
        erased = np.array([summary[layer]["d_plus"] for layer in layers])
        hidden = np.array([summary[layer]["d_minus"] for layer in layers])
    else:
        erased, hidden = np.clip(plus, 0, None).sum(axis=1), np.clip(minus, 0, None).sum(axis=1)
    fig = go.Figure([
        go.Bar(x=names, y=erased, name="D+ (positive influence removed: erase)",
               marker_color=ERASE, hovertemplate="layer %{x}<br>sum D+ %{y:.4g}<extra></extra>"),
        go.Bar(x=names, y=hidden, name="D− (negative influence added: hide)",
               marker_color=HIDE, hovertemplate="layer %{x}<br>sum D− %{y:.4g}<extra></extra>"),
    ])
    fig.update_layout(barmode="group", legend={"orientation": "h", "y": 1.02, "yanchor": "bottom", "x": 0})
    fig.update_xaxes(title_text="layer", type="category")
    fig.update_yaxes(title_text="sum over neurons (clipped at 0)")
    return apply_theme(fig, title=title or "Erase (D+) or hide (D−), per layer", height=340)


def d_scatter(diagnosis: Any, *, layers: Sequence[int] | None = None, title: str | None = None,
              label_flagged: int = 8) -> go.Figure:
    """D+ against D- for every neuron; flagged (spurious) neurons drawn as marked crosses.

    Points above the diagonal hide more than they erase. The first ``label_flagged`` flagged
    neurons (by D-) carry a text label ``L{layer}/N{neuron}``.

    Example:
        >>> import torch
        >>> mask = torch.zeros(2, 5, dtype=torch.bool); mask[0, 1] = True
        >>> fig = d_scatter((torch.rand(2, 5), torch.rand(2, 5), mask))
        >>> len(fig.data[1].x)
        1
    """
    plus, minus, mask, layers = diagnosis_parts(diagnosis, layers)
    layer_of = np.repeat(np.asarray(layers), plus.shape[1]).reshape(plus.shape)
    neuron_of = np.tile(np.arange(plus.shape[1]), (plus.shape[0], 1))
    hover = "layer %{customdata[0]}, neuron %{customdata[1]}<br>D+ %{x:.4g}<br>D− %{y:.4g}<extra></extra>"
    plain = ~mask
    traces = [go.Scattergl(
        x=plus[plain], y=minus[plain], mode="markers", name="neurons",
        marker={"color": NEUTRAL, "size": 5, "opacity": 0.55},
        customdata=np.stack([layer_of[plain], neuron_of[plain]], axis=-1), hovertemplate=hover)]
    order = np.argsort(-minus[mask], kind="stable")
    fl, fn = layer_of[mask][order], neuron_of[mask][order]
    text = [f"L{a}/N{b}" if i < label_flagged else "" for i, (a, b) in enumerate(zip(fl, fn, strict=True))]
    traces.append(go.Scatter(
        x=plus[mask][order], y=minus[mask][order], mode="markers+text", name=f"flagged ({int(mask.sum())})",
        text=text, textposition="top center", textfont={"size": 10, "color": FLAGGED},
        marker={"color": FLAGGED, "size": 10, "symbol": "x", "line": {"width": 1}},
        customdata=np.stack([fl, fn], axis=-1), hovertemplate=hover))
    fig = go.Figure(traces)
    high = min(float(plus.max()), float(minus.max()))
    high = high if high > 0 else max(float(plus.max()), float(minus.max()), 0.0)
    fig.add_shape(type="line", x0=0, y0=0, x1=high, y1=high,  # D- = D+: above it, hiding dominates
                  line={"color": "#999", "dash": "dot", "width": 1})
    fig.update_xaxes(title_text="D+  (positive influence removed: erase)", zeroline=True)
    fig.update_yaxes(title_text="D−  (negative influence added: hide)", zeroline=True)
    return apply_theme(fig, title=title or "D+ against D− per neuron", height=440)
