"""SSIUU (Yang et al. 2026, eq. 3 and Algorithm 1) as a penalty on any unlearning method.

At step ``t`` the penalty is::

    lam * sum_{i in I-} (A_{t,i} - A_{t-1,i})^2        A_t = phi_t * g_t
    g_t = d [ sum over the forget minibatch of P(answer | prompt) ] / d phi

with ``phi`` every trainable parameter (one feature per scalar), ``P`` the product of the
answer's token probabilities, ``I- = {i : A_{t,i} < 0}`` at the current step and ``A_{t-1}``
stored (detached, one float per feature) at the previous step, a different minibatch in
general. Step 1 has no penalty. First order, as the paper's Algorithm 1: ``g_t`` is a constant
in the penalty's gradient, ``2 lam (A_t - A_{t-1}) g_t`` on ``I-`` (elementwise, no Hessian).
``g_t`` comes from the step's own forward graph: one extra backward pass of ``sum P`` over the
forget rows (the retain rows get their own forward pass so that it traverses the forget rows
only).

Options, each named for what it changes from the paper's form:

======================  ===========================================================================
``params``              ``"all"`` (paper), ``"attn"``, ``"mlp"``, ``"embed"`` (embeddings and
                        unembedding), or a regular expression searched in the parameter names
                        (``"._original_component"`` removed; e.g. ``"blocks?\\.\\d+\\.attn"``)
``target``              ``"prob"`` (paper: ``P``) or ``"logprob"`` (``log P``)
``norm``                ``"squared"`` (paper) or ``"abs"`` (``lam |A_t - A_{t-1}|``, gradient
                        ``lam sign(A_t - A_{t-1}) g_t``)
``negative_set``        ``"current"`` (paper: ``A_t < 0``) or ``"previous"`` (``A_{t-1} < 0``)
``level``               ``"parameter"`` (paper) or ``"neuron"``: the features are the MLP neurons
                        at ``blocks.{l}.mlp.hook_post`` of ``layers`` (None: all), ``A`` the sum
                        over the forget minibatch and ``positions`` of ``h * dP/dh``; the same
                        rules otherwise (the gradient ``2 lam (A_t - A_{t-1}) dP/dh`` flows
                        into the weights through ``h``)
======================  ===========================================================================

Example:
    >>> SSIUU().label
    'ssiuu(0.001)'
    >>> SSIUU(1e-2, level="neuron").label
    'ssiuu(0.01,level=neuron)'
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from typing import Any

import torch
from jaxtyping import Float
from torch import Tensor

from neuronscope.hooks import check_layers, mlp_hook_names
from neuronscope.tokenization import FactBatch, position_mask
from neuronscope.unlearning.penalties import BoundPenalty, Penalty, register_penalty

__all__ = ["GROUPS", "LEVELS", "SSIUU", "NeuronSSIUU", "ParameterSSIUU", "penalty_coefficient",
           "select_parameters"]

LEVELS = ("parameter", "neuron")
TARGETS = ("prob", "logprob")
NORMS = ("squared", "abs")
NEGATIVE_SETS = ("current", "previous")
POSITIONS = ("all", "prompt")
GROUPS = ("all", "attn", "mlp", "embed")


def clean_name(name: str) -> str:
    """A parameter name without the bridge's ``_original_component`` wrappers."""
    return name.replace("._original_component", "").replace("_original_component.", "")


