"""Settings for the whole test run, docstring examples (``--doctest-modules``) included.

Docstring examples that build the organism use the default cache; point it at a folder of this
session, so a test run never reads or writes the user's cache.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

from jaxtyping import install_import_hook

if "NEURONSCOPE_CACHE" not in os.environ:
    os.environ["NEURONSCOPE_CACHE"] = tempfile.mkdtemp(prefix="neuronscope-test-cache-")

# jaxtyping shape checks on the package's annotated arrays (tests/shape_checks.py) during the
# test run; NEURONSCOPE_TYPECHECK=0 turns them off (e.g. to time code).
sys.path.insert(0, str(Path(__file__).parent / "tests"))
if os.environ.get("NEURONSCOPE_TYPECHECK", "1") != "0":
    install_import_hook("neuronscope", "shape_checks.check_shapes")
