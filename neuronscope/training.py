"""The one fine-tuning loop shared by unlearning and the retraining attacks.

``finetune(model, loss_fn, data, settings)`` draws seeded minibatches from each named fact
batch (``"forget"``, ``"retain"``, ...), calls ``loss_fn(model, batches, step)`` for a dict of
loss terms with a ``"loss"`` total, and runs AdamW with gradient clipping until
``settings.max_steps`` or until ``stop_when(metrics)`` holds for the metrics ``evaluate(model)``
returns every ``settings.eval_every`` steps.

Guarantees:

* The caller's model is never touched unless ``inplace=True`` (the loop trains a
  :func:`detached_copy` of it and returns that).
* Same seed, same minibatches, same weights (CPU).
* A non-finite loss or gradient stops the run *before* the optimiser step that would use it,
  so the returned model holds the weights of the last finite step; the history is marked
  (``non_finite=True``, ``stopped_reason="non_finite"``) and a ``RuntimeWarning`` is issued.
  Should the weights themselves have become non-finite (a callback, an overflow), they are
  restored from the snapshot taken at the last evaluation step whose weights were finite
  (``history.restored_step``; snapshots are CPU copies, taken only when
  ``settings.snapshot=True``, the default).

Example:
    >>> from neuronscope import FactWorld
    >>> from neuronscope.scoring import answer_token_logprobs, batch_for
    >>> from neuronscope.tiny import tiny_model
    >>> world = FactWorld.synthetic(n_people=10)
    >>> model = tiny_model(tokenizer=world.tokenizer)
    >>> def nll(model, batches, step):
    ...     rows = batches["train"]
    ...     logp, mask = answer_token_logprobs(model(rows.tokens), rows)
    ...     return {"loss": -logp.sum() / mask.sum()}
    >>> data = {"train": batch_for(model, world.facts)}
    >>> new, history = finetune(model, nll, data, TrainSettings(lr=1e-3, max_steps=20), progress=False)
    >>> history.n_steps, new is not model
    (20, True)
"""

from __future__ import annotations

import html
import json
import math
import os
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import torch
from jaxtyping import Int
from torch import Tensor

from neuronscope.facts import atomic_write_text
from neuronscope.hooks import model_device
from neuronscope.models import copy_model
from neuronscope.progress import progress_bar
from neuronscope.tokenization import FactBatch
from neuronscope.types import Model

__all__ = [
    "Callback",
    "EpochSampler",
    "EvalFn",
    "IndexedBatch",
    "LossFn",
    "MinibatchSampler",
    "Sampler",
    "TrainHistory",
    "TrainSettings",
    "at_most",
    "detached_copy",
    "finetune",
    "release_graph_tensors",
]


@dataclass
class IndexedBatch(FactBatch):
    """A minibatch of a named :class:`FactBatch` plus the row numbers it was drawn from.

    ``index[j]`` is the row of the full named batch that minibatch row ``j`` holds, so that
    losses can keep per-fact state (SSIUU's previous attributions, reference log-probs).
    """

    index: Int[Tensor, " fact"] | None = None

    def to(self, device: torch.device | str) -> IndexedBatch:
        moved = super().to(device)
        return IndexedBatch(moved.tokens, moved.attention_mask, moved.prompt_mask,
                            moved.answer_mask, index=self.index)


LossFn = Callable[[Any, dict[str, IndexedBatch], int], dict[str, Tensor]]
"""``loss_fn(model, batches, step) -> {"loss": total, "<term>": value, ...}`` (0-based step)."""
EvalFn = Callable[[Any], dict[str, float]]
"""``evaluate(model) -> {"forget_accuracy": ..., ...}``; called without gradients."""
Callback = Callable[[Any, dict], "bool | None"]
"""``callback(model, record)`` after every step; returning True stops the run."""
Sampler = Callable[[FactBatch, int, int, str], Any]
"""``sampler(batch, size, seed, name)``: an object whose ``next()`` returns the next
:class:`IndexedBatch` of ``batch`` (see :class:`MinibatchSampler`, :class:`EpochSampler`)."""


