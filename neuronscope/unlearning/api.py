"""``unlearn(model, forget, retain, method=..., penalty=...)``: one entry point for every method.

Nothing here knows a method by name: what a method needs (a retain set, a frozen reference,
refusal answers), its settings and its losses come from the method object (see
:mod:`neuronscope.unlearning.methods`); penalties (:class:`~neuronscope.unlearning.SSIUU`, or
your own) from their objects.

Example:
    >>> from neuronscope import SSIUU, FactWorld
    >>> from neuronscope.tiny import tiny_model
    >>> world = FactWorld.synthetic(n_people=20)
    >>> forget, retain = world.facts.split(forget=0.2, by="group", seed=0)
    >>> model = tiny_model(tokenizer=world.tokenizer)                 # or ns.organism(world).bridge
    >>> result = unlearn(model, forget, retain, method="gd", penalty=SSIUU(1e-3), max_steps=2,
    ...                  target_forget_accuracy=None, progress=False)
    >>> result.steps
    2
"""

from __future__ import annotations

import html
import json
import math
import os
import random
import time
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from neuronscope.atomic import atomic_torch_save
from neuronscope.deprecation import DeprecatedAlias
from neuronscope.facts import Fact, FactSet, atomic_write_text
from neuronscope.hooks import model_device
from neuronscope.scoring import accuracy, batch_for, get_tokenizer
from neuronscope.tokenization import FactBatch, tokenize
from neuronscope.training import (
    TrainHistory,
    TrainSettings,
    at_most,
    detached_copy,
    finetune,
)
from neuronscope.unlearning.loss import UnlearningLoss
from neuronscope.unlearning.methods import COMMON_DEFAULTS, METHODS, Setup, get_method
from neuronscope.unlearning.penalties import as_penalties
from neuronscope.unlearning.recipe import Recipe

__all__ = ["LR_GRID", "UnlearnResult", "search_lr", "unlearn"]

DEFAULT_REFUSALS = ("I do not know", "I cannot say", "that is unknown to me")
LR_GRID = (3e-3, 1e-3, 3e-4, 1e-4, 3e-5, 1e-5)
"""The learning rates ``lr="search"`` tries (see :func:`search_lr`)."""

Metric = Callable[[Any, FactSet], float]


@dataclass
class UnlearnResult:
    """The unlearned model (``bridge``; ``model`` is its deprecated old name), its training history
    and every setting used.

    ``save(folder)`` writes ``model.pt`` (state dict), ``history.json`` and ``settings.json``
    atomically; ``UnlearnResult.load(folder, like=original_model)`` rebuilds it.
    """

    bridge: Any
    history: TrainHistory
    settings: dict = field(default_factory=dict)

    model = DeprecatedAlias("bridge", "a bridge's own .model is the Hugging Face module")

    @property
    def forget_accuracy(self) -> float | None:
        return self.history.final_metrics.get("forget_accuracy")

    @property
    def retain_accuracy(self) -> float | None:
        return self.history.final_metrics.get("retain_accuracy")

    @property
    def steps(self) -> int:
        return self.history.n_steps

    @property
    def reached_target(self) -> bool | None:
        """Whether the run stopped at its forget target (None: it had no target)."""
        if self.settings.get("target_forget_accuracy") is None:
            return None
        return self.history.stopped_reason == "target"

    def to_pandas(self) -> Any:
        """The per-step history (one row per step) with the method and recipe added."""
        frame = self.history.to_pandas()
        frame["method"] = self.settings.get("method")
        frame["recipe"] = self.settings.get("recipe")
        return frame

    def save(self, folder: str | os.PathLike) -> Path:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        atomic_torch_save(folder / "model.pt",
                          {k: v.detach().cpu() for k, v in self.bridge.state_dict().items()})
        self.history.save(folder / "history.json")
        atomic_write_text(folder / "settings.json", json.dumps(self.settings, indent=1))
        return folder

    @classmethod
    def load(cls, folder: str | os.PathLike, like: Any) -> UnlearnResult:
        """Load a saved result into a copy of ``like`` (a model of the same architecture)."""
        folder = Path(folder)
        model = detached_copy(like)
        state = torch.load(folder / "model.pt", map_location=model_device(model), weights_only=True)
        model.load_state_dict(state)
        settings = json.loads((folder / "settings.json").read_text(encoding="utf-8"))
        return cls(model, TrainHistory.load(folder / "history.json"), settings)

    def __repr__(self) -> str:
        acc = ", ".join(f"{k}={v:.3f}" for k, v in (("forget_accuracy", self.forget_accuracy),
                                                     ("retain_accuracy", self.retain_accuracy))
                        if v is not None)
        missed = ""
        if self.reached_target is False:
            missed = (f", DID NOT REACH target forget accuracy "
                      f"{self.settings['target_forget_accuracy']:g}")
        label = self.settings.get("recipe") or self.settings.get("method")
        return (f"UnlearnResult({label}: {self.steps} steps, "
                f"stopped: {self.history.stopped_reason}{missed}{', ' + acc if acc else ''})")

    def _repr_html_(self) -> str:
        return f"<div><b>{html.escape(repr(self))}</b>{self.history._repr_html_()}</div>"


