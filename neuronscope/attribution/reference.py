"""The slow reference: one fact, one layer, one quadrature step per forward/backward pass.

Written for clarity, not speed, and sharing no code path with the engine beyond the option
checks: the model's own full forward pass with one hook, full logits, autograd to the
scaled activations. Tests compare the engine against it; the benchmark times it.

Example:
    >>> from neuronscope import FactWorld, tokenize
    >>> from neuronscope.attribution.spec import AttributionSpec
    >>> from neuronscope.tiny import tiny_model
    >>> world = FactWorld.synthetic(n_people=10)
    >>> model = tiny_model(tokenizer=world.tokenizer)                 # untrained, 2 layers
    >>> batch = tokenize(world.facts[:3], world.tokenizer)
    >>> spec = AttributionSpec.make(method="ig", steps=4, quadrature="gauss_legendre",
    ...                             target="prob", positions="prompt", baseline="zero")
    >>> reference_attribution(model, batch, [0], spec).scores.shape
    torch.Size([3, 1, 48])
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor

from neuronscope.attribution.adaptive import allowance, noise_floor
from neuronscope.attribution.engine import RawAttribution
from neuronscope.attribution.quadrature import quadrature_rule
from neuronscope.attribution.spec import AttributionSpec, position_mask, target_value
from neuronscope.hooks import d_mlp, mlp_hook_name, model_device
from neuronscope.scoring import answer_token_logprobs
from neuronscope.tokenization import FactBatch

__all__ = ["reference_attribution", "reference_param_x_grad"]


def _target(model: Any, row: FactBatch, spec: AttributionSpec, hooks: list) -> Tensor:
    with model.hooks(fwd_hooks=hooks):
        logits = model(row.tokens)
    picked, _ = answer_token_logprobs(logits, row)
    return target_value(picked.sum(-1), spec.target)[0]


def reference_attribution(model: Any, batch: FactBatch, layers: Sequence[int], spec: AttributionSpec,
                          *, progress: Callable[[int], None] | None = None) -> RawAttribution:
    """Integrated gradients (or activation x gradient) fact by fact, layer by layer, step by step.

    With ``spec.adaptive`` each (fact, layer) doubles its Gauss-Legendre points from 8 until
    the completeness tolerance holds (or the next doubling would pass ``spec.max_steps``):
    an independent way to the same accuracy as the engine's panels."""
    device = model_device(model)
    n_facts, full_width = batch.tokens.shape
    scores = torch.zeros(n_facts, len(layers), d_mlp(model))
    pos_scores = torch.zeros(n_facts, len(layers), full_width, d_mlp(model))
    target_input = torch.zeros(n_facts)
    target_baseline = torch.zeros(n_facts, len(layers))
    steps_used = torch.zeros(n_facts, len(layers), dtype=torch.long)
    masks = position_mask(batch, spec.positions)
    for f in range(n_facts):
        row = batch[f : f + 1].to(device)
        mask = masks[f, : row.tokens.shape[1]].to(device)
        with torch.no_grad():
            target_input[f] = _target(model, row, spec, [])
        for li, layer in enumerate(layers):
            name = mlp_hook_name(layer)
            seen: dict = {}

            def keep(act: Tensor, hook: Any, seen: dict = seen) -> None:
                seen["h"] = act.detach().clone()

            with torch.no_grad():
                _target(model, row, spec, [(name, keep)])
            h = seen["h"]

            def integrate(alphas: list[float], weights: list[float], name: str = name, mask: Tensor = mask,
                          h: Tensor = h, row: FactBatch = row) -> Tensor:
                total = torch.zeros_like(h, dtype=torch.float64)
                for alpha, weight in zip(alphas, weights, strict=True):
                    store: dict = {}

                    def scale(act: Tensor, hook: Any, alpha: float = alpha, store: dict = store) -> Tensor:
                        x = act.detach().clone()
                        x[:, mask] = alpha * x[:, mask]  # zero baseline
                        x.requires_grad_(True)
                        store["x"] = x
                        return x

                    value = _target(model, row, spec, [(name, scale)])
                    (grad,) = torch.autograd.grad(value, store["x"])
                    total += weight * grad.double()
                return total

            def zero(act: Tensor, hook: Any, mask: Tensor = mask) -> Tensor:
                x = act.clone()
                x[:, mask] = 0.0
                return x

            with torch.no_grad():
                target_baseline[f, li] = _target(model, row, spec, [(name, zero)])
            if spec.adaptive:  # Gauss-Legendre with 8, 16, 32, ... points until the tolerance holds
                allowed = float(allowance(target_input[f : f + 1], target_baseline[f, li : li + 1],
                                          spec.tolerance, noise_floor(spec.target))[0])
                change = float(target_input[f]) - float(target_baseline[f, li])
                n = 8
                while True:
                    alphas, weights = quadrature_rule("gauss_legendre", n)
                    total = integrate(alphas.tolist(), weights.tolist())
                    steps_used[f, li] += n
                    delta = float((h.double() * total * mask[None, :, None]).sum()) - change
                    if abs(delta) <= allowed or int(steps_used[f, li]) + 2 * n > spec.max_steps:
                        break
                    n *= 2
            else:
                total = integrate(spec.alphas.tolist(), spec.weights.tolist())
                steps_used[f, li] = len(spec.alphas)
            per_pos = (h.double() * total * mask[None, :, None])[0]
            scores[f, li] = per_pos.sum(0).float().cpu()
            pos_scores[f, li, : per_pos.shape[0]] = per_pos.float().cpu()
            if progress is not None:
                progress(1)
    return RawAttribution(scores, target_input, target_baseline, pos_scores, masks, steps_used=steps_used)


def _neuron_axis(module: Any, role: str) -> int:
    """Axis of a projection's weight that indexes MLP neurons (nn.Linear vs GPT-2 Conv1D)."""
    if isinstance(module, torch.nn.Linear):
        return 0 if role in ("in", "gate") else 1
    return 1 if role in ("in", "gate") else 0


def reference_param_x_grad(model: Any, batch: FactBatch, layers: Sequence[int],
                           spec: AttributionSpec) -> Tensor:
    """The paper's parameter-level form straight from parameter gradients: per neuron,
    sum of parameter x d target / d parameter over its input row(s), bias entries, gate row
    and output column. Needs ``model`` to be a copy the caller may change (it enables
    gradients on the MLP weights)."""
    device = model_device(model)
    projections = []
    for layer in layers:
        mlp = model.blocks[layer].mlp
        for role in ("in", "gate", "out"):
            if role in mlp._modules:
                module = mlp._modules[role].original_component
                projections.append((layer, role, module))
    params = [p for _, _, m in projections for p in m.parameters(recurse=False)]
    for p in params:
        p.requires_grad_(True)
    result = torch.zeros(len(batch), len(layers), d_mlp(model))
    for f in range(len(batch)):
        row = batch[f : f + 1].to(device)
        value = _target(model, row, spec, [])
        grads = torch.autograd.grad(value, params)
        by_param = dict(zip([id(p) for p in params], grads, strict=True))
        for layer, role, module in projections:
            li = list(layers).index(layer)
            weight = module.weight
            axis = _neuron_axis(module, role)
            contrib = (weight * by_param[id(weight)]).sum(1 - axis)
            bias = getattr(module, "bias", None)
            if role != "out" and bias is not None:
                contrib = contrib + bias * by_param[id(bias)]
            result[f, li] += contrib.detach().float().cpu()
    return result
