"""``unlearn(model, forget, retain, method=..., ssiuu=...)``: one entry point for every method.

Example:
    >>> from neuronscope import FactWorld
    >>> from neuronscope.tiny import tiny_model
    >>> world = FactWorld.synthetic(n_people=10)
    >>> forget, retain = world.facts.split(forget=0.5, seed=0)            # whole families
    >>> model = tiny_model(tokenizer=world.tokenizer)                     # or ns.organism(world).bridge
    >>> result = unlearn(model, forget, retain, method="npo", ssiuu=SSIUU(1e-3), max_steps=3,
    ...                  progress=False)
    >>> {"forget_accuracy", "retain_accuracy"} <= set(result.history.final_metrics)
    True
"""

from __future__ import annotations

import html
import json
import os
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from neuronscope.atomic import atomic_torch_save
from neuronscope.deprecation import DeprecatedAlias
from neuronscope.facts import Fact, FactSet, atomic_write_text
from neuronscope.hooks import check_layers, model_device
from neuronscope.scoring import accuracy, answer_logprob, batch_for, get_tokenizer
from neuronscope.tokenization import FactBatch, tokenize
from neuronscope.training import (
    TrainHistory,
    TrainSettings,
    at_most,
    detached_copy,
    finetune,
)
from neuronscope.unlearning.forward import forward
from neuronscope.unlearning.methods import (
    COMMON_DEFAULTS,
    METHOD_KEYS,
    METHODS,
    RETAIN_LOSSES,
    UnlearningLoss,
    rmu_hook,
)
from neuronscope.unlearning.ssiuu import SSIUU, NeuronPenalty

__all__ = ["UnlearnResult", "unlearn"]

DEFAULT_REFUSALS = ("I do not know", "I cannot say", "that is unknown to me")


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

    def to_pandas(self) -> Any:
        """The per-step history (one row per step) with the method and SSIUU settings added."""
        frame = self.history.to_pandas()
        frame["method"] = self.settings.get("method")
        frame["ssiuu_lam"] = (self.settings.get("ssiuu") or {}).get("lam", 0.0)
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
        ssiuu = self.settings.get("ssiuu")
        tag = f" + SSIUU(lam={ssiuu['lam']:g}, {ssiuu['level']})" if ssiuu else ""
        acc = ", ".join(f"{k}={v:.3f}" for k, v in (("forget_accuracy", self.forget_accuracy),
                                                     ("retain_accuracy", self.retain_accuracy))
                        if v is not None)
        return (f"UnlearnResult({self.settings.get('method')}{tag}: {self.steps} steps, "
                f"stopped: {self.history.stopped_reason}{', ' + acc if acc else ''})")

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


def _check_settings(method: str, overrides: dict[str, Any]) -> None:
    known = set(COMMON_DEFAULTS) | METHOD_KEYS
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise ValueError(f"unknown setting(s) {unknown}; known: {sorted(known)}")
    extra = sorted((set(overrides) & METHOD_KEYS) - set(METHODS[method].defaults))
    if extra:
        raise ValueError(f"setting(s) {extra} do not apply to method {method!r}")


def _rmu_target(model: Any, forget: FactBatch, layer: int, coef: float | None, scale: float,
                seed: int) -> tuple[torch.Tensor, float]:
    """``c * u``: ``u`` a seeded random unit vector (uniform entries, then normalised, as in the
    RMU paper); ``c`` = ``coef`` or ``scale`` x the mean residual norm of the original model at
    that layer on the forget tokens."""
    d_model = int(model.cfg.d_model)
    generator = torch.Generator().manual_seed(seed)
    u = torch.rand(d_model, generator=generator, dtype=torch.float64)
    u = (u / u.norm()).to(next(model.parameters()).dtype)
    if coef is None:
        with torch.no_grad():
            resid = forward(model, forget.to(model_device(model)), [rmu_hook(layer)]).acts[
                rmu_hook(layer)]
        norms = resid.norm(dim=-1)[forget.attention_mask.to(resid.device)]
        coef = float(scale * norms.mean())
    return (coef * u).to(model_device(model)), float(coef)


