"""Settings for the whole test run, docstring examples (``--doctest-modules``) included.

Docstring examples that build the organism use the default cache; point it at a folder of this
session, so a test run never reads or writes the user's cache.
"""

from __future__ import annotations

import os
import tempfile

if "NEURONSCOPE_CACHE" not in os.environ:
    os.environ["NEURONSCOPE_CACHE"] = tempfile.mkdtemp(prefix="neuronscope-test-cache-")
