"""``neuronscope demo``: the whole story on the embedded model organism, in one command.

1. the organism (a small transformer that memorised a synthetic world) and its accuracy;
2. its oracle twin, trained by the same recipe without the facts to forget;
3. unlearning one set of families with GA, GD and GD + SSIUU;
4. the diagnosis of each unlearned model: erased (D+) or hidden (D-), flagged neurons;
5. the harmful and benign retraining attacks on every model, the oracle included;
6. ``report.html``: one self-contained file with the settings, tables and figures.

Example:
    $ neuronscope demo --out demo-out          # the default preset
    $ neuronscope demo --fast --quiet          # a smaller world and organism
"""

from __future__ import annotations

import argparse
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

import neuronscope as ns
from neuronscope import attacks
from neuronscope.attribution import attribute as attribute_fn
from neuronscope.diagnostics import diagnose
from neuronscope.report import report_path
from neuronscope.unlearning import parse_recipe, unlearn

__all__ = ["PRESETS", "DemoResult", "Preset", "add_parser", "run", "run_demo"]


@dataclass(frozen=True)
class Preset:
    """Sizes and step counts of one demo run."""

    name: str = "full"
    size: str = "small"  # organism size
    people: int = 400  # people in the synthetic world (5 facts each)
    forget: float = 0.1  # fraction of families to forget
    control: int = 100  # retain facts: the diagnosis null, and the retain curve of the attacks
    unlearn_steps: int = 200  # at most; each method stops at the oracle's forget accuracy
    unlearn_eval_every: int = 10  # steps between checks of that target (forget and retain accuracy)
    unlearn_lr: float = 2e-3  # twice the methods' default: the demo must stay within a minute
    ssiuu_lambda: float = 0.01
    attribution_steps: int | None = None  # None: exact to 1 % (adaptive integrated gradients)
    attribution_tolerance: float | None = 0.01  # None with fixed steps: no completeness check
    permutations: int = 500
    attack_steps: int = 30
    attack_lr: float = 1e-3
    attack_eval_every: int = 10
    attack_p: tuple[float, ...] = (0.3,)
    methods: tuple[str, ...] = ("GA", "GD", "GD+SSIUU")


PRESETS: dict[str, Preset] = {
    "full": Preset(),
    "fast": Preset(name="fast", size="tiny", people=100, forget=0.2, control=60, unlearn_steps=100,
                   unlearn_eval_every=5, permutations=200, attack_steps=30),
    "tiny": Preset(name="tiny", size="tiny", people=60, forget=0.2, control=40, unlearn_steps=30,
                   unlearn_eval_every=5, attribution_steps=4, permutations=100, attack_steps=8,
                   attack_eval_every=4, attribution_tolerance=None),
}


@dataclass
class DemoResult:
    """What the demo produced: the report's path, its tables and the time each stage took."""

    report: Path
    tables: dict[str, list[dict]] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "demo", help="run the whole story on the embedded organism and write report.html",
        description="Organism, unlearning (GA, GD, GD+SSIUU), diagnosis, both retraining attacks "
                    "(with the oracle) and a self-contained report.html.")
    parser.add_argument("--out", type=Path, default=Path("neuronscope-demo"),
                        help="output folder for report.html (default: ./neuronscope-demo)")
    parser.add_argument("--fast", dest="preset", action="store_const", const="fast", default="full",
                        help="the faster preset: a smaller world and the tiny organism")
    parser.add_argument("--preset", dest="preset", choices=sorted(PRESETS), default="full",
                        help="settings preset (default: full)")
    parser.add_argument("--size", default=None, choices=("small", "tiny"),
                        help="organism size (default: the preset's)")
    parser.add_argument("--people", type=int, default=None, help="people in the synthetic world")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cache", default=None,
                        help="organism cache folder (default: $NEURONSCOPE_CACHE or ~/.cache/neuronscope)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars or stage messages")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    preset = PRESETS[args.preset]
    if args.size is not None:
        preset = replace(preset, size=args.size)
    if args.people is not None:
        preset = replace(preset, people=args.people)
    result = run_demo(args.out, preset, seed=args.seed, quiet=args.quiet,
                      cache=args.cache if args.cache is not None else True)
    print(f"report: {result.report.resolve()}")
    return 0


