"""DPO with refusals: prefer a refusal answer over the fact.

``-(2/beta) mean_f log sigmoid(beta [(log P - log P_ref)(refusal) - (log P - log P_ref)(y)])``,
plus the retain term; ``P_ref`` from the original model, once, in ``prepare``.

Example:
    >>> DPO().needs_refusals
    True
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch.nn.functional as F
from torch import Tensor

from neuronscope.scoring import answer_logprob
from neuronscope.unlearning.methods.base import Setup, Step, UnlearningMethod

__all__ = ["DPO"]


class DPO(UnlearningMethod):
    name = "dpo"
    summary = "DPO preferring a refusal answer over the fact"
    needs_refusals = True
    defaults: ClassVar[dict[str, Any]] = {"lr": 2e-3, "beta": 0.1, "retain_weight": 1.0}

    def check(self, settings, model) -> None:
        if not settings["beta"] > 0:
            raise ValueError(f"{self.name}: beta must be > 0, got {settings['beta']!r}")

    def prepare(self, setup: Setup) -> dict[str, Tensor]:
        return {"ref_forget": answer_logprob(setup.model, setup.forget),
                "ref_refusal": answer_logprob(setup.model, setup.refusals)}

    def forget_loss(self, step: Step) -> Tensor:
        beta = step.settings["beta"]
        chosen = step.logprob("refusal")
        rejected = step.logprob("forget")
        index = step.index.to(chosen.device)
        chosen = chosen - step.state["ref_refusal"].to(chosen.device)[index]
        rejected = rejected - step.state["ref_forget"].to(rejected.device)[index]
        return -(2 / beta) * F.logsigmoid(beta * (chosen - rejected)).mean()
