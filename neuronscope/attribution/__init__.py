"""Neuron attribution: how much each MLP neuron pushes the model towards each fact's answer.

``attribute(model, facts)`` returns a :class:`NeuronAttribution` with integrated-gradients
scores ``[fact, layer, neuron]`` for the neurons at ``blocks.{l}.mlp.hook_post``.

Example:
    >>> from neuronscope import FactWorld
    >>> from neuronscope.tiny import tiny_model
    >>> world = FactWorld.synthetic(n_people=10)
    >>> model = tiny_model(tokenizer=world.tokenizer)            # untrained, 2 layers x 48 neurons
    >>> attr = attribute(model, world.facts[:6], steps=8, progress=False)
    >>> attr.scores.shape
    torch.Size([6, 2, 48])
    >>> len(attr.top(3))
    3
"""

from __future__ import annotations

import dataclasses
import time
import warnings
from collections.abc import Iterable, Sequence
from contextlib import contextmanager
from typing import Any

import torch
from torch import Tensor

from neuronscope.attribution.adaptive import allowance, noise_floor
from neuronscope.attribution.distributed import (
    agree_min,
    gather_raw,
    is_distributed,
    my_chunks,
    rank_and_world,
)
from neuronscope.attribution.engine import (
    EngineOptions,
    RawAttribution,
    default_budget,
    make_plan,
    path_rule,
    run_engine,
)
from neuronscope.attribution.param import param_x_grad
from neuronscope.attribution.quadrature import QUADRATURES, quadrature_rule
from neuronscope.attribution.reference import reference_attribution
from neuronscope.attribution.result import NeuronAttribution
from neuronscope.attribution.site_engine import chunk_size, run_sites
from neuronscope.attribution.sites import SITES, resolve_sites
from neuronscope.attribution.spec import METHODS, POSITIONS, TARGETS, AttributionSpec
from neuronscope.facts import Fact, FactSet
from neuronscope.hooks import check_layers, mlp_hook_names
from neuronscope.progress import progress_bar
from neuronscope.scoring import batch_for

__all__ = ["METHODS", "POSITIONS", "QUADRATURES", "SITES", "TARGETS", "AttributionSpec", "EngineOptions",
           "NeuronAttribution", "attribute", "quadrature_rule"]

ENGINES = ("fast", "reference")


@contextmanager
def _eval_mode(model: Any):
    """Dropout off while attributing; the model's train/eval flags restored afterwards.

    The bridge's attention keeps the last pattern it computed (``_pattern``); after a pass
    with gradients that tensor would pin the whole autograd graph (memory) and make the
    model impossible to ``deepcopy``. Such cached tensors are detached on the way out.
    """
    modes = {module: module.training for module in model.modules()}
    model.eval()
    try:
        yield
    finally:
        for module, mode in modes.items():
            module.train(mode)
        _detach_cached_tensors(model)


def _detach_cached_tensors(model: Any) -> None:
    for module in model.modules():
        for name, value in list(vars(module).items()):
            if isinstance(value, torch.Tensor) and value.grad_fn is not None:
                setattr(module, name, value.detach())


def _fact_set(facts: Iterable[Fact]) -> FactSet:
    facts = facts if isinstance(facts, FactSet) else FactSet(list(facts))
    if len(facts) == 0:
        raise ValueError("facts is empty: nothing to attribute")
    return facts


def _model_name(model: Any) -> str:
    cfg = getattr(model, "cfg", None)
    name = getattr(cfg, "model_name", None) or getattr(getattr(model, "original_model", None),
                                                       "name_or_path", None)
    return str(name or type(model).__name__)


