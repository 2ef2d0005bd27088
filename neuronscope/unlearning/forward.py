"""One forward pass over several fact batches at once, with differentiable hook captures.

Unlearning losses need the forget rows, sometimes refusal rows, and the retain rows; running
them as one stacked, right-padded batch costs one pass instead of three. Hooked activations
(``blocks.{l}.mlp.hook_post`` for SSIUU, ``blocks.{l}.hook_resid_post`` for RMU) are kept as
the very tensors that flow on through the model, so gradients can be taken with respect to them.

Example:
    >>> from neuronscope import FactWorld, tokenize
    >>> from neuronscope.tiny import tiny_model
    >>> world = FactWorld.synthetic(n_people=10)
    >>> model = tiny_model(tokenizer=world.tokenizer)
    >>> forget_rows = tokenize(world.facts[:3], world.tokenizer)
    >>> retain_rows = tokenize(world.facts[3:8], world.tokenizer)
    >>> stacked, parts = stack_batches([forget_rows, retain_rows])
    >>> out = forward(model, stacked, ["blocks.0.mlp.hook_post"])
    >>> out.logits[parts[0]].shape[0] == len(forget_rows)
    True
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from jaxtyping import Float
from torch import Tensor

from neuronscope.scoring import answer_token_logprobs
from neuronscope.tokenization import FactBatch

__all__ = ["ForwardOut", "answer_logprobs", "forward", "stack_batches"]


def stack_batches(parts: Sequence[FactBatch]) -> tuple[FactBatch, list[slice]]:
    """Concatenate right-padded batches (padding to the widest) and the row slice of each.

    Right padding never changes the real positions of a causal model, so the stacked pass
    gives each row the logits it would get alone.
    """
    width = max(batch.tokens.shape[1] for batch in parts)

    def pad(t: Tensor, value: int | bool) -> Tensor:
        extra = width - t.shape[1]
        return t if extra == 0 else torch.cat([t, t.new_full((t.shape[0], extra), value)], 1)

    fields_ = [torch.cat([pad(getattr(b, name), fill) for b in parts]) for name, fill in
               (("tokens", 0), ("attention_mask", False), ("prompt_mask", False),
                ("answer_mask", False))]
    slices, start = [], 0
    for batch in parts:
        slices.append(slice(start, start + len(batch)))
        start += len(batch)
    return FactBatch(*fields_), slices


@dataclass
class ForwardOut:
    """Logits of a pass and the activations captured at the requested hooks (in the graph)."""

    logits: Float[Tensor, "row seq vocab"]
    acts: dict[str, Tensor] = field(default_factory=dict)


def forward(model: Any, batch: FactBatch, hooks: Sequence[str] = ()) -> ForwardOut:
    """Run ``model`` on ``batch.tokens``, keeping the activations at ``hooks``.

    Hooks are added for this pass only (``run_with_hooks`` removes them, also on errors).
    """
    acts: dict[str, Tensor] = {}
    if not hooks:
        return ForwardOut(model(batch.tokens), acts)

    def keeper(name: str):
        def keep(value: Tensor, hook: Any) -> Tensor:
            acts[name] = value
            return value

        return keep

    logits = model.run_with_hooks(batch.tokens, fwd_hooks=[(name, keeper(name)) for name in hooks])
    missing = [name for name in hooks if name not in acts]
    if missing:
        raise RuntimeError(f"hooks {missing} did not fire during the forward pass")
    return ForwardOut(logits, acts)


def answer_logprobs(logits: Float[Tensor, "row seq vocab"], batch: FactBatch
                    ) -> tuple[Float[Tensor, " row"], Float[Tensor, " row"], Tensor, Tensor]:
    """Per row: ``log P(answer)``, answer length, and the per-token log-probs and mask."""
    picked, mask = answer_token_logprobs(logits, batch)
    return picked.sum(-1), mask.sum(-1).to(picked.dtype), picked, mask