class _Stages:
    """Stage messages with timings (silent when quiet); tables are always printed."""

    def __init__(self, quiet: bool, total: int, echo: Callable[[str], None]) -> None:
        self.quiet, self.total, self.echo = quiet, total, echo
        self.number, self.start, self.seconds = 0, time.perf_counter(), {}
        self._name, self._since = "", self.start

    def begin(self, name: str) -> None:
        self._close()
        self.number += 1
        self._name, self._since = name, time.perf_counter()
        if not self.quiet:
            self.echo(f"[{self.number}/{self.total}] {name} ...")

    def _close(self) -> None:
        if self._name:
            self.seconds[self._name] = time.perf_counter() - self._since
            self._name = ""

    def finish(self) -> dict[str, float]:
        self._close()
        self.seconds["total"] = time.perf_counter() - self.start
        return self.seconds


def _accuracy_rows(ns: Any, model: Any, rows: list[tuple[str, Any]]) -> list[dict]:
    return [{"split": name, "facts": len(facts), "accuracy": float(ns.accuracy(model, facts))}
            for name, facts in rows]


def _print_table(rows: list[dict], echo: Callable[[str], None]) -> None:
    columns = list(rows[0])
    widths = {c: max(len(c), *(len(_text(r[c])) for r in rows)) + 2 for c in columns}
    echo("".join(c.ljust(widths[c]) if i == 0 else c.rjust(widths[c]) for i, c in enumerate(columns)))
    for row in rows:
        echo("".join(_text(row[c]).ljust(widths[c]) if i == 0 else _text(row[c]).rjust(widths[c])
                     for i, c in enumerate(columns)))


def _text(value: Any) -> str:
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.3f}"
    return str(value)


def _unlearn(model: Any, method: str, forget: Any, retain: Any, target: float, preset: Preset, seed: int,
             progress: bool) -> Any:
    """``method`` is a base method ("GA", "GD", ...) with an optional "+SSIUU"."""

    base, _, extra = method.lower().partition("+")
    recipe = parse_recipe(f"{base}+ssiuu({preset.ssiuu_lambda:g})" if extra == "ssiuu"
                          else method.lower())
    return unlearn(model, forget, retain, method=recipe, max_steps=preset.unlearn_steps,
                   lr=preset.unlearn_lr, eval_every=preset.unlearn_eval_every,
                   target_forget_accuracy=target, seed=seed, progress=progress,
                   eval_retain=False)  # the table measures retain accuracy once, after