def attribute(
    model: Any,
    facts: Iterable[Fact],
    *,
    method: str = "ig",
    steps: int | None = None,
    quadrature: str = "gauss_legendre",
    baseline: str = "zero",
    target: str = "prob",
    positions: str = "prompt",
    layers: Sequence[int] | None = None,
    batch_size: int | None = None,
    progress: bool = True,
    tokenizer: Any = None,
    per_position: bool = False,
    engine: str = "fast",
    max_memory: int | None = None,
    sites: str | Sequence[str] | None = None,
    token_extremes: bool = False,
    tolerance: float | None = 0.01,
    max_steps: int = 512,
    _options: EngineOptions | None = None,
) -> NeuronAttribution:
    """Attribute each fact's target to every MLP neuron (``blocks.{l}.mlp.hook_post``).

    Args:
        method: ``"ig"`` (integrated gradients), ``"grad_x_act"`` (activation x gradient,
            one right-Riemann step) or ``"param_x_grad"`` (the paper's parameter form: per
            neuron, parameter x gradient summed over its input/gate rows, input bias and
            output column; always over every token position).
        steps, quadrature: integration points and rule (``QUADRATURES``) for ``"ig"``.
            ``steps=None`` (default): exact to ``tolerance`` by adaptive Gauss-Legendre panels
            (``neuronscope.attribution.adaptive``): per fact and layer the path is refined
            where it is curved until ``|convergence_delta| <= tolerance * max(|f(x) - f(b)|,
            1e-3 * max(|f(x)|, |f(b)|))``, with at most ``max_steps`` gradient evaluations.
            A fixed ``steps`` that misses that tolerance warns, naming the layers.
        tolerance: relative completeness tolerance (default 1 %); ``None`` with fixed
            ``steps`` turns the check off.
        max_steps: gradient evaluations per fact and layer the adaptive rule may spend.
        baseline: activation value at the start of the path (``"zero"``).
        target: ``"prob"`` (P(answer | prompt), product over answer tokens, teacher forced)
            or ``"logprob"``.
        positions: token positions scaled and attributed: ``"prompt"`` (default; the answer
            positions are left out because their activations already see the answer tokens
            being scored), ``"last"`` (last prompt token) or ``"all"``.
        layers: model layers to attribute (default all); each is attributed separately,
            the other layers unscaled.
        batch_size: facts per chunk (default: as many as fit ``max_memory`` bytes of
            activations, 2 GiB on the CPU, a quarter of free GPU memory).
        per_position: also keep ``position_scores[fact, layer, pos, neuron]``.
        engine: ``"fast"`` or ``"reference"`` (the slow per-step loop, for checking).
        sites: other places than the MLP neurons (``SITES``: ``"q"``, ``"k"``, ``"v"``,
            ``"o"``, ``"gate"``, ``"up"``, ``"mlp_post"``, ``"down"``), one name or several;
            their units are concatenated on the neuron axis (``result.sites``). Computed by
            the general path (``neuronscope.attribution.site_engine``: full forwards, one
            pass for every site and layer with ``grad_x_act``).
        token_extremes: also keep ``token_max`` / ``token_min`` (per fact and neuron, the
            largest / smallest per-token score: what ``diagnose(definition="paper")``
            needs); uses the general path.

    Facts are sharded across ranks when ``torch.distributed`` is initialised; every rank
    receives the full result. The model is not modified and carries no extra hooks after.

    Example:
        >>> from neuronscope import FactWorld
        >>> from neuronscope.tiny import tiny_model
        >>> world = FactWorld.synthetic(n_people=10)
        >>> model = tiny_model(tokenizer=world.tokenizer)
        >>> attr = attribute(model, world.facts[:4], steps=16, layers=[1], progress=False)
        >>> bool(attr.convergence_delta.abs().max() < 1e-3)      # completeness holds
        True
    """
    spec = AttributionSpec.make(method=method, steps=steps, quadrature=quadrature, target=target,
                                positions=positions, baseline=baseline, tolerance=tolerance,
                                max_steps=max_steps)
    if engine not in ENGINES:
        raise ValueError(f"unknown engine {engine!r}; expected one of {ENGINES}")
    if method == "param_x_grad" and positions not in ("prompt", "all"):
        raise ValueError("param_x_grad covers every token position (parameters are shared by all "
                         f"positions); positions={positions!r} is not available for it")
    if method == "param_x_grad" and per_position:
        raise ValueError("per_position is not available for param_x_grad")
    if batch_size is not None and (isinstance(batch_size, bool) or not isinstance(batch_size, int)
                                   or batch_size < 1):
        raise ValueError(f"batch_size must be a positive integer or None, got {batch_size!r}")
    if max_memory is not None and max_memory <= 0:
        raise ValueError(f"max_memory must be a positive number of bytes, got {max_memory!r}")
    if sites is not None or token_extremes:
        return _attribute_sites(model, facts, spec, sites=sites, layers=layers, engine=engine,
                                per_position=per_position, batch_size=batch_size, tokenizer=tokenizer,
                                progress=progress)
    names = mlp_hook_names(model, layers)
    layer_list = [int(name.split(".")[1]) for name in names]
    fact_set = _fact_set(facts)
    batch = batch_for(model, fact_set, tokenizer)
    opts = _options or EngineOptions()
    if max_memory is not None:
        opts = dataclasses.replace(opts, max_memory=int(max_memory))
    if spec.method == "ig":
        path_rule(spec, opts)  # a step cap below the rule's minimum fails here, before any work
    start = time.perf_counter()
    rank, world = rank_and_world()
    with _eval_mode(model):
        raw = _run(model, batch, layer_list, spec, opts, engine=engine, batch_size=batch_size,
                   per_position=per_position, progress=progress and rank == 0)
    raw = gather_raw(raw)
    delta = None
    if raw.target_baseline is not None:
        delta = (raw.scores.double().sum(-1) - (raw.target_input.double()[:, None]
                                                 - raw.target_baseline.double())).float()
    meta = {"seconds": time.perf_counter() - start, "engine": engine, "world_size": world,
            **{k: v for k, v in raw.info.items() if isinstance(v, (bool, int, float, str))}}
    steps_used = raw.steps_used if spec.method == "ig" else None
    if spec.method == "ig" and spec.adaptive:
        meta.update(adaptive=True, panel_points=opts.panel_points, initial_panels=opts.initial_panels,
                    max_steps=spec.max_steps)
    if spec.method == "ig" and delta is not None and spec.tolerance is not None:
        _warn_if_inexact(delta, raw.target_input, raw.target_baseline, spec, layer_list)
    return NeuronAttribution(
        scores=raw.scores, layers=layer_list, fact_ids=fact_set.ids, method=spec.method,
        steps=spec.steps if spec.steps is not None else int(steps_used.max()) if steps_used is not None
        and steps_used.numel() else 0,
        target=spec.target, quadrature=spec.quadrature, baseline=spec.baseline,
        positions=spec.positions, model_name=_model_name(model), convergence_delta=delta,
        target_input=raw.target_input, target_baseline=raw.target_baseline,
        position_scores=raw.position_scores if per_position else None,
        position_mask=raw.position_mask if per_position else None, meta=meta,
        steps_used=steps_used, tolerance=spec.tolerance if spec.method == "ig" else None,
    )


