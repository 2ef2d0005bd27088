"""How far SSIUU's reused gradient is from the exact one, on the small organism.

SSIUU(gradient="reuse") reads ``g = d log P / d h`` off the main backward pass of GA / GD, after
removing the penalty's direct term in closed form; what stays in is the penalty's gradient that
flows back from later hooked layers. This script puts the organism some way into GD unlearning
(so that P is not saturated), records ``g`` and ``A`` at the original weights (the "previous
visit"), then takes one step's ``g`` both ways at the unlearned weights and prints, per layer,
``|g_reuse - g_exact| / |g_exact|`` for several lambdas.

    OMP_NUM_THREADS=1 python benchmarks/ssiuu_gradient_error.py --steps 30 --facts 64
"""

from __future__ import annotations

import argparse

import torch

import neuronscope as ns
from neuronscope.scoring import batch_for
from neuronscope.unlearning import SSIUU, unlearn
from neuronscope.unlearning.forward import answer_logprobs, forward


def relative_errors(before, after, batch, lam: float) -> list[float]:
    index = torch.arange(len(batch))
    states = {}
    for mode in ("reuse", "exact"):
        penalty = SSIUU(lam, gradient=mode).build(after, batch, "gd")
        out = forward(before, batch, penalty.hook_names)  # the previous visit, exact g
        acts = [out.acts[name] for name in penalty.hook_names]
        penalty.update(acts, answer_logprobs(out.logits, batch)[0], batch, index)
        out = forward(after, batch, penalty.hook_names)
        acts = [out.acts[name] for name in penalty.hook_names]
        logp, _, picked, mask = answer_logprobs(out.logits, batch)
        if mode == "reuse":
            value = penalty.reuse_step(acts, batch, index, weight=1.0 / float(mask.sum()))
            (picked.sum() / mask.sum() + value).backward()
            print(f"  penalty share of the gradient per layer (lam {lam:g}): "
                  + ", ".join(f"{v:.1e}" for v in penalty.penalty_share))
        else:
            penalty.update(acts, logp, batch, index)
        after.zero_grad(set_to_none=True)
        states[mode] = penalty
    reuse, exact = states["reuse"], states["exact"]
    return [float((r - e).norm() / e.norm()) for r, e in zip(reuse.grad, exact.grad, strict=True)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=30, help="GD steps before the comparison")
    parser.add_argument("--facts", type=int, default=64, help="forget facts in the minibatch")
    parser.add_argument("--lams", type=float, nargs="+", default=[1e-3, 1e-2, 1e-1])
    args = parser.parse_args()
    torch.set_num_threads(1)
    world = ns.FactWorld.synthetic(n_people=400, seed=0)
    org = ns.organism(world, size="small", seed=0, progress=False)
    forget, retain = world.facts.split(forget=0.1, by="group", seed=0)
    after = unlearn(org.model, forget, retain, method="gd", max_steps=args.steps,
                    target_forget_accuracy=None, progress=False).model
    batch = batch_for(after, list(forget)[: args.facts])
    for lam in args.lams:
        errors = relative_errors(org.model, after, batch, lam)
        print(f"lam {lam:g}: |g_reuse - g_exact| / |g_exact| per layer: "
              + ", ".join(f"{e:.1e}" for e in errors), flush=True)


if __name__ == "__main__":
    main()
