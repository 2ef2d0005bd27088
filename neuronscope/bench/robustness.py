"""The robustness benchmark: methods x attacks x seeds, each method unlearned to one target.

For each seed: build the world's organism and its oracle (trained without the forget set),
set the forget-accuracy target (by default the oracle's own accuracy on the forget facts:
the level of a model that never learned them), unlearn with every method until that target,
then run each retraining attack on the unlearned model and the identical attack on the oracle.

Example (a few minutes on one CPU thread)::

    result = robustness("fast")
    print(result.table())
    result.save("bench-out")
"""

from __future__ import annotations

import math
import platform
import random
import time
import warnings
from pathlib import Path
from typing import Any

import torch

from neuronscope.attacks import relearn
from neuronscope.bench.presets import PRESETS, BenchConfig
from neuronscope.bench.real import run_real
from neuronscope.bench.result import RobustnessResult
from neuronscope.facts import FactSet
from neuronscope.organism import organism
from neuronscope.plots.robustness import save_benchmark_figures
from neuronscope.progress import progress_bar
from neuronscope.scoring import accuracy
from neuronscope.unlearning import Recipe, get_method, unlearn
from neuronscope.world import FactWorld

__all__ = ["attack_label", "robustness", "run_unlearning"]


def attack_label(attack: str, p: float | None) -> str:
    """``"harmful p=0.1"`` or ``"benign"``."""
    return f"harmful p={p:g}" if attack == "harmful" else "benign"


def run_unlearning(model: Any, forget: FactSet, retain: FactSet, spec: Recipe, *, target: float,
                   seed: int, world: FactWorld, settings: dict[str, Any]) -> tuple[Any, dict]:
    """Unlearn with recipe ``spec`` until forget accuracy <= ``target``; returns (model, summary)."""
    extra = dict(settings)
    if get_method(spec.method).needs_refusals:
        extra.setdefault("refusals", world.refusals)
    start = time.perf_counter()
    with warnings.catch_warnings():  # a missed target is recorded in the row (reached_target)
        warnings.simplefilter("ignore", RuntimeWarning)
        result = unlearn(model, forget, retain, method=spec, target_forget_accuracy=target,
                         seed=seed, progress=False, **extra)
    seconds = time.perf_counter() - start
    history = result.history
    summary = {"unlearn_steps": history.n_steps, "stopped": history.stopped_reason,
               "unlearn_seconds": seconds}
    if "lr_search" in result.settings:
        summary["lr"] = result.settings["lr_search"]["chosen"]
    return result.bridge, summary


def _oracle_runs(oracle: Any, forget: FactSet, retain: FactSet, config: BenchConfig, seed: int,
                 world: FactWorld, original: Any) -> dict[str, Any]:
    runs = {}
    for attack, p in config.attacks:
        runs[attack_label(attack, p)] = relearn(
            oracle, attack=attack, forget=forget, retain=retain, p=p if p is not None else 0.3,
            by=config.attack_by, benign=world.benign, steps=config.attack_steps, lr=config.attack_lr,
            batch_size=config.attack_batch_size, eval_every=config.attack_eval_every, seed=seed,
            original=original, progress=False)
    return runs