def _attribute_sites(model: Any, facts: Iterable[Fact], spec: AttributionSpec, *,
                     sites: str | Sequence[str] | None, layers: Sequence[int] | None, engine: str,
                     per_position: bool, batch_size: int | None, tokenizer: Any,
                     progress: bool) -> NeuronAttribution:
    """``attribute`` through the general site path (checks first, then the work)."""
    if spec.method == "param_x_grad":
        raise ValueError("sites / token_extremes are available for 'ig' and 'grad_x_act', not "
                         "'param_x_grad' (parameters are not per-token activations)")
    if engine != "fast" or per_position:
        raise ValueError("sites / token_extremes run on the general path: engine='reference' and "
                         "per_position are not available with them")
    if is_distributed():
        raise ValueError("sites / token_extremes (also used by diagnose(definition='paper')) do not run "
                         "under torch.distributed yet: run them in one process (without torchrun), or "
                         "attribute the MLP neurons (sites=None) with the default definition")
    resolved = resolve_sites(model, sites, layers)
    layer_list = check_layers(model, layers)
    fact_set = _fact_set(facts)
    batch = batch_for(model, fact_set, tokenizer)
    start = time.perf_counter()
    # Integrated gradients on the general path: a fixed Gauss-Legendre rule; by default
    # (steps=None) the whole rule doubles from 8 points until every (fact, layer, site) meets
    # the tolerance or the next rule would pass max_steps.
    schedule = [spec.steps] if not (spec.method == "ig" and spec.adaptive) else \
        [n for n in (2 ** k for k in range(3, 20)) if n <= spec.max_steps]
    for n in schedule:
        run_spec = spec if n == spec.steps else AttributionSpec.make(
            method=spec.method, steps=n, quadrature="gauss_legendre", target=spec.target,
            positions=spec.positions, baseline=spec.baseline, tolerance=spec.tolerance,
            max_steps=spec.max_steps)
        with _eval_mode(model), progress_bar(total=-(-len(batch) // chunk_size(run_spec, batch_size)),
                                     enabled=progress, desc="attribution (sites)") as bar:
            raw = run_sites(model, batch, layer_list, resolved, run_spec, batch_size=batch_size,
                            progress=bar.update)
        if raw.target_baseline is None:
            break
        parts, allowed, begin = [], [], 0
        for j, site in enumerate(resolved):
            total = raw.scores[..., begin : begin + site.width].double().sum(-1)
            base = raw.target_baseline[..., j].double()
            parts.append(total - (raw.target_input.double()[:, None] - base))
            if spec.tolerance is not None:
                allowed.append(allowance(raw.target_input.double()[:, None], base, spec.tolerance,
                                         noise_floor(spec.target)))
            begin += site.width
        stacked = torch.stack(parts, -1)  # [fact, layer, site]
        met = not allowed or bool((stacked.abs() <= torch.stack(allowed, -1)).all())
        if met or n == schedule[-1]:
            if not met:
                bad = sorted({layer_list[i] for i in
                              (stacked.abs() > torch.stack(allowed, -1)).any(-1).any(0)
                              .nonzero().flatten().tolist()})
                how = f"{n} fixed steps" if not spec.adaptive else f"max_steps={spec.max_steps}"
                warnings.warn(f"attribution (sites): with {how}, |convergence_delta| exceeds the "
                              f"tolerance ({spec.tolerance:g} of f(x) - f(baseline)) in layers {bad}",
                              stacklevel=3)
            break
    delta = baseline = None
    if raw.target_baseline is not None:
        delta = stacked.gather(-1, stacked.abs().argmax(-1, keepdim=True)).squeeze(-1).float()
        baseline = raw.target_baseline[..., 0] if len(resolved) == 1 else None
    meta = {"seconds": time.perf_counter() - start, "engine": "sites", **raw.info}
    used = run_spec.steps if spec.method == "ig" else spec.steps
    return NeuronAttribution(
        scores=raw.scores, layers=layer_list, fact_ids=fact_set.ids, method=spec.method, steps=used,
        target=spec.target, quadrature=run_spec.quadrature, baseline=spec.baseline,
        positions=spec.positions, model_name=_model_name(model), convergence_delta=delta,
        target_input=raw.target_input, target_baseline=baseline, meta=meta, token_max=raw.token_max,
        token_min=raw.token_min, sites=None if sites is None else [(s.name, s.width) for s in resolved],
        tolerance=spec.tolerance if spec.method == "ig" else None,
    )


def _warn_if_inexact(delta: Tensor, target_input: Tensor, target_baseline: Tensor, spec: AttributionSpec,
                     layers: list[int]) -> None:
    """Warn, naming the layers, where ``|delta|`` exceeds the tolerance's allowance."""
    allowed = allowance(target_input[:, None], target_baseline, spec.tolerance, noise_floor(spec.target))
    missed = delta.double().abs() > allowed
    if not bool(missed.any()):
        return
    bad = [layers[i] for i in missed.any(0).nonzero().flatten().tolist()]
    worst = float((delta.double().abs() / allowed.clamp_min(1e-300) * spec.tolerance).max())
    how = (f"{spec.steps} fixed steps" if not spec.adaptive
           else f"the adaptive rule's cap of max_steps={spec.max_steps}")
    warnings.warn(f"attribution: with {how}, |convergence_delta| exceeds the tolerance "
                  f"({spec.tolerance:g} of f(x) - f(baseline)) on {int(missed.sum())} (fact, layer) pairs, "
                  f"in layers {bad} (worst {worst:.3g} relative); use steps=None (adaptive) or more steps",
                  stacklevel=3)


def _run(model: Any, batch: Any, layers: list[int], spec: AttributionSpec, opts: EngineOptions, *,
         engine: str, batch_size: int | None, per_position: bool, progress: bool) -> RawAttribution:
    if spec.method == "param_x_grad":
        size = batch_size or 64
        chunk_ids = my_chunks(-(-len(batch) // size))
        with progress_bar(total=len(chunk_ids), enabled=progress, desc="param x grad") as bar:
            return param_x_grad(model, batch, layers, spec, batch_size=size, chunk_ids=chunk_ids,
                                progress=bar.update)
    if engine == "reference":
        if is_distributed():
            raise ValueError("engine='reference' does not run under torch.distributed")
        with progress_bar(total=len(batch) * len(layers), enabled=progress, desc="attribution (ref)") as bar:
            return reference_attribution(model, batch, layers, spec, progress=bar.update)
    if opts.max_memory is None and is_distributed():
        opts = dataclasses.replace(opts, max_memory=agree_min(default_budget(model)))
    plan = make_plan(model, batch, layers, spec, opts=opts, batch_size=batch_size)
    chunk_ids = my_chunks(len(plan))
    with progress_bar(total=len(chunk_ids) * len(layers), enabled=progress, desc="attribution") as bar:
        return run_engine(model, batch, layers, spec, opts=opts, per_position=per_position,
                          chunk_ids=chunk_ids, plan=plan, progress=bar.update)
