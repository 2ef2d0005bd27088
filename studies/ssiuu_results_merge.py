"""Join the base-method rows of an earlier full robustness run with new SSIUU runs.

The base methods' code is bit-identical before and after SSIUU became the paper's Algorithm 1
(weights after 3 steps of each method equal bit for bit), so their rows need not be rerun; the
SSIUU rows of the earlier run (the old neuron-level form) are dropped. Rows of a method present
in both (``gd``, ``oracle``) are compared seed by seed, every number but times, and must agree
exactly: the check that the join is sound. Writes ``robustness.json``, ``robustness.md``,
``robustness.html``, ``lambda-sweep.html`` and ``ssiuu-vs-gd.md`` (per SSIUU recipe, the
seed-by-seed change of excess recovery against GD) to ``--out``.

    python studies/ssiuu_results_merge.py --old studies/results/robustness.json \\
        --new runs/gd-s0/robustness.json runs/gd-s1/robustness.json --out docs/results

The documented run's rows are kept in ``studies/results/robustness.json`` (and the seed-0
variants' in ``studies/results/variants-seed0.json``); the tables and figures the merge also
writes go to ``docs/results/``, where the pages link them.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from neuronscope.bench import PRESETS, RobustnessResult


def _key(row: dict) -> tuple:
    return row["seed"], row["method"], row["attack"]


def _numbers(row: dict) -> dict:
    return {k: v for k, v in row.items() if "seconds" not in k and k != "unlearn_lr"}


def paired_table(rows: list[dict], base: str = "gd") -> str:
    """Markdown: per SSIUU recipe, the seed-by-seed change of excess recovery against ``base``."""
    get = {_key(r): r for r in rows}
    attacks = list(dict.fromkeys(r["attack"] for r in rows))
    lines = ["| recipe | seeds | steps (GD → SSIUU) | retain (GD → SSIUU) | "
             + " | ".join(f"Δ excess {a.replace('harmful ', '')}" for a in attacks) + " |",
             "|" + "---|" * (4 + len(attacks))]
    for method in dict.fromkeys(r["method"] for r in rows):
        if "ssiuu" not in method:
            continue
        seeds = sorted({r["seed"] for r in rows if r["method"] == method})
        first = attacks[0]
        steps = ", ".join(f"{get[(s, base, first)]['unlearn_steps']}→"
                          f"{get[(s, method, first)]['unlearn_steps']}" for s in seeds)
        retain = ", ".join(f"{get[(s, base, first)]['retain_accuracy']:.3f}→"
                           f"{get[(s, method, first)]['retain_accuracy']:.3f}" for s in seeds)
        cells = []
        for attack in attacks:
            diffs = [get[(s, method, attack)]["excess_recovery"]
                     - get[(s, base, attack)]["excess_recovery"] for s in seeds]
            cells.append(" / ".join(f"{d:+.3f}" for d in diffs)
                         + f" (mean {statistics.fmean(diffs):+.3f})")
        lines.append(f"| {method} | {', '.join(map(str, seeds))} | {steps} | {retain} | "
                     + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--old", required=True)
    parser.add_argument("--new", nargs="+", required=True)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    old = json.loads(Path(args.old).read_text(encoding="utf-8"))
    new = [json.loads(Path(p).read_text(encoding="utf-8")) for p in args.new]
    rows = {_key(r): r for r in old["rows"] if "ssiuu" not in r["method"]}
    curves = [c for c in old["curves"] if "ssiuu" not in c["method"]]
    checked, mismatched = 0, []
    for run in new:
        for row in run["rows"]:
            key = _key(row)
            if key in rows:
                checked += 1
                if _numbers(rows[key]) != _numbers(row):
                    mismatched.append(key)
                continue
            rows[key] = row
        curves += [c for c in run["curves"] if "ssiuu" in c["method"]]
    print(f"rows in both runs: {checked}, mismatched: {mismatched or 'none'}")
    if mismatched:
        raise SystemExit("the earlier base rows do not match the new ones: do not join")
    seeds = tuple(sorted({r["seed"] for r in rows.values()}))
    config = PRESETS["full"].with_overrides(seeds=seeds)
    meta = {**old["meta"], "joined": {"old": args.old, "new": list(args.new),
                                      "rows_checked_equal": checked}}
    order = {m: i for i, m in enumerate(["oracle"] + [r.label for r in config.all_methods()])}
    ordered = sorted(rows.values(), key=lambda r: (r["seed"], order.get(r["method"], 99)))
    RobustnessResult(config=config, rows=ordered, curves=curves, meta=meta).save(args.out)
    table = paired_table(ordered)
    (Path(args.out) / "ssiuu-vs-gd.md").write_text(table + "\n", encoding="utf-8")
    print(table)
    print(f"wrote {args.out} (and ssiuu-vs-gd.md)")


if __name__ == "__main__":
    main()
