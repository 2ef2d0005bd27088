"""Unlearning settings against excess harmful recovery, outside the robustness benchmark.

For choosing the benchmark's recipe: for each seed, the small organism and its oracle, the
forget set (``--by``: whole families by default), the forget-accuracy target (``--target``:
``chance``, ``oracle`` or a number), then every settings variant of ``--method`` (a JSON list of
``ns.unlearn`` settings) unlearns to the target and is attacked by the harmful attack at p=0.1
and p=0.3 (40 steps, lr 3e-4, batch 16, as the benchmark). Prints one JSON line per run:
steps, forget / retain accuracy, and excess recovery over the oracle.

    OMP_NUM_THREADS=1 python studies/robustness_variants.py --method ga --target chance \\
        --variants '[{"lr": 1e-3, "eval_every": 1}, {"lr": 1e-4, "max_steps": 600}]'
"""

from __future__ import annotations

import argparse
import json
import time

import torch

import neuronscope as ns
from neuronscope.bench.robustness import run_unlearning
from neuronscope.scoring import accuracy
from neuronscope.unlearning import parse_recipe


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--method", default="ga", help="a recipe, e.g. 'gd' or 'gd+ssiuu(1e-3)'")
    parser.add_argument("--variants", default='[{}]', help="JSON list of ns.unlearn settings")
    parser.add_argument("--by", default="group", choices=("group", "subject", "fact"))
    parser.add_argument("--target", default="chance", help="'chance', 'oracle' or a number")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    args = parser.parse_args()
    torch.set_num_threads(1)
    world = ns.FactWorld.synthetic(n_people=400, seed=0)
    attack = dict(steps=40, lr=3e-4, batch_size=16, progress=False)
    for seed in args.seeds:
        forget, retain = world.facts.split(forget=0.1, by=args.by, seed=seed)
        org = ns.organism(world, size="small", seed=seed, progress=False)
        oracle = ns.organism(world, size="small", seed=seed, exclude=forget, progress=False)
        oracle_acc = float(accuracy(oracle.bridge, forget))
        target = {"oracle": oracle_acc, "chance": world.chance(forget)}.get(args.target)
        target = float(args.target) if target is None else target
        base = {p: ns.relearn(oracle.bridge, attack="harmful", forget=forget, p=p, seed=seed,
                              **attack).attacked for p in (0.1, 0.3)}
        for variant in json.loads(args.variants):
            start = time.time()
            model, summary = run_unlearning(org.bridge, forget, retain, parse_recipe(args.method),
                                            target=target, seed=seed, world=world, settings=variant)
            excess = {p: ns.relearn(model, attack="harmful", forget=forget, p=p, seed=seed,
                                    **attack).attacked - base[p] for p in (0.1, 0.3)}
            print(json.dumps({"by": args.by, "method": args.method, "seed": seed, **variant,
                              "steps": summary["unlearn_steps"], "target": round(target, 3),
                              "forget": round(float(accuracy(model, forget)), 3),
                              "retain": round(float(accuracy(model, retain)), 3),
                              "excess_p0.1": round(excess[0.1], 3), "excess_p0.3": round(excess[0.3], 3),
                              "seconds": round(time.time() - start, 1)}), flush=True)


if __name__ == "__main__":
    main()
