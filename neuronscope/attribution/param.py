"""The parameter-level attribution (``method="param_x_grad"``), computed from activations.

Per neuron ``i`` of a layer, the paper's parameter form sums parameter x gradient over the
neuron's own parameters: its input row and bias (and gate row for gated MLPs) and its
output-projection column. Because a linear map's weight gradient is the outer product of
its input and its output gradient, that sum equals, over every token position ``t``,

    z_in[t, i] * dF/dz_in[t, i]  (+ z_gate[t, i] * dF/dz_gate[t, i])  +  h[t, i] * dF/dh[t, i]

with ``z`` the projections' outputs (bias included) and ``h`` the neuron's activation. One
forward and one backward pass per chunk of facts give all layers at once; no weight
gradient is ever formed. ``tests/test_attribution_param.py`` checks this identity against
real parameter gradients.

Example:
    >>> from neuronscope import FactWorld, tokenize
    >>> from neuronscope.attribution.spec import AttributionSpec
    >>> from neuronscope.tiny import tiny_model
    >>> world = FactWorld.synthetic(n_people=10)
    >>> model = tiny_model(tokenizer=world.tokenizer)                 # untrained, 2 layers
    >>> batch = tokenize(world.facts[:3], world.tokenizer)
    >>> spec = AttributionSpec.make(method="param_x_grad", steps=1, quadrature="gauss_legendre",
    ...                             target="prob", positions="prompt", baseline="zero")
    >>> param_x_grad(model, batch, [0, 1], spec).scores.shape
    torch.Size([3, 2, 48])
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor

from neuronscope.attribution.engine import RawAttribution, Readout
from neuronscope.attribution.spec import AttributionSpec, target_value
from neuronscope.hooks import d_mlp, model_device
from neuronscope.tokenization import FactBatch

__all__ = ["param_hook_names", "param_x_grad"]


def param_hook_names(model: Any, layer: int) -> list[str]:
    """Hook points whose value x gradient make up the parameter form of ``layer``."""
    names = [f"blocks.{layer}.mlp.in.hook_out", f"blocks.{layer}.mlp.gate.hook_out",
             f"blocks.{layer}.mlp.hook_post"]
    present = [name for name in names if name in model.hook_dict]
    if f"blocks.{layer}.mlp.in.hook_out" not in present or f"blocks.{layer}.mlp.hook_post" not in present:
        raise ValueError(f"param_x_grad needs blocks.{layer}.mlp.in.hook_out and hook_post; this "
                         "architecture does not expose its MLP input projection")
    return present


def _keeper(seen: dict, name: str) -> Callable:
    def keep(act: Tensor, hook: Any) -> None:
        seen[name] = act

    return keep


def param_x_grad(model: Any, batch: FactBatch, layers: Sequence[int], spec: AttributionSpec, *,
                 batch_size: int = 64, chunk_ids: Sequence[int] | None = None,
                 progress: Callable[[int], None] | None = None) -> RawAttribution:
    """Parameter x gradient per neuron, summed over every real token position."""
    device = model_device(model)
    n_facts = len(batch)
    n_neuron = d_mlp(model)
    scores = torch.zeros(n_facts, len(layers), n_neuron)
    target_input = torch.zeros(n_facts)
    names = {layer: param_hook_names(model, layer) for layer in layers}
    first = f"blocks.{min(layers)}.hook_in"
    order = sorted(range(n_facts), key=lambda i: (int(batch.lengths[i]), i))
    chunks = [order[s : s + batch_size] for s in range(0, n_facts, batch_size)]
    chunk_ids = range(len(chunks)) if chunk_ids is None else chunk_ids
    for chunk_id in chunk_ids:
        rows = torch.tensor(chunks[chunk_id])
        sub = batch[rows].to(device)
        width = int(sub.lengths.max()) - 1
        tokens = sub.tokens[:, :width]
        mask = sub.attention_mask[:, :width]
        readout = Readout.of(sub, width)
        seen: dict[str, Tensor] = {}

        def make_leaf(act: Tensor, hook: Any) -> Tensor:
            return act.detach().requires_grad_(True)

        hooks = [(first, make_leaf)] + [(name, _keeper(seen, name)) for layer in layers
                                         for name in names[layer]]
        with torch.enable_grad(), model.hooks(fwd_hooks=hooks):
            logits = model(tokens)
        value = target_value(readout.from_full(logits), spec.target)
        wanted = [name for layer in layers for name in names[layer]]
        missing = [name for name in wanted if name not in seen]
        if missing:
            raise ValueError(f"hooks {missing} did not fire; cannot compute param_x_grad")
        grads = torch.autograd.grad(value.sum(), [seen[name] for name in wanted], allow_unused=True)
        by_name = dict(zip(wanted, grads, strict=True))
        for li, layer in enumerate(layers):
            total = torch.zeros(len(sub), n_neuron, device=device)
            for name in names[layer]:
                act, grad = seen[name], by_name[name]
                if grad is None:
                    continue
                if act.shape[-1] != n_neuron:
                    raise ValueError(f"{name} has width {act.shape[-1]}, expected d_mlp={n_neuron} "
                                     "(fused gate/up projection?); param_x_grad unsupported here")
                total += (act.detach() * grad * mask[..., None]).sum(1)
            scores[rows, li] = total.float().cpu()
        target_input[rows] = value.detach().float().cpu()
        if progress is not None:
            progress(1)
    return RawAttribution(scores, target_input, None, None, batch.attention_mask.clone(),
                          {"chunks": len(chunks)})
