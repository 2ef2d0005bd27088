"""The pipeline: facts -> organism -> unlearn -> diagnose -> attack, once, for every driver.

:class:`Pipeline` runs one seed of a :class:`~neuronscope.bench.presets.BenchConfig`: the
world's organism and its oracle twin (trained without the forget set), the forget-accuracy
target, unlearning with every method down to that target, optionally the diagnosis of each
unlearned model (attribution before and after, D+ / D-, flagged neurons) and the retraining
attacks on every unlearned model and, identically, on the oracle. What one seed made is a
:class:`SeedRun`; ``neuronscope demo`` (:mod:`neuronscope.bench.demo`) turns it into tables and
a report, the robustness benchmark (:mod:`neuronscope.bench.robustness`) into rows over seeds.
A :class:`Listener` hears each stage begin and end (stage messages, progress, checkpoints).

Example:
    >>> from neuronscope.bench.presets import DEMO_PRESETS
    >>> config = DEMO_PRESETS["tiny"].with_overrides(n_people=10, forget=0.4, diagnose=False,
    ...                                             unlearn={"max_steps": 5}, attack_steps=2)
    >>> run = Pipeline(config, progress=False).run(0)
    >>> sorted(run.unlearned), sorted(run.attacks)[0]
    (['ga', 'gd', 'gd+ssiuu(0.01)'], ('benign', 'ga'))
    >>> len(run.rows())            # (oracle + 3 methods) x 2 attacks
    8
"""

from __future__ import annotations

import random
import time
import warnings
from dataclasses import dataclass, field
from typing import Any

from neuronscope.attacks import RelearnResult, relearn
from neuronscope.attribution import NeuronAttribution, attribute
from neuronscope.bench.presets import BenchConfig
from neuronscope.diagnostics import Diagnosis, diagnose
from neuronscope.facts import FactSet
from neuronscope.organism import Organism, organism
from neuronscope.scoring import accuracy
from neuronscope.types import Model
from neuronscope.unlearning import Recipe, get_method, unlearn
from neuronscope.world import FactWorld

__all__ = ["STAGES", "Listener", "Pipeline", "SeedRun", "attack_label", "control_sample", "run_unlearning"]

STAGES = ("organism", "oracle", "unlearn", "diagnose", "attack")
"""The pipeline's stages, in order (``diagnose`` only with ``config.diagnose``)."""


def attack_label(attack: str, p: float | None) -> str:
    """``"harmful p=0.1"`` or ``"benign"``.

    Example:
        >>> attack_label("harmful", 0.3), attack_label("benign", None)
        ('harmful p=0.3', 'benign')
    """
    return f"harmful p={p:g}" if attack == "harmful" else "benign"


def control_sample(retain: FactSet, size: int | None, seed: int, how: str = "seeded") -> FactSet:
    """``size`` retain facts: a seeded random subset (``how="seeded"``) or the first ones
    (``"first"``); all of them when ``size`` is None or not smaller than the set.

    Example:
        >>> facts = FactWorld.synthetic(n_people=4).facts
        >>> len(control_sample(facts, 5, seed=0)), control_sample(facts, 3, 0, "first") == facts[:3]
        (5, True)
    """
    if size is None or size >= len(retain):
        return retain
    if how == "first":
        return FactSet(retain[:size], name="control")
    if how != "seeded":
        raise ValueError(f"how must be 'seeded' or 'first', got {how!r}")
    keep = set(random.Random(seed).sample(range(len(retain)), size))
    return FactSet([f for i, f in enumerate(retain) if i in keep], name="retain_sample")


def run_unlearning(model: Model, forget: FactSet, retain: FactSet, spec: Recipe, *, target: float,
                   seed: int, world: FactWorld, settings: dict[str, Any], progress: bool = False
                   ) -> tuple[Any, dict]:
    """Unlearn with recipe ``spec`` until forget accuracy <= ``target``; returns (model, summary).

    A missed target is not an error here: the summary's steps and the caller's row say so.
    """
    extra = dict(settings)
    if get_method(spec.method).needs_refusals:
        extra.setdefault("refusals", world.refusals)
    start = time.perf_counter()
    with warnings.catch_warnings():  # a missed target is recorded in the row (reached_target)
        warnings.simplefilter("ignore", RuntimeWarning)
        result = unlearn(model, forget, retain, method=spec, target_forget_accuracy=target,
                         seed=seed, progress=progress, **extra)
    seconds = time.perf_counter() - start
    history = result.history
    summary = {"unlearn_steps": history.n_steps, "stopped": history.stopped_reason,
               "unlearn_seconds": seconds}
    if "lr_search" in result.settings:
        summary["lr"] = result.settings["lr_search"]["chosen"]
    return result.bridge, summary


