"""The protocol every unlearning method follows, and the per-step view it computes its loss on.

A method says what it needs (``needs_retain``, ``needs_reference``: a frozen copy of the
original model, ``needs_refusals``: refusal answers aligned with the forget rows), its default
settings over :data:`COMMON_DEFAULTS`, and three functions: ``prepare(setup)`` (once per run,
before any step: reference quantities, targets; returns the run's state), ``forget_loss(step)``
and ``retain_loss(step)``; ``hooks(state)`` names activations the loss reads (kept in the graph).
Subclass :class:`UnlearningMethod`, override what differs, and pass the object (or
:func:`~neuronscope.unlearning.methods.register_method` it) to ``unlearn``.

Example:
    >>> class Ascent(UnlearningMethod):
    ...     name, needs_retain = "ascent", False
    ...     def forget_loss(self, step):
    ...         picked, mask = step.token_logprobs("forget")
    ...         return picked.sum() / mask.sum()
    >>> check_method(Ascent()).name
    'ascent'
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from jaxtyping import Float
from torch import Tensor

from neuronscope.tokenization import FactBatch
from neuronscope.training import IndexedBatch
from neuronscope.unlearning.forward import ForwardOut

__all__ = ["COMMON_DEFAULTS", "REQUIRED_PARTS", "Setup", "Step", "UnlearningMethod",
           "check_method", "masked_mean"]

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

REQUIRED_PARTS = ("name", "needs_retain", "needs_reference", "needs_refusals", "retain_losses",
                  "defaults", "prepare", "hooks", "forget_loss", "retain_loss")


def masked_mean(values: Float[Tensor, "row pos"], mask: Tensor) -> Tensor:
    """Mean of ``values`` over the true entries of ``mask`` (0 when there are none)."""
    mask = mask.to(values.dtype)
    return (values * mask).sum() / mask.sum().clamp_min(1)


@dataclass
class Setup:
    """What ``prepare`` sees: the original model (read only), the full tokenised sets, the frozen
    reference (when the method needs one), the run's settings and seed."""

    model: Any
    forget: FactBatch
    retain: FactBatch | None
    refusals: FactBatch | None
    reference: Any
    settings: dict[str, Any]
    seed: int


@dataclass
class Pass:
    """One forward pass: its output and, per row, answer log-probabilities."""

    out: ForwardOut
    logp: Float[Tensor, " row"]
    n_tok: Float[Tensor, " row"]
    picked: Float[Tensor, "row pos"]
    mask: Tensor


@dataclass
class Step:
    """One training step as a method or penalty sees it.

    ``passes[name]`` is the forward pass that holds the rows of part ``name`` (``"forget"``,
    ``"refusal"``, ``"retain"``) and ``parts[name]`` their row slice in it; ``rows[name]`` the
    minibatch itself (with ``index``: row numbers in the full set).
    """

    model: Any
    step: int
    settings: dict[str, Any]
    state: Any
    rows: dict[str, IndexedBatch | FactBatch]
    passes: dict[str, Pass]
    parts: dict[str, slice]
    retain_loss_kind: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def index(self) -> Tensor:
        """Row numbers of the forget minibatch in the full forget batch."""
        return self.rows["forget"].index

    def logprob(self, part: str = "forget") -> Float[Tensor, " row"]:
        """``log P(answer | prompt)`` of each row of ``part`` (in the graph)."""
        p = self.passes[part]
        return p.logp[self.parts[part]]

    def n_tokens(self, part: str = "forget") -> Float[Tensor, " row"]:
        p = self.passes[part]
        return p.n_tok[self.parts[part]]

    def token_logprobs(self, part: str = "forget") -> tuple[Tensor, Tensor]:
        """Per answer token log-probabilities and their mask for the rows of ``part``."""
        p = self.passes[part]
        return p.picked[self.parts[part]], p.mask[self.parts[part]]

    def act(self, hook: str, part: str = "forget") -> Tensor:
        """The activation at ``hook`` for the rows of ``part`` (in the graph)."""
        return self.passes[part].out.acts[hook][self.parts[part]]

    def logits(self, part: str = "forget") -> Tensor:
        return self.passes[part].out.logits[self.parts[part]]


class UnlearningMethod:
    """Base of every method: defaults for the optional parts; ``forget_loss`` is the one to write."""

    name: str = ""
    summary: str = ""
    needs_retain: bool = True
    needs_reference: bool = False
    needs_refusals: bool = False
    retain_losses: tuple[str, ...] = ("nll", "kl")  # the first is the default
    defaults: Mapping[str, Any] = {}

    def settings(self, overrides: Mapping[str, Any]) -> dict[str, Any]:
        """:data:`COMMON_DEFAULTS`, then this method's defaults, then ``overrides``."""
        return {**COMMON_DEFAULTS, **self.defaults, **overrides}

    def check(self, settings: Mapping[str, Any], model: Any) -> None:
        """Raise ``ValueError`` for bad settings (called before any step)."""

    def prepare(self, setup: Setup) -> Any:
        """Per-run state, computed once from the original model before training."""
        return None

    def hooks(self, state: Any) -> Sequence[str]:
        """Activations the losses read (captured in the graph at every step)."""
        return ()

    def forget_loss(self, step: Step) -> Tensor:
        raise NotImplementedError(f"method {self.name!r} has no forget_loss")

    def retain_loss(self, step: Step) -> Tensor:
        """``"nll"``: mean answer-token NLL; ``"kl"``: mean over real positions of
        KL(p_ref || p) to the frozen original (needs ``step.extra["reference"]``)."""
        kind = step.retain_loss_kind
        rows = step.rows["retain"]
        if kind == "nll":
            picked, mask = step.token_logprobs("retain")
            return -picked.sum() / mask.sum()
        if kind == "kl":
            width = rows.tokens.shape[1]
            with torch.no_grad():
                ref = step.extra["reference"](rows.tokens).float().log_softmax(-1)
            logq = step.logits("retain")[:, :width].float().log_softmax(-1)
            kl = (ref.exp() * (ref - logq)).sum(-1)
            return masked_mean(kl[:, :-1], rows.attention_mask[:, 1:])
        raise ValueError(f"method {self.name!r} has no retain loss {kind!r}")

    def record(self, state: Any) -> dict[str, Any]:
        """Entries of the prepared state worth keeping in the run's settings record."""
        return {}

    def __repr__(self) -> str:
        return f"<unlearning method {self.name!r}: {self.summary}>"


def check_method(method: Any) -> Any:
    """``method`` if it has every part of the protocol, else a ``ValueError`` naming the missing
    parts (subclass :class:`UnlearningMethod` to inherit the optional ones)."""
    missing = [part for part in REQUIRED_PARTS if not hasattr(method, part)]
    if missing:
        raise ValueError(f"method object {method!r} lacks {missing}: subclass "
                         f"neuronscope.unlearning.UnlearningMethod and override forget_loss")
    if not isinstance(method.name, str) or not method.name:
        raise ValueError(f"method object {method!r} needs a non-empty name")
    if not callable(method.forget_loss):
        raise ValueError(f"method {method.name!r}: forget_loss must be callable")
    if getattr(type(method), "forget_loss", None) is UnlearningMethod.forget_loss:
        raise ValueError(f"method {method.name!r} does not define forget_loss")
    if not method.retain_losses and method.needs_retain:
        raise ValueError(f"method {method.name!r} needs a retain set but names no retain loss")
    return method
