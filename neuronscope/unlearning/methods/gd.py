"""GD: gradient difference, ascent on the forget NLL plus ``retain_weight`` x the retain term.

Example:
    >>> GD().defaults["retain_weight"]
    3.0
"""

from __future__ import annotations

from typing import Any, ClassVar

from neuronscope.unlearning.methods.ga import GA

__all__ = ["GD"]


class GD(GA):
    name = "gd"
    summary = "gradient difference: ascent on forget, descent on retain"
    needs_retain = True
    defaults: ClassVar[dict[str, Any]] = {"lr": 1e-3, "retain_weight": 3.0}