@dataclass
class SeedRun:
    """What one seed of the pipeline made.

    ``accuracy``: the organism's accuracy per split (all facts, forget, retain, held-out
    paraphrases, benign corpus). ``unit``: the seed's numbers for the benchmark (set sizes,
    target, chance, original and oracle accuracies). ``unlearned``/``summaries``: per method
    label, the unlearned bridge and its unlearning summary (steps, seconds, accuracies,
    reached_target); ``recipes``: the recipe of each label. ``before``/``after``/``diagnoses``:
    the diagnosis stage's attributions on forget + control facts and its :class:`Diagnosis`
    per method. ``oracle_attacks``: per
    attack label, the attack on the oracle; ``attacks``: per (attack label, method label), the
    attack on that method's model (its ``oracle`` is the oracle's run). ``seconds``: per stage.
    """

    seed: int
    world: FactWorld
    forget: FactSet
    retain: FactSet
    control: FactSet
    original: Organism
    oracle: Organism | None = None
    target: float = float("nan")
    accuracy: dict[str, float] = field(default_factory=dict)
    unit: dict[str, Any] = field(default_factory=dict)
    unlearned: dict[str, Any] = field(default_factory=dict)
    summaries: dict[str, dict] = field(default_factory=dict)
    before: NeuronAttribution | None = None
    after: dict[str, NeuronAttribution] = field(default_factory=dict)
    diagnoses: dict[str, Diagnosis] = field(default_factory=dict)
    oracle_attacks: dict[str, RelearnResult] = field(default_factory=dict)
    attacks: dict[tuple[str, str], RelearnResult] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    recipes: dict[str, Recipe] = field(default_factory=dict, repr=False)

    @property
    def methods(self) -> list[str]:
        """The method labels unlearned so far, in order."""
        return list(self.recipes)

    def rows(self) -> list[dict]:
        """One benchmark row per (model, attack) attacked so far: the oracle's, then each method's."""
        rows = [_row(self.seed, "oracle", None, label, run, float("nan"), self.unit, {})
                for label, run in self.oracle_attacks.items()]
        for (label, method), run in sorted(self.attacks.items(), key=self._method_order):
            rows.append(_row(self.seed, method, self.recipes[method], label, run,
                             self.oracle_attacks[label].attacked, self.unit, self.summaries[method]))
        return rows

    def curves(self) -> list[dict]:
        """Each attack's accuracy curve, in the order of :meth:`rows`."""
        curves = [curve for label, run in self.oracle_attacks.items()
                  for curve in _curve(self.seed, "oracle", label, run)]
        for (label, method), run in sorted(self.attacks.items(), key=self._method_order):
            curves += _curve(self.seed, method, label, run)
        return curves

    def _method_order(self, item: tuple[tuple[str, str], Any]) -> tuple[int, int]:
        (label, method), _ = item
        return self.methods.index(method), list(self.oracle_attacks).index(label)



class Listener:
    """Hears the pipeline's progress; every method is a no-op, override what you need.

    ``begin(stage, run)`` / ``end(stage, run)`` for each stage of :data:`STAGES` (``run`` is
    None when ``"organism"`` begins), and ``method_done(stage, label, run)`` after each method's
    unlearning (``"unlearn"``) and attacks (``"attack"``; ``label`` ``"oracle"`` for the oracle's).
    """

    def begin(self, stage: str, run: SeedRun | None) -> None:
        """A stage starts."""

    def end(self, stage: str, run: SeedRun) -> None:
        """A stage is done."""

    def method_done(self, stage: str, label: str, run: SeedRun) -> None:
        """One method (or the oracle) is through ``stage``."""