@dataclass
class TrainSettings:
    """Optimiser, batching and stopping settings of :func:`finetune`.

    ``batch_size`` applies to every named batch unless ``batch_sizes`` overrides it by name
    (e.g. ``{"retain": 64}``); a batch smaller than its batch size is used whole every step.
    ``eval_every`` counts optimiser steps; metrics are also taken before the first step and
    after the last. ``target_tolerance`` is for stopping rules that compare floats (see
    :func:`at_most`). ``train_mode=False`` keeps dropout off so runs are deterministic.

    Example:
        >>> TrainSettings(lr=1e-4, max_steps=50, batch_sizes={"retain": 64}).batch_size_for("retain")
        64
    """

    lr: float = 1e-3
    max_steps: int = 100
    batch_size: int = 32
    batch_sizes: dict[str, int] | None = None
    weight_decay: float = 0.0
    betas: tuple[float, float] = (0.9, 0.999)
    grad_clip: float | None = 1.0
    warmup_steps: int = 0
    eval_every: int = 10
    seed: int = 0
    train_mode: bool = False
    snapshot: bool = True

    def __post_init__(self) -> None:
        self.betas = tuple(float(b) for b in self.betas)  # type: ignore[assignment]
        checks = {
            "lr": self.lr > 0 and math.isfinite(self.lr),
            "max_steps": self.max_steps >= 0,
            "batch_size": self.batch_size >= 1,
            "weight_decay": self.weight_decay >= 0,
            "grad_clip": self.grad_clip is None or self.grad_clip > 0,
            "warmup_steps": self.warmup_steps >= 0,
            "eval_every": self.eval_every >= 1,
        }
        bad = [name for name, ok in checks.items() if not ok]
        if bad:
            raise ValueError(f"TrainSettings: bad value for {bad[0]}: {getattr(self, bad[0])!r}")
        for name, size in (self.batch_sizes or {}).items():
            if int(size) < 1:
                raise ValueError(f"TrainSettings: batch size of {name!r} must be >= 1, got {size}")

    def batch_size_for(self, name: str) -> int:
        return int((self.batch_sizes or {}).get(name, self.batch_size))

    def to_dict(self) -> dict:
        """Plain JSON-ready values (``betas`` as a list)."""
        record = asdict(self)
        record["betas"] = list(self.betas)
        return record

    @classmethod
    def from_dict(cls, record: Mapping[str, Any]) -> TrainSettings:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in record.items() if k in known})


def at_most(metric: str, target: float, tolerance: float = 1e-6) -> Callable[[dict], bool]:
    """A ``stop_when`` rule: stop once ``metrics[metric] <= target + tolerance``.

    Example:
        >>> at_most("forget_accuracy", 0.1)({"forget_accuracy": 0.1000000001})
        True
    """
    return lambda metrics: metric in metrics and metrics[metric] <= target + tolerance


class MinibatchSampler:
    """Seeded epoch-wise shuffling of one named batch; each name has its own generator.

    Rows are visited in a fresh random order every epoch; a minibatch that crosses an epoch
    boundary is completed from the next epoch's order (no row twice in one minibatch unless
    the batch is smaller than the minibatch, in which case the whole batch is used).
    """

    def __init__(self, batch: FactBatch, size: int, seed: int, name: str) -> None:
        self.batch, self.size, self.n = batch, int(size), len(batch)
        offset = int.from_bytes(name.encode()[:8].ljust(8, b"\0"), "little") % (2**31)
        self.generator = torch.Generator().manual_seed((int(seed) * 1_000_003 + offset) % (2**63))
        self.order = torch.empty(0, dtype=torch.long)
        self.position = 0

    def next(self) -> IndexedBatch:
        if self.size >= self.n:
            index = torch.arange(self.n)
        else:
            taken: list[Tensor] = []
            need = self.size
            while need:
                if self.position >= len(self.order):
                    self.order = torch.randperm(self.n, generator=self.generator)
                    self.position = 0
                part = self.order[self.position : self.position + need]
                self.position += len(part)
                need -= len(part)
                taken.append(part)
            index = torch.cat(taken)
        rows = self.batch[index]
        return IndexedBatch(rows.tokens, rows.attention_mask, rows.prompt_mask, rows.answer_mask,
                            index=index)


