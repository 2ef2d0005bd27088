"""The ``loss_fn`` that :func:`neuronscope.training.finetune` calls: one method + penalties.

Per step it stacks the forget rows, the matching refusal rows (methods that use refusals) and
the retain rows into one batch, runs one forward pass (capturing the hooks the method and the
penalties read), builds the :class:`~neuronscope.unlearning.methods.Step` view and returns the
terms ``forget``, ``retain`` (times ``retain_weight`` in the total), one per penalty and their
sum ``loss``. When a penalty asks for it (``separate_retain``), the retain rows get their own
forward pass, so that a penalty's extra backward pass over the forget rows traverses them only.
Nothing here depends on which method it is.

Example:
    >>> "for one step" in UnlearningLoss.__call__.__doc__
    True
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor

from neuronscope.tokenization import FactBatch
from neuronscope.training import IndexedBatch
from neuronscope.unlearning.forward import answer_logprobs, forward, stack_batches
from neuronscope.unlearning.methods.base import Pass, Step

__all__ = ["UnlearningLoss", "make_step", "run_parts"]


def run_parts(model: Any, parts: Sequence[tuple[str, FactBatch]], hooks: Sequence[str]
         ) -> tuple[Pass, dict[str, slice]]:
    """One forward pass over the named row batches stacked, with ``hooks`` captured."""
    stacked, slices = stack_batches([rows for _, rows in parts])
    out = forward(model, stacked, list(dict.fromkeys(hooks)))
    logp, n_tok, picked, mask = answer_logprobs(out.logits, stacked)
    return Pass(out, logp, n_tok, picked, mask), {name: s for (name, _), s in
                                                  zip(parts, slices, strict=True)}


class UnlearningLoss:
    """``loss_fn(model, batches, step)`` for ``method`` with its prepared ``state``.

    ``penalties``: (term name, bound penalty) pairs; ``refusals``: refusal rows aligned with the
    full forget batch; ``reference``: the frozen original (KL and activation retain terms).
    """

    def __init__(self, method: Any, settings: Mapping[str, Any], state: Any, *,
                 retain_loss: str | None, penalties: Sequence[tuple[str, Any]] = (),
                 refusals: FactBatch | None = None, reference: Any = None,
                 separate_retain: bool | None = None) -> None:
        self.method, self.settings, self.state = method, dict(settings), state
        self.retain_loss, self.penalties = retain_loss, list(penalties)
        self.refusals, self.reference = refusals, reference
        if separate_retain is None:
            separate_retain = any(getattr(p, "separate_retain", False) for p in
                                  (getattr(b, "config", None) for _, b in self.penalties))
        self.separate_retain = separate_retain
        default_weight = 1.0 if method.needs_retain else 0.0
        self.retain_weight = float(self.settings.get("retain_weight", default_weight))
        self.method_hooks = list(method.hooks(state))
        self.hooks = self.method_hooks + [h for _, b in self.penalties for h in b.hooks]

    def __call__(self, model: Any, batches: Mapping[str, IndexedBatch], step: int
                 ) -> dict[str, Tensor]:
        """``{"forget": ..., "retain": ..., <penalty>: ..., "loss": total}`` for one step."""
        rows = batches["forget"]
        device = rows.tokens.device
        parts: list[tuple[str, FactBatch]] = [("forget", rows)]
        if self.method.needs_refusals:
            parts.append(("refusal", self.refusals[rows.index].to(device)))
        retain = batches.get("retain") if self.retain_weight > 0 and self.retain_loss else None
        if retain is not None and not self.separate_retain:
            parts.append(("retain", retain))
        main, slices = run_parts(model, parts, self.hooks)
        passes = {name: main for name, _ in parts}
        if retain is not None and self.separate_retain:
            passes["retain"], extra = run_parts(model, [("retain", retain)], self.method_hooks)
            slices.update(extra)
        view = Step(model=model, step=step, settings=self.settings, state=self.state,
                    rows=dict(parts) | ({"retain": retain} if retain is not None else {}),
                    passes=passes, parts=slices, retain_loss_kind=self.retain_loss,
                    extra={"reference": self.reference})
        terms: dict[str, Tensor] = {"forget": self.method.forget_loss(view)}
        total = terms["forget"]
        if retain is not None:
            terms["retain"] = self.method.retain_loss(view)
            total = total + self.retain_weight * terms["retain"]
        for name, bound in self.penalties:
            terms[name] = bound(view)
            total = total + terms[name]
        terms["loss"] = total
        return terms


def make_step(model: Any, forget: FactBatch, hooks: Sequence[str] = (), *, step: int = 0,
              settings: Mapping[str, Any] | None = None, state: Any = None) -> Step:
    """A :class:`Step` over the forget rows alone (one pass): for evaluating a penalty or a
    forget loss outside training. ``forget`` gets ``index = arange(rows)`` when it has none.

    Example:
        >>> make_step.__name__
        'make_step'
    """
    if not isinstance(forget, IndexedBatch) or forget.index is None:
        forget = IndexedBatch(forget.tokens, forget.attention_mask, forget.prompt_mask,
                              forget.answer_mask, index=torch.arange(len(forget)))
    main, slices = run_parts(model, [("forget", forget)], hooks)
    return Step(model=model, step=step, settings=dict(settings or {}), state=state,
                rows={"forget": forget}, passes={"forget": main}, parts=slices)
