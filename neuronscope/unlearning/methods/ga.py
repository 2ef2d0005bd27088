"""GA: gradient ascent on the forget set's answer-token NLL; no retain term.

Example:
    >>> GA().forget_loss.__doc__.split(":")[0]
    'Mean answer-token log-probability of the forget rows (minimised'
"""

from __future__ import annotations

from typing import Any, ClassVar

from torch import Tensor

from neuronscope.unlearning.methods.base import Step, UnlearningMethod

__all__ = ["GA"]


class GA(UnlearningMethod):
    name = "ga"
    summary = "gradient ascent on the forget NLL"
    needs_retain = False
    defaults: ClassVar[dict[str, Any]] = {"lr": 1e-3, "retain_weight": 0.0}

    def forget_loss(self, step: Step) -> Tensor:
        """Mean answer-token log-probability of the forget rows (minimised: ascent on the NLL)."""
        picked, mask = step.token_logprobs("forget")
        return picked.sum() / mask.sum()