def select_parameters(model: Any, params: str) -> list[tuple[str, Tensor]]:
    """The trainable parameters of group ``params`` (see :data:`GROUPS`) or whose cleaned name
    matches the regular expression ``params``; ``ValueError`` when none is selected."""
    named = [(clean_name(n), p) for n, p in model.named_parameters() if p.requires_grad]
    if params == "all":
        chosen = named
    elif params in GROUPS:
        modules: list[Any] = []
        blocks = getattr(model, "blocks", None)
        if params in ("attn", "mlp"):
            if blocks is None:
                raise ValueError(f"SSIUU params={params!r} needs a model with .blocks")
            modules = [getattr(block, params) for block in blocks if hasattr(block, params)]
        else:
            modules = [getattr(model, n) for n in ("embed", "pos_embed", "unembed")
                       if getattr(model, n, None) is not None]
        ids = {id(p) for module in modules for p in module.parameters()}
        chosen = [(n, p) for n, p in named if id(p) in ids]
    else:
        try:
            pattern = re.compile(params)
        except re.error as error:
            raise ValueError(f"SSIUU params={params!r} is neither a group {GROUPS} nor a "
                             f"regular expression: {error}") from None
        chosen = [(n, p) for n, p in named if pattern.search(n)]
    if not chosen:
        example = ", ".join(n for n, _ in named[:3])
        raise ValueError(f"SSIUU params={params!r} selects no trainable parameter "
                         f"(names look like: {example})")
    return chosen


def penalty_coefficient(now: Tensor, prev: Tensor, lam: float, norm: str, negative_set: str
                        ) -> tuple[Tensor, Tensor]:
    """The penalty's value over the features and ``dPenalty/dA_t`` per feature.

    ``value = lam * sum_{I-} (A_t - A_{t-1})^2`` (or ``|.|``), ``coef`` = ``2 lam (A_t - A_{t-1})``
    (or ``lam sign(.)``) on ``I-``, 0 elsewhere; multiply ``coef`` by ``g_t`` for the gradient.

    Example:
        >>> value, coef = penalty_coefficient(torch.tensor([-2.0, 1.0]), torch.tensor([-1.0, 3.0]),
        ...                                   0.5, "squared", "current")
        >>> float(value), [c + 0.0 for c in coef.tolist()]
        (0.5, [-1.0, 0.0])
    """
    value, coef, scale = _unscaled(now, prev, norm, negative_set)
    return lam * value, coef.mul_(lam * scale)


def _unscaled(now: Tensor, prev: Tensor, norm: str, negative_set: str,
              diff: Tensor | None = None, mask: Tensor | None = None
              ) -> tuple[Tensor, Tensor, float]:
    """``(sum_{I-} d^2, d, 2)`` or ``(sum_{I-} |d|, sign(d), 1)`` with ``d = A_t - A_{t-1}`` on
    ``I-`` and 0 elsewhere, written into ``diff`` (a fresh tensor when None; the caller may
    overwrite it); ``mask``: an optional boolean buffer for ``I-``."""
    diff = torch.sub(now, prev, out=diff) if diff is not None else torch.sub(now, prev)
    reference = now if negative_set == "current" else prev
    diff.mul_(torch.lt(reference, 0, out=mask) if mask is not None else reference < 0)
    if norm == "squared":
        flat = diff.reshape(-1)
        return torch.dot(flat, flat), diff, 2.0
    return diff.abs().sum(), diff.sign_(), 1.0


class _WithGradient(torch.autograd.Function):
    """Returns ``value`` and, in the backward pass, ``grad_out * scale * direction_j`` for each
    target ``j``: injects a prescribed gradient (the first-order penalty's) without building
    a graph for it."""

    @staticmethod
    def forward(ctx: Any, value: Tensor, scale: float, directions: list[Tensor],
                *targets: Tensor) -> Tensor:
        ctx.scale, ctx.directions = scale, directions
        return value.detach().clone()

    @staticmethod
    def backward(ctx: Any, grad_out: Tensor) -> tuple[Any, ...]:
        factor = grad_out * ctx.scale
        return (None, None, None, *[d * factor for d in ctx.directions])


