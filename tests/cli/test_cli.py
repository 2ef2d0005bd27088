"""The command line."""

from __future__ import annotations

import subprocess
import sys

import neuronscope as ns
from neuronscope.cli import main


def test_version_and_help(capsys):
    out = subprocess.run([sys.executable, "-m", "neuronscope.cli", "--version"],
                         capture_output=True, text=True, check=True).stdout
    assert ns.__version__ in out
    assert main([]) == 0
    assert "demo" in capsys.readouterr().out
