"""Where the growth of negative attribution comes from: the activation or the gradient.

SSIUU's neuron-level penalty holds ``A = sum_k h * g`` of the negatively attributed neurons with
``g`` (``d log P / d h``) a constant from the previous step, so it acts on the change of the
activation ``h`` only: a change of ``g`` (the weights downstream of the neuron) is not
penalised. This script unlearns the tiny organism with GA, GD and GD + SSIUU to the oracle's
forget accuracy (the protocol of ``hide_index_study.py``), takes ``h`` and ``g`` at the prompt
positions of every forget fact before (``A``) and after (``A'``) unlearning, and splits each
fact-neuron change exactly::

    A' - A = sum_k (h' - h) g   +   sum_k h (g' - g)   +   sum_k (h' - h)(g' - g)
             activation term        gradient term          cross term

It reports, summed over fact-neuron pairs: the growth of negative attribution
``sum max(max(-A', 0) - max(-A, 0), 0)`` (per-pair clipping), the part of it on pairs that were
already negative (deepening) and on pairs that crossed from >= 0 (crossing), and, over the
pairs whose negative attribution grew, the sum of each term.

Question: when unlearning grows negative attribution, does it move the activation ``h`` (which
first-order SSIUU penalises) or the gradient ``g`` (which it does not)?

Command (about 2 minutes single-threaded; writes the JSON the docs cite)::

    OMP_NUM_THREADS=1 python studies/attribution_change_split.py --seeds 0 1 2 \
        --json studies/results/attribution-change-split-tiny.json

Cited in: ``docs/diagnostics.md`` ("Why: SSIUU holds the activation, the optimiser moves the
gradient"); ``studies/ssiuu_second_order.py`` imports its ``split`` and ``tiny_splits``.
"""

from __future__ import annotations

import argparse
import json

import torch

import neuronscope as ns
from neuronscope.hooks import mlp_hook_names
from neuronscope.scoring import batch_for
from neuronscope.unlearning import SSIUU, unlearn
from neuronscope.unlearning.forward import answer_logprobs, forward

METHODS = {"ga": ("ga", None), "gd": ("gd", None), "gd+ssiuu0.1": ("gd", 0.1),
           "gd+ssiuu1": ("gd", 1.0)}


def h_and_g(model, batch) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Per layer ``h`` and ``g = d log P / d h`` at the prompt positions (zero elsewhere)."""
    names = mlp_hook_names(model)
    out = forward(model, batch, names)
    acts = [out.acts[name] for name in names]
    grads = torch.autograd.grad(answer_logprobs(out.logits, batch)[0].sum(), acts)
    width = int(batch.prompt_mask.sum(-1).max())
    mask = batch.prompt_mask[:, :width, None].to(acts[0].dtype)
    return [a[:, :width].detach() for a in acts], [g[:, :width] * mask for g in grads]


def split(before, after, batch) -> dict:
    (h0, g0), (h1, g1) = h_and_g(before, batch), h_and_g(after, batch)
    h0, g0, h1, g1 = (torch.stack(x, 1).double() for x in (h0, g0, h1, g1))  # fact layer pos neuron
    a0, a1 = (h0 * g0).sum(2), (h1 * g1).sum(2)
    act_term = ((h1 - h0) * g0).sum(2)
    grad_term = (h0 * (g1 - g0)).sum(2)
    cross = ((h1 - h0) * (g1 - g0)).sum(2)
    # the split is exact: the three terms add up to the change (float64)
    torch.testing.assert_close(act_term + grad_term + cross, a1 - a0, rtol=1e-9, atol=1e-9)
    growth = ((-a1).clamp(min=0) - (-a0).clamp(min=0)).clamp(min=0)
    grew = growth > 0
    return {"growth": float(growth.sum()), "deepening": float(growth[a0 < 0].sum()),
            "crossing": float(growth[a0 >= 0].sum()),
            "act_term": float(act_term[grew].sum()), "grad_term": float(grad_term[grew].sum()),
            "cross_term": float(cross[grew].sum()), "change": float((a1 - a0)[grew].sum())}


def tiny_splits(seeds):
    """The tiny organism (world seed 0, organism seed 0) and, per forget split, ``(seed, forget,
    retain, target)`` with target the oracle's forget accuracy (``hide_index_study.py``)."""
    world = ns.FactWorld.synthetic(n_people=60, seed=0)
    cache = "/tmp/hide_study_cache"
    before = ns.organism(world, size="tiny", seed=0, cache=cache, progress=False).bridge

    def splits():
        for seed in seeds:
            forget, retain = world.facts.split(forget=0.2, by="group", seed=seed)
            oracle = ns.organism(world, size="tiny", seed=0, exclude=forget, cache=cache,
                                 progress=False)
            yield seed, forget, retain, float(ns.accuracy(oracle.bridge, forget))

    return before, splits()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    torch.set_num_threads(1)
    before, splits = tiny_splits(args.seeds)
    rows = []
    print("| seed | method | steps | growth of negative A | deepening / crossing "
          "| activation / gradient / cross term (pairs that grew) |\n|---|---|---|---|---|---|")
    for seed, forget, retain, target in splits:
        batch = batch_for(before, list(forget))
        for name in args.methods:
            base, lam = METHODS[name]
            res = unlearn(before, forget, retain, method=base,
                          penalty=SSIUU(lam, level="neuron") if lam is not None else None,
                          max_steps=300, target_forget_accuracy=target, tolerance=1e-6,
                          eval_every=1, seed=seed, progress=False)
            row = {"seed": seed, "method": name, "steps": res.steps, **split(before, res.bridge, batch)}
            rows.append(row)
            print(f"| {seed} | {name} | {row['steps']} | {row['growth']:.2f} "
                  f"| {row['deepening']:.2f} / {row['crossing']:.2f} "
                  f"| {row['act_term']:.2f} / {row['grad_term']:.2f} / {row['cross_term']:.2f} |",
                  flush=True)
    if args.json:
        from neuronscope.facts import atomic_write_text

        atomic_write_text(args.json, json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
