"""NPO: -(2/beta) mean_f log sigmoid(-beta (log P - log P_ref)) on forget, plus the retain term.

``P_ref`` is the original model's, computed once in ``prepare``.

Example:
    >>> NPO().defaults["beta"]
    0.1
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch.nn.functional as F
from torch import Tensor

from neuronscope.scoring import answer_logprob
from neuronscope.unlearning.methods.base import Setup, Step, UnlearningMethod

__all__ = ["NPO"]


class NPO(UnlearningMethod):
    name = "npo"
    summary = "negative preference optimisation"
    defaults: ClassVar[dict[str, Any]] = {"lr": 1e-3, "beta": 0.1, "retain_weight": 3.0}

    def check(self, settings, model) -> None:
        if not settings["beta"] > 0:
            raise ValueError(f"{self.name}: beta must be > 0, got {settings['beta']!r}")

    def prepare(self, setup: Setup) -> dict[str, Tensor]:
        return {"ref_forget": answer_logprob(setup.model, setup.forget)}

    def forget_loss(self, step: Step) -> Tensor:
        beta = step.settings["beta"]
        logp = step.logprob("forget")
        ratio = logp - step.state["ref_forget"].to(logp.device)[step.index.to(logp.device)]
        return -(2 / beta) * F.logsigmoid(-beta * ratio).mean()