def _facts(value: Iterable[Fact] | None, name: str) -> FactSet | None:
    if value is None:
        return None
    if isinstance(value, FactBatch):
        raise ValueError(f"{name} must be facts (a FactSet or list of Fact), not a FactBatch")
    facts = value if isinstance(value, FactSet) else FactSet(list(value))
    return facts


def _refusal_batch(forget: FactSet, refusals: Sequence[str], tokenizer: Any, seed: int,
                   max_length: int | None) -> FactBatch:
    """One refusal per forget fact (seeded choice), tokenised as ``prompt + refusal``."""
    rng = random.Random(seed)
    rows = [Fact(f.prompt, rng.choice(list(refusals)), id=f"refusal:{f.id or i}")
            for i, f in enumerate(forget)]
    try:
        return tokenize(rows, tokenizer, max_length=max_length)
    except ValueError as error:
        raise ValueError(f"refusal answers {list(refusals)} cannot be used with this model's "
                         f"tokenizer: {error}") from error


def _check_settings(spec: Any, overrides: dict[str, Any]) -> None:
    known = set(COMMON_DEFAULTS) | set(spec.defaults)
    unknown = sorted(set(overrides) - known)
    if not unknown:
        return
    elsewhere = sorted(k for k in unknown if any(k in m.defaults for m in METHODS.values()))
    if elsewhere:
        raise ValueError(f"setting(s) {elsewhere} do not apply to method {spec.name!r}; its "
                         f"settings: {sorted(known)}")
    raise ValueError(f"unknown setting(s) {unknown}; known for {spec.name!r}: {sorted(known)}")


def _split_recipe(method: Any, penalty: Any) -> tuple[Any, Any]:
    if isinstance(method, str) and ("+" in method or "(" in method):
        method = Recipe.from_dict({"label": method})
    if isinstance(method, Recipe):
        if penalty is not None:
            raise ValueError("method is a Recipe (which holds its penalties) and penalty is given "
                             "too: pass one or the other")
        return method.method, method.penalties or None
    return method, penalty


