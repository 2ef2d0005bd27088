"""Unlearning: methods (GA, GD, NPO, SimNPO, DPO, RMU) and penalties (SSIUU) as objects.

Example:
    >>> sorted(METHODS)
    ['dpo', 'ga', 'gd', 'npo', 'rmu', 'simnpo']
    >>> parse_recipe("gd+ssiuu").label
    'gd+ssiuu(0.001)'
"""

from neuronscope.unlearning.api import LR_GRID, UnlearnResult, search_lr, unlearn
from neuronscope.unlearning.methods import (
    COMMON_DEFAULTS,
    METHODS,
    Setup,
    Step,
    UnlearningMethod,
    get_method,
    register_method,
)
from neuronscope.unlearning.penalties import PENALTIES, BoundPenalty, Penalty, register_penalty
from neuronscope.unlearning.recipe import Recipe, parse_recipe, parse_recipes, split_recipes
from neuronscope.unlearning.ssiuu import SSIUU

__all__ = ["COMMON_DEFAULTS", "LR_GRID", "METHODS", "PENALTIES", "SSIUU", "BoundPenalty", "Penalty",
           "Recipe", "Setup", "Step", "UnlearnResult", "UnlearningMethod", "get_method",
           "parse_recipe", "parse_recipes", "register_method", "register_penalty", "search_lr",
           "split_recipes", "unlearn"]
