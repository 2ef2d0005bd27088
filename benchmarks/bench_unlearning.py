"""Per-step cost of SSIUU over its base method, and over the floor, side by side in one run.

Variants of each base method, interleaved (same seeded minibatches from the same start model,
repeated ``--repeats`` times):

* ``base``: the method alone;
* ``floor``: the method plus one bare gradient of ``sum P`` over the forget rows with respect
  to every trainable parameter, in the forget rows' own forward graph (the retain rows get
  their own pass, as under SSIUU), and nothing else: the least any exact current-step SSIUU
  can cost (a :class:`BareGradient` penalty returning 0; it goes through the library's
  penalty seam like SSIUU itself);
* ``ssiuu``: ``SSIUU(lam)``, the paper's Algorithm 1 (parameter level, every parameter);
* ``ssiuu_neuron``: ``SSIUU(lam, level="neuron")``.

Reports median per-step times and the ratios ``ssiuu / base`` and ``ssiuu / floor`` (median
over repeats of the ratio of medians). The first ``--skip`` steps of each run are dropped.
Evaluation time is excluded (``TrainHistory.step_seconds``). Times are process CPU time by
default (``--clock cpu``): on a shared machine, wall time mostly measures the neighbours.

Usage:
    OMP_NUM_THREADS=1 python benchmarks/bench_unlearning.py --size small --steps 20 --repeats 3 \
        --json benchmarks/results/unlearning-small.json
    OMP_NUM_THREADS=1 python benchmarks/bench_unlearning.py --size gpt2 --retain-max 256 \
        --steps 6 --skip 2 --repeats 1 --json benchmarks/results/unlearning-gpt2.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
import warnings
from typing import Any

import torch

import neuronscope as ns
from neuronscope.facts import atomic_write_text
from neuronscope.unlearning import SSIUU, BoundPenalty, Penalty, get_method, unlearn

VARIANTS = ("base", "floor", "ssiuu", "ssiuu_neuron")


class BareGradient(Penalty):
    """The floor: ``d sum P / d phi`` over the forget rows for every parameter, then nothing."""

    name = "bare_gradient"
    separate_retain = True

    def bind(self, model: Any, forget: Any, retain: Any = None) -> BoundPenalty:
        params = [p for p in model.parameters() if p.requires_grad]

        def term(step: Any) -> torch.Tensor:
            torch.autograd.grad(step.logprob("forget").exp().sum(), params, retain_graph=True,
                                allow_unused=True)
            return params[0].new_zeros(())

        return BoundPenalty(term)


def run(args: argparse.Namespace) -> dict:
    torch.set_num_threads(args.threads)
    warnings.simplefilter("ignore", RuntimeWarning)
    world = ns.FactWorld.synthetic(n_people=args.people, seed=0)
    forget, retain = world.facts.split(forget=args.forget, by="group", seed=0)
    if args.retain_max is not None:
        retain = retain[: args.retain_max]
    if args.size == "gpt2":  # per-step cost only: a random model knows no facts
        from bench_attribution import gpt2_shaped

        model = gpt2_shaped(world)
    else:
        model = ns.organism(world, size=args.size, seed=0, progress=False).bridge
    penalties = {"base": None, "floor": BareGradient(), "ssiuu": SSIUU(args.lam),
                 "ssiuu_neuron": SSIUU(args.lam, level="neuron")}
    times: dict[str, dict[str, list[float]]] = {m: {v: [] for v in VARIANTS} for m in args.methods}
    ratios: dict[str, dict[str, list[float]]] = {m: {} for m in args.methods}
    for rep in range(args.repeats):
        for method in args.methods:
            medians = {}
            for name in VARIANTS:
                refusals = world.refusals if get_method(method).needs_refusals else None
                result = unlearn(model, forget, retain, method=method, penalty=penalties[name],
                                 max_steps=args.steps, eval_every=args.steps,
                                 batch_size=args.batch_size, retain_batch_size=args.batch_size,
                                 target_forget_accuracy=None, seed=rep, progress=False,
                                 refusals=refusals)
                steps = result.history.step_seconds(cpu=args.clock == "cpu")[args.skip:]
                times[method][name].extend(steps)
                medians[name] = statistics.median(steps)
            for name in ("floor", "ssiuu", "ssiuu_neuron"):
                ratios[method].setdefault(f"{name}/base", []).append(medians[name] / medians["base"])
            for name in ("ssiuu", "ssiuu_neuron"):
                ratios[method].setdefault(f"{name}/floor", []).append(
                    medians[name] / medians["floor"])
            print(f"repeat {rep} {method}: " + ", ".join(f"{k} {v * 1e3:.1f} ms"
                                                         for k, v in medians.items()), flush=True)
    table = {}
    for method in args.methods:
        row: dict[str, float] = {f"{v}_ms": statistics.median(times[method][v]) * 1e3
                                 for v in VARIANTS}
        row.update({k: statistics.median(v) for k, v in ratios[method].items()})
        table[method] = row
    n_params = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return {"settings": vars(args), "torch": torch.__version__, "threads": args.threads,
            "n_forget": len(forget), "n_retain": len(retain), "parameters": n_params,
            "table": table}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="small", choices=("tiny", "small", "gpt2"),
                        help="an organism, or a random GPT-2-small-shaped model (12 x 768, "
                             "d_mlp 3072, vocabulary 50,257; bench_attribution.gpt2_shaped)")
    parser.add_argument("--retain-max", type=int, default=None,
                        help="keep only this many retain facts (the end-of-run evaluation)")
    parser.add_argument("--people", type=int, default=400)
    parser.add_argument("--forget", type=float, default=0.1)
    parser.add_argument("--batch-size", type=int, default=64, help="forget and retain rows")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--skip", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--lam", type=float, default=1e-3)
    parser.add_argument("--clock", default="cpu", choices=("cpu", "wall"))
    parser.add_argument("--threads", type=int, default=int(os.environ.get("OMP_NUM_THREADS", 1)))
    parser.add_argument("--methods", nargs="+", default=["gd"])
    parser.add_argument("--json", default=None, help="also write the results here")
    args = parser.parse_args()
    start = time.perf_counter()
    report = run(args)
    report["seconds"] = time.perf_counter() - start
    print(f"\n{'method':8}" + "".join(f" {v + ' ms':>16}" for v in VARIANTS)
          + "  ssiuu/base ssiuu/floor neuron/base")
    for method, row in report["table"].items():
        print(f"{method:8}" + "".join(f" {row[v + '_ms']:16.1f}" for v in VARIANTS)
              + f"  {row['ssiuu/base']:10.2f} {row['ssiuu/floor']:11.2f}"
              f" {row['ssiuu_neuron/base']:11.2f}")
    if args.json:
        atomic_write_text(args.json, json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
