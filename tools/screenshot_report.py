"""Render a neuronscope report in headless Chromium and save a PNG screenshot.

Usage (Debian: ``apt-get install -y chromium`` as root first)::

    python tools/screenshot_report.py out/report.html docs/img/report.png [--width 1400 --height 3000]

Chromium runs with no network features (no sync, no component updates, no QUIC), a throw-away
profile, and a virtual-time budget so plotly has drawn every figure before the capture.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

BROWSERS = ("/usr/bin/chromium", "chromium", "chromium-browser", "google-chrome")


def find_browser() -> str:
    for name in BROWSERS:
        found = shutil.which(name)
        if found:
            return found
    raise FileNotFoundError("no Chromium found; install it with: apt-get install -y chromium")


def screenshot(report: Path, png: Path, width: int = 1400, height: int = 3000, timeout: float = 120) -> Path:
    """Render ``report`` to ``png`` (written atomically) and return the PNG path."""
    report = report.resolve()
    if not report.is_file():
        raise FileNotFoundError(f"no report at {report}")
    png = png.resolve()
    png.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as profile, tempfile.TemporaryDirectory() as work:
        shot = Path(work) / "shot.png"
        command = [
            find_browser(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
            "--no-first-run", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--hide-scrollbars", f"--user-data-dir={profile}",
            f"--window-size={width},{height}", "--virtual-time-budget=15000",
            f"--screenshot={shot}", report.as_uri(),
        ]
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
        if done.returncode != 0 or not shot.is_file():
            raise RuntimeError(f"chromium failed ({done.returncode}):\n{done.stderr[-2000:]}")
        tmp = png.with_name(f".{png.name}.tmp")
        shutil.copyfile(shot, tmp)
        tmp.replace(png)
    return png


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("report", type=Path)
    parser.add_argument("png", type=Path, nargs="?", default=Path("docs/img/report.png"))
    parser.add_argument("--width", type=int, default=1400)
    parser.add_argument("--height", type=int, default=3000)
    args = parser.parse_args(argv)
    path = screenshot(args.report, args.png, args.width, args.height)
    print(f"screenshot: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
