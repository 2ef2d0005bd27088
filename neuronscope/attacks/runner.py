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
import random
from collections.abc import Callable, Sequence
from typing import Any, Literal

import torch

from neuronscope.attacks.data import attack_plan
from neuronscope.attacks.result import RelearnResult
from neuronscope.facts import FactSet
from neuronscope.scoring import accuracy, answer_token_logprobs, batch_for
from neuronscope.tokenization import FactBatch
from neuronscope.training import IndexedBatch, TrainSettings, finetune

__all__ = ["DEFAULTS", "POOLS", "REPORTS", "nll_loss", "per_fact_correct", "relearn", "wrong_pool_split"]

REPORTS = ("final", "max")
POOLS = ("all", "wrong")
Metric = Callable[[Any, FactSet], float]

# Attack defaults (documented in docs/attacks.md): a short fine-tune, a few epochs of part A.
DEFAULTS: dict[str, Any] = {"steps": 40, "lr": 3e-4, "batch_size": 16, "eval_every": 10}


def nll_loss(model: Any, batches: dict[str, IndexedBatch], step: int) -> dict[str, torch.Tensor]:
    """Mean negative log-likelihood of the answer tokens of the ``"train"`` minibatch."""
    rows = batches["train"]
    logp, mask = answer_token_logprobs(model(rows.tokens), rows)
    return {"loss": -logp.sum() / mask.sum()}


def _evaluator(evaluate: FactBatch | FactSet, retain: FactBatch | FactSet | None,
               metric: Metric | None) -> Callable[[Any], dict[str, float]]:
    score = metric if metric is not None else (lambda model, facts: float(accuracy(model, facts)))

    def run(model: Any) -> dict[str, float]:
        metrics = {"eval_accuracy": float(score(model, evaluate))}
        metrics["retain_accuracy"] = float(score(model, retain)) if retain is not None else float("nan")
        return metrics

    return run


class _SharedStart:
    """An evaluator whose step-0 result is computed once for all runs of a learning-rate grid:
    every run starts from the same model on the same data, so its step-0 scores are equal.
    ``finetune`` evaluates before its first update, so the first call of a run is step 0."""

    def __init__(self, evaluate: Callable[[Any], dict[str, float]]) -> None:
        self.evaluate, self.start, self.first_call = evaluate, None, True

    def new_run(self) -> None:
        self.first_call = True

    def __call__(self, model: Any) -> dict[str, float]:
        if not self.first_call:
            return self.evaluate(model)
        self.first_call = False
        if self.start is None:
            self.start = self.evaluate(model)
        return dict(self.start)


def per_fact_correct(model: Any, facts: FactSet, metric: Metric | None = None) -> torch.Tensor:
    """Which facts ``model`` answers right under ``metric`` (a bool per fact).

    Uses ``metric.per_fact(model, facts)`` where the metric offers it (``ns.mcqa_metric`` does),
    else the metric on one fact at a time; ``None`` is greedy exact match.
    """
    if metric is None:
        return accuracy(model, facts, per_fact=True)
    per_fact = getattr(metric, "per_fact", None)
    if per_fact is not None:
        return torch.as_tensor(per_fact(model, facts)).bool()
    return torch.tensor([float(metric(model, FactSet([fact]))) >= 1.0 for fact in facts])


