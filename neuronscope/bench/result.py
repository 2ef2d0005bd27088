"""``RobustnessResult``: rows of the robustness benchmark, with tables and JSON I/O.

Its figures are drawn in :mod:`neuronscope.plots.robustness` (science never draws).

Example:
    >>> from neuronscope.bench import BenchConfig
    >>> rows = [{"method": "gd", "attack": "benign", "attacked": a, "forget_accuracy": 0.1,
    ...          "retain_accuracy": 0.9, "reached_target": True} for a in (0.2, 0.4)]
    >>> result = RobustnessResult(BenchConfig(seeds=(0, 1)), rows)   # or RobustnessResult.load(folder)
    >>> print(result.table())
    | method | forget acc | retain acc | reached target | benign |
    |---|---|---|---|---|
    | gd | 0.10 ± 0.00 | 0.90 ± 0.00 | 2/2 | 0.30 ± 0.14 |
"""

from __future__ import annotations

import html
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from neuronscope.bench.paper import PAPER_TABLE, beside_paper
from neuronscope.bench.presets import BenchConfig
from neuronscope.bench.stats import cell, mean_std
from neuronscope.facts import atomic_write_text

__all__ = ["RobustnessResult", "mean_std"]  # mean_std: re-exported from bench.stats

_FORMAT = "neuronscope.RobustnessResult/1"