class EpochSampler:
    """Seeded epochs over one batch, cut in order: each epoch draws a fresh permutation (from one
    generator seeded with ``seed``; ``name`` is not used) and yields its consecutive slices of
    ``size`` rows, the last one smaller when ``size`` does not divide the batch, so an epoch is
    ``ceil(len(batch) / size)`` steps and visits every row once (the organism's training order).

    Example:
        >>> from neuronscope import FactWorld
        >>> from neuronscope.tokenization import tokenize
        >>> world = FactWorld.synthetic(n_people=2)
        >>> batch = tokenize(world.facts, world.tokenizer)            # 10 facts
        >>> sampler = EpochSampler(batch, 4, seed=0, name="train")
        >>> [len(sampler.next()) for _ in range(6)]
        [4, 4, 2, 4, 4, 2]
    """

    def __init__(self, batch: FactBatch, size: int, seed: int, name: str = "") -> None:
        self.batch, self.size, self.n = batch, int(size), len(batch)
        self.generator = torch.Generator().manual_seed(int(seed))
        self.order = torch.empty(0, dtype=torch.long)
        self.position = 0

    def next(self) -> IndexedBatch:
        if self.position >= len(self.order):
            self.order = torch.randperm(self.n, generator=self.generator)
            self.position = 0
        index = self.order[self.position : self.position + self.size]
        self.position += len(index)
        rows = self.batch[index]
        return IndexedBatch(rows.tokens, rows.attention_mask, rows.prompt_mask, rows.answer_mask,
                            pad_id=rows.pad_id, index=index)


@dataclass
class TrainHistory:
    """What happened in one :func:`finetune` run.

    ``steps`` holds one record per optimiser step (``step`` is 1-based: the number of updates
    applied so far) with every loss term, ``lr``, ``grad_norm``, ``seconds`` (wall time of the
    step), ``cpu_seconds`` (its process CPU time) and, at evaluation steps, the metrics of
    ``evaluate``. A record with ``step == 0`` holds
    the metrics before training. ``stopped_reason`` is one of ``"max_steps"``, ``"target"``,
    ``"non_finite"``, ``"callback"``.
    """

    steps: list[dict] = field(default_factory=list)
    stopped_reason: str = "max_steps"
    non_finite: bool = False
    settings: dict = field(default_factory=dict)
    seconds: float = 0.0
    restored_step: int | None = None

    @property
    def n_steps(self) -> int:
        """Optimiser updates applied."""
        return max((r["step"] for r in self.steps if r.get("updated", True)), default=0)

    @property
    def evaluations(self) -> list[dict]:
        """Only the records that carry evaluation metrics."""
        return [r for r in self.steps if r.get("evaluated")]

    @property
    def final_metrics(self) -> dict[str, float]:
        """The metrics of the last evaluation (empty without ``evaluate``)."""
        evals = self.evaluations
        if not evals:
            return {}
        skip = {"step", "evaluated", "updated", "seconds", "lr", "grad_norm"}
        return {k: v for k, v in evals[-1].items() if k not in skip and not k.startswith("loss")}

    def step_seconds(self, cpu: bool = False) -> list[float]:
        """Wall time (or, with ``cpu=True``, process CPU time: less sensitive to other
        processes on a shared machine) of each applied step, evaluation excluded."""
        key = "cpu_seconds" if cpu else "seconds"
        return [r[key] for r in self.steps if r["step"] > 0 and key in r]

    def to_pandas(self) -> Any:
        import pandas as pd

        return pd.DataFrame(self.steps)

    def to_dict(self) -> dict:
        return {"steps": self.steps, "stopped_reason": self.stopped_reason,
                "non_finite": self.non_finite, "settings": self.settings, "seconds": self.seconds,
                "restored_step": self.restored_step}

    @classmethod
    def from_dict(cls, record: Mapping[str, Any]) -> TrainHistory:
        return cls(steps=[dict(r) for r in record["steps"]],
                   stopped_reason=record["stopped_reason"], non_finite=record["non_finite"],
                   settings=dict(record.get("settings", {})), seconds=record.get("seconds", 0.0),
                   restored_step=record.get("restored_step"))

    def save(self, path: str | os.PathLike) -> None:
        """Write as JSON, atomically (non-finite floats are kept as JSON ``NaN``/``Infinity``)."""
        atomic_write_text(path, json.dumps(self.to_dict(), indent=1))

    @classmethod
    def load(cls, path: str | os.PathLike) -> TrainHistory:
        with open(path, encoding="utf-8") as handle:
            return cls.from_dict(json.load(handle))

    def __repr__(self) -> str:
        metrics = ", ".join(f"{k}={v:.3g}" for k, v in self.final_metrics.items()
                            if isinstance(v, (int, float)))
        return (f"TrainHistory({self.n_steps} steps, stopped: {self.stopped_reason}, "
                f"{self.seconds:.1f} s{', ' + metrics if metrics else ''})")

    def _repr_html_(self) -> str:
        rows = "".join(f"<tr><td>{html.escape(str(k))}</td><td>{v:.4g}</td></tr>"
                       for k, v in self.final_metrics.items() if isinstance(v, (int, float)))
        flag = " <b>(non-finite loss)</b>" if self.non_finite else ""
        return (f"<div><b>TrainHistory</b>: {self.n_steps} steps, stopped by "
                f"{html.escape(self.stopped_reason)}{flag}, {self.seconds:.1f} s"
                f"<table>{rows}</table></div>")


