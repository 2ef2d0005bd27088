"""The demo: one seed of the pipeline on a demo preset, printed as tables, written as report.html.

1. the organism (a small transformer that memorised a synthetic world) and its accuracy;
2. its oracle twin, trained by the same recipe without the facts to forget;
3. unlearning one set of families with each method (GA, GD and GD + SSIUU by default);
4. the diagnosis of each unlearned model: erased (D+) or hidden (D-), flagged neurons;
5. the harmful and benign retraining attacks on every model, the oracle included;
6. ``report.html``: one self-contained file with the settings, tables and figures.

The stages are those of :class:`~neuronscope.bench.pipeline.Pipeline`, run with a preset of
:data:`~neuronscope.bench.presets.DEMO_PRESETS`; ``neuronscope demo`` only parses its flags.

Example (minutes the first time; the organisms are then cached)::

    result = run_demo("demo-out", "fast", quiet=True)
    result.report          # PosixPath('demo-out/report.html')
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from neuronscope._version import __version__
from neuronscope.bench.pipeline import Listener, Pipeline, SeedRun
from neuronscope.bench.presets import DEMO_PRESETS, BenchConfig
from neuronscope.plots.story import story_sections
from neuronscope.report import report, report_path

__all__ = ["DemoResult", "demo_config", "demo_tables", "format_table", "run_demo"]


@dataclass
class DemoResult:
    """What the demo produced: the report's path, its tables and the time each stage took."""

    report: Path
    tables: dict[str, list[dict]] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)


def demo_config(preset: BenchConfig | str = "full", seed: int = 0, **overrides: Any) -> BenchConfig:
    """The demo's settings: a preset of ``DEMO_PRESETS`` (or a config) for one ``seed``, which
    also seeds the world; ``overrides`` are :class:`BenchConfig` fields.

    Example:
        >>> config = demo_config("fast", seed=3, n_people=50)
        >>> config.seeds, config.world_seed, config.n_people, config.size
        ((3,), 3, 50, 'tiny')
    """
    if isinstance(preset, str):
        if preset not in DEMO_PRESETS:
            raise ValueError(f"preset must be one of {sorted(DEMO_PRESETS)}, got {preset!r}")
        preset = DEMO_PRESETS[preset]
    if not isinstance(preset, BenchConfig):
        raise ValueError(f"preset must be a preset name or a BenchConfig, got {type(preset).__name__}")
    return preset.with_overrides(seeds=(int(seed),), world_seed=int(seed), **overrides)


def format_table(rows: list[dict]) -> list[str]:
    """Rows of dicts as aligned text lines (first column left, the others right; floats to 3 places).

    Example:
        >>> print("\\n".join(format_table([{"model": "gd", "forget": 0.0625}])))
        model    forget
        gd        0.062
    """
    columns = list(rows[0])
    widths = {c: max(len(c), *(len(_text(r[c])) for r in rows)) + 2 for c in columns}

    def line(cells: dict) -> str:
        return "".join(_text(cells[c]).ljust(widths[c]) if i == 0 else _text(cells[c]).rjust(widths[c])
                       for i, c in enumerate(columns))

    return [line({c: c for c in columns}), *(line(row) for row in rows)]


def _text(value: Any) -> str:
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.3f}"
    return str(value)


def demo_tables(run: SeedRun) -> dict[str, list[dict]]:
    """The demo's tables of what the pipeline made so far: ``organism`` (accuracy per split),
    ``unlearning``, ``diagnosis`` and ``attacks`` (each once its stage has run)."""
    world = run.world
    sizes = {"all facts": len(world.facts), "forget split": len(run.forget), "retain split": len(run.retain),
             "paraphrases (held out)": len(world.paraphrases), "benign corpus": len(world.benign)}
    tables = {"organism": [{"split": name, "facts": sizes[name], "accuracy": value}
                           for name, value in run.accuracy.items()]}
    if run.summaries:
        unit = run.unit
        rows = [{"model": "original", "forget": unit["original_forget_accuracy"],
                 "retain": unit["original_retain_accuracy"], "steps": 0, "seconds": 0.0},
                {"model": "oracle", "forget": unit["oracle_forget_accuracy"],
                 "retain": unit["oracle_retain_accuracy"], "steps": 0, "seconds": 0.0}]
        rows += [{"model": label, "forget": s["forget_accuracy"], "retain": s["retain_accuracy"],
                  "steps": s["unlearn_steps"], "seconds": s["unlearn_seconds"]}
                 for label, s in run.summaries.items()]
        tables["unlearning"] = rows
    if run.diagnoses:
        tables["diagnosis"] = [{"method": m, "sum D+": d.d_plus_total, "sum D-": d.d_minus_total,
                                "hide index": d.hide_index, "flagged neurons": len(d.flagged)}
                               for m, d in run.diagnoses.items()]
    if run.attacks:
        tables["attacks"] = [_attack_row(name, method, run.attacks[(name, method)])
                             for name in run.oracle_attacks for method in run.methods]
    return tables