class Pipeline:
    """Runs the stages of ``config`` for one seed at a time (see the module docstring).

    ``cache``: the organism cache (True: the user cache; False: always train; or a folder).
    ``progress``: progress bars inside the stages (training, unlearning, attribution, attacks).
    """

    def __init__(self, config: BenchConfig, *, cache: bool | str = True, progress: bool = True,
                 listener: Listener | None = None) -> None:
        if not isinstance(config, BenchConfig):
            raise ValueError(f"config must be a BenchConfig, got {type(config).__name__}")
        for recipe in config.all_methods():  # recipes are checked when built; anything else fails here
            if not isinstance(recipe, Recipe):
                raise ValueError(f"pipeline methods must be recipes, got {recipe!r}")
        self.config, self.cache, self.progress = config, cache, progress
        self.listener = listener if listener is not None else Listener()
        self._world: FactWorld | None = None

    @property
    def world(self) -> FactWorld:
        """The synthetic world of ``config`` (``n_people``, ``world_seed``), built once."""
        if self._world is None:
            self._world = FactWorld.synthetic(n_people=self.config.n_people, seed=self.config.world_seed)
        return self._world

    def run(self, seed: int) -> SeedRun:
        """Every stage for ``seed``: organism, oracle, unlearn, (diagnose,) attack."""
        run = self._stage("organism", None, lambda _: self.organism(seed))
        self._stage("oracle", run, self.oracle)
        self._stage("unlearn", run, self.unlearn)
        if self.config.diagnose:
            self._stage("diagnose", run, self.diagnose)
        self._stage("attack", run, self.attack)
        return run

    def _stage(self, name: str, run: SeedRun | None, work: Any) -> SeedRun:
        self.listener.begin(name, run)
        start = time.perf_counter()
        made = work(run)
        run = made if run is None else run
        run.seconds[name] = time.perf_counter() - start
        self.listener.end(name, run)
        return run

    # --- the stages ------------------------------------------------------------------------
    def organism(self, seed: int) -> SeedRun:
        """The organism of ``seed``, the forget/retain split, the control facts and the
        organism's accuracy per split."""
        config, world = self.config, self.world
        original = organism(world, size=config.size, seed=seed, cache=self.cache, progress=self.progress)
        forget, retain = world.facts.split(forget=config.forget, by=config.forget_by, seed=seed)
        control = control_sample(retain, config.attack_retain_sample, seed, config.retain_sample)
        run = SeedRun(seed, world, forget, retain, control, original)
        splits = {"all facts": world.facts, "forget split": forget, "retain split": retain,
                  "paraphrases (held out)": world.paraphrases, "benign corpus": world.benign}
        run.accuracy = {name: float(accuracy(original.bridge, facts)) for name, facts in splits.items()}
        return run

    def oracle(self, run: SeedRun) -> None:
        """The oracle twin (never saw the forget facts) and the forget-accuracy target."""
        config, world = self.config, run.world
        run.oracle = organism(world, size=config.size, seed=run.seed, exclude=run.forget, cache=self.cache,
                              progress=self.progress)
        oracle_forget = float(accuracy(run.oracle.bridge, run.forget))
        chance = world.chance(run.forget)
        run.target = ({"oracle": oracle_forget, "chance": chance}[config.target]
                      if isinstance(config.target, str) else float(config.target))
        run.unit = {"seed": run.seed, "n_forget": len(run.forget), "n_retain": len(run.retain),
                    "target": run.target, "oracle_forget_accuracy": oracle_forget, "chance": chance,
                    "original_forget_accuracy": run.accuracy["forget split"],
                    "original_retain_accuracy": run.accuracy["retain split"],
                    "oracle_retain_accuracy": float(accuracy(run.oracle.bridge, run.retain))}

    def unlearn(self, run: SeedRun) -> None:
        """Every method, from the organism down to the target; accuracies after."""
        for spec in self.config.all_methods():
            bridge, summary = run_unlearning(run.original.bridge, run.forget, run.retain, spec,
                                             target=run.target, seed=run.seed, world=run.world,
                                             settings=self.config.settings_for(spec.method_name),
                                             progress=self.progress)
            summary["forget_accuracy"] = float(accuracy(bridge, run.forget))
            summary["retain_accuracy"] = float(accuracy(bridge, run.retain))
            summary["reached_target"] = summary["forget_accuracy"] <= run.target + 1e-6
            run.unlearned[spec.label], run.summaries[spec.label] = bridge, summary
            run.recipes[spec.label] = spec
            self.listener.method_done("unlearn", spec.label, run)

    def diagnose(self, run: SeedRun) -> None:
        """Attribution of log P on forget + control facts before and after each method, and the
        diagnosis of each method against the control facts.

        log P, not P: once unlearning has collapsed P(answer), attributions of P vanish and every
        change reads as erasing (docs/diagnostics.md). The flags are calibrated on the control facts.
        """
        config = self.config
        both = FactSet(list(run.forget) + list(run.control), name="forget+control")
        settings = dict(steps=config.attribution_steps, tolerance=config.attribution_tolerance,
                        target="logprob", progress=self.progress)
        run.before = attribute(run.original.bridge, both, **settings)
        run.after = {label: attribute(bridge, both, **settings) for label, bridge in run.unlearned.items()}
        run.diagnoses = {label: diagnose(run.before, run.after[label], run.forget, control=run.control,
                                         n_permutations=config.permutations, seed=run.seed,
                                         progress=self.progress)
                         for label in run.unlearned}

    def attack(self, run: SeedRun) -> None:
        """Each attack on the oracle, then on every unlearned model (the attacked models are
        not kept: ``bridge`` is None on the results)."""
        if run.oracle is None:
            raise ValueError("the attack stage needs the oracle stage first")
        for attack, p in self.config.attacks:
            result = self._relearn(run.oracle.bridge, run, attack, p)
            run.oracle_attacks[attack_label(attack, p)] = result
        self.listener.method_done("attack", "oracle", run)
        for label, bridge in run.unlearned.items():
            for attack, p in self.config.attacks:
                name = attack_label(attack, p)
                result = self._relearn(bridge, run, attack, p)
                result.oracle = run.oracle_attacks[name]
                run.attacks[(name, label)] = result
            self.listener.method_done("attack", label, run)

    def _relearn(self, bridge: Model, run: SeedRun, attack: str, p: float | None) -> RelearnResult:
        config = self.config
        result = relearn(bridge, attack=attack, forget=run.forget, retain=run.control,
                         p=p if p is not None else 0.3, by=config.attack_by, benign=run.world.benign,
                         steps=config.attack_steps, lr=config.attack_lr, batch_size=config.attack_batch_size,
                         eval_every=config.attack_eval_every, seed=run.seed, original=run.original.bridge,
                         progress=self.progress)
        result.bridge = None  # the attacked model: not needed, and it holds memory
        return result


