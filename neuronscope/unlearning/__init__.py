"""Unlearning methods (GA, GD, NPO, SimNPO, DPO, RMU) and the SSIUU regulariser.

Example:
    >>> result = unlearn(model, forget, retain, method="gd", ssiuu=SSIUU(1e-3))   # doctest: +SKIP
    >>> result.model, result.history                                              # doctest: +SKIP
"""

from neuronscope.unlearning.api import UnlearnResult, unlearn
from neuronscope.unlearning.methods import COMMON_DEFAULTS, METHODS, Method, UnlearningLoss
from neuronscope.unlearning.ssiuu import SSIUU

__all__ = ["COMMON_DEFAULTS", "METHODS", "SSIUU", "Method", "UnlearnResult", "UnlearningLoss",
           "unlearn"]
