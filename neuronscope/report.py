"""``ns.report``: one self-contained HTML file with a run's settings, tables and figures.

plotly's JavaScript is inlined once in the page head, so the file opens with no network.
The file is written to a temporary file next to the target and renamed into place, so an
interrupted run never leaves a half-written report.

Example:
    >>> import plotly.graph_objects as go, tempfile, pathlib
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> path = report(folder / "r.html", {"A figure": go.Figure(), "A table": [{"x": 1}]},
    ...               settings={"seed": 0})
    >>> "<script src=" in path.read_text()
    False
"""

from __future__ import annotations

import datetime as _dt
import html
import numbers
import os
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from plotly.offline import get_plotlyjs

from neuronscope._version import __version__

__all__ = ["report", "report_path"]

_CSS = """
body { font-family: Inter, 'Helvetica Neue', Arial, sans-serif; color: #222; margin: 0; background: #f6f7f9; }
header { background: #1f2a37; color: white; padding: 22px 40px; }
header h1 { margin: 0; font-size: 26px; font-weight: 600; }
header p { margin: 6px 0 0; color: #c9d1db; font-size: 14px; }
main { max-width: 1320px; margin: 0 auto; padding: 16px 40px 60px; }
nav { font-size: 14px; margin: 12px 0 4px; display: flex; flex-wrap: wrap; gap: 4px 16px; }
nav a { color: #2c7fb8; text-decoration: none; white-space: nowrap; }
section { background: white; border: 1px solid #e1e4e8; border-radius: 6px; margin: 18px 0;
          padding: 14px 22px 18px; }
section h2 { font-size: 19px; margin: 4px 0 10px; font-weight: 600; }
p.note { color: #444; font-size: 14px; line-height: 1.5; margin: 6px 0 10px; max-width: 980px; }
table.ns { border-collapse: collapse; font-size: 13px; margin: 6px 0; }
table.ns th { background: #eef1f5; text-align: left; padding: 5px 12px; border: 1px solid #d0d4da; }
table.ns td { padding: 4px 12px; border: 1px solid #e3e6ea; font-variant-numeric: tabular-nums; }
table.ns td.num { text-align: right; }
footer { color: #777; font-size: 12px; text-align: center; padding: 20px; }
"""


def _is_figure(value: Any) -> bool:
    return hasattr(value, "to_html") and hasattr(value, "layout") and hasattr(value, "data")


def _rows(value: Any) -> list[dict] | None:
    """Table rows from a DataFrame, a results object with ``to_pandas()`` or a list of dicts."""
    if hasattr(value, "to_pandas") and not hasattr(value, "columns"):
        value = value.to_pandas()
    if hasattr(value, "columns") and hasattr(value, "to_dict"):
        return [dict(r) for r in value.to_dict(orient="records")]
    if (isinstance(value, Sequence) and not isinstance(value, str) and value
            and all(isinstance(r, Mapping) for r in value)):
        return [dict(r) for r in value]
    return None


def _cell(value: Any) -> tuple[str, bool]:
    if isinstance(value, bool):
        return str(value), False
    if isinstance(value, numbers.Integral):
        return str(int(value)), True
    try:
        number = float(value)
    except (TypeError, ValueError):
        return html.escape(str(value)), False
    if isinstance(value, str):
        return html.escape(value), False
    return f"{number:.4g}", True


