"""SSIUU: a penalty that stops negative attribution from changing during unlearning.

``SSIUU(lam, level="neuron")`` adds, to any unlearning loss, at step ``t``::

    lam * sum_{f in forget minibatch} sum_{(l, i): A_prev[f,l,i] < 0} |A_prev[f,l,i] - A_now[f,l,i]|

Neuron level (default). ``A[f, l, i] = sum_k h[f, k, l, i] * g[f, k, l, i]`` over the fact's
prompt positions ``k`` (the attribution engine's default positions; ``positions="all"`` takes
every real token), with ``h`` the activation at ``blocks.{l}.mlp.hook_post`` and ``g`` the
gradient of ``log P(answer | prompt)`` with respect to ``h``. ``A_now`` uses the current,
differentiable activation and the *previous* gradient as a constant; ``A_prev`` is the
previous activation times that same previous gradient. The paper's ``||.||_2`` of a scalar
is its absolute value.

* Previous = the last step at which the fact was in the forget minibatch: ``A_prev`` and
  ``g`` are kept per fact (memory: forget facts x prompt positions x layers x d_mlp floats).
  With a forget minibatch that holds the whole forget set (the default on the organism),
  that is exactly the previous step.
* First visit of a fact (step 1 with the whole set): no previous attribution, so no penalty;
  the step only records ``A`` and ``g``. No warm-up pass is run.
* Where ``g`` comes from (``gradient=``). The forget loss's own forward pass supplies ``h``
  (read through hooks) in both modes.

  - ``"reuse"``: ``g`` is read off the step's own (main) backward pass through tensor hooks on
    the hooked activations: no extra pass. GA's and GD's forget term (the mean log-probability
    of the answer tokens) gives every row the same known weight
    ``w = 1 / (answer tokens in the minibatch)`` on ``log P_f``. The penalty is evaluated
    without a graph, and each layer's hook adds the penalty's gradient at that layer (closed
    form: ``-lam * sign(A_prev - A_now) * g_prev`` on the penalised neurons) to the gradient
    that flows on, after reading ``g`` = incoming gradient / ``w``. What ``g`` then holds
    besides ``d log P / d h`` is the penalty's gradient from *later* hooked layers, linear in
    ``lam``: during GA / GD runs on the small organism (minibatches of 64 forget facts) it
    measured up to 5e-2 of ``|g|`` at ``lam=1e-3``, 0.5 at 1e-2 and 7 at 0.1 on the lower
    layers, float noise on the last one (``benchmarks/ssiuu_gradient_error.py``).
    **The guard** takes the exact ``g`` by the extra pass at the first step with an active
    penalty and then every ``REUSE_CHECK_EVERY`` steps, measures the reused one's error ``E``
    against it per layer, and compares ``E`` with the drift ``D`` of the exact ``g`` from the
    constant the penalty used at that step (the fact's previous ``g``): SSIUU by definition
    accepts a lag of ``D`` (0.2 to 1 in those runs), and the reuse adds at most ``E`` to it.
    When ``E / D`` passes ``reuse_tolerance`` (0.25) at some layer, the run switches to
    ``"exact"`` for good, warns and records the step. Check steps keep the exact ``g``.
  - ``"exact"``: one extra backward pass of ``sum_f log P_f`` on the forget rows' graph, taken
    with respect to the hooked activations only (no weight gradients), before the main
    backward. It is exact whatever the forget loss (NPO and DPO weight facts unevenly, RMU is
    not built on ``log P`` at all) and costs most of a backward pass.
  - ``"auto"`` (default): ``"reuse"`` for ``ga`` and ``gd``, ``"exact"`` for the others.

Parameter level. ``A_j = theta_j * G_j`` per parameter element of the MLPs of ``layers``
(input/gate/output projections and biases), ``G`` the gradient of ``sum_f log P_f`` over
the previous step's forget minibatch (parameters are shared by every fact, so the previous
step's gradient is used whatever facts it held); the penalty sums ``|A_prev - theta * G|``
over elements with ``A_prev < 0``. It needs one extra backward pass with weight gradients.

Example:
    >>> from neuronscope import FactWorld, unlearn
    >>> from neuronscope.tiny import tiny_model
    >>> world = FactWorld.synthetic(n_people=10)
    >>> forget, retain = world.facts.split(forget=0.5, seed=0)            # whole families
    >>> model = tiny_model(tokenizer=world.tokenizer)                     # or ns.organism(world).bridge
    >>> result = unlearn(model, forget, retain, method="gd", ssiuu=SSIUU(1e-3), max_steps=2,
    ...                  progress=False)
    >>> result.settings["ssiuu"]["lam"]
    0.001
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch
from jaxtyping import Bool, Float
from torch import Tensor

from neuronscope.hooks import check_layers, d_mlp, mlp_hook_names
from neuronscope.tokenization import FactBatch

__all__ = ["LEVELS", "SSIUU", "NeuronPenalty", "ParameterPenalty", "attribution_now"]

LEVELS = ("neuron", "parameter")
POSITIONS = ("prompt", "all")
GRADIENTS = ("auto", "reuse", "exact")
# methods whose forget term gives every forget row the same weight on log P (see "reuse")
REUSE_METHODS = ("ga", "gd")
REUSE_CHECK_EVERY = 10  # steps between the guard's checks of the reused g (and its first active step)


@dataclass(frozen=True)
class SSIUU:
    """Settings of the SSIUU regulariser (compose with any method of :func:`unlearn`).

    Args:
        lam: penalty weight (>= 0; 0 gives the base method plus bookkeeping).
        level: ``"neuron"`` (hook-based, default) or ``"parameter"`` (paper appendix).
        layers: MLP layers whose neurons (or parameters) are regularised; None = all.
        positions: neuron level: ``"prompt"`` (default, as the attribution engine) or ``"all"``.
        gradient: neuron level: where ``d log P / d h`` comes from: ``"reuse"`` (the main
            backward pass, GA and GD only), ``"exact"`` (an extra backward pass) or ``"auto"``.
        reuse_tolerance: in reuse mode, the largest error of the reused ``g`` (relative to the
            exact one, checked by an extra pass at the first step with an active penalty and
            then every ``REUSE_CHECK_EVERY`` steps), as a fraction of ``g``'s own drift since
            the fact's previous visit (the lag the method accepts by definition), before the run
            switches to the extra pass for good. ``math.inf``: no checks.

    Example:
        >>> SSIUU(1e-3).level, SSIUU(1e-3).gradient
        ('neuron', 'auto')
    """

    lam: float = 1e-3
    level: str = "neuron"
    layers: tuple[int, ...] | None = None
    positions: str = "prompt"
    gradient: str = "auto"
    reuse_tolerance: float = 0.25

    def __post_init__(self) -> None:
        if not isinstance(self.lam, (int, float)) or not math.isfinite(self.lam) or self.lam < 0:
            raise ValueError(f"SSIUU lam must be a finite number >= 0, got {self.lam!r}")
        if self.level not in LEVELS:
            raise ValueError(f"SSIUU level must be one of {LEVELS}, got {self.level!r}")
        if not (isinstance(self.reuse_tolerance, (int, float)) and self.reuse_tolerance > 0):
            raise ValueError(f"SSIUU reuse_tolerance must be > 0, got {self.reuse_tolerance!r}")
        if self.gradient not in GRADIENTS:
            raise ValueError(f"SSIUU gradient must be one of {GRADIENTS}, got {self.gradient!r}")
        if self.positions not in POSITIONS:
            raise ValueError(f"SSIUU positions must be one of {POSITIONS}, got {self.positions!r}")
        if self.layers is not None:
            object.__setattr__(self, "layers", tuple(int(layer) for layer in self.layers))

    def to_dict(self) -> dict:
        record = asdict(self)
        record["layers"] = list(self.layers) if self.layers is not None else None
        return record

    def reuses_gradient(self, method: str) -> bool:
        """Whether ``g`` is read off the main backward pass for base ``method``."""
        if self.level != "neuron" or self.gradient == "exact":
            return False
        if self.gradient == "reuse" and method not in REUSE_METHODS:
            raise ValueError(f"SSIUU(gradient='reuse') needs a forget term with the same weight on "
                             f"every fact's log P ({', '.join(REUSE_METHODS)}); {method!r} has not: "
                             f"use gradient='exact' or 'auto'")
        return method in REUSE_METHODS

    def build(self, model: Any, forget: FactBatch, method: str = "gd") -> NeuronPenalty | ParameterPenalty:
        """The per-run state (caches) for ``model``, the full forget batch and the base method;
        validates the layers and the gradient mode."""
        layers = check_layers(model, self.layers)
        if self.level == "neuron":
            return NeuronPenalty(self, model, layers, forget, reuse=self.reuses_gradient(method))
        return ParameterPenalty(self, model, layers)


def _positions(batch: FactBatch, positions: str) -> Bool[Tensor, "fact seq"]:
    return batch.prompt_mask if positions == "prompt" else batch.attention_mask


def attribution_now(h: Float[Tensor, "fact pos neuron"], g: Float[Tensor, "fact pos neuron"]
                    ) -> Float[Tensor, "fact neuron"]:
    """``sum_k h[f, k, i] * g[f, k, i]``; ``g`` is zero outside the fact's positions, so ``h``
    needs no mask. Equal inputs give bit-equal outputs (same shapes, same reduction)."""
    return (h * g).sum(1)


class NeuronPenalty:
    """Per-fact caches of the previous gradient and attribution, and the neuron penalty.

    ``grad[j][f, k, i]`` holds ``d log P_f / d h`` at layer ``layers[j]``, position ``k``,
    neuron ``i`` from the fact's previous visit, zero outside its positions; ``attr[f, j, i]``
    the attribution then; ``seen[f]`` whether there was a previous visit. (One tensor per
    layer: stacking layers would copy every activation once more per step.)
    """

    def __init__(self, config: SSIUU, model: Any, layers: Sequence[int], forget: FactBatch,
                 reuse: bool = False) -> None:
        self.config, self.layers, self.reuse = config, list(layers), reuse
        # reuse mode: steps taken, the steps at which the guard compared the reused g with
        # the exact one, the relative error per layer at the last check, and the step after
        # which the run switched to the extra pass (None: never)
        self.steps = 0
        self.checked_steps: list[int] = []
        self.reuse_error = [0.0] * len(self.layers)
        self.drift = [0.0] * len(self.layers)
        self.switched_at: int | None = None
        self._checked = False
        self.hook_names = mlp_hook_names(model, self.layers)
        n = len(forget)
        # Rows are [bos] prompt answer, right padded: positions of interest start at 0.
        self.width = int(_positions(forget, config.positions).sum(-1).max())
        param = next(model.parameters())
        width = d_mlp(model)
        self.grad: list[Float[Tensor, "fact pos neuron"]] = [
            torch.zeros((n, self.width, width), device=param.device, dtype=param.dtype)
            for _ in self.layers]
        self.attr: Float[Tensor, "fact layer neuron"] = torch.zeros(
            (n, len(self.layers), width), device=param.device, dtype=param.dtype)
        self.seen: Bool[Tensor, " fact"] = torch.zeros(n, dtype=torch.bool, device=param.device)

    def _take(self, act: Tensor) -> int:
        return min(act.shape[1], self.width)

    def penalty(self, acts: Sequence[Tensor], rows: FactBatch, index: Tensor) -> Tensor:
        """``lam * sum |A_prev - A_now|`` over facts seen before and neurons with ``A_prev < 0``.

        ``acts[j]``: the differentiable activation of layer ``self.layers[j]`` for ``rows``
        (``[fact, seq, neuron]``); ``index``: the rows' numbers in the full forget batch.
        """
        index = index.to(self.seen.device)
        take = self._take(acts[0])
        prev = self.attr[index]
        now = torch.stack([attribution_now(act[:, :take], grad[index, :take])
                           for act, grad in zip(acts, self.grad, strict=True)], 1)
        active = ((prev < 0) & self.seen[index].view(-1, 1, 1)).to(prev.dtype)
        return self.config.lam * ((prev - now).abs() * active).sum()

    def update(self, acts: Sequence[Tensor], logprob: Tensor, rows: FactBatch, index: Tensor,
               graph_acts: Sequence[Tensor] | None = None) -> None:
        """Record ``g = d log P / d h`` and ``A = h * g`` at the current weights for ``rows``.

        ``graph_acts`` are the tensors the forward pass produced (``acts`` may be row slices of
        them); the gradient is taken with respect to those, keeping the graph for the main
        backward pass. Positions past ``take`` need no reset: they lie beyond every prompt in
        this minibatch and were stored as zeros.
        """
        index = index.to(self.seen.device)
        sources = list(graph_acts if graph_acts is not None else acts)
        grads = torch.autograd.grad(logprob.sum(), sources, retain_graph=True, allow_unused=True)
        n, take = len(rows), self._take(acts[0])
        mask = _positions(rows, self.config.positions)[:, :take, None].to(acts[0].dtype)
        for j, (act, grad) in enumerate(zip(acts, grads, strict=True)):
            g = torch.zeros_like(act[:, :take]) if grad is None else grad[:n, :take] * mask
            self.grad[j][index, :take] = g
            self.attr[index, j] = attribution_now(act[:, :take].detach(), g)
        self.seen[index] = True


    def reuse_step(self, graph_acts: Sequence[Tensor], rows: FactBatch, index: Tensor,
                   weight: float, logprob: Tensor | None = None) -> Tensor:
        """Reuse mode: the penalty's value now, its gradient and the new ``g`` in the main backward.

        ``graph_acts``: the forward pass's activations (the forget rows first); ``weight``:
        ``d forget term / d log P_f``, the same for every row; ``logprob``: the forget rows'
        ``log P_f`` in the graph, for the guard's checks (None: no check this step). The
        penalty is evaluated without a graph; a tensor hook on each activation then, during
        the main backward pass,

        1. reads the incoming ``d loss / d h`` (the forget term's gradient plus the penalty's
           gradient from later layers), divides the rows by ``weight`` and stores it as the
           fact's new ``g`` (and ``A = h . g``), and
        2. adds this layer's penalty gradient, ``-lam * sign(A_prev - A_now) * g_prev`` on the
           penalised neurons (zero elsewhere), to the gradient that flows on, which is exactly
           what backpropagating the penalty would add there.

        At a check step (the first step with an active penalty, then every
        ``REUSE_CHECK_EVERY`` steps) the exact ``g`` is also taken by the extra pass; the hooks
        measure the reused ``g``'s relative error against it per layer, store the exact one,
        and the guard switches the run to ``"exact"`` if the error passes ``reuse_tolerance``
        times the drift of ``g`` since the previous visit.

        Returns the value (detached: its gradient arrives through the hooks). The hooks belong
        to this step's graph and go with it.
        """
        index = index.to(self.seen.device)
        n, take = len(rows), self._take(graph_acts[0])
        lam = self.config.lam
        self.steps += 1
        whole = n == len(self.seen) and bool((index == torch.arange(n, device=index.device)).all())
        with torch.no_grad():
            prev = self.attr[index]
            seen = self.seen[index].view(-1, 1)
            # the previous g, as views of the cache when the minibatch is the whole forget set
            # in order (the hooks read it before they overwrite it)
            g_prev = [grad[:, :take] if whole else grad.index_select(0, index)[:, :take]
                      for grad in self.grad]
            hs = [act[:n, :take].detach() for act in graph_acts]
            value = prev.new_zeros(())
            slopes: list[Tensor | None] = []
            for j, (h, g) in enumerate(zip(hs, g_prev, strict=True)):
                gap = prev[:, j] - attribution_now(h, g)
                active = (prev[:, j] < 0) & seen
                value += (gap.abs() * active).sum()
                slopes.append(torch.where(active, -lam * torch.sign(gap), 0.0) if lam else None)
            acting = [s is not None and bool(s.any()) for s in slopes]
            mask = _positions(rows, self.config.positions)[:, :take, None].to(hs[0].dtype)
            scale = mask / weight
        exact: Sequence[Tensor | None] | None = None
        if (logprob is not None and math.isfinite(self.config.reuse_tolerance) and any(acting)
                and (not self._checked or self.steps % REUSE_CHECK_EVERY == 0)):
            self._checked, self.checked_steps = True, [*self.checked_steps, self.steps]
            exact = torch.autograd.grad(logprob.sum(), list(graph_acts), retain_graph=True,
                                        allow_unused=True)
            self.reuse_error = [0.0] * len(self.layers)
            self.drift = [0.0] * len(self.layers)

        def hook_for(j: int):
            def hook(grad: Tensor) -> Tensor | None:
                out = None
                if acting[j]:  # this layer's penalty gradient joins the flow
                    out = grad.clone()
                    out[:n, :take].addcmul_(slopes[j][:, None, :], g_prev[j])
                cache = self.grad[j][:, :take]
                if exact is None and whole:  # the new g straight into the cache (g_prev was read)
                    g = torch.mul(grad[:n, :take], scale, out=cache)
                else:
                    g = grad[:n, :take] * scale
                    if exact is not None:
                        g = self._measure(j, g, exact[j], mask, g_prev[j], seen.view(-1))
                    if whole:
                        cache.copy_(g)
                    else:
                        cache.index_copy_(0, index, g)
                self.attr[index, j] = attribution_now(hs[j], g)
                if j == 0:
                    self.seen[index] = True
                    if exact is not None:
                        self._guard()
                return out

            return hook

        for j, act in enumerate(graph_acts):
            act.register_hook(hook_for(j))
        return lam * value

    def _measure(self, j: int, reused: Tensor, exact: Tensor | None, mask: Tensor,
                 previous: Tensor, seen: Tensor) -> Tensor:
        """A check at layer ``j``: the reused ``g``'s relative error against the exact one, and
        the drift of the exact ``g`` from the constant the penalty used this step (the facts
        seen before); returns the exact ``g``, which the cache keeps."""
        n, take = reused.shape[:2]
        true = torch.zeros_like(reused) if exact is None else exact[:n, :take] * mask
        self.reuse_error[j] = float((reused - true).norm() / true.norm().clamp_min(1e-30))
        self.drift[j] = float((true[seen] - previous[seen]).norm()
                              / true[seen].norm().clamp_min(1e-30))
        return true

    def _guard(self) -> None:
        """After a check: if the reused ``g``'s error passed ``reuse_tolerance`` times the drift
        of ``g`` since the previous step at some layer, switch for good to the extra pass."""
        tolerance = self.config.reuse_tolerance
        ratios = [error / max(drift, 1e-30) for error, drift in zip(self.reuse_error, self.drift,
                                                                      strict=True)]
        worst = max(range(len(ratios)), key=ratios.__getitem__)
        if self.reuse and ratios[worst] > tolerance:
            self.reuse, self.switched_at = False, self.steps
            warnings.warn(
                f"SSIUU: at step {self.steps} the reused g = d log P / d h was off by "
                f"{self.reuse_error[worst]:.2g} (relative) at layer {self.layers[worst]}, "
                f"{ratios[worst]:.2g} of g's own drift since the previous step (reuse_tolerance "
                f"{tolerance:g}); from the next step g comes from an extra backward pass "
                f"(gradient='exact')", RuntimeWarning, stacklevel=2)


class ParameterPenalty:
    """Previous parameter gradient and attribution, and the parameter-level penalty."""

    reuse = False  # G always comes from its own extra backward pass

    def __init__(self, config: SSIUU, model: Any, layers: Sequence[int]) -> None:
        self.config, self.layers = config, list(layers)
        blocks = getattr(model, "blocks", None)
        if blocks is None:
            raise ValueError("parameter-level SSIUU needs a model with .blocks[l].mlp")
        params: list[Tensor] = []
        for layer in self.layers:
            params.extend(p for p in blocks[layer].mlp.parameters() if p.requires_grad)
        if not params:
            raise ValueError(f"layers {self.layers} have no trainable MLP parameters")
        self.params = params
        self.grad: list[Tensor] | None = None
        self.attr: list[Tensor] | None = None

    def penalty(self) -> Tensor:
        if self.grad is None or self.attr is None:
            return self.params[0].new_zeros(())
        total = self.params[0].new_zeros(())
        for p, g, prev in zip(self.params, self.grad, self.attr, strict=True):
            total = total + torch.where(prev < 0, (prev - p * g).abs(), 0.0).sum()
        return self.config.lam * total

    def update(self, logprob: Tensor) -> None:
        grads = torch.autograd.grad(logprob.sum(), self.params, retain_graph=True,
                                    allow_unused=True)
        self.grad = [torch.zeros_like(p) if g is None else g.detach()
                     for p, g in zip(self.params, grads, strict=True)]
        self.attr = [p.detach() * g for p, g in zip(self.params, self.grad, strict=True)]