def run_demo(
    out: str | Path = "neuronscope-demo",
    preset: Preset | str = "full",
    *,
    seed: int = 0,
    quiet: bool = False,
    cache: bool | str | Path = True,
    echo: Callable[[str], None] = print,
) -> DemoResult:
    """Run the whole demo and write ``out/report.html`` (atomically); return what was made.

    Example (minutes the first time; the organism is then cached)::

        result = run_demo("demo-out", "fast", quiet=True)
        result.report          # PosixPath('demo-out/report.html')
    """


    if isinstance(preset, str):
        if preset not in PRESETS:
            raise ValueError(f"preset must be one of {sorted(PRESETS)}, got {preset!r}")
        preset = PRESETS[preset]
    target = report_path(Path(out).expanduser() / "report.html")  # checked before any work
    progress = not quiet
    stages = _Stages(quiet, 6, echo)
    tables: dict[str, list[dict]] = {}

    # 1. The organism and what it knows (the demo's first output, as before).
    stages.begin("organism")
    world = ns.FactWorld.synthetic(n_people=preset.people, seed=seed)
    echo(repr(world))
    org = ns.organism(world, size=preset.size, seed=seed, cache=cache, progress=progress)
    how = "loaded from cache" if org.record.get("cached") else f"trained in {org.record['seconds']:.1f} s"
    echo(f"organism ({preset.size}): {how}  [{org.path}]")
    forget, retain = world.facts.split(forget=preset.forget, by="group", seed=seed)
    splits = [("all facts", world.facts), ("forget split", forget), ("retain split", retain),
              ("paraphrases (held out)", world.paraphrases), ("benign corpus", world.benign)]
    tables["organism"] = _accuracy_rows(ns, org.bridge, splits)
    _print_table(tables["organism"], echo)

    # 2. The oracle: same recipe, never saw the forget facts.
    stages.begin("oracle organism")
    oracle = ns.organism(world, size=preset.size, seed=seed, exclude=forget, cache=cache, progress=progress)
    control = ns.FactSet(retain[: preset.control], name="control") if preset.control else retain
    chance = world.chance(forget)

    # 3. Unlearning.
    stages.begin("unlearning with " + ", ".join(preset.methods))
    unlearned: dict[str, Any] = {}
    rows = [{"model": "original", **_scores(ns, org.bridge, forget, retain), "steps": 0, "seconds": 0.0},
            {"model": "oracle", **_scores(ns, oracle.bridge, forget, retain), "steps": 0, "seconds": 0.0}]
    goal = rows[1]["forget"]  # every method unlearns down to the oracle's forget accuracy
    for method in preset.methods:
        started = time.perf_counter()
        result = _unlearn(org.bridge, method, forget, retain, goal, preset, seed, progress)
        unlearned[method] = result.bridge
        rows.append({"model": method, **_scores(ns, result.bridge, forget, retain), "steps": result.steps,
                     "seconds": time.perf_counter() - started})
    tables["unlearning"] = rows
    echo("")
    _print_table(rows, echo)

    # 4. Diagnosis: attribution before and after, D+ / D-, flags against the control facts.
    stages.begin("diagnosis (attribution before and after)")
    both = ns.FactSet(list(forget) + list(control), name="forget+control")
    # log P, not P: once unlearning has collapsed P(answer), attributions of P vanish and every
    # change reads as erasing (docs/diagnostics.md). Read the flags, calibrated on control facts.
    attribute = dict(steps=preset.attribution_steps, tolerance=preset.attribution_tolerance,
                     target="logprob", progress=progress)
    before = attribute_fn(org.bridge, both, **attribute)
    after = {m: attribute_fn(model, both, **attribute) for m, model in unlearned.items()}
    diagnoses = {m: diagnose(before, after[m], forget, control=control, n_permutations=preset.permutations,
                             seed=seed, progress=progress) for m in unlearned}
    tables["diagnosis"] = [{"method": m, "sum D+": d.d_plus_total, "sum D-": d.d_minus_total,
                            "hide index": d.hide_index, "flagged neurons": len(d.flagged)}
                           for m, d in diagnoses.items()]
    echo("")
    _print_table(tables["diagnosis"], echo)

    # 5. Retraining attacks, on every unlearned model and on the oracle.
    stages.begin("retraining attacks (harmful and benign, with the oracle)")
    attacks = _attacks(unlearned, oracle.bridge, org.bridge, world, forget, control, preset, seed, progress)
    tables["attacks"] = [_attack_row(name, method, r) for (name, method), r in attacks.items()]
    echo("")
    _print_table([{k: r[k] for k in ("attack", "method", "before attack", "after attack", "oracle after",
                                     "excess recovery")} for r in tables["attacks"]], echo)

    # 6. The report.
    stages.begin("report")
    forget_index = list(range(len(forget)))
    before_forget = before.select(forget_index)
    after_forget = {m: a.select(forget_index) for m, a in after.items()}
    tables["seconds"] = [{"stage": name, "seconds": value} for name, value in stages.seconds.items()]
    sections = _sections(ns, preset, seed, world, forget, retain, control, chance, tables, before_forget,
                         after_forget, diagnoses, attacks)
    settings = {"command": "neuronscope demo", "seed": seed, "organism": f"{preset.size} [{org.path}]",
                "world": repr(world), "forget": f"{len(forget)} facts ({preset.forget:.0%} of families)",
                "retain": f"{len(retain)} facts", "control (null) facts": len(control),
                **{f"preset {k}": v for k, v in asdict(preset).items()},
                "torch threads": torch.get_num_threads(), "neuronscope": ns.__version__}
    sections.append(("Settings", settings))  # last: the results come first in the demo's report
    path = ns.report(target, sections, title="neuronscope demo: erase or hide?",
                     subtitle=f"neuronscope {ns.__version__} · {preset.size} organism, {len(forget)} facts "
                              f"forgotten with {', '.join(preset.methods)}")
    seconds = stages.finish()
    echo(f"done in {seconds['total']:.1f} s")
    return DemoResult(path, tables, seconds)


def _scores(ns: Any, model: Any, forget: Any, retain: Any) -> dict[str, float]:
    return {"forget": float(ns.accuracy(model, forget)), "retain": float(ns.accuracy(model, retain))}


def _attacks(unlearned: dict[str, Any], oracle: Any, original: Any, world: Any, forget: Any,
             retain: Any, preset: Preset, seed: int, progress: bool) -> dict[tuple[str, str], Any]:
    plans = [(f"harmful p={p}", {"attack": "harmful", "p": p}) for p in preset.attack_p]
    plans.append(("benign", {"attack": "benign", "benign": world.benign}))
    results = {}
    for name, plan in plans:
        settings = dict(forget=forget, retain=retain, steps=preset.attack_steps, lr=preset.attack_lr,
                        eval_every=preset.attack_eval_every, seed=seed, original=original, progress=progress,
                        **plan)
        # The oracle's attack is the same for every method (same data, same seed): run it once.
        on_oracle = attacks.relearn(oracle, **settings)
        on_oracle.model = None
        for method, model in unlearned.items():
            result = attacks.relearn(model, **settings)
            result.oracle, result.model = on_oracle, None
            results[(name, method)] = result
    return results