@dataclass(frozen=True)
class SSIUU(Penalty):
    """The SSIUU penalty; the defaults are the paper's Algorithm 1 (see the module docstring).

    Args:
        lam: the penalty's weight (finite, >= 0).
        params: parameter level: which parameters are features (``"all"``, a group or a regex).
        target: ``"prob"`` (``P``) or ``"logprob"``.
        norm: ``"squared"`` or ``"abs"``.
        negative_set: ``"current"`` (``A_t < 0``) or ``"previous"`` (``A_{t-1} < 0``).
        level: ``"parameter"`` or ``"neuron"``.
        layers: neuron level: the MLP layers (None: all).
        positions: neuron level: ``"all"`` real tokens or the ``"prompt"`` tokens only.

    Example:
        >>> SSIUU(1e-3).to_dict()["level"]
        'parameter'
    """

    lam: float = 1e-3
    params: str = "all"
    target: str = "prob"
    norm: str = "squared"
    negative_set: str = "current"
    level: str = "parameter"
    layers: tuple[int, ...] | None = None
    positions: str = "all"

    name = "ssiuu"
    needs_retain = False
    separate_retain = True

    def __post_init__(self) -> None:
        lam = self.lam
        if isinstance(lam, bool) or not isinstance(lam, (int, float)) or not math.isfinite(lam) \
                or lam < 0:
            raise ValueError(f"SSIUU lam must be a finite number >= 0, got {lam!r}")
        object.__setattr__(self, "lam", float(lam))
        for key, allowed in (("target", TARGETS), ("norm", NORMS),
                             ("negative_set", NEGATIVE_SETS), ("level", LEVELS),
                             ("positions", POSITIONS)):
            if getattr(self, key) not in allowed:
                raise ValueError(f"SSIUU {key} must be one of {allowed}, got {getattr(self, key)!r}")
        if not isinstance(self.params, str) or not self.params:
            raise ValueError(f"SSIUU params must be a group {GROUPS} or a name pattern, "
                             f"got {self.params!r}")
        if self.level == "neuron" and self.params != "all":
            raise ValueError("SSIUU params selects parameters (level='parameter'); the neuron "
                             "level selects MLP layers with layers=")
        if self.level == "parameter" and self.layers is not None:
            raise ValueError("SSIUU layers applies to level='neuron'; at the parameter level "
                             "select parameters with params=")
        if self.level == "parameter" and self.positions != "all":
            raise ValueError("SSIUU positions applies to level='neuron'")
        if self.layers is not None:
            object.__setattr__(self, "layers", tuple(int(layer) for layer in self.layers))

    def to_dict(self) -> dict[str, Any]:
        record = {"name": self.name, **asdict(self)}
        record["layers"] = list(self.layers) if self.layers is not None else None
        return record

    @property
    def label(self) -> str:
        """``ssiuu(lam)`` plus every option that differs from the paper's form."""
        defaults = {f.name: f.default for f in fields(self)}
        extra = [f"{f.name}={_fmt(getattr(self, f.name))}" for f in fields(self)
                 if f.name != "lam" and getattr(self, f.name) != defaults[f.name]]
        return f"ssiuu({','.join([f'{self.lam:g}', *extra])})"

    def bind(self, model: Any, forget: FactBatch, retain: FactBatch | None = None) -> BoundPenalty:
        if self.level == "parameter":
            return ParameterSSIUU(self, select_parameters(model, self.params))
        return NeuronSSIUU(self, model)


def _fmt(value: Any) -> str:
    if isinstance(value, tuple):
        return "/".join(str(v) for v in value)
    return str(value)


def _target(step: Any, target: str) -> Tensor:
    logp = step.logprob("forget")
    return logp.exp().sum() if target == "prob" else logp.sum()


