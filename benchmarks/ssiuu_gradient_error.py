"""How far SSIUU's reused gradient is from the exact one during unlearning, on the small organism.

SSIUU(gradient="reuse") reads ``g = d log P / d h`` off the main backward pass of GA / GD; what
it holds besides ``d log P / d h`` is the penalty's gradient flowing back from later hooked
layers. This script runs GA and GD with SSIUU in reuse mode and the guard's check at every
``--every`` steps (an extra backward pass gives the exact ``g``; the guard never switches here,
``reuse_tolerance`` is huge) and prints, at each check, per layer: the reused ``g``'s relative
error ``E = |g_reuse - g_exact| / |g_exact|``, the drift ``D`` of the exact ``g`` from the
constant the penalty used at that step (the fact's previous ``g``), and ``max E / D`` (what the
default guard compares with ``reuse_tolerance = 0.25``).

    OMP_NUM_THREADS=1 python benchmarks/ssiuu_gradient_error.py --steps 30 --every 5
"""

from __future__ import annotations

import argparse
import json
import warnings

import torch

import neuronscope as ns
import neuronscope.unlearning.ssiuu as ssiuu_module
from neuronscope.unlearning import SSIUU, unlearn


def trace(org, forget, retain, method: str, lam: float, steps: int, seed: int) -> list[dict]:
    """The guard's measurements at each check of one run (the check steps and the values)."""
    checks: list[dict] = []
    guard = ssiuu_module.NeuronPenalty._guard

    def record(penalty) -> None:
        checks.append({"step": penalty.steps, "error": list(penalty.reuse_error),
                       "drift": list(penalty.drift),
                       "ratio": max(e / max(d, 1e-30) for e, d in
                                    zip(penalty.reuse_error, penalty.drift, strict=True))})
        guard(penalty)

    ssiuu_module.NeuronPenalty._guard = record
    try:
        unlearn(org.model, forget, retain, method=method, ssiuu=SSIUU(lam, reuse_tolerance=1e30),
                max_steps=steps, eval_every=steps, target_forget_accuracy=None, seed=seed,
                progress=False)
    finally:
        ssiuu_module.NeuronPenalty._guard = guard
    return checks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--every", type=int, default=5, help="steps between checks")
    parser.add_argument("--lams", type=float, nargs="+", default=[1e-3, 1e-2, 1e-1])
    parser.add_argument("--methods", nargs="+", default=["ga", "gd"], choices=("ga", "gd"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", default=None, help="also write the checks here")
    args = parser.parse_args()
    torch.set_num_threads(1)
    warnings.simplefilter("ignore", RuntimeWarning)
    ssiuu_module.REUSE_CHECK_EVERY = args.every
    world = ns.FactWorld.synthetic(n_people=400, seed=0)
    org = ns.organism(world, size="small", seed=0, progress=False)
    forget, retain = world.facts.split(forget=0.1, by="group", seed=0)
    report = {"settings": vars(args), "runs": []}
    for method in args.methods:
        for lam in args.lams:
            checks = trace(org, forget, retain, method, lam, args.steps, args.seed)
            report["runs"].append({"method": method, "lam": lam, "checks": checks})
            print(f"{method} lam {lam:g}")
            for c in checks:
                print(f"  step {c['step']:3d}  E per layer "
                      + " ".join(f"{e:.1e}" for e in c["error"])
                      + "  D " + " ".join(f"{d:.2f}" for d in c["drift"])
                      + f"  max E/D {c['ratio']:.2f}", flush=True)
    if args.json:
        from neuronscope.facts import atomic_write_text

        atomic_write_text(args.json, json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