def unlearn(
    model: Any,
    forget: Iterable[Fact],
    retain: Iterable[Fact] | None = None,
    method: Any = "gd",
    penalty: Any = None,
    *,
    lr: float | str | None = None,
    max_steps: int | None = None,
    seed: int = 0,
    target_forget_accuracy: float | None = 0.0,
    metric: Metric | None = None,
    eval_retain: bool = True,
    progress: bool = True,
    inplace: bool = False,
    retain_loss: str | None = None,
    refusals: Sequence[str] | None = None,
    tolerance: float = 1e-6,
    tokenizer: Any = None,
    callbacks: Sequence[Any] = (),
    lr_grid: Sequence[float] | None = None,
    **settings: Any,
) -> UnlearnResult:
    """Unlearn ``forget`` from ``model`` with ``method``, plus any ``penalty``.

    Args:
        model: a TransformerLens bridge with a tokenizer (never modified unless ``inplace``).
        forget, retain: facts to remove and to keep (``retain`` may be None for ``"ga"``).
        method: a registered name (``"ga"``, ``"gd"``, ``"npo"``, ``"simnpo"``, ``"dpo"``,
            ``"rmu"``, or one you registered), a method object, a :class:`Recipe` or a recipe
            text such as ``"gd+ssiuu(1e-3)"``.
        penalty: None, one penalty (e.g. ``SSIUU(1e-3)``) or a sequence of them.
        lr: the learning rate (default: the method's), or ``"search"``: the lowest rate of
            ``lr_grid`` (default :data:`LR_GRID`) that reaches the target (:func:`search_lr`).
        max_steps, **settings: override the method's defaults (``METHODS[name].defaults`` and
            ``COMMON_DEFAULTS``): ``batch_size``, ``retain_batch_size``, ``eval_every``,
            ``weight_decay``, ``grad_clip``, ``warmup_steps``, and per method ``beta``,
            ``gamma``, ``retain_weight``, ``steering_scale``, ``layer``, ``steering_coef``.
        target_forget_accuracy: stop at the first evaluation with forget accuracy
            ``<= target + tolerance`` (None: always run ``max_steps``). A run that ends without
            reaching it warns, and its repr says so.
        metric: ``metric(model, facts) -> float`` used for the forget and retain accuracies in
            the history and by the stop rule (default: greedy answer accuracy).
        eval_retain: measure the retain accuracy at every evaluation (the default). False: only
            the forget accuracy, which the stop rule reads, so a run that is measured on its
            retain set afterwards anyway skips most of its evaluation cost (same steps, same
            weights; the history then holds no ``retain_accuracy``).
        retain_loss: one of the method's ``retain_losses`` (GD and co.: ``"nll"`` or ``"kl"``).
        refusals: refusal answers for methods that need them (DPO; default: three phrases).

    Returns:
        :class:`UnlearnResult` with the new model, the history and the settings used.
    """
    method, penalty = _split_recipe(method, penalty)
    if isinstance(lr, str):
        if lr != "search":
            raise ValueError(f"lr must be a number or 'search', got {lr!r}")
        return search_lr(model, forget, retain, method, penalty, grid=lr_grid,
                         max_steps=max_steps, seed=seed,
                         target_forget_accuracy=target_forget_accuracy, metric=metric,
                         progress=progress, inplace=inplace, retain_loss=retain_loss,
                         refusals=refusals, tolerance=tolerance, tokenizer=tokenizer,
                         callbacks=callbacks, **settings)
    if lr_grid is not None:
        raise ValueError("lr_grid is used with lr='search' only")
    spec = get_method(method)
    penalties = as_penalties(penalty)
    overrides = {k: v for k, v in {"max_steps": max_steps, "lr": lr}.items() if v is not None}
    overrides.update(settings)
    _check_settings(spec, overrides)
    hp = spec.settings(overrides)
    spec.check(hp, model)
    if retain_loss is None:
        retain_loss = spec.retain_losses[0] if spec.retain_losses else None
    elif retain_loss not in spec.retain_losses:
        raise ValueError(f"retain_loss of method {spec.name!r} must be one of "
                         f"{list(spec.retain_losses)}, got {retain_loss!r}")
    if target_forget_accuracy is not None and not 0 <= target_forget_accuracy <= 1:
        raise ValueError(f"target_forget_accuracy must be in [0, 1] or None, "
                         f"got {target_forget_accuracy}")
    if metric is not None and not callable(metric):
        raise ValueError(f"metric must be a callable (model, facts) -> float, got {metric!r}")
    forget_set = _facts(forget, "forget")
    retain_set = _facts(retain, "retain")
    if forget_set is None or len(forget_set) == 0:
        raise ValueError("forget is empty: there is nothing to unlearn")
    if retain_set is not None and len(retain_set) == 0:
        retain_set = None
    if spec.needs_retain and retain_set is None:
        raise ValueError(f"method {spec.name!r} needs a non-empty retain set")
    for p in penalties:
        if getattr(p, "needs_retain", False) and retain_set is None:
            raise ValueError(f"penalty {p.label} needs a non-empty retain set")
    names = [p.name for p in penalties]
    terms = [name if names.count(name) == 1 else f"{name}{i}" for i, name in enumerate(names)]
    if set(terms) & {"forget", "retain", "loss"}:
        raise ValueError(f"a penalty may not be named forget, retain or loss: {names}")
    tokenizer = get_tokenizer(model, tokenizer)
    forget_batch = batch_for(model, forget_set, tokenizer)
    retain_batch = batch_for(model, retain_set, tokenizer) if retain_set is not None else None
    refusal_batch = None
    if spec.needs_refusals:
        refusals = DEFAULT_REFUSALS if refusals is None else tuple(refusals)
        if not refusals or not all(isinstance(r, str) and r.strip() for r in refusals):
            raise ValueError(f"{spec.name} needs refusal answers: pass refusals=world.refusals "
                             f"or a list of non-empty strings")
        refusal_batch = _refusal_batch(forget_set, refusals, tokenizer, seed,
                                       getattr(model.cfg, "n_ctx", None))
    elif refusals is not None:
        raise ValueError(f"refusals are used by methods that need them (dpo); method "
                         f"{spec.name!r} does not")
    train = TrainSettings(lr=hp["lr"], max_steps=int(hp["max_steps"]),
                          batch_size=int(hp["batch_size"]),
                          batch_sizes={"retain": int(hp["retain_batch_size"])},
                          weight_decay=hp["weight_decay"], grad_clip=hp["grad_clip"],
                          warmup_steps=int(hp["warmup_steps"]), eval_every=int(hp["eval_every"]),
                          seed=seed)
    work = model if inplace else detached_copy(model)
    bound = [(term, p.bind(work, forget_batch, retain_batch))  # bad penalty settings fail here
             for term, p in zip(terms, penalties, strict=True)]
    # Validation done; from here on, work.
    reference = None
    if spec.needs_reference or retain_loss == "kl":
        reference = detached_copy(model)
        reference.requires_grad_(False)
        reference.eval()
    state = spec.prepare(Setup(model=model, forget=forget_batch, retain=retain_batch,
                               refusals=refusal_batch, reference=reference, settings=hp,
                               seed=seed))
    loss = UnlearningLoss(spec, hp, state, retain_loss=retain_loss, penalties=bound,
                          refusals=refusal_batch, reference=reference,
                          separate_retain=any(p.separate_retain for p in penalties))

    def evaluate(current: Any) -> dict[str, float]:
        if metric is None:
            metrics = {"forget_accuracy": accuracy(current, forget_batch)}
            if retain_batch is not None and eval_retain:
                metrics["retain_accuracy"] = accuracy(current, retain_batch)
            return metrics
        metrics = {"forget_accuracy": float(metric(current, forget_set))}
        if retain_set is not None and eval_retain:
            metrics["retain_accuracy"] = float(metric(current, retain_set))
        return metrics

    data = {"forget": forget_batch}
    if retain_batch is not None:
        data["retain"] = retain_batch
    stop = (at_most("forget_accuracy", target_forget_accuracy, tolerance)
            if target_forget_accuracy is not None else None)
    label = Recipe(spec, penalties).label
    new_model, history = finetune(work, loss, data, train, evaluate=evaluate, stop_when=stop,
                                  callbacks=callbacks, inplace=True, progress=progress,
                                  desc=f"unlearning ({label})")
    record = {"method": spec.name, "recipe": label, "retain_loss": retain_loss, "seed": seed,
              "target_forget_accuracy": target_forget_accuracy, "tolerance": tolerance,
              "metric": getattr(metric, "__name__", repr(metric)) if metric else "accuracy",
              "hyperparameters": hp, "train": train.to_dict(),
              "penalties": [{**p.to_dict(), **b.record()} for p, (_, b) in
                            zip(penalties, bound, strict=True)],
              "n_forget": len(forget_set), "n_retain": len(retain_set) if retain_set else 0}
    record.update(spec.record(state))
    if spec.needs_refusals:
        record["refusals"] = list(refusals)
    result = UnlearnResult(new_model, history, record)
    if result.reached_target is False:
        final = result.forget_accuracy
        warnings.warn(f"unlearning ({label}) stopped by {history.stopped_reason} after "
                      f"{result.steps} steps with forget accuracy "
                      f"{final if final is None else round(final, 4)}, above the target "
                      f"{target_forget_accuracy:g}: raise max_steps or lr, or use lr='search'",
                      RuntimeWarning, stacklevel=2)
    return result


