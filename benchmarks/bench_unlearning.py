"""Per-step wall time of each unlearning method with and without SSIUU, in one run.

Every variant of a method runs the same seeded minibatches from the same starting model;
variants are interleaved (base; SSIUU neuron with its default gradient -- read off the main
backward pass for GA and GD, guarded: an extra pass at the first step with an active penalty
and every 10 steps checks the reused g, and the run switches to the extra pass for good once
its error passes 0.25 of g's drift since the previous visit --; the same unguarded (no checks);
SSIUU neuron with the extra pass forced; SSIUU parameter; base, ...) and repeated, and
the report gives median per-step times and the SSIUU / base ratio per method (the ratio of
medians, and the ratio of mean step times, which counts the guard's check steps). The first
``--skip`` steps of each run are dropped (allocator warm-up). Evaluation time is excluded
(``TrainHistory.step_seconds``). Times are process CPU time by default (``--clock cpu``):
on a machine shared with other jobs, wall time mostly measures the neighbours.

Usage:
    OMP_NUM_THREADS=1 python benchmarks/bench_unlearning.py --size small --steps 30 --repeats 3
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import time
import warnings

import torch

import neuronscope as ns
from neuronscope.unlearning import SSIUU, unlearn

METHODS = ("ga", "gd", "npo", "simnpo", "dpo", "rmu")


def run(args: argparse.Namespace) -> dict:
    torch.set_num_threads(args.threads)
    warnings.simplefilter("ignore", RuntimeWarning)  # the reuse guard's switch: recorded below
    world = ns.FactWorld.synthetic(n_people=args.people, seed=0)
    forget, retain = world.facts.split(forget=args.forget, by="group", seed=0)
    if args.retain_max is not None:
        retain = retain[: args.retain_max]
    if args.size == "gpt2":  # per-step cost only: a random model knows no facts
        from bench_attribution import gpt2_shaped

        model = gpt2_shaped(world)
    else:
        model = ns.organism(world, size=args.size, seed=0, progress=False).model
    variants = {"base": None, "ssiuu_neuron": SSIUU(args.lam),
                "ssiuu_neuron_unguarded": SSIUU(args.lam, reuse_tolerance=math.inf),
                "ssiuu_neuron_exact": SSIUU(args.lam, gradient="exact"),
                "ssiuu_parameter": SSIUU(args.lam, level="parameter")}
    switched: dict[str, list] = {m: [] for m in args.methods}
    times: dict[str, dict[str, list[float]]] = {m: {v: [] for v in variants} for m in args.methods}
    ratios: dict[str, dict[str, list[float]]] = {m: {v: [] for v in variants if v != "base"}
                                                for m in args.methods}
    mean_ratios: dict[str, dict[str, list[float]]] = {m: {v: [] for v in variants if v != "base"}
                                                     for m in args.methods}
    for rep in range(args.repeats):
        for method in args.methods:
            medians, means = {}, {}
            for name, ssiuu in variants.items():
                result = unlearn(model, forget, retain, method=method, ssiuu=ssiuu,
                                 max_steps=args.steps, eval_every=args.steps,
                                 target_forget_accuracy=None, seed=rep, progress=False,
                                 refusals=world.refusals if method == "dpo" else None)
                if name == "ssiuu_neuron":  # where the guarded run switched to the extra pass
                    switched[method].append(result.settings["ssiuu_gradient"]
                                            ["switched_to_exact_after_step"])
                steps = result.history.step_seconds(cpu=args.clock == "cpu")[args.skip:]
                times[method][name].extend(steps)
                medians[name] = statistics.median(steps)
                means[name] = statistics.fmean(steps)
            for name in ratios[method]:
                ratios[method][name].append(medians[name] / medians["base"])
                mean_ratios[method][name].append(means[name] / means["base"])
            print(f"repeat {rep} {method}: " + ", ".join(f"{k} {v * 1e3:.1f} ms"
                                                         for k, v in medians.items()), flush=True)
    table = {}
    for method in args.methods:
        base = statistics.median(times[method]["base"])
        row = {"base_ms": base * 1e3}
        for name in ratios[method]:
            row[f"{name}_ms"] = statistics.median(times[method][name]) * 1e3
            row[f"{name}_ratio"] = statistics.median(ratios[method][name])
            # with the guard's check steps counted: mean step time over mean base step time
            row[f"{name}_mean_ratio"] = statistics.median(mean_ratios[method][name])
        row["guarded_switched_after_step"] = switched[method]
        table[method] = row
    return {"settings": vars(args), "torch": torch.__version__, "threads": args.threads,
            "n_forget": len(forget), "n_retain": len(retain), "table": table}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="small", choices=("tiny", "small", "gpt2"),
                        help="an organism, or a random GPT-2-small-shaped model (12 x 768, "
                             "d_mlp 3072, vocabulary 50,257; bench_attribution.gpt2_shaped)")
    parser.add_argument("--retain-max", type=int, default=None,
                        help="keep only this many retain facts (the end-of-run evaluation)")
    parser.add_argument("--people", type=int, default=400)
    parser.add_argument("--forget", type=float, default=0.1)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--skip", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--lam", type=float, default=1e-3)
    parser.add_argument("--clock", default="cpu", choices=("cpu", "wall"))
    parser.add_argument("--threads", type=int, default=int(os.environ.get("OMP_NUM_THREADS", 1)))
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    parser.add_argument("--json", default=None, help="also write the results here")
    args = parser.parse_args()
    start = time.perf_counter()
    report = run(args)
    report["seconds"] = time.perf_counter() - start
    names = ("ssiuu_neuron", "ssiuu_neuron_unguarded", "ssiuu_neuron_exact", "ssiuu_parameter")
    print(f"\n{'method':8} {'base ms':>9}"
          + "".join(f" {n[6:]:>20} {'ratio':>6} {'mean':>5}" for n in names))
    for method, row in report["table"].items():
        print(f"{method:8} {row['base_ms']:9.1f}"
              + "".join(f" {row[n + '_ms']:20.1f} {row[n + '_ratio']:6.2f}"
                        f" {row[n + '_mean_ratio']:5.2f}" for n in names))
    if args.json:
        from neuronscope.facts import atomic_write_text

        atomic_write_text(args.json, json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