def _attack_row(name: str, method: str, result: Any) -> dict:
    metrics = result.metrics
    return {"attack": name, "method": method, "before attack": result.unlearned,
            "after attack": result.attacked, "oracle after": metrics.oracle_attacked,
            "excess recovery": metrics.excess_recovery, "normalised recovery": metrics.normalised_recovery,
            "retain after (control sample)": result.retain_after}


def _curve_rows(attacks: dict[tuple[str, str], Any]) -> list[dict]:
    rows, oracle_done = [], set()
    for (name, method), result in attacks.items():
        curves = [(method, result)]
        if result.oracle is not None and name not in oracle_done:
            curves.append(("oracle", result.oracle))
            oracle_done.add(name)
        for label, curve in curves:
            rows += [{"attack": name, "method": label, "step": int(s), "accuracy": float(a)}
                     for s, a in zip(curve.steps.tolist(), curve.eval_accuracy.tolist(), strict=True)]
    return rows


_INTRO = (
    "A small transformer memorised a synthetic world of fictitious people. One set of families was "
    "then unlearned with gradient ascent (GA), gradient difference (GD) and GD regularised by SSIUU. "
    "For each unlearned model, neuron attribution before and after tells whether the facts were erased "
    "(D+: positive influence removed) or hidden (D-: negative influence added); neurons whose D- on the "
    "forgotten facts exceeds the null of control facts are flagged as spurious unlearning neurons. "
    "Attribution here is integrated gradients of log P(answer): with P itself, attributions vanish once "
    "unlearning has collapsed P, and everything reads as erased. Under log P, small changes summed over "
    "all neurons make the hide index high even for unrelated fine-tunes: read the flags, which are "
    "calibrated against the control facts.\n\n"
    "The retraining attacks then show whether the knowledge was really gone: harmful (fine-tune on a "
    "fraction p of the forgotten facts, test on the rest) and benign (fine-tune on unrelated text, test "
    "on the forgotten facts). The oracle never learned the forgotten facts: only recovery above the "
    "oracle's (excess recovery) is evidence of hiding."
)


def _sections(ns: Any, preset: Preset, seed: int, world: Any, forget: Any, retain: Any, control: Any,
              chance: float, tables: dict[str, list[dict]], before: Any, after: dict[str, Any],
              diagnoses: dict[str, Any], attacks: dict[tuple[str, str], Any]) -> list[tuple[str, Any]]:
    plots = ns.plots
    focus = preset.methods[1] if len(preset.methods) > 1 else preset.methods[0]
    grid = [{"method": r["method"], "attack": r["attack"], "accuracy": r["after attack"]}
            for r in tables["attacks"]]
    grid += [{"method": "oracle", "attack": r["attack"], "accuracy": r["oracle after"]}
             for r in tables["attacks"] if r["method"] == preset.methods[0]]
    sections: list[tuple[str, Any]] = [
        ("What this is", _INTRO),
        ("The organism: accuracy per split", tables["organism"]),
        ("Unlearning: accuracy after each method",
         [f"Greedy exact-match accuracy. Forget: {len(forget)} facts; retain: {len(retain)}. Chance on the "
          f"forget facts (always the most common value): {chance:.3f}.", tables["unlearning"]]),
        ("Neuron attribution before unlearning (forget facts)",
         [plots.neuron_heatmap(before, title="Integrated-gradients attribution of log P(answer), "
                                             "mean over the forget facts"),
          plots.top_table(before, k=10)]),
        (f"Before and after {focus}", plots.before_after(before, after[focus])),
        ("Erase or hide: D+ and D- per method", tables["diagnosis"]),
    ]
    for method, diagnosis in diagnoses.items():
        sections.append((f"{method}: D+ and D-", [
            plots.d_per_layer(diagnosis, title=f"{method}: erase (D+) or hide (D−), per layer"),
            plots.d_scatter(diagnosis, title=f"{method}: D+ against D− per neuron (flagged: crosses)")]))
    sections += [
        ("Retraining attacks: recovery over steps",
         plots.recovery_curves(_curve_rows(attacks), chance=chance)),
        ("Method x attack", plots.attack_grid(grid)),
        ("Attack results", tables["attacks"]),
        ("Run time per stage (seconds)", tables["seconds"]),
    ]
    return sections