def robustness(
    preset: str | BenchConfig = "fast",
    *,
    seeds: tuple[int, ...] | list[int] | None = None,
    out: str | None = None,
    cache: bool | str = True,
    progress: bool = True,
    **overrides: Any,
) -> RobustnessResult:
    """Run the benchmark of ``preset`` (``"smoke"``, ``"fast"``, ``"full"`` or a BenchConfig).

    ``seeds`` and any :class:`BenchConfig` field given as keyword override the preset. With
    ``out``, writes ``robustness.json``, ``robustness.md`` and ``robustness.html`` there.

    Example (about a minute)::

        r = robustness("smoke", progress=False)
        r.to_pandas().groupby(["method", "attack"]).attacked.mean()

    ``preset="real"``: the paper's protocol on SmolLM2-135M-Instruct and real-world facts
    (:func:`neuronscope.bench.real.run_real`; returns a ``RealResult``).
    """
    if isinstance(preset, str) and preset == "real":
        return run_real(seeds=seeds, out=out, progress=progress, **overrides)
    if isinstance(preset, str):
        if preset not in PRESETS:
            raise ValueError(f"preset must be one of {sorted(PRESETS)}, got {preset!r}")
        config = PRESETS[preset]
    elif isinstance(preset, BenchConfig):
        config = preset
    else:
        raise ValueError(f"preset must be a preset name or a BenchConfig, got {type(preset).__name__}")
    if seeds is not None:
        overrides["seeds"] = tuple(int(s) for s in seeds)
    config = config.with_overrides(**overrides)
    methods = config.all_methods()
    _check_methods(methods)
    world = FactWorld.synthetic(n_people=config.n_people, seed=config.world_seed)
    rows: list[dict] = []
    curves: list[dict] = []
    units: list[dict] = []
    start = time.perf_counter()
    total = len(config.seeds) * (len(methods) + 1)
    bar = progress_bar(total=total, desc="robustness", enabled=progress)
    try:
        for seed in config.seeds:
            forget, retain = world.facts.split(forget=config.forget, by=config.forget_by, seed=seed)
            org = organism(world, size=config.size, seed=seed, cache=cache, progress=False)
            oracle = organism(world, size=config.size, seed=seed, exclude=forget, cache=cache,
                              progress=False)
            oracle_forget = float(accuracy(oracle.bridge, forget))
            target = {"oracle": oracle_forget, "chance": world.chance(forget)}.get(
                config.target) if isinstance(config.target, str) else float(config.target)
            units.append({"seed": seed, "n_forget": len(forget), "n_retain": len(retain),
                          "target": target, "oracle_forget_accuracy": oracle_forget,
                          "chance": world.chance(forget),
                          "original_forget_accuracy": float(accuracy(org.bridge, forget)),
                          "original_retain_accuracy": float(accuracy(org.bridge, retain)),
                          "oracle_retain_accuracy": float(accuracy(oracle.bridge, retain))})
            attack_retain = _retain_sample(retain, config.attack_retain_sample, seed)
            oracle_runs = _oracle_runs(oracle.bridge, forget, attack_retain, config, seed, world,
                                       org.bridge)
            for label, run in oracle_runs.items():
                rows.append(_row(seed, "oracle", None, label, run, math.nan, units[-1], {}))
                curves.extend(_curve(seed, "oracle", label, run))
            bar.update(1)
            for spec in methods:
                bar.set_postfix(seed=seed, method=spec.label)
                unlearned, summary = run_unlearning(org.bridge, forget, retain, spec, target=target,
                                                    seed=seed, world=world,
                                                    settings=config.settings_for(spec.method_name))
                summary["forget_accuracy"] = float(accuracy(unlearned, forget))
                summary["retain_accuracy"] = float(accuracy(unlearned, retain))
                summary["reached_target"] = summary["forget_accuracy"] <= target + 1e-6
                for attack, p in config.attacks:
                    label = attack_label(attack, p)
                    run = relearn(unlearned, attack=attack, forget=forget, retain=attack_retain,
                                  p=p if p is not None else 0.3, by=config.attack_by,
                                  benign=world.benign, steps=config.attack_steps, lr=config.attack_lr,
                                  batch_size=config.attack_batch_size,
                                  eval_every=config.attack_eval_every, seed=seed, original=org.bridge,
                                  progress=False)
                    rows.append(_row(seed, spec.label, spec, label, run, oracle_runs[label].attacked,
                                     units[-1], summary))
                    curves.extend(_curve(seed, spec.label, label, run))
                bar.update(1)
                if out is not None:  # a checkpoint after every method: long runs keep partial results
                    _partial(config, seeds_done(config, seed), rows, curves, units, start).save_json(
                        Path(out) / "robustness.partial.json")
    finally:
        bar.close()
    meta = {"seconds": time.perf_counter() - start, "torch": torch.__version__,
            "threads": torch.get_num_threads(), "python": platform.python_version(),
            "world": repr(world), "units": units}
    result = RobustnessResult(config=config, rows=rows, curves=curves, meta=meta)
    if out is not None:
        save_benchmark_figures(result, result.save(out).parent)
    return result


def _retain_sample(retain: FactSet, size: int | None, seed: int) -> FactSet:
    """A seeded subset of the retain set for scoring during attacks (cheaper curves)."""
    if size is None or size >= len(retain):
        return retain
    keep = set(random.Random(seed).sample(range(len(retain)), size))
    return FactSet([f for i, f in enumerate(retain) if i in keep], name="retain_sample")


def seeds_done(config: BenchConfig, current: int) -> tuple[int, ...]:
    """The seeds up to and including ``current``, in the config's order."""
    return config.seeds[: config.seeds.index(current) + 1]


def _partial(config: BenchConfig, seeds: tuple[int, ...], rows: list[dict], curves: list[dict],
             units: list[dict], start: float) -> RobustnessResult:
    meta = {"seconds": time.perf_counter() - start, "torch": torch.__version__,
            "threads": torch.get_num_threads(), "units": list(units), "partial": True}
    return RobustnessResult(config.with_overrides(seeds=seeds), list(rows), list(curves), meta)


def _check_methods(methods: tuple[Recipe, ...]) -> None:
    for recipe in methods:  # recipes are checked when built; anything else fails here
        if not isinstance(recipe, Recipe):
            raise ValueError(f"benchmark methods must be recipes, got {recipe!r}")


def _row(seed: int, method: str, spec: Recipe | None, attack: str, run: Any, oracle_attacked: float,
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


def _curve(seed: int, method: str, attack: str, run: Any) -> list[dict]:
    return [{"seed": seed, "method": method, "attack": attack, "step": int(s), "accuracy": float(a),
             "retain_accuracy": float(r)}
            for s, a, r in zip(run.steps, run.eval_accuracy, run.retain_accuracy, strict=True)]