def wrong_pool_split(model: Any, forget: FactSet, p: float, *, seed: int = 0,
                     metric: Metric | None = None) -> tuple[FactSet, FactSet]:
    """The harmful attack's ``(A, B)`` with A drawn only from forget facts ``model`` answers wrongly.

    ``A`` holds ``round(p * len(forget))`` facts (at least one; fewer when fewer are wrong),
    a seeded sample of the wrongly answered ones; ``B`` is the rest of the forget set.
    """
    if not isinstance(p, (int, float)) or not 0.0 < float(p) < 1.0:
        raise ValueError(f"p must be a fraction strictly between 0 and 1, got {p!r}")
    wrong = [i for i, right in enumerate(per_fact_correct(model, forget, metric).tolist()) if not right]
    if not wrong:
        raise ValueError("pool='wrong': the model answers every forget fact right, so the attack "
                         "pool is empty")
    size = min(len(wrong), max(1, round(p * len(forget))))
    if size >= len(forget):
        raise ValueError(f"pool='wrong' with p={p} over {len(forget)} forget facts leaves part B empty")
    chosen = set(random.Random(seed).sample(wrong, size))
    part_a = FactSet([f for i, f in enumerate(forget) if i in chosen], name="attack_A")
    part_b = FactSet([f for i, f in enumerate(forget) if i not in chosen], name="attack_B")
    return part_a, part_b


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
    lr: float | Sequence[float] = DEFAULTS["lr"],
    batch_size: int = DEFAULTS["batch_size"],
    eval_every: int = DEFAULTS["eval_every"],
    seed: int = 0,
    oracle: Any = None,
    original: Any = None,
    tokenizer: Any = None,
    metric: Metric | None = None,
    report: Literal["final", "max"] = "final",
    pool: Literal["all", "wrong"] = "all",
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

    Options of the paper's protocol:

    - ``lr``: one learning rate or a grid (a list): the attack runs once per learning rate and
      the run with the highest reported score is returned (the worst case for the defender);
      every run is in ``result.grid``;
    - ``report="max"``: ``result.attacked`` is the *maximum* evaluation score seen during
      retraining (after step 0), not the final one; ``eval_every=1`` samples every step;
    - ``pool="wrong"`` (harmful only): part A is drawn only from forget facts the attacked
      model answers wrongly (:func:`wrong_pool_split`); part B is the rest;
    - ``metric``: ``(model, facts) -> float`` used for every score (default greedy exact
      match), e.g. ``ns.mcqa_metric()``.

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
    if report not in REPORTS:
        raise ValueError(f"report must be one of {REPORTS}, got {report!r}")
    if pool not in POOLS:
        raise ValueError(f"pool must be one of {POOLS}, got {pool!r}")
    if pool == "wrong" and (attack != "harmful" or split is not None or by != "fact"):
        raise ValueError("pool='wrong' applies to the harmful attack split by fact, without split=")
    lrs = [lr] if isinstance(lr, (int, float)) else list(lr)
    if not lrs:
        raise ValueError("lr grid is empty")
    for name, value, kind in (("steps", steps, int), ("batch_size", batch_size, int),
                              ("eval_every", eval_every, int), *(("lr", v, float) for v in lrs)):
        _check_positive(name, value, kind)
    if isinstance(original, (int, float)) and not 0.0 <= float(original) <= 1.0:
        raise ValueError(f"original accuracy must be in [0, 1], got {original!r}")
    if metric is not None and not callable(metric):
        raise ValueError(f"metric must be a callable (model, facts) -> float, got {type(metric).__name__}")
    attack_plan(attack, forget, retain, p=p, by=by, seed=seed, benign=benign, split=split)  # validate
    if pool == "wrong":
        split = wrong_pool_split(model, FactSet(forget), p, seed=seed, metric=metric)
    plan = attack_plan(attack, forget, retain, p=p, by=by, seed=seed, benign=benign, split=split)
    train_batch = batch_for(model, plan.train, tokenizer)
    if metric is None:
        eval_data: Any = batch_for(model, plan.evaluate, tokenizer)
        retain_data: Any = batch_for(model, plan.retain, tokenizer) if len(plan.retain) else None
    else:
        eval_data, retain_data = plan.evaluate, (plan.retain if len(plan.retain) else None)
    meta = json.loads(json.dumps({"p": float(p) if attack == "harmful" and split is None else None,
            "by": by if attack == "harmful" else None, "seed": int(seed),
            "n_train": len(plan.train), "n_eval": len(plan.evaluate), "n_retain": len(plan.retain),
            "report": report, "pool": pool,
            "p_requested": float(p) if attack == "harmful" else None,
            "metric": getattr(metric, "__name__", type(metric).__name__) if metric else "accuracy",
            "lr_grid": [float(v) for v in lrs] if len(lrs) > 1 else None}))

    def run_grid(target: Any, in_place: bool, label: str) -> RelearnResult:
        runs = []
        evaluate = _SharedStart(_evaluator(eval_data, retain_data, metric))
        for value in lrs:
            settings = TrainSettings(lr=float(value), max_steps=int(steps), batch_size=int(batch_size),
                                     eval_every=int(eval_every), seed=int(seed))
            evaluate.new_run()
            runs.append(run(target, in_place and len(lrs) == 1, label, settings, evaluate))
        best = max(range(len(runs)), key=lambda i: (runs[i].attacked, -i))
        for index, result in enumerate(runs):
            if index != best:
                result.bridge = None
        chosen = runs[best]
        if len(runs) > 1:
            chosen.grid = runs
        return chosen

    def run(target: Any, in_place: bool, label: str, settings: TrainSettings,
            evaluate: Callable[[Any], dict[str, float]]) -> RelearnResult:
        attacked, history = finetune(target, nll_loss, {"train": train_batch}, settings,
                                     evaluate=evaluate,
                                     inplace=in_place, progress=progress,
                                     desc=f"{attack} attack ({label}, lr {settings.lr:g})")
        evals = history.evaluations
        losses = [r["loss"] for r in history.steps if r["step"] > 0 and "loss" in r]
        return RelearnResult(
            attack=attack,
            steps=torch.tensor([r["step"] for r in evals], dtype=torch.long),
            eval_accuracy=torch.tensor([r["eval_accuracy"] for r in evals], dtype=torch.float64),
            retain_accuracy=torch.tensor([r["retain_accuracy"] for r in evals], dtype=torch.float64),
            loss=torch.tensor(losses, dtype=torch.float64),
            train_ids=plan.train.ids, eval_ids=plan.evaluate.ids,
            settings={**meta, "train": settings.to_dict(), "stopped_reason": history.stopped_reason,
                      "seconds": history.seconds},
            bridge=attacked,
        )

    original_accuracy = None
    if original is not None:
        original_accuracy = float(original) if isinstance(original, (int, float)) else float(
            _evaluator(eval_data, None, metric)(original)["eval_accuracy"])
    result = run_grid(model, inplace, "model")
    result.original_accuracy = original_accuracy
    if oracle is not None:
        oracle_result = run_grid(oracle, False, "oracle")
        oracle_result.original_accuracy = original_accuracy
        oracle_result.bridge = None
        result.oracle = oracle_result
    return result
