"""Atomic writes keep the old file when a write fails, and leave no temporary file."""

from __future__ import annotations

import os

import pytest

from neuronscope.atomic import atomic_torch_save, atomic_write_text


def test_failed_write_keeps_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "result.txt"
    atomic_write_text(path, "old")

    def broken_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        atomic_write_text(path, "new")
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["result.txt"]


def test_unsaveable_object_writes_nothing(tmp_path):
    path = tmp_path / "obj.pt"
    with pytest.raises(Exception):  # noqa: B017 - pickling error type depends on the object
        atomic_torch_save(path, {"f": lambda: 1})
    assert not list(tmp_path.iterdir())
