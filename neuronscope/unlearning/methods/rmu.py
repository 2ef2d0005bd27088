"""RMU: steer a middle layer's residual to ``c * u`` on forget rows, keep it on retain rows.

Forget term: mean over real tokens of ``||r_l - c u||^2 / d_model`` at
``blocks.{layer}.hook_resid_post``; retain term (``"activations"``): mean squared distance of
that residual to the frozen original's. ``u`` is a seeded random unit vector (uniform entries,
normalised, as in the RMU paper); ``c`` is ``steering_coef`` or ``steering_scale`` x the
original's mean residual norm there. ``layer`` defaults to the middle block.

Example:
    >>> rmu_hook(3)
    'blocks.3.hook_resid_post'
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import Tensor

from neuronscope.hooks import check_layers, model_device
from neuronscope.unlearning.forward import forward
from neuronscope.unlearning.methods.base import Setup, Step, UnlearningMethod, masked_mean

__all__ = ["RMU", "rmu_hook"]


def rmu_hook(layer: int) -> str:
    """The residual stream after block ``layer``, where RMU steers."""
    return f"blocks.{layer}.hook_resid_post"


class RMU(UnlearningMethod):
    name = "rmu"
    summary = "steer a middle layer's residual to c*u on forget, keep it on retain"
    needs_reference = True
    retain_losses = ("activations",)
    defaults: ClassVar[dict[str, Any]] = {"lr": 1e-3, "retain_weight": 10.0,
                                          "steering_scale": 3.0, "layer": None,
                                          "steering_coef": None}

    def _layer(self, settings: dict[str, Any], model: Any) -> int:
        layer = settings.get("layer")
        return int(model.cfg.n_layers) // 2 if layer is None else int(layer)

    def check(self, settings, model) -> None:
        layer = self._layer(settings, model)
        check_layers(model, [layer])
        if rmu_hook(layer) not in model.hook_dict:
            raise ValueError(f"model has no residual hook {rmu_hook(layer)!r} for RMU")
        coef = settings.get("steering_coef")
        if coef is not None and not coef > 0:
            raise ValueError(f"steering_coef must be > 0, got {coef}")

    def prepare(self, setup: Setup) -> dict[str, Any]:
        model, forget = setup.model, setup.forget
        layer = self._layer(setup.settings, model)
        d_model = int(model.cfg.d_model)
        generator = torch.Generator().manual_seed(setup.seed)
        u = torch.rand(d_model, generator=generator, dtype=torch.float64)
        u = (u / u.norm()).to(next(model.parameters()).dtype)
        coef = setup.settings.get("steering_coef")
        if coef is None:
            with torch.no_grad():
                resid = forward(model, forget.to(model_device(model)), [rmu_hook(layer)]).acts[
                    rmu_hook(layer)]
            norms = resid.norm(dim=-1)[forget.attention_mask.to(resid.device)]
            coef = float(setup.settings["steering_scale"] * norms.mean())
        return {"layer": layer, "hook": rmu_hook(layer), "coef": float(coef),
                "target": (coef * u).to(model_device(model))}

    def hooks(self, state: Any) -> list[str]:
        return [state["hook"]]

    def forget_loss(self, step: Step) -> Tensor:
        hook = step.state["hook"]
        resid = step.act(hook, "forget")
        rows = step.rows["forget"]
        width = min(resid.shape[1], rows.attention_mask.shape[1])
        dist = (resid[:, :width] - step.state["target"]).pow(2).mean(-1)
        return masked_mean(dist, rows.attention_mask[:, :width])

    def retain_loss(self, step: Step) -> Tensor:
        hook = step.state["hook"]
        rows = step.rows["retain"]
        width = rows.tokens.shape[1]
        seen: dict[str, Tensor] = {}
        with torch.no_grad():
            step.extra["reference"].run_with_hooks(
                rows.tokens, fwd_hooks=[(hook, lambda x, hook: seen.setdefault("r", x))])
        resid = step.act(hook, "retain")[:, :width]
        dist = (resid - seen["r"]).pow(2).mean(-1)
        return masked_mean(dist, rows.attention_mask)

    def record(self, state: dict[str, Any]) -> dict[str, Any]:
        """What the run's settings record keeps of the prepared state."""
        return {"rmu_layer": state["layer"], "steering_coef": state["coef"]}