class ParameterSSIUU(BoundPenalty):
    """Per-run state of the parameter level: the selected parameters and ``A_{t-1}``.

    ``last`` holds, after each step, the value, the size of ``I-`` and of the features.
    """

    def __init__(self, config: SSIUU, named: Sequence[tuple[str, Tensor]]) -> None:
        super().__init__()
        self.config = config
        self.names = [n for n, _ in named]
        self.params = [p for _, p in named]
        self.prev: list[Tensor] | None = None
        self.last: dict[str, float] = {}
        # buffers kept across steps (allocating parameter-sized tensors every step is slow):
        # where A_t goes (A_{t-2}'s storage), the change (the gradient's direction) and I-
        self._spare: list[Tensor] | None = None
        self._diff: list[Tensor] | None = None
        self._mask: list[Tensor] | None = None

    def gradient(self, step: Any) -> list[Tensor]:
        """``g_t``: the gradient of the summed target over the forget rows, per parameter."""
        grads = torch.autograd.grad(_target(step, self.config.target), self.params,
                                    retain_graph=True, allow_unused=True)
        return [torch.zeros_like(p) if g is None else g for p, g in zip(self.params, grads,
                                                                        strict=True)]

    def __call__(self, step: Any) -> Tensor:
        config = self.config
        grads = self.gradient(step)
        with torch.no_grad():
            spare = self._spare or [torch.empty_like(p) for p in self.params]
            now = [torch.mul(p.detach(), g, out=buffer)
                   for p, g, buffer in zip(self.params, grads, spare, strict=True)]
        prev, self.prev = self.prev, now
        self._spare = prev
        if prev is None:  # step 1: nothing to compare with
            self.last = {"value": 0.0}
            return self.params[0].new_zeros(())
        if self._diff is None or self._mask is None:
            self._diff = [torch.empty_like(p) for p in self.params]
            self._mask = [torch.empty_like(p, dtype=torch.bool) for p in self.params]
        with torch.no_grad():
            value = self.params[0].new_zeros(())
            directions = []
            for a, b, g, diff, mask in zip(now, prev, grads, self._diff, self._mask, strict=True):
                v, direction, scale = _unscaled(a, b, config.norm, config.negative_set, diff, mask)
                value += v
                directions.append(direction.mul_(g))  # d penalty / d phi = lam * scale * this
            value *= config.lam
        self.last = {"value": float(value)}
        return _WithGradient.apply(value, config.lam * scale, directions, *self.params)

    def record(self) -> dict[str, Any]:
        return {"parameters": len(self.params), "features": sum(p.numel() for p in self.params)}


class NeuronSSIUU(BoundPenalty):
    """Per-run state of the neuron level: the hooks and ``A_{t-1}`` per (layer, neuron)."""

    def __init__(self, config: SSIUU, model: Any) -> None:
        layers = check_layers(model, config.layers)
        super().__init__(hooks=mlp_hook_names(model, layers))
        self.config, self.layers = config, list(layers)
        self.prev: Float[Tensor, "layer neuron"] | None = None
        self.last: dict[str, float] = {}

    def _mask(self, step: Any, width: int) -> Tensor:
        return position_mask(step.rows["forget"], self.config.positions, width=width)

    def __call__(self, step: Any) -> Tensor:
        config = self.config
        out = step.passes["forget"].out
        part = step.parts["forget"]
        sources = [out.acts[h] for h in self.hooks]
        grads = torch.autograd.grad(_target(step, config.target), sources, retain_graph=True,
                                    allow_unused=True)
        hs = [act[part] for act in sources]
        mask = self._mask(step, hs[0].shape[1])[..., None].to(hs[0].dtype)
        with torch.no_grad():
            gs = [torch.zeros_like(h) if g is None else g[part] * mask
                  for h, g in zip(hs, grads, strict=True)]
            now = torch.stack([(h.detach() * g).sum((0, 1)) for h, g in zip(hs, gs, strict=True)])
        prev, self.prev = self.prev, now
        if prev is None:
            self.last = {"value": 0.0}
            return hs[0].new_zeros(())
        with torch.no_grad():
            value, direction, scale = _unscaled(now, prev, config.norm, config.negative_set)
            value *= config.lam
            directions = [g * direction[j] for j, g in enumerate(gs)]  # d/dh = lam scale this
        self.last = {"value": float(value)}
        return _WithGradient.apply(value, config.lam * scale, directions, *hs)

    def record(self) -> dict[str, Any]:
        return {"layers": self.layers, "hooks": list(self.hooks)}


register_penalty("ssiuu", SSIUU)
