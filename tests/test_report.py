"""ns.report: one self-contained HTML file, written atomically, clear errors."""

from __future__ import annotations

import importlib
import os
import re

import pytest
import torch

import neuronscope as ns

# ns.report is the function; the module lives under its full name.
report_module = importlib.import_module("neuronscope.report")


def _sections():
    gen = torch.Generator().manual_seed(0)
    return {
        "Heatmap": ns.plots.neuron_heatmap(torch.randn(2, 16, generator=gen)),
        "Before and after": [
            "Two paragraphs.\n\nSecond <b>one</b>.",
            ns.plots.before_after(torch.randn(2, 8, generator=gen), torch.randn(2, 8, generator=gen)),
        ],
        "Results": [{"method": "GA", "forget": 0.0, "retain": 0.8123456, "steps": 40}],
    }


def test_report_is_self_contained(tmp_path):
    path = ns.report(tmp_path / "r.html", _sections(), title="My <run>", settings={"seed": 0})
    assert path == tmp_path / "r.html"
    text = path.read_text(encoding="utf-8")
    assert not re.search(r"<script[^>]*\bsrc\s*=", text, flags=re.I)
    assert not re.search(r"<link[^>]*\bhref\s*=\s*[\"']https?:", text, flags=re.I)
    # plotly.js inlined exactly once, one newPlot per figure (the before/after figure is one).
    from plotly.offline import get_plotlyjs

    assert text.count(get_plotlyjs()[:200]) == 1
    assert text.count("Plotly.newPlot(") == 2
    # Headings, settings, table values and escaping.
    assert "My &lt;run&gt;" in text and "My <run>" not in text
    assert "Second &lt;b&gt;one&lt;/b&gt;." in text
    assert ">Settings</h2>" in text and ">seed</td>" in text
    assert ">0.8123<" in text and ">40<" in text
    assert [p.name for p in tmp_path.iterdir()] == ["r.html"]


def test_report_into_existing_folder(tmp_path):
    path = ns.report(tmp_path, {"Table": [{"a": 1}]})
    assert path == tmp_path / "report.html" and path.is_file()


def test_report_creates_missing_folder(tmp_path):
    path = ns.report(tmp_path / "new" / "deep" / "report.html", {"Note": "hello"})
    assert path.is_file()


def test_report_bad_folder(tmp_path):
    blocker = tmp_path / "file.txt"
    blocker.write_text("x")
    with pytest.raises(ValueError, match="report folder"):
        ns.report(blocker / "report.html", {"Note": "hello"})
    with pytest.raises(ValueError, match=r"\.html"):
        ns.report(tmp_path / "report.pdf", {"Note": "hello"})


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write anywhere")
def test_report_unwritable_folder(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        with pytest.raises(ValueError, match="not writable"):
            ns.report(locked / "report.html", {"Note": "hello"})
    finally:
        locked.chmod(0o700)


def test_report_bad_content_writes_nothing(tmp_path):
    with pytest.raises(ValueError, match="cannot put a"):
        ns.report(tmp_path / "r.html", {"Bad": object()})
    with pytest.raises(ValueError, match="sections must be"):
        ns.report(tmp_path / "r.html", ["just a string"])
    with pytest.raises(ValueError, match="settings must be"):
        ns.report(tmp_path / "r.html", {}, settings=[1, 2])
    assert list(tmp_path.iterdir()) == []


def test_interrupted_write_keeps_old_report_and_no_temp(tmp_path, monkeypatch):
    path = ns.report(tmp_path / "r.html", {"Note": "old"})
    old = path.read_text()

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(report_module.os, "replace", interrupted)
    with pytest.raises(KeyboardInterrupt):
        ns.report(path, {"Note": "new"})
    assert path.read_text() == old
    assert [p.name for p in tmp_path.iterdir()] == ["r.html"]


def test_results_objects_with_to_pandas(tmp_path):
    pd = pytest.importorskip("pandas")

    class Result:
        def to_pandas(self):
            return pd.DataFrame({"layer": [0, 1], "value": [0.5, -0.25]})

    text = ns.report(tmp_path / "r.html", {"Result": Result()}).read_text()
    assert ">layer</th>" in text and ">-0.25<" in text


@pytest.mark.slow
def test_report_renders_in_headless_chromium(tmp_path):
    """The report draws its figures with no network (tools/screenshot_report.py)."""
    import importlib.util
    import shutil

    if not any(shutil.which(b) for b in ("/usr/bin/chromium", "chromium", "chromium-browser")):
        pytest.skip("no Chromium installed")
    image = pytest.importorskip("PIL.Image")
    script = os.path.join(os.path.dirname(__file__), "..", "tools", "screenshot_report.py")
    spec = importlib.util.spec_from_file_location("screenshot_report", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    heat = ns.plots.neuron_heatmap(torch.tensor([[-1.0, 1.0], [1.0, -1.0]]))
    path = ns.report(tmp_path / "r.html", {"Heatmap": heat})
    png = module.screenshot(path, tmp_path / "r.png", width=900, height=700)
    pixels = image.open(png).convert("RGB")
    colours = {pixels.getpixel((x, y)) for x in range(0, 900, 10) for y in range(0, 700, 10)}
    # The diverging scale's extremes appear: deep red and deep blue cells were drawn.
    assert any(r > 100 and g < 60 and b < 60 for r, g, b in colours)
    assert any(b > 60 and r < 40 for r, g, b in colours)
