"""A second-order SSIUU prototype: hold the *full* attribution of negative neurons.

SSIUU (first order, the paper's Algorithm 1) treats ``g = dP/dh`` as a constant in the
penalty's gradient. This prototype, a penalty object passed to ``ns.unlearn`` like any other,
computes the neuron-level ``A_t = sum over the forget rows and positions of h * g`` with ``g``
taken with ``create_graph=True``, so that the penalty's gradient also reaches the weights
downstream of each neuron (a double backward). Otherwise the same rules as
``SSIUU(level="neuron")``: ``I-`` at the current step, squared change against the stored
``A_{t-1}``, ``P`` (not ``log P``), no penalty at step 1.

It unlearns the tiny organism to the oracle's forget accuracy (the protocol of
``hide_index_study.py``) with GA, GD, GD + SSIUU (neuron level) and GD + second-order SSIUU,
and prints the hide index (IG, 8 steps, ``logprob`` and ``prob``), the attribution-change
split and the steps.

    OMP_NUM_THREADS=1 python studies/ssiuu_second_order.py --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import json
import warnings
from typing import Any

import torch
from attribution_change_split import split, tiny_splits

import neuronscope as ns
from neuronscope.attribution import attribute
from neuronscope.diagnostics import diagnose
from neuronscope.hooks import mlp_hook_names
from neuronscope.scoring import batch_for
from neuronscope.unlearning import SSIUU, BoundPenalty, Penalty, unlearn


class SecondOrderSSIUU(Penalty):
    """``lam * sum_{A_t < 0} (A_t - A_{t-1})^2`` over MLP neurons, ``g`` inside the graph."""

    name = "ssiuu2nd"
    separate_retain = True

    def __init__(self, lam: float) -> None:
        if not lam >= 0:
            raise ValueError(f"lam must be >= 0, got {lam!r}")
        self.lam = float(lam)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "lam": self.lam}

    def bind(self, model: Any, forget: Any, retain: Any = None) -> BoundPenalty:
        hooks = mlp_hook_names(model)
        state: dict[str, torch.Tensor | None] = {"prev": None}

        def term(step: Any) -> torch.Tensor:
            out, part = step.passes["forget"].out, step.parts["forget"]
            sources = [out.acts[h] for h in hooks]
            grads = torch.autograd.grad(step.logprob("forget").exp().sum(), sources,
                                        create_graph=True)
            mask = step.rows["forget"].attention_mask
            width = min(sources[0].shape[1], mask.shape[1])
            m = mask[:, :width, None].to(sources[0].dtype)
            now = torch.stack([(a[part][:, :width] * g[part][:, :width] * m).sum((0, 1))
                               for a, g in zip(sources, grads, strict=True)])
            prev, state["prev"] = state["prev"], now.detach()
            if prev is None:
                return now.new_zeros(())
            return self.lam * (now - prev)[now.detach() < 0].square().sum()

        return BoundPenalty(term, hooks=hooks)


def run(before, forget, retain, method: str, lam: float | None, order: int, target: float, seed: int):
    penalty = None
    if lam is not None:
        penalty = SecondOrderSSIUU(lam) if order == 2 else SSIUU(lam, level="neuron")
    return unlearn(before, forget, retain, method=method, penalty=penalty, max_steps=300,
                   target_forget_accuracy=target, tolerance=1e-6, eval_every=1, seed=seed,
                   progress=False)


RUNS = {"ga": ("ga", None, 1), "gd": ("gd", None, 1), "gd+ssiuu0.1": ("gd", 0.1, 1),
        "gd+ssiuu2nd0.001": ("gd", 1e-3, 2), "gd+ssiuu2nd0.01": ("gd", 0.01, 2),
        "gd+ssiuu2nd0.1": ("gd", 0.1, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--runs", nargs="+", default=list(RUNS), choices=list(RUNS))
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    torch.set_num_threads(1)
    warnings.simplefilter("ignore")
    before, splits = tiny_splits(args.seeds)
    rows = []
    print("| split | run | steps | forget / retain acc. | hide logprob (ΣD+, ΣD−) | hide prob "
          "| growth of negative A: activation / gradient / cross |\n|---|---|---|---|---|---|---|")
    for seed, forget, retain, target in splits:
        everything = list(forget) + list(retain)
        a0 = {t: attribute(before, everything, steps=8, target=t, progress=False)
              for t in ("logprob", "prob")}
        batch = batch_for(before, list(forget))
        for name in args.runs:
            method, lam, order = RUNS[name]
            res = run(before, forget, retain, method, lam, order, target, seed)
            row = {"seed": seed, "run": name, "steps": res.steps,
                   "forget_acc": float(ns.accuracy(res.bridge, forget)),
                   "retain_acc": float(ns.accuracy(res.bridge, retain))}
            for t in ("logprob", "prob"):
                a1 = attribute(res.bridge, everything, steps=8, target=t, progress=False)
                d = diagnose(a0[t], a1, forget, control=retain, progress=False)
                row[f"hide_{t}"], row[f"dplus_{t}"], row[f"dminus_{t}"] = (
                    d.hide_index, d.d_plus_total, d.d_minus_total)
            row.update(split(before, res.bridge, batch))
            rows.append(row)
            print(f"| {seed} | {name} | {row['steps']} | {row['forget_acc']:.2f} / {row['retain_acc']:.2f} "
                  f"| {row['hide_logprob']:.3f} ({row['dplus_logprob']:.2f}, {row['dminus_logprob']:.2f}) "
                  f"| {row['hide_prob']:.3f} | {row['act_term']:.1f} / {row['grad_term']:.1f} / "
                  f"{row['cross_term']:.1f} |", flush=True)
    if args.json:
        from neuronscope.facts import atomic_write_text

        atomic_write_text(args.json, json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
