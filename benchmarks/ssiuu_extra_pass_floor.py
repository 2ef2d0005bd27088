"""What the exact SSIUU gradient costs at the least: a plain GA / GD step plus one bare backward
pass of ``sum_f log P_f`` with respect to the MLP activations, nothing else.

Exact first-order SSIUU needs ``g = d log P / d h`` apart from the training gradient (which
also holds the penalty's own gradient), so on top of its base step it needs at least this pass.
Variants, interleaved over the same minibatch (64 forget and 64 retain facts, small organism,
process CPU time, one thread, median over steps after the first 3):

* ``ga``: forward with the MLP hooks, backward of the mean answer log-prob, AdamW step;
  ``ga + pass``: the same plus ``torch.autograd.grad(log P, h, retain_graph=True)``;
* ``gd``: forget and retain rows in one stacked pass; ``gd separate``: two passes, as SSIUU's
  exact mode runs them so that its extra pass covers the forget rows only; ``gd + pass``:
  separate passes plus the extra pass on the forget rows.

    OMP_NUM_THREADS=1 python benchmarks/ssiuu_extra_pass_floor.py
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings

import torch

import neuronscope as ns
from neuronscope.hooks import mlp_hook_names
from neuronscope.scoring import batch_for
from neuronscope.training import detached_copy
from neuronscope.unlearning.forward import answer_logprobs, forward, stack_batches


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=25)
    parser.add_argument("--facts", type=int, default=64)
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    torch.set_num_threads(1)
    world = ns.FactWorld.synthetic(n_people=400, seed=0)
    forget, retain = world.facts.split(forget=0.1, by="group", seed=0)
    model = detached_copy(ns.organism(world, size="small", seed=0, progress=False).model)
    fb = batch_for(model, list(forget)[: args.facts])
    rb = batch_for(model, list(retain)[: args.facts])
    names = mlp_hook_names(model, range(model.cfg.n_layers))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-6)

    def extra_pass(out, logp) -> None:
        torch.autograd.grad(logp.sum(), [out.acts[n] for n in names], retain_graph=True)

    def step(variant: str) -> float:
        start = time.process_time()
        if variant.startswith("ga"):
            out = forward(model, fb, names)
            logp, _, picked, mask = answer_logprobs(out.logits, fb)
            loss = picked.sum() / mask.sum()
            if variant == "ga + pass":
                extra_pass(out, logp)
        elif variant == "gd":
            stacked, (f, r) = stack_batches([fb, rb])
            out = forward(model, stacked, names)
            _, _, picked, mask = answer_logprobs(out.logits, stacked)
            loss = picked[f].sum() / mask[f].sum() - picked[r].sum() / mask[r].sum()
        else:
            out = forward(model, fb, names)
            logp, _, picked, mask = answer_logprobs(out.logits, fb)
            _, _, r_picked, r_mask = answer_logprobs(forward(model, rb).logits, rb)
            loss = picked.sum() / mask.sum() - r_picked.sum() / r_mask.sum()
            if variant == "gd + pass":
                extra_pass(out, logp)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        return time.process_time() - start

    variants = ("ga", "ga + pass", "gd", "gd separate", "gd + pass")
    times: dict[str, list[float]] = {v: [] for v in variants}
    for _ in range(args.steps):
        for v in variants:
            times[v].append(step(v))
    median = {v: statistics.median(t[3:]) for v, t in times.items()}
    for v in variants:
        base = median["ga" if v.startswith("ga") else "gd"]
        print(f"{v:12s} {median[v] * 1e3:7.1f} ms  {median[v] / base:.2f}x")


if __name__ == "__main__":
    main()