def _attack_row(name: str, method: str, result: Any) -> dict:
    metrics = result.metrics
    return {"attack": name, "method": method, "before attack": result.unlearned,
            "after attack": result.attacked, "oracle after": metrics.oracle_attacked,
            "excess recovery": metrics.excess_recovery, "normalised recovery": metrics.normalised_recovery,
            "retain after (control sample)": result.retain_after}


_TITLES = {"organism": "organism", "oracle": "oracle organism", "unlearn": "unlearning with {methods}",
           "diagnose": "diagnosis (attribution before and after)",
           "attack": "retraining attacks (harmful and benign, with the oracle)"}
_PRINTED = {"attacks": ("attack", "method", "before attack", "after attack", "oracle after",
                        "excess recovery")}


class _Printer(Listener):
    """Stage messages with timings (silent when quiet) and each stage's table (always)."""

    def __init__(self, config: BenchConfig, quiet: bool, echo: Callable[[str], None]) -> None:
        self.config, self.quiet, self.echo = config, quiet, echo
        self.total = 4 + config.diagnose + 1  # the pipeline's stages, then the report
        self.number, self.seconds, self.start = 0, {}, time.perf_counter()

    def title(self, stage: str) -> str:
        return _TITLES.get(stage, stage).format(methods=", ".join(m.label for m in self.config.all_methods()))

    def begin(self, stage: str, run: SeedRun | None) -> None:
        self.number += 1
        if not self.quiet:
            self.echo(f"[{self.number}/{self.total}] {self.title(stage)} ...")

    def end(self, stage: str, run: SeedRun) -> None:
        self.seconds[self.title(stage)] = run.seconds[stage]
        if stage == "organism":
            org = run.original
            how = ("loaded from cache" if org.record.get("cached")
                   else f"trained in {org.record['seconds']:.1f} s")
            self.echo(repr(run.world))
            self.echo(f"organism ({self.config.size}): {how}  [{org.path}]")
        table = {"organism": "organism", "unlearn": "unlearning", "diagnose": "diagnosis",
                 "attack": "attacks"}.get(stage)
        if table is not None:
            rows = demo_tables(run)[table]
            keep = _PRINTED.get(table)
            if stage != "organism":
                self.echo("")
            for line in format_table([{k: r[k] for k in keep} for r in rows] if keep else rows):
                self.echo(line)


def run_demo(
    out: str | Path = "neuronscope-demo",
    preset: BenchConfig | str = "full",
    *,
    seed: int = 0,
    quiet: bool = False,
    cache: bool | str | Path = True,
    echo: Callable[[str], None] = print,
    **overrides: Any,
) -> DemoResult:
    """Run the demo (:func:`demo_config` of ``preset``, ``seed`` and ``overrides``) and write
    ``out/report.html`` (atomically); return what was made. Tables are printed through ``echo``
    always, stage messages and progress bars unless ``quiet``."""
    config = demo_config(preset, seed, **overrides)
    target = report_path(Path(out).expanduser() / "report.html")  # checked before any work
    printer = _Printer(config, quiet, echo)
    pipeline = Pipeline(config, cache=str(cache) if isinstance(cache, Path) else cache, progress=not quiet,
                        listener=printer)
    run = pipeline.run(seed)
    printer.begin("report", run)
    started = time.perf_counter()
    tables = demo_tables(run)
    tables["seconds"] = [{"stage": name, "seconds": value} for name, value in printer.seconds.items()]
    org = run.original
    settings = {"command": "neuronscope demo", "seed": seed, "organism": f"{config.size} [{org.path}]",
                "world": repr(run.world),
                "forget": f"{len(run.forget)} facts ({config.forget:.0%} of {_unit(config.forget_by)})",
                "retain": f"{len(run.retain)} facts", "control (null) facts": len(run.control),
                **{f"preset {k}": v for k, v in config.to_dict().items()},
                "torch threads": torch.get_num_threads(), "neuronscope": __version__}
    sections = story_sections(run, tables)
    sections.append(("Settings", settings))  # last: the results come first in the demo's report
    methods = ", ".join(run.methods)
    path = report(target, sections, title="neuronscope demo: erase or hide?",
                  subtitle=f"neuronscope {__version__} · {config.size} organism, {len(run.forget)} facts "
                           f"forgotten with {methods}")
    printer.seconds["report"] = time.perf_counter() - started
    printer.seconds["total"] = time.perf_counter() - printer.start
    echo(f"done in {printer.seconds['total']:.1f} s")
    return DemoResult(path, tables, dict(printer.seconds))


def _unit(forget_by: str) -> str:
    return {"group": "families", "subject": "people", "fact": "facts"}[forget_by]