def detached_copy(model: Model) -> Any:
    """Alias of :func:`neuronscope.models.copy_model` (kept for callers of this name)."""
    return copy_model(model)


def release_graph_tensors(model: Model) -> None:
    """Detach tensors that bridge modules keep from their last forward (e.g. the attention
    pattern); after a pass with gradients they pin the autograd graph (memory) and make the
    model impossible to ``deepcopy``."""
    for module in model.modules():
        for name, value in list(vars(module).items()):
            if isinstance(value, torch.Tensor) and value.grad_fn is not None:
                setattr(module, name, value.detach())


def _check_data(data: Mapping[str, FactBatch]) -> None:
    if not data:
        raise ValueError("finetune needs at least one named batch in data")
    for name, batch in data.items():
        if not isinstance(batch, FactBatch):
            raise ValueError(f"data[{name!r}] must be a FactBatch (see tokenize/batch_for), "
                             f"got {type(batch).__name__}")
        if len(batch) == 0:
            raise ValueError(f"data[{name!r}] is empty")


def _evaluate(model: Model, evaluate: EvalFn | None) -> dict[str, float]:
    if evaluate is None:
        return {}
    with torch.no_grad():
        return {k: float(v) for k, v in evaluate(model).items()}


def _finite(value: Tensor) -> bool:
    return bool(torch.isfinite(value).all())


def _snapshot(params: Sequence[Tensor]) -> list[Tensor] | None:
    """CPU copies of ``params``, or None when any is non-finite."""
    if not all(_finite(p) for p in params):
        return None
    return [p.detach().to("cpu", copy=True) for p in params]


