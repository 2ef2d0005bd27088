"""A second-order SSIUU prototype: hold the *full* attribution of negative neurons.

The paper's (first-order) SSIUU holds ``A = sum_k h * g`` with ``g`` a constant from the
previous step, so only the change of the activation ``h`` is penalised
(``attribution_change_split.py`` shows the optimiser then hides through ``g``). This prototype
penalises ``lam * sum_{A_prev < 0} |A_prev - h_now . g_now|`` with ``g_now = d log P / d h`` of the
current step taken with ``create_graph=True``, so that the penalty's gradient also reaches the
weights downstream of each neuron (a double backward: about 3x a step). It is a study script,
not a library feature: it swaps the exact-mode penalty of ``ns.unlearn`` for this one.

It unlearns the tiny organism to the oracle's forget accuracy (the protocol of
``hide_index_study.py``) with GA, GD, GD + SSIUU and GD + second-order SSIUU, and prints the
hide index (IG, 8 steps, ``logprob`` and ``prob``), the attribution-change split and the steps.

    OMP_NUM_THREADS=1 python benchmarks/ssiuu_second_order.py --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import json
import warnings

import torch
from attribution_change_split import split, tiny_splits

import neuronscope as ns
from neuronscope.attribution import attribute
from neuronscope.diagnostics import diagnose
from neuronscope.hooks import check_layers
from neuronscope.scoring import batch_for
from neuronscope.unlearning import SSIUU, unlearn
from neuronscope.unlearning import methods as methods_module
from neuronscope.unlearning.ssiuu import NeuronPenalty, _positions, attribution_now


class SecondOrderPenalty(NeuronPenalty):
    """``lam * sum |A_prev - h_now . g_now|`` over neurons with ``A_prev < 0``, ``g_now`` in the graph."""

    def step(self, acts, full, logprob, rows, index) -> torch.Tensor:
        index = index.to(self.seen.device)
        take = self._take(acts[0])
        grads = torch.autograd.grad(logprob.sum(), list(full), create_graph=True)
        mask = _positions(rows, self.config.positions)[:, :take, None].to(acts[0].dtype)
        n = len(rows)
        gs = [g[:n, :take] * mask for g in grads]
        now = torch.stack([attribution_now(a[:, :take], g) for a, g in zip(acts, gs, strict=True)], 1)
        prev = self.attr[index]
        active = ((prev < 0) & self.seen[index].view(-1, 1, 1)).to(prev.dtype)
        value = self.config.lam * ((prev - now).abs() * active).sum()
        for j, g in enumerate(gs):
            self.grad[j][index, :take] = g.detach()
        self.attr[index] = now.detach()
        self.seen[index] = True
        return value


def second_order_ssiuu(self, out, rows, sf, logp, index, mask):
    if isinstance(self.penalty, SecondOrderPenalty):
        full = [out.acts[name] for name in self.penalty.hook_names]
        return self.penalty.step([a[sf] for a in full], full, logp[sf], rows, index)
    return _first_order(self, out, rows, sf, logp, index, mask)


_first_order = methods_module.UnlearningLoss._ssiuu


def run(before, forget, retain, method: str, lam: float | None, order: int, target: float, seed: int):
    ssiuu = SSIUU(lam, gradient="exact") if lam is not None else None
    build = SSIUU.build
    if order == 2:
        def build2(config, model, batch, base="gd"):
            return SecondOrderPenalty(config, model, check_layers(model, config.layers), batch)
        SSIUU.build = build2
    methods_module.UnlearningLoss._ssiuu = second_order_ssiuu
    try:
        return unlearn(before, forget, retain, method=method, ssiuu=ssiuu, max_steps=300,
                       target_forget_accuracy=target, tolerance=1e-6, eval_every=1, seed=seed,
                       progress=False)
    finally:
        SSIUU.build = build
        methods_module.UnlearningLoss._ssiuu = _first_order


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
                   "forget_acc": float(ns.accuracy(res.model, forget)),
                   "retain_acc": float(ns.accuracy(res.model, retain))}
            for t in ("logprob", "prob"):
                a1 = attribute(res.model, everything, steps=8, target=t, progress=False)
                d = diagnose(a0[t], a1, forget, control=retain, progress=False)
                row[f"hide_{t}"], row[f"dplus_{t}"], row[f"dminus_{t}"] = (
                    d.hide_index, d.d_plus_total, d.d_minus_total)
            row.update(split(before, res.model, batch))
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
