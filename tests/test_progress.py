"""Progress bars draw only where someone watches."""

from __future__ import annotations

import io

import pytest

import neuronscope as ns
from neuronscope.progress import progress_bar, watched


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture(autouse=True)
def no_override(monkeypatch):
    monkeypatch.delenv("NEURONSCOPE_PROGRESS", raising=False)


def test_a_file_gets_no_frames():
    log = io.StringIO()
    for _ in progress_bar(range(50), file=log, desc="work", mininterval=0):
        pass
    assert log.getvalue() == ""


def test_a_terminal_gets_the_bar_unless_silenced():
    screen = Terminal()
    for _ in progress_bar(range(5), file=screen, desc="work", mininterval=0):
        pass
    assert "work" in screen.getvalue() and "5/5" in screen.getvalue()
    quiet = Terminal()
    for _ in progress_bar(range(5), file=quiet, enabled=False):
        pass
    assert quiet.getvalue() == ""


def test_an_imported_kernel_package_is_not_a_notebook():
    pytest.importorskip("ipykernel")  # imported by notebook tooling, as the notebook tests do
    pytest.importorskip("IPython")
    assert not watched(io.StringIO())


def test_environment_overrides(monkeypatch):
    monkeypatch.setenv("NEURONSCOPE_PROGRESS", "1")
    assert watched(io.StringIO())
    monkeypatch.setenv("NEURONSCOPE_PROGRESS", "0")
    assert not watched(Terminal())


def test_training_draws_nothing_into_a_log(tiny_org, forget_retain, capsys):
    forget, retain = forget_retain
    ns.unlearn(tiny_org.bridge, forget, retain, method="ga", max_steps=2, progress=True)
    assert "\r" not in capsys.readouterr().err