def search_lr(model: Any, forget: Iterable[Fact], retain: Iterable[Fact] | None = None,
              method: Any = "gd", penalty: Any = None, *, grid: Sequence[float] | None = None,
              target_forget_accuracy: float | None = 0.0, **kwargs: Any) -> UnlearnResult:
    """The paper's rule: the lowest learning rate of ``grid`` that still reaches the target.

    Bisection over the sorted grid (reaching is taken as monotone in the rate): on a 3-rate grid
    2 runs, where a search from the top down needs up to 3. Returns the lowest reaching run,
    with ``settings["lr_search"]`` listing every rate tried (in order, with its process CPU
    seconds); when no rate reaches the target it warns and returns the highest rate's run.
    """
    grid = sorted({float(x) for x in (LR_GRID if grid is None else grid)}, reverse=True)
    if not grid or any(not (math.isfinite(x) and x > 0) for x in grid):
        raise ValueError(f"lr grid must hold positive finite learning rates, got {grid}")
    if target_forget_accuracy is None:
        raise ValueError("lr='search' needs a target_forget_accuracy to reach")
    rates = sorted(grid)
    tried: list[dict[str, Any]] = []
    best: UnlearnResult | None = None      # the lowest reaching run so far
    highest_miss: UnlearnResult | None = None
    low, high = 0, len(rates) - 1          # the answer lies in rates[low..high], or nowhere
    while low <= high:
        middle = (low + high) // 2
        start = time.process_time()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            result = unlearn(model, forget, retain, method, penalty, lr=rates[middle],
                             target_forget_accuracy=target_forget_accuracy, **kwargs)
        tried.append({"lr": rates[middle], "reached": bool(result.reached_target), "steps": result.steps,
                      "forget_accuracy": result.forget_accuracy,
                      "retain_accuracy": result.retain_accuracy,
                      "cpu_seconds": time.process_time() - start})
        if result.reached_target:
            best, high = result, middle - 1
        else:
            highest_miss = result if best is None else None
            low = middle + 1
    chosen = best if best is not None else highest_miss
    assert chosen is not None
    chosen.settings["lr_search"] = {
        "grid": grid, "tried": tried, "chosen": chosen.settings["hyperparameters"]["lr"],
        "rule": "lowest lr of the grid that reaches the target, by bisection over the sorted grid"}
    if best is None:
        warnings.warn(f"no learning rate of {grid} reached the target forget accuracy "
                      f"{target_forget_accuracy:g}; returning the run at lr {grid[0]:g}",
                      RuntimeWarning, stacklevel=2)
    return chosen