def unlearn(
    model: Any,
    forget: Iterable[Fact],
    retain: Iterable[Fact] | None = None,
    method: str = "gd",
    ssiuu: SSIUU | None = None,
    *,
    retain_loss: str | None = None,
    refusals: Sequence[str] | None = None,
    layer: int | None = None,
    steering_coef: float | None = None,
    max_steps: int | None = None,
    lr: float | None = None,
    target_forget_accuracy: float | None = 0.0,
    tolerance: float = 1e-6,
    seed: int = 0,
    tokenizer: Any = None,
    callbacks: Sequence[Any] = (),
    progress: bool = True,
    inplace: bool = False,
    **settings: Any,
) -> UnlearnResult:
    """Unlearn ``forget`` from ``model`` with ``method`` (optionally regularised by ``ssiuu``).

    Args:
        model: a TransformerLens bridge with a tokenizer (never modified unless ``inplace``).
        forget, retain: facts to remove and to keep (``retain`` may be None for ``"ga"``).
        method: ``"ga"``, ``"gd"``, ``"npo"``, ``"simnpo"``, ``"dpo"`` or ``"rmu"``.
        ssiuu: an :class:`SSIUU` to add its penalty, or None.
        retain_loss: ``"nll"`` or ``"kl"`` (to the frozen original); RMU uses ``"activations"``.
        refusals: DPO's preferred answers (default: the synthetic world's refusal phrases).
        layer, steering_coef: RMU's residual layer (default: the middle) and ``c`` (default:
            ``steering_scale`` x the original's mean residual norm there).
        max_steps, lr, **settings: override the method's defaults (see ``METHODS`` and
            ``docs/unlearning.md``): ``batch_size``, ``retain_batch_size``, ``eval_every``,
            ``weight_decay``, ``grad_clip``, ``warmup_steps``, ``beta``, ``gamma``,
            ``retain_weight``, ``steering_scale``.
        target_forget_accuracy: stop at the first evaluation with forget accuracy
            ``<= target + tolerance`` (None: always run ``max_steps``).

    Returns:
        :class:`UnlearnResult` with the new model, the history and the settings used.

    Example:
        >>> from neuronscope import FactWorld
        >>> from neuronscope.tiny import tiny_model
        >>> world = FactWorld.synthetic(n_people=10)
        >>> forget, retain = world.facts.split(forget=0.5, seed=0)
        >>> res = unlearn(tiny_model(tokenizer=world.tokenizer), forget, retain, method="gd",
        ...               max_steps=2, progress=False)
        >>> res.settings["method"], res.steps
        ('gd', 2)
    """
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; expected one of {sorted(METHODS)}")
    spec = METHODS[method]
    if ssiuu is not None and not isinstance(ssiuu, SSIUU):
        raise ValueError(f"ssiuu must be an SSIUU(...) or None, got {type(ssiuu).__name__}")
    if ssiuu is not None:
        ssiuu.reuses_gradient(method)  # gradient="reuse" with a method it cannot serve: fail now
    overrides = {k: v for k, v in {"max_steps": max_steps, "lr": lr}.items() if v is not None}
    overrides.update(settings)
    _check_settings(method, overrides)
    hp = spec.settings(overrides)
    if retain_loss is None:
        retain_loss = spec.retain_loss
    elif method == "rmu" and retain_loss != "activations":
        raise ValueError("rmu's retain term is 'activations' (the residual of the frozen original)")
    elif retain_loss not in RETAIN_LOSSES[:2]:
        raise ValueError(f"retain_loss must be 'nll' or 'kl', got {retain_loss!r}")
    if method != "rmu" and (layer is not None or steering_coef is not None):
        raise ValueError("layer and steering_coef are RMU settings; method is " + repr(method))
    if target_forget_accuracy is not None and not 0 <= target_forget_accuracy <= 1:
        raise ValueError(f"target_forget_accuracy must be in [0, 1] or None, "
                         f"got {target_forget_accuracy}")
    forget_set = _facts(forget, "forget")
    retain_set = _facts(retain, "retain")
    if forget_set is None or len(forget_set) == 0:
        raise ValueError("forget is empty: there is nothing to unlearn")
    if spec.needs_retain and (retain_set is None or len(retain_set) == 0):
        raise ValueError(f"method {method!r} needs a non-empty retain set")
    if retain_set is not None and len(retain_set) == 0:
        retain_set = None
    tokenizer = get_tokenizer(model, tokenizer)
    forget_batch = batch_for(model, forget_set, tokenizer)
    retain_batch = batch_for(model, retain_set, tokenizer) if retain_set is not None else None
    refusal_batch = None
    if spec.uses_refusals:
        refusals = DEFAULT_REFUSALS if refusals is None else tuple(refusals)
        if not refusals or not all(isinstance(r, str) and r.strip() for r in refusals):
            raise ValueError("dpo needs refusal answers: pass refusals=world.refusals or a list "
                             "of non-empty strings")
        refusal_batch = _refusal_batch(forget_set, refusals, tokenizer, seed,
                                       getattr(model.cfg, "n_ctx", None))
    elif refusals is not None:
        raise ValueError(f"refusals are used by dpo only; method is {method!r}")
    rmu_layer = None
    if method == "rmu":
        rmu_layer = int(model.cfg.n_layers) // 2 if layer is None else layer
        check_layers(model, [rmu_layer])
        if rmu_hook(rmu_layer) not in model.hook_dict:
            raise ValueError(f"model has no residual hook {rmu_hook(rmu_layer)!r} for RMU")
        if steering_coef is not None and not steering_coef > 0:
            raise ValueError(f"steering_coef must be > 0, got {steering_coef}")
    train = TrainSettings(lr=hp["lr"], max_steps=int(hp["max_steps"]),
                          batch_size=int(hp["batch_size"]),
                          batch_sizes={"retain": int(hp["retain_batch_size"])},
                          weight_decay=hp["weight_decay"], grad_clip=hp["grad_clip"],
                          warmup_steps=int(hp["warmup_steps"]), eval_every=int(hp["eval_every"]),
                          seed=seed)
    # Validation done; from here on, work.
    device = model_device(model)
    ref_forget = ref_refusal = reference = rmu_target = None
    if spec.uses_reference_logprob:
        ref_forget = answer_logprob(model, forget_batch).to(device)
        if refusal_batch is not None:
            ref_refusal = answer_logprob(model, refusal_batch).to(device)
    if retain_loss in ("kl", "activations"):
        reference = detached_copy(model)
        reference.requires_grad_(False)
        reference.eval()
    coef = None
    if method == "rmu":
        rmu_target, coef = _rmu_target(model, forget_batch, rmu_layer, steering_coef,
                                       float(hp["steering_scale"]), seed)
    work = model if inplace else detached_copy(model)
    penalty = ssiuu.build(work, forget_batch, method) if ssiuu is not None else None
    loss = UnlearningLoss(spec, hp, retain_loss=retain_loss, penalty=penalty,
                          ref_forget=ref_forget, ref_refusal=ref_refusal, refusals=refusal_batch,
                          reference=reference, rmu_layer=rmu_layer, rmu_target=rmu_target)

    def evaluate(current: Any) -> dict[str, float]:
        metrics = {"forget_accuracy": accuracy(current, forget_batch)}
        if retain_batch is not None:
            metrics["retain_accuracy"] = accuracy(current, retain_batch)
        return metrics

    data = {"forget": forget_batch}
    if retain_batch is not None:
        data["retain"] = retain_batch
    stop = (at_most("forget_accuracy", target_forget_accuracy, tolerance)
            if target_forget_accuracy is not None else None)
    new_model, history = finetune(work, loss, data, train, evaluate=evaluate, stop_when=stop,
                                  callbacks=callbacks, inplace=True, progress=progress,
                                  desc=f"unlearning ({method}{' + SSIUU' if ssiuu else ''})")
    record = {"method": method, "retain_loss": retain_loss, "seed": seed,
              "target_forget_accuracy": target_forget_accuracy, "tolerance": tolerance,
              "hyperparameters": hp, "train": train.to_dict(),
              "ssiuu": ssiuu.to_dict() if ssiuu is not None else None,
              "n_forget": len(forget_set), "n_retain": len(retain_set) if retain_set else 0}
    if method == "dpo":
        record["refusals"] = list(refusals)
    if method == "rmu":
        record.update(rmu_layer=rmu_layer, steering_coef=coef)
    if isinstance(penalty, NeuronPenalty):  # where g came from (see SSIUU's gradient)
        record["ssiuu_gradient"] = {
            "reused": ssiuu.reuses_gradient(method),
            "switched_to_exact_after_step": penalty.switched_at,
            "checked_at_steps": list(penalty.checked_steps),
            "last_reuse_error": list(penalty.reuse_error),
            "last_drift": list(penalty.drift)}
    return UnlearnResult(new_model, history, record)
