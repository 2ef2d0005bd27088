"""Unlearning methods as objects, one module each, found by name in a registry.

======== ==================================================================================
method   forget term (minimised)
======== ==================================================================================
ga       mean over answer tokens of log p (gradient ascent on the NLL); no retain term
gd       as ga, plus ``retain_weight`` x retain term
npo      -(2/beta) mean_f log sigmoid(-beta (log P - log P_ref)), plus retain term
simnpo   -(2/beta) mean_f log sigmoid(-beta log P / |y| - gamma), plus retain term
dpo      -(2/beta) mean_f log sigmoid(beta [(log P - log P_ref)(refusal) - (log P - log P_ref)(y)])
rmu      mean over real tokens of ||r_l - c u||^2 / d_model at ``blocks.{layer}.hook_resid_post``
======== ==================================================================================

Retain term: ``"nll"`` (mean answer-token NLL), ``"kl"`` (KL to the frozen original), or for
RMU ``"activations"``. Register your own with :func:`register_method`, or pass the object.

Example:
    >>> METHODS["npo"].defaults["beta"]
    0.1
    >>> get_method("gd").name
    'gd'
"""

from __future__ import annotations

from typing import Any

from neuronscope.unlearning.methods.base import (
    COMMON_DEFAULTS,
    Setup,
    Step,
    UnlearningMethod,
    check_method,
    masked_mean,
)
from neuronscope.unlearning.methods.dpo import DPO
from neuronscope.unlearning.methods.ga import GA
from neuronscope.unlearning.methods.gd import GD
from neuronscope.unlearning.methods.npo import NPO
from neuronscope.unlearning.methods.rmu import RMU, rmu_hook
from neuronscope.unlearning.methods.simnpo import SimNPO

__all__ = ["COMMON_DEFAULTS", "DPO", "GA", "GD", "METHODS", "NPO", "RMU", "Setup", "SimNPO", "Step",
           "UnlearningMethod", "check_method", "get_method", "masked_mean", "register_method",
           "rmu_hook"]

METHODS: dict[str, Any] = {}


def register_method(name: str, method: Any, *, replace: bool = False) -> Any:
    """Make ``method`` (an object on the :class:`UnlearningMethod` protocol) available by
    ``name``; refuses to replace an existing name unless ``replace=True``."""
    check_method(method)
    if not isinstance(name, str) or not name or any(c in name for c in "+,():= "):
        raise ValueError(f"method name must be a plain word, got {name!r}")
    if name in METHODS and not replace:
        raise ValueError(f"method {name!r} is already registered (pass replace=True)")
    METHODS[name] = method
    return method


def get_method(method: str | Any) -> Any:
    """The method registered as ``method``, or ``method`` itself checked against the protocol."""
    if isinstance(method, str):
        if method not in METHODS:
            raise ValueError(f"unknown method {method!r}; expected one of {sorted(METHODS)} or "
                             f"a method object")
        return METHODS[method]
    return check_method(method)


for _method in (GA(), GD(), NPO(), SimNPO(), DPO(), RMU()):
    register_method(_method.name, _method)
