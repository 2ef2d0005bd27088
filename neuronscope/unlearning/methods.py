"""Unlearning losses: GA, GD, NPO, SimNPO, DPO (refusals), RMU, each optionally + SSIUU.

:class:`UnlearningLoss` is the ``loss_fn`` that :func:`neuronscope.training.finetune` calls.
Per step it stacks the forget rows, the matching refusal rows (DPO) and the retain rows into
one batch, runs one forward pass (with hooks for SSIUU and RMU) and returns the terms
``forget``, ``retain``, ``ssiuu`` and their sum ``loss``. ``log P`` below is the teacher-forced
log-probability of the whole answer given the prompt, ``|y|`` its number of tokens.

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

Retain term: ``"nll"`` (mean answer-token NLL), ``"kl"`` (mean over real positions of
KL(p_ref || p) to the frozen original), or for RMU ``"activations"`` (mean squared distance
of the layer's residual to the frozen original's). ``P_ref`` is the frozen original's, computed
once before training.

Example:
    >>> METHODS["npo"].defaults["beta"]
    0.1
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from jaxtyping import Float
from torch import Tensor

from neuronscope.tokenization import FactBatch
from neuronscope.training import IndexedBatch
from neuronscope.unlearning.forward import answer_logprobs, forward, stack_batches
from neuronscope.unlearning.ssiuu import NeuronPenalty, ParameterPenalty

__all__ = ["COMMON_DEFAULTS", "METHODS", "RETAIN_LOSSES", "Method", "UnlearningLoss", "rmu_hook"]

RETAIN_LOSSES = ("nll", "kl", "activations")

COMMON_DEFAULTS: dict[str, Any] = {
    "lr": 1e-3,
    "max_steps": 100,
    "batch_size": 64,
    "retain_batch_size": 64,
    "eval_every": 5,
    "weight_decay": 0.0,
    "grad_clip": 1.0,
    "warmup_steps": 0,
}


@dataclass(frozen=True)
class Method:
    """One unlearning method: what it needs and its default settings (over COMMON_DEFAULTS)."""

    name: str
    summary: str
    needs_retain: bool
    retain_loss: str | None
    uses_refusals: bool = False
    uses_reference_logprob: bool = False
    defaults: Mapping[str, Any] = field(default_factory=dict)

    def settings(self, overrides: Mapping[str, Any]) -> dict[str, Any]:
        return {**COMMON_DEFAULTS, **self.defaults, **overrides}


METHODS: dict[str, Method] = {
    "ga": Method("ga", "gradient ascent on the forget NLL", needs_retain=False, retain_loss=None,
                 defaults={"lr": 1e-3, "retain_weight": 0.0}),
    "gd": Method("gd", "gradient difference: ascent on forget, descent on retain",
                 needs_retain=True, retain_loss="nll", defaults={"lr": 1e-3, "retain_weight": 3.0}),
    "npo": Method("npo", "negative preference optimisation", needs_retain=True, retain_loss="nll",
                  uses_reference_logprob=True,
                  defaults={"lr": 1e-3, "beta": 0.1, "retain_weight": 3.0}),
    "simnpo": Method("simnpo", "reference-free NPO, length-normalised", needs_retain=True,
                     retain_loss="nll",
                     defaults={"lr": 2e-3, "beta": 2.5, "gamma": 0.0, "retain_weight": 1.0}),
    "dpo": Method("dpo", "DPO preferring a refusal answer over the fact", needs_retain=True,
                  retain_loss="nll", uses_refusals=True, uses_reference_logprob=True,
                  defaults={"lr": 2e-3, "beta": 0.1, "retain_weight": 1.0}),
    "rmu": Method("rmu", "steer a middle layer's residual to c*u on forget, keep it on retain",
                  needs_retain=True, retain_loss="activations",
                  defaults={"lr": 1e-3, "retain_weight": 10.0, "steering_scale": 3.0}),
}

METHOD_KEYS = {"beta", "gamma", "retain_weight", "steering_scale"}


def rmu_hook(layer: int) -> str:
    """The residual stream after block ``layer``, where RMU steers."""
    return f"blocks.{layer}.hook_resid_post"


def _masked_mean(values: Float[Tensor, "row pos"], mask: Tensor) -> Tensor:
    mask = mask.to(values.dtype)
    return (values * mask).sum() / mask.sum().clamp_min(1)


class UnlearningLoss:
    """``loss_fn(model, batches, step)`` for one method (+ optional SSIUU penalty state).

    Built by :func:`neuronscope.unlearning.unlearn`, which computes the reference quantities
    up front: ``ref_forget``/``ref_refusal`` (``log P_ref`` per forget fact / refusal row),
    ``refusals`` (refusal rows aligned with the forget rows), ``reference`` (a frozen copy of the
    original, for the KL and activation retain terms), ``rmu_target`` (``c * u``).
    """

    def __init__(self, method: Method, hp: Mapping[str, Any], *, retain_loss: str | None,
                 penalty: NeuronPenalty | ParameterPenalty | None = None,
                 ref_forget: Tensor | None = None, ref_refusal: Tensor | None = None,
                 refusals: FactBatch | None = None, reference: Any = None,
                 rmu_layer: int | None = None, rmu_target: Tensor | None = None,
                 separate_retain: bool | None = None) -> None:
        self.method, self.hp, self.retain_loss, self.penalty = method, dict(hp), retain_loss, penalty
        # With SSIUU's extra backward pass for d log P / d h, the retain rows get their own
        # forward pass, so that the extra pass traverses the forget rows' graph only.
        extra_pass = penalty is not None and not penalty.reuse
        self.separate_retain = extra_pass if separate_retain is None else separate_retain
        self.ref_forget, self.ref_refusal, self.refusals = ref_forget, ref_refusal, refusals
        self.reference, self.rmu_layer, self.rmu_target = reference, rmu_layer, rmu_target

    def _hooks(self) -> list[str]:
        hooks = list(self.penalty.hook_names) if isinstance(self.penalty, NeuronPenalty) else []
        if self.method.name == "rmu":
            hooks.append(rmu_hook(self.rmu_layer))
        return hooks

    def __call__(self, model: Any, batches: Mapping[str, IndexedBatch], step: int
                 ) -> dict[str, Tensor]:
        rows = batches["forget"]
        index = rows.index
        device = rows.tokens.device
        parts: list[FactBatch] = [rows]
        refusal_rows = None
        if self.method.uses_refusals:
            refusal_rows = self.refusals[index].to(device)
            parts.append(refusal_rows)
        weight = float(self.hp.get("retain_weight", 0.0))
        retain = batches.get("retain") if weight > 0 and self.retain_loss else None
        if retain is not None and not self.separate_retain:
            parts.append(retain)
        stacked, slices = stack_batches(parts)
        out = forward(model, stacked, self._hooks())
        logp, n_tok, picked, mask = answer_logprobs(out.logits, stacked)
        sf = slices[0]
        terms: dict[str, Tensor] = {"forget": self._forget(out, rows, sf, slices, logp, n_tok,
                                                           picked, mask, index)}
        total = terms["forget"]
        if retain is not None:
            if self.separate_retain:
                hooks = [rmu_hook(self.rmu_layer)] if self.method.name == "rmu" else []
                retain_out = forward(model, retain, hooks)
                _, _, r_picked, r_mask = answer_logprobs(retain_out.logits, retain)
                terms["retain"] = self._retain(retain_out, retain, slice(None), r_picked, r_mask)
            else:
                terms["retain"] = self._retain(out, retain, slices[-1], picked, mask)
            total = total + weight * terms["retain"]
        if self.penalty is not None:
            terms["ssiuu"] = self._ssiuu(out, rows, sf, logp, index, mask)
            total = total + terms["ssiuu"]
        terms["loss"] = total
        return terms

    def _forget(self, out, rows, sf, slices, logp, n_tok, picked, mask, index) -> Tensor:
        name, hp = self.method.name, self.hp
        if name in ("ga", "gd"):
            return picked[sf].sum() / mask[sf].sum()
        if name == "npo":
            ratio = logp[sf] - self.ref_forget[index].to(logp.device)
            return -(2 / hp["beta"]) * F.logsigmoid(-hp["beta"] * ratio).mean()
        if name == "simnpo":
            return -(2 / hp["beta"]) * F.logsigmoid(
                -hp["beta"] * logp[sf] / n_tok[sf] - hp["gamma"]).mean()
        if name == "dpo":
            chosen = logp[slices[1]] - self.ref_refusal[index].to(logp.device)
            rejected = logp[sf] - self.ref_forget[index].to(logp.device)
            return -(2 / hp["beta"]) * F.logsigmoid(hp["beta"] * (chosen - rejected)).mean()
        if name == "rmu":
            resid = out.acts[rmu_hook(self.rmu_layer)][sf]
            width = resid.shape[1]
            dist = (resid - self.rmu_target).pow(2).mean(-1)
            return _masked_mean(dist, rows.attention_mask[:, :width])
        raise ValueError(f"unknown method {name!r}")

    def _retain(self, out, retain, sr, picked, mask) -> Tensor:
        if self.retain_loss == "nll":
            return -picked[sr].sum() / mask[sr].sum()
        width = retain.tokens.shape[1]
        if self.retain_loss == "kl":
            with torch.no_grad():
                ref = self.reference(retain.tokens).float().log_softmax(-1)
            logq = out.logits[sr, :width].float().log_softmax(-1)
            kl = (ref.exp() * (ref - logq)).sum(-1)
            return _masked_mean(kl[:, :-1], retain.attention_mask[:, 1:])
        if self.retain_loss == "activations":
            hook = rmu_hook(self.rmu_layer)
            seen: dict[str, Tensor] = {}
            with torch.no_grad():
                self.reference.run_with_hooks(
                    retain.tokens, fwd_hooks=[(hook, lambda x, hook: seen.setdefault("r", x))])
            resid = out.acts[hook][sr, :width]
            dist = (resid - seen["r"]).pow(2).mean(-1)
            return _masked_mean(dist, retain.attention_mask)
        raise ValueError(f"unknown retain loss {self.retain_loss!r}")

    def _ssiuu(self, out, rows, sf, logp, index, mask) -> Tensor:
        if isinstance(self.penalty, NeuronPenalty):
            full = [out.acts[name] for name in self.penalty.hook_names]
            if self.penalty.reuse:  # GA / GD: d forget / d log P_f = 1 / (answer tokens)
                return self.penalty.reuse_step(full, rows, index, weight=1.0 / float(mask[sf].sum()),
                                               logprob=logp[sf])
            acts = [act[sf] for act in full]
            value = self.penalty.penalty(acts, rows, index)
            self.penalty.update(acts, logp[sf], rows, index, graph_acts=full)
            return value
        value = self.penalty.penalty()
        self.penalty.update(logp[sf])
        return value