def _table_html(rows: list[dict]) -> str:
    columns = list(dict.fromkeys(k for r in rows for k in r))
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in columns)
    body = []
    for row in rows:
        cells = []
        for column in columns:
            text, numeric = _cell(row.get(column, ""))
            cells.append(f'<td class="num">{text}</td>' if numeric else f"<td>{text}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f'<table class="ns"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>'


def _render(value: Any, figure_count: list[int]) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        paragraphs = [p.strip() for p in value.split("\n\n") if p.strip()]
        return "".join(f'<p class="note">{html.escape(p)}</p>' for p in paragraphs)
    if _is_figure(value):
        figure_count[0] += 1
        div = value.to_html(full_html=False, include_plotlyjs=False, div_id=f"figure-{figure_count[0]}",
                            config={"displaylogo": False, "responsive": True})
        return f'<div class="figure">{div}</div>'
    if isinstance(value, Mapping):
        return _table_html([{"setting": str(k), "value": str(v)} for k, v in value.items()])
    rows = _rows(value)
    if rows is not None:
        return _table_html(rows)
    if isinstance(value, (list, tuple)):
        return "".join(_render(v, figure_count) for v in value)
    raise ValueError(f"cannot put a {type(value).__name__} in a report: give a plotly Figure, a table "
                     "(DataFrame, results object with to_pandas(), list of dicts), a dict or text")


def _items(sections: Any) -> list[tuple[str, Any]]:
    if sections is None:
        return []
    if isinstance(sections, Mapping):
        return [(str(k), v) for k, v in sections.items()]
    if isinstance(sections, Sequence) and all(isinstance(s, tuple) and len(s) == 2 for s in sections):
        return [(str(k), v) for k, v in sections]
    raise ValueError("sections must be a dict {heading: content} or a list of (heading, content) pairs, "
                     f"got {type(sections).__name__}")


def report_path(path: str | os.PathLike) -> Path:
    """The report file for ``path`` (itself, or ``path/report.html`` for an existing folder),
    with its folder created; a ``ValueError`` when it cannot be written there.

    Example:
        >>> report_path("/proc/version/report.html")
        Traceback (most recent call last):
        ...
        ValueError: the report folder '/proc/version' exists and is not a folder
    """
    path = Path(path).expanduser()
    if path.is_dir():
        path = path / "report.html"
    if path.suffix.lower() not in (".html", ".htm"):
        raise ValueError(f"report path {str(path)!r} should end in .html (or be an existing folder)")
    folder = path.parent
    if folder.exists() and not folder.is_dir():
        raise ValueError(f"the report folder {str(folder)!r} exists and is not a folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        reason = error.strerror or error
        raise ValueError(f"cannot create the report folder {str(folder)!r}: {reason}") from error
    if not os.access(folder, os.W_OK | os.X_OK):
        raise ValueError(f"the report folder {str(folder)!r} is not writable")
    return path


def report(
    path: str | os.PathLike,
    sections: Mapping[str, Any] | Sequence[tuple[str, Any]] | None = None,
    *,
    title: str = "neuronscope report",
    subtitle: str | None = None,
    settings: Mapping[str, Any] | None = None,
) -> Path:
    """Write one self-contained HTML report and return its path.

    ``sections`` maps a heading to its content: a plotly ``Figure``, a table (a DataFrame,
    a results object with ``to_pandas()``, a list of dicts), a dict (shown as a two-column
    table), text (paragraphs split on blank lines), or a list of these. ``settings`` are
    shown first. ``path`` may be an existing folder (the file is then ``report.html``).

    Example:
        >>> import tempfile, torch
        >>> from neuronscope.plots import neuron_heatmap
        >>> folder = tempfile.mkdtemp()
        >>> path = report(folder, {"Heatmap": neuron_heatmap(torch.randn(2, 16)), "Notes": "Fine."})
        >>> path.name, "Heatmap" in path.read_text()
        ('report.html', True)
    """
    target = report_path(path)
    items = _items(sections)
    if settings is not None and not isinstance(settings, Mapping):
        raise ValueError(f"settings must be a dict, got {type(settings).__name__}")
    if settings:
        items = [("Settings", dict(settings)), *items]
    count = [0]
    body = []
    for number, (heading, content) in enumerate(items, start=1):
        anchor = f"section-{number}"
        inner = _render(content, count)
        body.append(f'<section id="{anchor}"><h2>{html.escape(heading)}</h2>{inner}</section>')
    nav = "".join(f'<a href="#section-{i}">{html.escape(h)}</a>' for i, (h, _) in enumerate(items, start=1))
    stamp = _dt.datetime.now().strftime("%Y-%m-%d %H:%M")
    sub = html.escape(subtitle) if subtitle else f"neuronscope {__version__} · written {stamp}"
    page = (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
        f"<title>{html.escape(title)}</title>"
        f"<style>{_CSS}</style>"
        f"<script type=\"text/javascript\">{get_plotlyjs()}</script></head><body>"
        f"<header><h1>{html.escape(title)}</h1><p>{sub}</p></header><main>"
        f"<nav>{nav}</nav>{''.join(body)}</main>"
        f"<footer>Made with neuronscope {__version__}; self-contained (no network needed).</footer>"
        "</body></html>\n"
    )
    handle, temp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            stream.write(page)
            stream.flush()
            os.fsync(stream.fileno())
        os.chmod(temp, 0o644)
        os.replace(temp, target)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
    return target