def _row(seed: int, method: str, spec: Recipe | None, attack: str, run: RelearnResult, oracle_attacked: float,
         unit: dict, summary: dict) -> dict:
    metrics = run.metrics
    return {
        "seed": seed, "method": method,
        "base": spec.method_name if spec is not None else "oracle",
        "lambda": spec.lam if spec is not None else 0.0,
        "attack": attack, "target": unit["target"],
        "forget_accuracy": summary.get("forget_accuracy", unit["oracle_forget_accuracy"]),
        "retain_accuracy": summary.get("retain_accuracy", unit["oracle_retain_accuracy"]),
        "reached_target": summary.get("reached_target", True),
        "unlearn_steps": summary.get("unlearn_steps", 0),
        "unlearn_seconds": summary.get("unlearn_seconds", 0.0),
        "original": metrics.original, "unlearned": metrics.unlearned, "attacked": metrics.attacked,
        "oracle_attacked": oracle_attacked if spec is not None else metrics.attacked,
        "normalised_recovery": metrics.normalised_recovery,
        "excess_recovery": (metrics.attacked - oracle_attacked) if spec is not None else 0.0,
        "retain_after_attack": run.retain_after,
        "unlearn_lr": summary.get("lr"),
    }


def _curve(seed: int, method: str, attack: str, run: RelearnResult) -> list[dict]:
    return [{"seed": seed, "method": method, "attack": attack, "step": int(s), "accuracy": float(a),
             "retain_accuracy": float(r)}
            for s, a, r in zip(run.steps, run.eval_accuracy, run.retain_accuracy, strict=True)]
