"""The demo report's sections: the pipeline's story (one seed) as text, tables and figures.

``story_sections(run, tables)`` takes a :class:`~neuronscope.bench.pipeline.SeedRun` that went
through the diagnosis and attack stages and the demo's tables
(:func:`neuronscope.bench.demo.demo_tables`) and returns ``[(title, content), ...]`` for
:func:`neuronscope.report`. The demo (:mod:`neuronscope.bench.demo`) shows it in use.
"""

from __future__ import annotations

from typing import Any

from neuronscope.plots.diagnosis import d_per_layer, d_scatter
from neuronscope.plots.heatmap import before_after, neuron_heatmap
from neuronscope.plots.robustness import attack_grid, recovery_curves
from neuronscope.plots.tables import top_table

__all__ = ["INTRO", "curve_rows", "story_sections"]

INTRO = (
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


def curve_rows(run: Any) -> list[dict]:
    """One row per attack, model and evaluation step (the first method's curve, the oracle's,
    then the other methods')."""
    rows = []
    for name, on_oracle in run.oracle_attacks.items():
        curves = [(method, run.attacks[(name, method)]) for method in run.methods]
        curves.insert(1, ("oracle", on_oracle))
        for label, curve in curves:
            rows += [{"attack": name, "method": label, "step": int(s), "accuracy": float(a)}
                     for s, a in zip(curve.steps.tolist(), curve.eval_accuracy.tolist(), strict=True)]
    return rows


def story_sections(run: Any, tables: dict[str, list[dict]]) -> list[tuple[str, Any]]:
    """The report's sections for one diagnosed and attacked pipeline run (see the module docstring)."""
    if run.before is None or not run.attacks:
        raise ValueError("story_sections needs a run through the diagnose and attack stages")
    methods = run.methods
    focus = methods[1] if len(methods) > 1 else methods[0]
    forget_index = list(range(len(run.forget)))  # the attributions cover forget + control facts
    before = run.before.select(forget_index)
    after = {m: a.select(forget_index) for m, a in run.after.items()}
    grid = [{"method": r["method"], "attack": r["attack"], "accuracy": r["after attack"]}
            for r in tables["attacks"]]
    grid += [{"method": "oracle", "attack": r["attack"], "accuracy": r["oracle after"]}
             for r in tables["attacks"] if r["method"] == methods[0]]
    sections: list[tuple[str, Any]] = [
        ("What this is", INTRO),
        ("The organism: accuracy per split", tables["organism"]),
        ("Unlearning: accuracy after each method",
         [f"Greedy exact-match accuracy. Forget: {len(run.forget)} facts; retain: {len(run.retain)}. "
          f"Chance on the forget facts (always the most common value): {run.unit['chance']:.3f}.",
          tables["unlearning"]]),
        ("Neuron attribution before unlearning (forget facts)",
         [neuron_heatmap(before, title="Integrated-gradients attribution of log P(answer), "
                                       "mean over the forget facts"),
          top_table(before, k=10)]),
        (f"Before and after {focus}", before_after(before, after[focus])),
        ("Erase or hide: D+ and D- per method", tables["diagnosis"]),
    ]
    for method, diagnosis in run.diagnoses.items():
        sections.append((f"{method}: D+ and D-", [
            d_per_layer(diagnosis, title=f"{method}: erase (D+) or hide (D−), per layer"),
            d_scatter(diagnosis, title=f"{method}: D+ against D− per neuron (flagged: crosses)")]))
    sections += [
        ("Retraining attacks: recovery over steps",
         recovery_curves(curve_rows(run), chance=run.unit["chance"])),
        ("Method x attack", attack_grid(grid)),
        ("Attack results", tables["attacks"]),
        ("Run time per stage (seconds)", tables["seconds"]),
    ]
    return sections