@dataclass
class RobustnessResult:
    """One benchmark run: a row per (seed, method, attack), accuracy curves, settings, timing.

    Row fields: ``attacked`` (accuracy on the evaluation facts after the attack),
    ``oracle_attacked``, ``excess_recovery`` (= attacked - oracle_attacked),
    ``normalised_recovery``, ``forget_accuracy`` / ``retain_accuracy`` after unlearning,
    ``reached_target``, ``retain_after_attack``. Method ``"oracle"`` rows are the control.
    """

    config: BenchConfig
    rows: list[dict]
    curves: list[dict] = field(default_factory=list)
    meta: dict = field(default_factory=dict)

    # --- views ------------------------------------------------------------------------------
    @property
    def methods(self) -> list[str]:
        return list(dict.fromkeys(r["method"] for r in self.rows))

    @property
    def attacks(self) -> list[str]:
        return list(dict.fromkeys(r["attack"] for r in self.rows))

    def select(self, method: str, attack: str | None = None, key: str = "attacked") -> list[float]:
        """``key`` over seeds for one method (and attack; default the first attack)."""
        attack = attack if attack is not None else self.attacks[0]
        return [r[key] for r in self.rows if r["method"] == method and r["attack"] == attack]

    def to_pandas(self) -> Any:
        import pandas as pd  # optional dependency

        return pd.DataFrame(self.rows)

    def summary(self) -> list[dict]:
        """Mean and std over seeds per (method, attack) of the main numbers."""
        out = []
        for method in self.methods:
            for attack in self.attacks:
                entry: dict[str, Any] = {"method": method, "attack": attack}
                for key in ("attacked", "excess_recovery", "normalised_recovery", "forget_accuracy",
                            "retain_accuracy", "retain_after_attack"):
                    entry[key], entry[f"{key}_std"] = mean_std(self.select(method, attack, key))
                entry["n_seeds"] = len(self.select(method, attack))
                entry["reached_target"] = sum(bool(v) for v in self.select(method, attack, "reached_target"))
                out.append(entry)
        return out

    # --- tables -----------------------------------------------------------------------------
    def table(self, key: str = "attacked") -> str:
        """Markdown table: one line per method, forget/retain after unlearning, ``key`` per attack.

        Cells are mean ± sample std over seeds. ``key`` may be ``"attacked"``,
        ``"excess_recovery"`` or ``"normalised_recovery"``.
        """
        signed = key == "excess_recovery"
        header = ["method", "forget acc", "retain acc", "reached target", *self.attacks]
        lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        first = self.attacks[0]
        for method in self.methods:
            reached = self.select(method, first, "reached_target")
            cells = [method, cell(self.select(method, first, "forget_accuracy")),
                     cell(self.select(method, first, "retain_accuracy")),
                     f"{sum(bool(v) for v in reached)}/{len(reached)}"]
            cells += [cell(self.select(method, attack, key), signed=signed) for attack in self.attacks]
            lines.append("| " + " | ".join(cells) + " |")
        return "\n".join(lines)

    def _sweep_methods(self) -> list[tuple[float, str]]:
        """(lambda, method label) of every run of the sweep's base method, by lambda."""
        base = self.config.sweep_base
        labels: dict[float, str] = {}
        for r in self.rows:
            if r["base"] == base:
                labels.setdefault(r["lambda"], r["method"])
        return sorted(labels.items())

    def sweep_table(self) -> str:
        """Markdown table of the lambda sweep (rows of the sweep's base method, by lambda)."""
        header = ["lambda", "seeds", "forget acc", "retain acc",
                  *[f"{a} (excess)" for a in self.attacks]]
        lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        for lam, method in self._sweep_methods():
            first = self.attacks[0]
            cells = [f"{lam:g}", str(len(self.select(method, first))),
                     cell(self.select(method, first, "forget_accuracy")),
                     cell(self.select(method, first, "retain_accuracy"))]
            for attack in self.attacks:
                excess = cell(self.select(method, attack, "excess_recovery"), signed=True)
                cells.append(f"{cell(self.select(method, attack))} ({excess})")
            lines.append("| " + " | ".join(cells) + " |")
        return "\n".join(lines)

    def markdown(self) -> str:
        """The full report: settings, accuracy after attack, excess recovery, sweep."""
        parts = [f"# Robustness benchmark ({len(self.config.seeds)} seeds: {list(self.config.seeds)})",
                 "", "Accuracy on the forgotten facts after the attack (mean ± std over seeds; "
                 "harmful: part B, benign: the whole forget set; lower is better):", "", self.table(),
                 "", "Excess recovery = attacked - oracle attacked (0 = no more than a model that "
                 "never learned the facts):", "", self.table("excess_recovery"),
                 "", "Normalised recovery = (attacked - unlearned) / (original - unlearned):", "",
                 self.table("normalised_recovery")]
        if self.config.sweep:
            parts += ["", f"Lambda sweep (SSIUU on {self.config.sweep_base}):", "", self.sweep_table()]
        if any(name.lower() in self.methods for name in PAPER_TABLE):
            parts += ["", "Beside the paper's table (percent; FaithUn on Llama-3.2-3B, approximate):",
                      "", beside_paper(self)]
        parts += ["", f"Run time {self.meta.get('seconds', math.nan):.0f} s, torch "
                      f"{self.meta.get('torch')}, {self.meta.get('threads')} thread(s).", ""]
        return "\n".join(parts)

    def sweep_rows(self) -> list[dict]:
        """One row per lambda of the sweep's base method: mean over seeds of forget and retain
        accuracy after unlearning and of the excess recovery under each attack."""
        out = []
        for lam, method in self._sweep_methods():
            first = self.attacks[0]
            row = {"lambda": float(lam),
                   "forget accuracy": mean_std(self.select(method, first, "forget_accuracy"))[0],
                   "retain accuracy": mean_std(self.select(method, first, "retain_accuracy"))[0]}
            for attack in self.attacks:
                row[f"excess recovery, {attack}"] = mean_std(
                    self.select(method, attack, "excess_recovery"))[0]
            out.append(row)
        return out

    # --- persistence ------------------------------------------------------------------------
    def to_dict(self) -> dict:
        return {"format": _FORMAT, "config": self.config.to_dict(), "rows": self.rows,
                "curves": self.curves, "meta": self.meta}

    @classmethod
    def from_dict(cls, record: dict) -> RobustnessResult:
        if record.get("format") != _FORMAT:
            raise ValueError(f"not a saved RobustnessResult (format {record.get('format')!r})")
        return cls(BenchConfig.from_dict(record["config"]), [dict(r) for r in record["rows"]],
                   [dict(c) for c in record["curves"]], dict(record["meta"]))

    def save_json(self, path: str | os.PathLike) -> Path:
        """Write only the JSON record (atomically) to ``path``."""
        path = Path(path)
        atomic_write_text(path, json.dumps(self.to_dict(), indent=1))
        return path

    def save(self, folder: str | os.PathLike) -> Path:
        """Write ``robustness.json`` (lossless) and ``robustness.md`` to ``folder``.

        The figures are drawn by :func:`neuronscope.plots.save_robustness_figures`."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        atomic_write_text(folder / "robustness.json", json.dumps(self.to_dict(), indent=1))
        atomic_write_text(folder / "robustness.md", self.markdown())
        return folder / "robustness.json"

    @classmethod
    def load(cls, path: str | os.PathLike) -> RobustnessResult:
        path = Path(path)
        if path.is_dir():
            path = path / "robustness.json"
        if not path.is_file():
            raise FileNotFoundError(f"benchmark result {str(path)!r} does not exist")
        return cls.from_dict(json.loads(path.read_text(encoding="utf-8")))

    @classmethod
    def combine(cls, results: list[RobustnessResult]) -> RobustnessResult:
        """Join runs of the same settings over different seeds (e.g. one process per seed).

        The runs may differ in their method lists and lambda sweeps (a seed that ran a subset);
        the joined config lists the union, and each table cell averages the seeds that ran it.
        """
        if not results:
            raise ValueError("combine needs at least one result")
        first = results[0].config.to_dict()
        seeds: list[int] = []
        free = {"seeds", "methods", "sweep"}
        for result in results:
            other = result.config.to_dict()
            differs = sorted(k for k in first if k not in free and first[k] != other[k])
            if differs:
                raise ValueError(f"cannot combine runs whose settings differ in {differs}")
            clash = set(seeds) & set(result.config.seeds)
            if clash:
                raise ValueError(f"seed(s) {sorted(clash)} appear in more than one run")
            seeds.extend(result.config.seeds)
        meta = {"seconds": sum(r.meta.get("seconds", 0.0) for r in results),
                "torch": results[0].meta.get("torch"), "threads": results[0].meta.get("threads"),
                "python": results[0].meta.get("python"), "world": results[0].meta.get("world"),
                "units": [u for r in results for u in r.meta.get("units", [])],
                "combined_from": len(results)}
        methods = tuple(dict.fromkeys(m for r in results for m in r.config.methods))
        sweep = tuple(sorted({lam for r in results for lam in r.config.sweep}))
        config = results[0].config.with_overrides(seeds=tuple(seeds), methods=methods, sweep=sweep)
        return cls(config,
                   [row for r in results for row in r.rows], [c for r in results for c in r.curves], meta)

    # --- display ----------------------------------------------------------------------------
    def __repr__(self) -> str:
        return (f"<RobustnessResult {len(self.methods)} methods x {len(self.attacks)} attacks x "
                f"{len(self.config.seeds)} seeds, {len(self.rows)} rows>")

    def _repr_html_(self) -> str:
        head = "".join(f"<th>{html.escape(a)}</th>" for a in self.attacks)
        body = "".join(
            "<tr><td>" + html.escape(m) + "</td>"
            + "".join(f"<td>{html.escape(cell(self.select(m, a)))}</td>" for a in self.attacks) + "</tr>"
            for m in self.methods)
        return (f"<div><b>RobustnessResult</b>: accuracy after attack (mean ± std over "
                f"{len(self.config.seeds)} seeds)<table><tr><th>method</th>{head}</tr>{body}</table></div>")
