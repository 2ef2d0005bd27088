"""The general attribution path: any site (``neuronscope.attribution.sites``), full forwards.

Activation x gradient needs one forward and one backward per chunk of facts for every
attributed site and layer at once: each hooked activation gets a zero tensor added whose
gradient is d target / d activation (nothing downstream is cut). Integrated gradients scale
one (site, layer) at a time at the attributed positions, all quadrature steps of a chunk in
one pass (rows = facts x steps), and take the gradient at the scaled activation.

Besides the sum over the attributed positions, both keep, per fact and unit, the largest
and the smallest per-token score (``token_max`` / ``token_min``, what the paper's D+ and D-
reduce by), without storing every token.

Example:
    >>> from neuronscope import FactWorld, tokenize
    >>> from neuronscope.attribution.sites import resolve_sites
    >>> from neuronscope.attribution.spec import AttributionSpec
    >>> from neuronscope.tiny import tiny_model
    >>> world = FactWorld.synthetic(n_people=10)
    >>> model = tiny_model(tokenizer=world.tokenizer)                 # untrained, 2 layers
    >>> batch = tokenize(world.facts[:3], world.tokenizer)
    >>> spec = AttributionSpec.make(method="grad_x_act", steps=1, quadrature="gauss_legendre",
    ...                             target="logprob", positions="prompt", baseline="zero")
    >>> raw = run_sites(model, batch, [0, 1], resolve_sites(model, ["mlp_post"]), spec)
    >>> raw.token_max.shape
    torch.Size([3, 2, 48])
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from jaxtyping import Bool, Float
from torch import Tensor

from neuronscope.attribution.sites import Site, site_hook_name
from neuronscope.attribution.spec import AttributionSpec, position_mask, target_value
from neuronscope.hooks import model_device
from neuronscope.scoring import answer_token_logprobs
from neuronscope.tokenization import FactBatch

__all__ = ["SiteRaw", "chunk_size", "run_sites", "token_extremes"]

MAX_ROWS = 64  # rows (facts x quadrature steps) per integrated-gradients pass


@dataclass
class SiteRaw:
    """Per-fact tensors of one general-path run; units are the sites' units concatenated."""

    scores: Float[Tensor, "fact layer unit"]
    token_max: Float[Tensor, "fact layer unit"]
    token_min: Float[Tensor, "fact layer unit"]
    target_input: Float[Tensor, " fact"]
    target_baseline: Float[Tensor, "fact layer site"] | None
    position_mask: Bool[Tensor, "fact pos"]
    info: dict = field(default_factory=dict)


def token_extremes(per_pos: Float[Tensor, "fact pos unit"], mask: Bool[Tensor, "fact pos"]
                   ) -> tuple[Float[Tensor, "fact unit"], Float[Tensor, "fact unit"]]:
    """Max and min over the masked positions (0 for a fact with no masked position).

    Example:
        >>> import torch
        >>> hi, lo = token_extremes(torch.tensor([[[1.0], [-3.0], [9.0]]]),
        ...                         torch.tensor([[True, True, False]]))
        >>> hi.tolist(), lo.tolist()
        ([[1.0]], [[-3.0]])
    """
    keep = mask[..., None]
    hi = per_pos.masked_fill(~keep, float("-inf")).amax(1)
    lo = per_pos.masked_fill(~keep, float("inf")).amin(1)
    empty = ~mask.any(1)
    hi[empty] = 0.0
    lo[empty] = 0.0
    return hi, lo


def _target(model: Any, tokens: Tensor, rows: FactBatch, target: str) -> Tensor:
    logits = model(tokens)
    picked, _ = answer_token_logprobs(logits, rows)
    return target_value(picked.sum(-1), target)


def _repeat(rows: FactBatch, copies: int) -> FactBatch:
    rep = lambda t: t.repeat_interleave(copies, 0)  # noqa: E731
    return FactBatch(rep(rows.tokens), rep(rows.attention_mask), rep(rows.prompt_mask), rep(rows.answer_mask))


def _grad_x_act(model: Any, rows: FactBatch, mask: Tensor, layers: Sequence[int], sites: Sequence[Site],
                target: str) -> tuple[Tensor, Tensor]:
    """Per-position activation x gradient ``[fact, layer, pos, unit]`` and the target."""
    acts: dict[str, Tensor] = {}
    zeros: dict[str, Tensor] = {}

    def hook_for(name: str):  # hook.name is the canonical name, not the alias: bind it
        def hook(act: Tensor, hook: Any) -> Tensor:
            zero = torch.zeros_like(act, requires_grad=True)
            acts[name] = act.detach()
            zeros[name] = zero
            return act + zero
        return hook

    names = [site_hook_name(s.name, layer) for layer in layers for s in sites]
    with torch.enable_grad(), model.hooks(fwd_hooks=[(name, hook_for(name)) for name in names]):
        value = _target(model, rows.tokens, rows, target)
        missing = [n for n in names if n not in zeros]
        if missing:
            raise RuntimeError(f"hooks {missing[:3]} did not fire")
        grads = torch.autograd.grad(value.sum(), [zeros[n] for n in names], allow_unused=True)
    n, width = rows.tokens.shape
    out = []
    for name, grad in zip(names, grads, strict=True):
        act = acts[name].reshape(n, width, -1).double()
        grad = torch.zeros_like(act) if grad is None else grad.reshape(n, width, -1).double()
        out.append(act * grad * mask[..., None])
    total = sum(s.width for s in sites)
    per_pos = torch.cat(out, -1).view(n, width, len(layers), total).permute(0, 2, 1, 3)
    return per_pos, value.detach()


