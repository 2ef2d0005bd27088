"""The robustness benchmark: methods x attacks x seeds, each method unlearned to one target.

For each seed, the pipeline (:class:`~neuronscope.bench.pipeline.Pipeline`) builds the world's
organism and its oracle (trained without the forget set), sets the forget-accuracy target (by
default the world's chance level on the forget facts), unlearns with every method until that
target, then runs each retraining attack on the unlearned model and the identical attack on
the oracle; the benchmark gathers the rows of every seed.

Example (a few minutes on one CPU thread)::

    result = robustness("fast")
    print(result.table())
    result.save("bench-out")
"""

from __future__ import annotations

import platform
import time
from pathlib import Path
from typing import Any

import torch

from neuronscope.bench.pipeline import Listener, Pipeline, SeedRun, attack_label, run_unlearning
from neuronscope.bench.presets import PRESETS, BenchConfig
from neuronscope.bench.real import run_real
from neuronscope.bench.result import RobustnessResult
from neuronscope.plots.robustness import save_benchmark_figures
from neuronscope.progress import progress_bar

__all__ = ["attack_label", "robustness", "run_unlearning"]


class _Progress(Listener):
    """One bar over seeds x (oracle + methods) and, with ``out``, a checkpoint after each method."""

    def __init__(self, bar: Any, done: list[SeedRun], config: BenchConfig, out: str | None,
                 start: float) -> None:
        self.bar, self.done, self.config, self.out, self.start = bar, done, config, out, start

    def method_done(self, stage: str, label: str, run: SeedRun) -> None:
        if stage == "unlearn":
            self.bar.set_postfix(seed=run.seed, method=label)
            return
        self.bar.update(1)
        if self.out is not None and label != "oracle":  # long runs keep partial results
            runs = [*self.done, run]
            config = self.config.with_overrides(seeds=tuple(r.seed for r in runs))
            meta = {"seconds": time.perf_counter() - self.start, "torch": torch.__version__,
                    "threads": torch.get_num_threads(), "units": [r.unit for r in runs], "partial": True}
            partial = RobustnessResult(config, [row for r in runs for row in r.rows()],
                                       [c for r in runs for c in r.curves()], meta)
            partial.save_json(Path(self.out) / "robustness.partial.json")


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
    pipeline = Pipeline(config, cache=cache, progress=False)  # checks the methods before any work
    start = time.perf_counter()
    done: list[SeedRun] = []
    bar = progress_bar(total=len(config.seeds) * (len(config.all_methods()) + 1), desc="robustness",
                       enabled=progress)
    pipeline.listener = _Progress(bar, done, config, out, start)
    try:
        for seed in config.seeds:
            run = pipeline.run(seed)
            run.unlearned.clear()  # the unlearned models are not needed any more
            done.append(run)
    finally:
        bar.close()
    world = pipeline.world
    rows = [row for run in done for row in run.rows()]
    curves = [curve for run in done for curve in run.curves()]
    units = [run.unit for run in done]
    meta = {"seconds": time.perf_counter() - start, "torch": torch.__version__,
            "threads": torch.get_num_threads(), "python": platform.python_version(),
            "world": repr(world), "units": units}
    result = RobustnessResult(config=config, rows=rows, curves=curves, meta=meta)
    if out is not None:
        save_benchmark_figures(result, result.save(out).parent)
    return result