def finetune(
    model: Model,
    loss_fn: LossFn,
    data: Mapping[str, FactBatch],
    settings: TrainSettings | None = None,
    *,
    evaluate: EvalFn | None = None,
    stop_when: Callable[[dict], bool] | None = None,
    callbacks: Sequence[Callback] = (),
    inplace: bool = False,
    progress: bool = True,
    desc: str = "fine-tuning",
    unit: str = "step",
    sampler: Sampler = MinibatchSampler,
    lr_schedule: Callable[[int], float] | None = None,
) -> tuple[Any, TrainHistory]:
    """Fine-tune ``model`` on ``loss_fn`` over seeded minibatches of ``data``.

    Each step draws a minibatch from every named batch in ``data`` (moved to the model's
    device; see :class:`IndexedBatch`), calls ``loss_fn(model, batches, step)``, which returns
    ``{"loss": total, ...named terms}``, and applies one AdamW update (linear warm-up over
    ``warmup_steps``, then constant learning rate; gradient norm clipped to ``grad_clip``).
    Every ``eval_every`` steps (and before the first step) ``evaluate(model)`` is recorded and
    the run stops when ``stop_when(metrics)`` is true (use :func:`at_most` to compare with a
    tolerance). Returns ``(model, history)``; the model is a copy unless ``inplace=True``.

    ``sampler`` draws the minibatches (default :class:`MinibatchSampler`; :class:`EpochSampler`
    for plain epochs); ``lr_schedule(step)``, if given, is the factor of ``settings.lr`` at
    0-based ``step`` in place of the warm-up. ``desc``/``unit`` label the progress bar.

    Example:
        >>> from neuronscope import FactWorld, accuracy
        >>> from neuronscope.scoring import answer_token_logprobs, batch_for
        >>> from neuronscope.tiny import tiny_model
        >>> world = FactWorld.synthetic(n_people=10)
        >>> model = tiny_model(tokenizer=world.tokenizer)
        >>> def learn(model, batches, step):
        ...     logp, mask = answer_token_logprobs(model(batches["train"].tokens), batches["train"])
        ...     return {"loss": -logp.sum() / mask.sum()}
        >>> new, hist = finetune(model, learn, {"train": batch_for(model, world.facts)},
        ...                      TrainSettings(lr=3e-3, max_steps=300, eval_every=10),
        ...                      evaluate=lambda m: {"accuracy": accuracy(m, world.facts)},
        ...                      stop_when=lambda metrics: metrics["accuracy"] >= 0.5, progress=False)
        >>> hist.stopped_reason, hist.final_metrics["accuracy"] >= 0.5
        ('target', True)
    """
    settings = settings if settings is not None else TrainSettings()
    _check_data(data)
    if stop_when is not None and evaluate is None:
        raise ValueError("stop_when needs evaluate: the stopping rule reads evaluation metrics")
    model = model if inplace else detached_copy(model)
    device = model_device(model)
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("the model has no trainable parameters (requires_grad is False everywhere)")
    was_training = model.training
    model.train(settings.train_mode)
    samplers = {name: sampler(batch, settings.batch_size_for(name), settings.seed, name)
                for name, batch in data.items()}
    optimizer = torch.optim.AdamW(params, lr=settings.lr, weight_decay=settings.weight_decay,
                                  betas=settings.betas)
    history = TrainHistory(settings=settings.to_dict())
    start = time.perf_counter()
    bar = progress_bar(total=settings.max_steps, desc=desc, unit=unit, enabled=progress, leave=False)
    try:
        metrics = _evaluate(model, evaluate)
        history.steps.append({"step": 0, "evaluated": evaluate is not None, **metrics})
        saved = (0, _snapshot(params)) if settings.snapshot else None
        if stop_when is not None and stop_when(metrics):
            history.stopped_reason = "target"
            return model, history
        for step in range(settings.max_steps):
            tick, cpu_tick = time.perf_counter(), time.process_time()
            if lr_schedule is not None:
                lr = settings.lr * lr_schedule(step)
            else:
                lr = settings.lr * min(1.0, (step + 1) / settings.warmup_steps) \
                    if settings.warmup_steps else settings.lr
            for group in optimizer.param_groups:
                group["lr"] = lr
            batches = {name: sampler.next().to(device) for name, sampler in samplers.items()}
            optimizer.zero_grad(set_to_none=True)
            terms = loss_fn(model, batches, step)
            if "loss" not in terms:
                raise ValueError(f"loss_fn must return a dict with a 'loss' entry, got {sorted(terms)}")
            loss = terms["loss"]
            record: dict[str, Any] = {"step": step + 1, "lr": lr}
            record.update({f"loss_{k}" if k != "loss" else "loss": float(v.detach())
                           for k, v in terms.items()})
            stop = not _finite(loss)
            if not stop:
                loss.backward()
                norm = torch.nn.utils.clip_grad_norm_(
                    params, settings.grad_clip if settings.grad_clip is not None else math.inf)
                record["grad_norm"] = float(norm)
                stop = not math.isfinite(record["grad_norm"])
            if stop:
                optimizer.zero_grad(set_to_none=True)
                record["updated"] = False
                history.steps.append(record)
                history.non_finite, history.stopped_reason = True, "non_finite"
                kept = f"the model keeps the weights after step {step}"
                if not all(_finite(p) for p in params):
                    if saved is None or saved[1] is None:
                        kept = "the weights are non-finite and no finite snapshot exists"
                    else:
                        with torch.no_grad():
                            for p, value in zip(params, saved[1], strict=True):
                                p.copy_(value.to(p.device))
                        history.restored_step = saved[0]
                        kept = f"the weights were non-finite: restored those after step {saved[0]}"
                warnings.warn(f"non-finite loss or gradient at step {step + 1}; stopped before "
                              f"applying it; {kept}", RuntimeWarning, stacklevel=2)
                break
            optimizer.step()
            record["seconds"] = time.perf_counter() - tick
            record["cpu_seconds"] = time.process_time() - cpu_tick
            bar.update(1)
            bar.set_postfix(loss=f"{record['loss']:.3g}")
            is_last = step + 1 == settings.max_steps
            if (step + 1) % settings.eval_every == 0 or is_last:
                record["evaluated"] = evaluate is not None
                record.update(_evaluate(model, evaluate))
                if settings.snapshot:
                    latest = _snapshot(params)
                    if latest is not None:
                        saved = (step + 1, latest)
            history.steps.append(record)
            if record.get("evaluated") and stop_when is not None and stop_when(record):
                history.stopped_reason = "target"
                break
            if any([bool(callback(model, record)) for callback in callbacks]):
                history.stopped_reason = "callback"
                break
    finally:
        bar.close()
        optimizer.zero_grad(set_to_none=True)
        model.train(was_training)
        release_graph_tensors(model)
        history.seconds = time.perf_counter() - start
    return model, history
