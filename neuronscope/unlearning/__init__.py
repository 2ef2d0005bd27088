"""Unlearning methods (GA, GD, NPO, SimNPO, DPO, RMU) and the SSIUU regulariser.

Example:
    >>> from neuronscope import FactWorld
    >>> from neuronscope.tiny import tiny_model
    >>> world = FactWorld.synthetic(n_people=10)
    >>> forget, retain = world.facts.split(forget=0.5, seed=0)            # whole families
    >>> model = tiny_model(tokenizer=world.tokenizer)                     # or ns.organism(world).bridge
    >>> result = unlearn(model, forget, retain, method="gd", ssiuu=SSIUU(1e-3), max_steps=2,
    ...                  progress=False)
    >>> result.steps, result.bridge is not model
    (2, True)
"""

from neuronscope.unlearning.api import UnlearnResult, unlearn
from neuronscope.unlearning.methods import COMMON_DEFAULTS, METHODS, Method, UnlearningLoss
from neuronscope.unlearning.ssiuu import SSIUU

__all__ = ["COMMON_DEFAULTS", "METHODS", "SSIUU", "Method", "UnlearnResult", "UnlearningLoss",
           "unlearn"]
