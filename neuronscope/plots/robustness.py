"""Robustness plots: recovery over attack steps, the method x attack grid, the lambda sweep.

Each function takes a table (a DataFrame, a results object with ``to_pandas()`` or a list of
dicts) in long form, as the attack and benchmark functions return it.

Example:
    >>> rows = [{"method": "GA", "attack": "benign", "step": s, "accuracy": s / 10} for s in range(3)]
    >>> recovery_curves(rows).data[0].name
    'GA'
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from neuronscope.atomic import atomic_write_text
from neuronscope.bench.stats import mean_std
from neuronscope.plots._inputs import records
from neuronscope.plots.theme import NEUTRAL, apply_theme, method_color

__all__ = ["attack_grid", "benchmark_bars", "benchmark_sweep", "lambda_sweep", "recovery_curves",
           "save_benchmark_figures"]

_REFERENCE = ("oracle", "original")


def _need(rows: list[dict], columns: Sequence[str], name: str) -> None:
    missing = [c for c in columns if c not in rows[0]]
    if missing:
        raise ValueError(f"{name} lacks column(s) {missing}; has {sorted(rows[0])}")


def _unique(values: Sequence[Any]) -> list[Any]:
    return list(dict.fromkeys(values))


def _mean_by(rows: list[dict], keys: Sequence[str], value: str) -> dict[tuple, tuple[float, int]]:
    """Mean and count of ``value`` per combination of ``keys`` (repeats: e.g. several seeds)."""
    groups: dict[tuple, list[float]] = {}
    for row in rows:
        groups.setdefault(tuple(row[k] for k in keys), []).append(float(row[value]))
    return {key: (float(np.nanmean(vals)), len(vals)) for key, vals in groups.items()}


def recovery_curves(
    data: Any,
    *,
    x: str = "step",
    y: str = "accuracy",
    color: str = "method",
    facet: str | None = "attack",
    chance: float | None = None,
    title: str | None = None,
    y_title: str = "accuracy on forgotten facts",
) -> go.Figure:
    """Accuracy (``y``) over attack steps (``x``), one line per method, one panel per attack.

    Methods named "oracle" (never learned the facts) and "original" are drawn dashed as
    references; ``chance`` adds a dotted horizontal line. Repeated points (several seeds, as in
    ``RobustnessResult.curves``) are drawn as their mean.
    """
    rows = records(data, "data")
    facet = facet if facet is not None and facet in rows[0] else None
    _need(rows, [x, y, color], "data")
    panels = _unique(r[facet] for r in rows) if facet else [None]
    fig = make_subplots(rows=1, cols=len(panels), shared_yaxes=True, horizontal_spacing=0.04,
                        subplot_titles=[str(p) for p in panels] if facet else None)
    methods = _unique(r[color] for r in rows)
    methods = [m for m in methods if str(m).lower() not in _REFERENCE] + [
        m for m in methods if str(m).lower() in _REFERENCE]  # references last in the legend
    means = _mean_by(rows, [color, facet, x] if facet else [color, x], y)
    for col, panel in enumerate(panels, start=1):
        for i, method in enumerate(methods):
            points = sorted(((key[-1], mean) for key, (mean, _) in means.items() if key[0] == method
                             and (facet is None or key[1] == panel)), key=lambda p: p[0])
            if not points:
                continue
            reference = str(method).lower() in _REFERENCE
            dash = {"oracle": "dash", "original": "dot"}.get(str(method).lower(), "solid")
            fig.add_trace(go.Scatter(
                x=[p[0] for p in points], y=[p[1] for p in points], mode="lines+markers",
                name=str(method), legendgroup=str(method), showlegend=col == 1,
                line={"color": method_color(str(method), i),
                      "dash": dash,
                      "width": 2 if reference else 2.5},
                marker={"size": 5},
                hovertemplate=f"{method}<br>{x} %{{x}}<br>{y} %{{y:.3f}}<extra></extra>"), row=1, col=col)
        if chance is not None:
            label = {"annotation_text": "chance", "annotation_position": "bottom right"} if col == 1 else {}
            fig.add_hline(y=chance, line={"color": NEUTRAL, "dash": "dot", "width": 1}, row=1, col=col,
                          **label)
        fig.update_xaxes(title_text=x.replace("_", " "), row=1, col=col)
    fig.update_yaxes(title_text=y_title, row=1, col=1)
    return apply_theme(fig, title=title or "Recovery of forgotten facts under retraining attacks", height=420)


def attack_grid(
    data: Any,
    *,
    row: str = "method",
    col: str = "attack",
    value: str = "accuracy",
    title: str | None = None,
    zmax: float | None = None,
    value_title: str = "accuracy after attack",
) -> go.Figure:
    """Method x attack grid of one number (default: accuracy on forgotten facts after the attack).

    Lower is better (less recovered); cells are annotated with their value; the colour scale
    runs from 0 to ``zmax`` (default: the largest value, so small differences show). Repeated cells
    (several seeds) show their mean; hover gives the count.

    Example:
        >>> rows = [{"method": m, "attack": a, "accuracy": 0.5}
        ...         for m in ("GA", "GD") for a in ("p=0.1", "benign")]
        >>> attack_grid(rows).data[0].z.shape
        (2, 2)
    """
    rows = records(data, "data")
    _need(rows, [row, col, value], "data")
    names, attacks = _unique(r[row] for r in rows), _unique(r[col] for r in rows)
    z = np.full((len(names), len(attacks)), np.nan)
    counts = np.zeros(z.shape, dtype=int)
    for (name, attack), (mean, count) in _mean_by(rows, [row, col], value).items():
        z[names.index(name), attacks.index(attack)] = mean
        counts[names.index(name), attacks.index(attack)] = count
    text = [["" if np.isnan(v) else f"{v:.2f}" for v in line] for line in z]
    fig = go.Figure(go.Heatmap(
        z=z, x=[str(a) for a in attacks], y=[str(n) for n in names], text=text, texttemplate="%{text}",
        textfont={"size": 14}, colorscale="YlOrRd", zmin=0.0, zmax=zmax if zmax is not None else np.nanmax(z),
        colorbar={"title": {"text": value_title}}, customdata=counts,
        hovertemplate=f"%{{y}} under %{{x}}<br>{value} %{{z:.3f}} (n=%{{customdata}})<extra></extra>"))
    fig.update_xaxes(title_text=col, side="bottom")
    fig.update_yaxes(title_text=row, autorange="reversed")
    return apply_theme(fig, title=title or "Recovered accuracy: method x attack (lower is better)",
                       height=max(280, 120 + 48 * len(names)))


def lambda_sweep(
    data: Any,
    *,
    x: str = "lambda",
    metrics: Sequence[str] | None = None,
    title: str | None = None,
    y_title: str = "accuracy",
) -> go.Figure:
    """Metrics against the SSIUU weight lambda (log axis; lambda = 0 shown as its own point).

    ``metrics`` defaults to every numeric column except ``x`` (e.g. forget, retain, and
    accuracy after each attack).

    Example:
        >>> rows = [{"lambda": l, "retain": 0.9, "recovered": 0.2} for l in (0.0, 0.01, 0.1)]
        >>> [t.name for t in lambda_sweep(rows).data]
        ['retain', 'recovered']
    """
    rows = records(data, "data")
    _need(rows, [x], "data")
    if metrics is None:
        metrics = [k for k, v in rows[0].items() if k != x and isinstance(v, (int, float, np.number))
                   and not isinstance(v, bool)]
    if not metrics:
        raise ValueError("data has no numeric metric columns to plot against lambda")
    _need(rows, metrics, "data")
    rows = sorted(rows, key=lambda r: float(r[x]))
    xs = [float(r[x]) for r in rows]
    positive = all(v > 0 for v in xs)
    labels = xs if positive else [f"{v:g}" for v in xs]
    fig = go.Figure()
    for i, metric in enumerate(metrics):
        fig.add_trace(go.Scatter(x=labels, y=[r[metric] for r in rows], mode="lines+markers", name=metric,
                                 line={"color": method_color(metric, i + 1)},
                                 hovertemplate=f"λ = %{{x}}<br>{metric} %{{y:.3f}}<extra></extra>"))
    fig.update_xaxes(title_text="SSIUU λ", type="log" if positive else "category")
    fig.update_yaxes(title_text=y_title)
    return apply_theme(fig, title=title or "Choosing λ: forgetting, retention and robustness", height=400)


def benchmark_bars(result: Any, key: str = "attacked") -> go.Figure:
    """A ``RobustnessResult`` as bars: ``key`` per method, grouped by attack, error bars = std
    over seeds (e.g. ``key="excess_recovery"``).

    Example:
        >>> from neuronscope.bench import BenchConfig, RobustnessResult
        >>> rows = [{"method": "ga", "attack": "benign", "attacked": a} for a in (0.2, 0.4)]
        >>> fig = benchmark_bars(RobustnessResult(BenchConfig(seeds=(0, 1)), rows))
        >>> fig.data[0].name, round(fig.data[0].y[0], 3)
        ('ga', 0.3)
    """
    if not result.rows:
        raise ValueError("the benchmark result has no rows to draw")
    fig = go.Figure()
    for index, method in enumerate(result.methods):
        stats = [mean_std(result.select(method, attack, key)) for attack in result.attacks]
        fig.add_trace(go.Bar(
            name=method, x=result.attacks, y=[m for m, _ in stats],
            error_y={"type": "data", "array": [0.0 if math.isnan(s) else s for _, s in stats]},
            marker_color=method_color(method, index)))
    fig.update_layout(barmode="group")
    fig.update_yaxes(title_text=key.replace("_", " "))
    return apply_theme(fig, title=f"Retraining attacks: {key.replace('_', ' ')} "
                                  f"(mean ± std over {len(result.config.seeds)} seeds)", height=420)


def benchmark_sweep(result: Any) -> go.Figure:
    """The lambda sweep of a ``RobustnessResult`` as a trade-off curve (:func:`lambda_sweep` of
    its ``sweep_rows()``); ``ValueError`` when it ran no sweep."""
    rows = result.sweep_rows()
    if not rows:
        raise ValueError(f"no rows of the sweep's base method {result.config.sweep_base!r}")
    return lambda_sweep(rows, y_title="mean over seeds",
                        title=f"SSIUU λ on {result.config.sweep_base}: forgetting, retention, "
                              "excess recovery")


def save_benchmark_figures(result: Any, folder: str | os.PathLike) -> list[Path]:
    """Write ``robustness.html`` (:func:`benchmark_bars`) and, with a lambda sweep,
    ``lambda-sweep.html`` (:func:`benchmark_sweep`) to ``folder``, atomically; their paths."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / "robustness.html"]
    atomic_write_text(paths[0], benchmark_bars(result).to_html(include_plotlyjs="cdn"))
    if result.config.sweep and result.sweep_rows():
        paths.append(folder / "lambda-sweep.html")
        atomic_write_text(paths[1], benchmark_sweep(result).to_html(include_plotlyjs="cdn"))
    return paths
