"""SimNPO: -(2/beta) mean_f log sigmoid(-beta log P / |y| - gamma), plus the retain term.

Example:
    >>> SimNPO().defaults["beta"]
    2.5
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch.nn.functional as F
from torch import Tensor

from neuronscope.unlearning.methods.base import Step, UnlearningMethod

__all__ = ["SimNPO"]


class SimNPO(UnlearningMethod):
    name = "simnpo"
    summary = "reference-free NPO, length-normalised"
    defaults: ClassVar[dict[str, Any]] = {"lr": 2e-3, "beta": 2.5, "gamma": 0.0, "retain_weight": 1.0}

    def check(self, settings, model) -> None:
        if not settings["beta"] > 0:
            raise ValueError(f"{self.name}: beta must be > 0, got {settings['beta']!r}")

    def forget_loss(self, step: Step) -> Tensor:
        beta, gamma = step.settings["beta"], step.settings["gamma"]
        return -(2 / beta) * F.logsigmoid(
            -beta * step.logprob("forget") / step.n_tokens("forget") - gamma).mean()
