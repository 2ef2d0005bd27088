"""``relearn``: the harmful and benign retraining attacks, on the shared fine-tuning loop.

Example:
    >>> from neuronscope import FactWorld
    >>> from neuronscope.tiny import tiny_model
    >>> world = FactWorld.synthetic(n_people=10)
    >>> forget, retain = world.facts.split(forget=0.5, seed=0)
    >>> unlearned = tiny_model(tokenizer=world.tokenizer, seed=1)    # stand-ins: untrained models
    >>> oracle = tiny_model(tokenizer=world.tokenizer, seed=2)
    >>> result = relearn(unlearned, attack="harmful", forget=forget, retain=retain, p=0.3,
    ...                  steps=4, eval_every=2, oracle=oracle, original=1.0, progress=False)
    >>> result.steps.tolist(), result.oracle.steps.tolist()
    ([0, 2, 4], [0, 2, 4])
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, Literal

import torch

from neuronscope.attacks.data import attack_plan
from neuronscope.attacks.result import RelearnResult
from neuronscope.facts import FactSet
from neuronscope.scoring import accuracy, answer_token_logprobs, batch_for
from neuronscope.tokenization import FactBatch
from neuronscope.training import IndexedBatch, TrainSettings, finetune

__all__ = ["DEFAULTS", "nll_loss", "relearn"]

# Attack defaults (documented in docs/attacks.md): a short fine-tune, a few epochs of part A.
DEFAULTS: dict[str, Any] = {"steps": 40, "lr": 3e-4, "batch_size": 16, "eval_every": 10}


def nll_loss(model: Any, batches: dict[str, IndexedBatch], step: int) -> dict[str, torch.Tensor]:
    """Mean negative log-likelihood of the answer tokens of the ``"train"`` minibatch."""
    rows = batches["train"]
    logp, mask = answer_token_logprobs(model(rows.tokens), rows)
    return {"loss": -logp.sum() / mask.sum()}


def _evaluator(evaluate: FactBatch, retain: FactBatch | None) -> Callable[[Any], dict[str, float]]:
    def run(model: Any) -> dict[str, float]:
        metrics = {"eval_accuracy": float(accuracy(model, evaluate))}
        metrics["retain_accuracy"] = float(accuracy(model, retain)) if retain is not None else float("nan")
        return metrics

    return run


def _check_positive(name: str, value: Any, kind: type) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0 or (
            kind is int and int(value) != value):
        raise ValueError(f"{name} must be a positive {kind.__name__}, got {value!r}")


def relearn(
    model: Any,
    *,
    attack: Literal["harmful", "benign"] = "harmful",
    forget: FactSet,
    retain: FactSet | None = None,
    p: float = 0.3,
    by: Literal["fact", "subject"] = "fact",
    benign: Any = None,
    split: tuple[FactSet, FactSet] | None = None,
    steps: int = DEFAULTS["steps"],
    lr: float = DEFAULTS["lr"],
    batch_size: int = DEFAULTS["batch_size"],
    eval_every: int = DEFAULTS["eval_every"],
    seed: int = 0,
    oracle: Any = None,
    original: Any = None,
    tokenizer: Any = None,
    inplace: bool = False,
    progress: bool = True,
) -> RelearnResult:
    """Run a retraining attack on ``model`` and record how much forgotten knowledge returns.

    ``attack="harmful"``: fine-tune on part A (fraction ``p`` of ``forget``, split ``by`` fact or
    subject with ``seed``; or ``split=(A, B)``) and measure accuracy on the disjoint part B.
    ``attack="benign"``: fine-tune on ``benign`` (a FactSet, a world, or a list of texts) and
    measure accuracy on the whole forget set. Both record retain accuracy (if ``retain`` is
    given) every ``eval_every`` steps. The loss is the mean NLL of the answer tokens.

    ``oracle``: a model that never learned the forget facts; the identical attack (same data,
    same seed) is run on it and stored as ``result.oracle`` (excess recovery). ``original``: the
    model before unlearning (or its accuracy on the evaluation facts, a float) for normalised
    recovery. The given models are never modified unless ``inplace=True`` (``model`` only).

    Example:
        >>> from neuronscope import FactWorld
        >>> from neuronscope.tiny import tiny_model
        >>> world = FactWorld.synthetic(n_people=10)
        >>> forget, retain = world.facts.split(forget=0.5, seed=0)
        >>> unlearned = tiny_model(tokenizer=world.tokenizer)          # a stand-in
        >>> r = relearn(unlearned, attack="benign", forget=forget, retain=retain,
        ...             benign=world.benign, steps=2, progress=False)
        >>> r.attack, 0.0 <= r.attacked <= 1.0
        ('benign', True)
    """
    plan = attack_plan(attack, forget, retain, p=p, by=by, seed=seed, benign=benign, split=split)
    for name, value, kind in (("steps", steps, int), ("lr", lr, float), ("batch_size", batch_size, int),
                              ("eval_every", eval_every, int)):
        _check_positive(name, value, kind)
    if isinstance(original, (int, float)) and not 0.0 <= float(original) <= 1.0:
        raise ValueError(f"original accuracy must be in [0, 1], got {original!r}")
    train_batch = batch_for(model, plan.train, tokenizer)
    eval_batch = batch_for(model, plan.evaluate, tokenizer)
    retain_batch = batch_for(model, plan.retain, tokenizer) if len(plan.retain) else None
    settings = TrainSettings(lr=float(lr), max_steps=int(steps), batch_size=int(batch_size),
                             eval_every=int(eval_every), seed=int(seed))
    meta = json.loads(json.dumps({"p": float(p) if attack == "harmful" and split is None else None,
            "by": by if attack == "harmful" else None, "seed": int(seed),
            "n_train": len(plan.train), "n_eval": len(plan.evaluate), "n_retain": len(plan.retain),
            "train": settings.to_dict()}))  # JSON-normalised, so save/load is lossless

    def run(target: Any, in_place: bool, label: str) -> RelearnResult:
        attacked, history = finetune(target, nll_loss, {"train": train_batch}, settings,
                                     evaluate=_evaluator(eval_batch, retain_batch), inplace=in_place,
                                     progress=progress, desc=f"{attack} attack ({label})")
        evals = history.evaluations
        losses = [r["loss"] for r in history.steps if r["step"] > 0 and "loss" in r]
        return RelearnResult(
            attack=attack,
            steps=torch.tensor([r["step"] for r in evals], dtype=torch.long),
            eval_accuracy=torch.tensor([r["eval_accuracy"] for r in evals], dtype=torch.float64),
            retain_accuracy=torch.tensor([r["retain_accuracy"] for r in evals], dtype=torch.float64),
            loss=torch.tensor(losses, dtype=torch.float64),
            train_ids=plan.train.ids, eval_ids=plan.evaluate.ids,
            settings={**meta, "stopped_reason": history.stopped_reason,
                      "seconds": history.seconds},
            model=attacked,
        )

    original_accuracy = None
    if original is not None:
        original_accuracy = float(original) if isinstance(original, (int, float)) else float(
            accuracy(original, eval_batch))
    result = run(model, inplace, "model")
    result.original_accuracy = original_accuracy
    if oracle is not None:
        oracle_result = run(oracle, False, "oracle")
        oracle_result.original_accuracy = original_accuracy
        oracle_result.model = None
        result.oracle = oracle_result
    return result