def _ig_site(model: Any, rows: FactBatch, mask: Tensor, name: str, spec: AttributionSpec,
             max_rows: int) -> tuple[Tensor, Tensor]:
    """Per-position integrated gradients ``[fact, pos, unit]`` of one hook and the target
    with the hook's activations zeroed at the attributed positions (the baseline)."""
    n, width = rows.tokens.shape
    alphas, weights = spec.alphas.tolist(), spec.weights.tolist()
    per_step = max(1, max_rows // max(1, n))
    grad_sum: Tensor | None = None
    act_seen: dict[str, Tensor] = {}
    for start in range(0, len(alphas), per_step):
        part = alphas[start : start + per_step]
        copies = len(part)
        scale = torch.tensor(part, device=mask.device).repeat(n)  # fact-major rows
        mask_rows = mask.repeat_interleave(copies, 0)
        store: dict[str, Tensor] = {}

        def hook(act: Tensor, hook: Any, scale: Tensor = scale, mask_rows: Tensor = mask_rows,
                 store: dict = store, copies: int = copies) -> Tensor:
            flat = act.detach().reshape(act.shape[0], act.shape[1], -1)
            act_seen.setdefault("h", flat[::copies])
            factor = torch.where(mask_rows, scale[:, None].to(flat.dtype), torch.ones((), dtype=flat.dtype,
                                                                                       device=flat.device))
            leaf = (flat * factor[..., None]).requires_grad_(True)
            store["leaf"] = leaf
            return leaf.view(act.shape)

        rep = _repeat(rows, copies)
        with torch.enable_grad(), model.hooks(fwd_hooks=[(name, hook)]):
            value = _target(model, rep.tokens, rep, spec.target)
            (grad,) = torch.autograd.grad(value.sum(), store["leaf"])
        w = torch.tensor(weights[start : start + copies], dtype=torch.float64, device=grad.device)
        part_sum = torch.einsum("fsti,s->fti", grad.double().view(n, copies, width, -1), w)
        grad_sum = part_sum if grad_sum is None else grad_sum + part_sum

    def zero(act: Tensor, hook: Any) -> Tensor:
        flat = act.reshape(act.shape[0], act.shape[1], -1)
        return torch.where(mask[..., None], torch.zeros((), dtype=act.dtype, device=act.device), flat
                           ).view(act.shape)

    with torch.no_grad(), model.hooks(fwd_hooks=[(name, zero)]):
        baseline = _target(model, rows.tokens, rows, spec.target)
    per_pos = act_seen["h"].double() * grad_sum * mask[..., None]  # zero baseline: h - b = h
    return per_pos, baseline


def chunk_size(spec: AttributionSpec, batch_size: int | None = None, max_rows: int = MAX_ROWS) -> int:
    """Facts per chunk: ``batch_size``, else 16 for ``grad_x_act`` and ``max_rows // steps``
    (at least 1) for integrated gradients."""
    if batch_size:
        return int(batch_size)
    return 16 if spec.method == "grad_x_act" else max(1, max_rows // max(1, spec.steps))


def run_sites(model: Any, batch: FactBatch, layers: Sequence[int], sites: Sequence[Site],
              spec: AttributionSpec, *, batch_size: int | None = None, max_rows: int = MAX_ROWS,
              progress: Callable[[int], None] | None = None) -> SiteRaw:
    """Attribution of every fact of ``batch`` to every unit of ``sites`` in ``layers``.

    ``spec.method`` is ``"grad_x_act"`` or ``"ig"``; ``progress`` is called once per chunk.
    """
    if spec.method not in ("ig", "grad_x_act"):
        raise ValueError(f"the site path computes 'ig' or 'grad_x_act', not {spec.method!r}")
    device = model_device(model)
    n_facts = len(batch)
    total = sum(s.width for s in sites)
    size = chunk_size(spec, batch_size, max_rows)
    shape = (n_facts, len(layers), total)
    scores, t_max, t_min = torch.zeros(shape), torch.zeros(shape), torch.zeros(shape)
    target_input = torch.zeros(n_facts)
    target_baseline = torch.zeros(n_facts, len(layers), len(sites)) if spec.method == "ig" else None
    masks = position_mask(batch, spec.positions)
    offsets = [0]
    for s in sites:
        offsets.append(offsets[-1] + s.width)
    for start in range(0, n_facts, size):
        index = torch.arange(start, min(n_facts, start + size))
        rows = batch[index].to(device)
        mask = masks[index, : rows.tokens.shape[1]].to(device)
        if spec.method == "grad_x_act":
            per_pos, value = _grad_x_act(model, rows, mask, layers, sites, spec.target)
            target_input[index] = value.float().cpu()
        else:
            with torch.no_grad():
                target_input[index] = _target(model, rows.tokens, rows, spec.target).float().cpu()
            per_pos = torch.zeros(len(index), len(layers), rows.tokens.shape[1], total, dtype=torch.float64,
                                  device=device)
            for li, layer in enumerate(layers):
                for si, site in enumerate(sites):
                    part, base = _ig_site(model, rows, mask, site_hook_name(site.name, layer), spec, max_rows)
                    per_pos[:, li, :, offsets[si] : offsets[si + 1]] = part
                    target_baseline[index, li, si] = base.float().cpu()
        scores[index] = per_pos.sum(2).float().cpu()
        mask_l = mask[:, None, :].expand(-1, len(layers), -1).reshape(-1, mask.shape[1])
        hi, lo = token_extremes(per_pos.reshape(-1, per_pos.shape[2], total), mask_l)
        t_max[index] = hi.view(len(index), len(layers), total).float().cpu()
        t_min[index] = lo.view(len(index), len(layers), total).float().cpu()
        if progress is not None:
            progress(1)
    return SiteRaw(scores, t_max, t_min, target_input, target_baseline, masks,
                   info={"engine": "sites", "chunks": -(-n_facts // size)})
