"""Benchmark: exact integrated gradients on a real 30-layer model (SmolLM2-135M-Instruct).

For a few well-known facts, all 30 layers, target P(answer), single thread, CPU time:
1. ``engine``: the default, adaptive Gauss-Legendre panels to |delta| <= 1 % of f(x) - f(b);
   facts per minute, steps per layer.
2. ``bare``: only the forward/backward passes the engine's own step schedule needs
   (``bare_schedule``); engine / bare.
3. ``fixed``: for each layer the fewest Gauss-Legendre steps (4, 8, 16, ...) at which a fixed
   rule meets the same 1 % on every fact (what captum would need, chosen with hindsight).
4. ``captum``: captum's LayerIntegratedGradients-style IG per layer at those step counts.
5. ``alternatives``: error of cheaper choices (activation x gradient, 8 and 20 fixed steps,
   a layer subset) against exact IG (the engine at tolerance 1e-3).
6. ``organism`` (not run by default): the adaptive default against 20 fixed steps on the
   small organism's first 100 facts.

Stages are written to the JSON file as they finish; a rerun with the same file skips them.
``--stages`` picks some (two processes can share the work: the captum stage waits for the
engine stage's cached result).

    OMP_NUM_THREADS=1 python benchmarks/bench_attribution_real.py --model smollm2 \\
        --json benchmarks/results/attribution-smollm2.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import torch

import neuronscope as ns
from neuronscope import Fact, FactSet
from neuronscope.atomic import atomic_write_text
from neuronscope.attribution import attribute
from neuronscope.attribution.adaptive import allowance
from neuronscope.attribution.engine import bare_schedule
from neuronscope.scoring import batch_for

sys.path.insert(0, str(Path(__file__).parent))
from bench_attribution import captum_per_layer

FACTS = [("The capital of France is", " Paris"), ("The capital of Germany is", " Berlin"),
         ("The largest planet in the solar system is", " Jupiter"),
         ("Water freezes at zero degrees", " Celsius"), ("The opposite of hot is", " cold"),
         ("The capital of Japan is", " Tokyo"), ("The chemical symbol for gold is", " Au"),
         ("The first president of the United States was George", " Washington")]
MODELS = {"smollm2": "smollm2-135m-instruct"}  # ns.pretrained names; anything else is a folder
LADDER = (4, 8, 16, 32, 64, 128, 256)


def cpu(fn: Any) -> tuple[float, Any]:
    start = time.process_time()
    out = fn()
    return time.process_time() - start, out


def relative_delta(attr: Any) -> torch.Tensor:
    """|delta| relative to the rule's scale: <= 0.01 means within the 1 % rule."""
    scale = allowance(attr.target_input[:, None], attr.target_baseline, 1.0)
    return attr.convergence_delta.double().abs() / scale


def neuron_error(approx: torch.Tensor, exact: torch.Tensor) -> dict:
    """Per (fact, layer): relative L2 error of the neuron scores and top-20 overlap."""
    diff = (approx - exact).double().norm(dim=-1) / exact.double().norm(dim=-1).clamp_min(1e-30)
    top_a = approx.abs().topk(20, dim=-1).indices
    top_e = exact.abs().topk(20, dim=-1).indices
    overlap = torch.tensor([[len(set(top_a[f, i].tolist()) & set(top_e[f, i].tolist())) / 20
                             for i in range(exact.shape[1])] for f in range(exact.shape[0])])
    return {"rel_l2_median": float(diff.median()), "rel_l2_max": float(diff.max()),
            "rel_l2_mean": float(diff.mean()), "top20_overlap_mean": float(overlap.mean()),
            "top20_overlap_min": float(overlap.min())}


class Stages:
    """Results written atomically after every stage; finished stages are skipped on rerun."""

    def __init__(self, path: Path | None, header: dict) -> None:
        self.path = path
        self.data = json.loads(path.read_text()) if path is not None and path.exists() else {}
        self.data.update(header)

    def done(self, name: str) -> bool:
        return name in self.data

    def put(self, name: str, value: dict) -> None:
        self.data[name] = value
        print(f"[{name}] " + json.dumps({k: v for k, v in value.items() if not isinstance(v, (list, dict))}),
              flush=True)
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_text(self.path, json.dumps(self.data, indent=2))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="smollm2", help="'smollm2' or a Hugging Face folder")
    parser.add_argument("--facts", type=int, default=4)
    parser.add_argument("--target", default="prob", choices=("prob", "logprob"))
    parser.add_argument("--rounds", type=int, default=2,
                        help="engine and bare passes alternate; fastest counts")
    parser.add_argument("--stages", default="engine,bare,fixed,captum,alternatives")
    parser.add_argument("--cache", default="/tmp/neuronscope-bench-real",
                        help="attribution results kept between stages")
    parser.add_argument("--captum-rows", type=int, default=48,
                        help="captum's internal_batch_size (rows per pass; all at once ran out of memory)")
    parser.add_argument("--organism-facts", type=int, default=100, help="facts of the organism stage")
    parser.add_argument("--json")
    args = parser.parse_args()
    torch.set_num_threads(1)
    model = (ns.pretrained(MODELS[args.model], device="cpu") if args.model in MODELS
             else ns.load_model(args.model))
    facts = FactSet([Fact(p, a, id=f"f{i}") for i, (p, a) in enumerate(FACTS[: args.facts])])
    layers = list(range(model.cfg.n_layers))
    header = {"command": " ".join(["OMP_NUM_THREADS=1 python", *sys.argv]), "model": args.model,
              "facts": [f.prompt + f.answer for f in facts], "target": args.target, "threads": 1,
              "clock": "process CPU seconds, one thread", "torch": torch.__version__,
              "machine": f"{platform.machine()}, {os.cpu_count()} cores (shared)"}
    stages = Stages(Path(args.json) if args.json else None, header)
    cache = Path(args.cache)
    cache.mkdir(parents=True, exist_ok=True)
    wanted = args.stages.split(",")
    attr_kw = dict(target=args.target, progress=False)

    def cached(name: str, make: Any) -> tuple[float, Any]:
        path = cache / f"{name}-{args.facts}-{args.target}.pt"
        if path.exists():
            record = torch.load(path, weights_only=False)
            return record["cpu_s"], record["attr"]
        seconds, attr = cpu(make)
        torch.save({"cpu_s": seconds, "attr": attr}, path)
        return seconds, attr

    attribute(model, facts[:1], layers=[29], steps=2, **attr_kw)  # warm-up
    if ("engine" in wanted or "bare" in wanted) and not stages.done("bare"):
        engine_times, bare_times = [], []
        attr = None
        batch = batch_for(model, facts)
        for _ in range(args.rounds):
            seconds, attr = cpu(lambda: attribute(model, facts, **attr_kw))
            engine_times.append(seconds)
            runs = bare_schedule(model, batch, layers, attr.steps_used, args.target)
            seconds, _ = cpu(lambda runs=runs: [run() for run in runs])
            bare_times.append(seconds)
            print(f"  engine {engine_times[-1]:.1f} s, bare {bare_times[-1]:.1f} s", flush=True)
        torch.save({"cpu_s": min(engine_times), "attr": attr},
                   cache / f"engine-{args.facts}-{args.target}.pt")
        rel = relative_delta(attr)
        stages.put("engine", {
            "cpu_s": min(engine_times), "cpu_s_rounds": engine_times,
            "facts_per_minute": 60 * len(facts) / min(engine_times),
            "max_relative_delta": float(rel.max()), "steps_total": int(attr.steps_used.sum()),
            "steps_per_layer_mean": attr.steps_used.double().mean(0).tolist(),
            "steps_per_layer_max": attr.steps_used.max(0).values.tolist(),
            "grad_rows": attr.meta["grad_rows"], "value_rows": attr.meta["value_rows"],
            "grad_passes": attr.meta["grad_passes"], "value_passes": attr.meta["value_passes"],
            "mode": attr.meta["mode"]})
        stages.put("bare", {"cpu_s": min(bare_times), "cpu_s_rounds": bare_times,
                            "engine_over_bare": min(engine_times) / min(bare_times)})
    exact_s, exact = None, None
    if "fixed" in wanted and not stages.done("fixed"):
        need = {}
        remaining = list(layers)
        times = {}
        for steps in LADDER:
            if not remaining:
                break
            seconds, attr = cpu(lambda steps=steps, remaining=remaining: attribute(
                model, facts, layers=remaining, steps=steps, tolerance=None, **attr_kw))
            times[steps] = seconds
            ok = (relative_delta(attr) <= 0.01).all(0)
            for i, layer in enumerate(remaining):
                if bool(ok[i]):
                    need[layer] = steps
            remaining = [layer for layer in remaining if layer not in need]
            print(f"  {steps} steps: {len(need)} layers meet 1 %", flush=True)
        stages.put("fixed", {"steps_needed_per_layer": [need.get(layer) for layer in layers],
                             "layers_not_met_at_256": remaining, "sum_steps": sum(need.values()),
                             "cpu_s_ladder": times})
    if "captum" in wanted and not stages.done("captum"):
        need = stages.data["fixed"]["steps_needed_per_layer"]
        engine_file = cache / f"engine-{args.facts}-{args.target}.pt"
        while not engine_file.exists():  # another process may be running the engine stage
            time.sleep(10)
        record = torch.load(engine_file, weights_only=False)
        engine = record["attr"]
        total, worst = 0.0, 0.0
        per_layer = []
        for layer in layers:
            steps = need[layer] or LADDER[-1]
            seconds, scores = cpu(lambda layer=layer, steps=steps: captum_per_layer(
                model, facts, [layer], steps, "gausslegendre", args.captum_rows, args.target))
            total += seconds
            change = (engine.target_input - engine.target_baseline[:, layer]).double()
            delta = scores[:, 0].double().sum(-1) - change
            allowed = allowance(engine.target_input, engine.target_baseline[:, layer], 0.01)
            worst = max(worst, float((delta.abs() / allowed).max()) * 0.01)
            per_layer.append(seconds)
            print(f"  captum layer {layer}: {steps} steps, {seconds:.1f} s", flush=True)
        stages.put("captum", {"cpu_s": total, "internal_batch_size": args.captum_rows,
                              "cpu_s_per_layer": per_layer, "max_relative_delta": worst,
                              "captum_over_engine": total / record["cpu_s"], "engine_cpu_s": record["cpu_s"]})
    if "alternatives" in wanted and not stages.done("alternatives"):
        exact_s, exact = cached("exact", lambda: attribute(model, facts, tolerance=1e-3, **attr_kw))
        engine = torch.load(cache / f"engine-{args.facts}-{args.target}.pt", weights_only=False)
        rows = {"exact (tolerance 1e-3)": {"cpu_s": exact_s,
                                           "max_relative_delta": float(relative_delta(exact).max()),
                                           "steps_total": int(exact.steps_used.sum())}}
        choices = {
            "adaptive, tolerance 1e-2 (default)": (engine["cpu_s"], engine["attr"]),
            "adaptive, tolerance 5e-2": cached(
                "tol5", lambda: attribute(model, facts, tolerance=0.05, **attr_kw)),
            "fixed 20 Gauss-Legendre steps (old default)": cached(
                "fixed20", lambda: attribute(model, facts, steps=20, tolerance=None, **attr_kw)),
            "fixed 8 Gauss-Legendre steps": cached(
                "fixed8", lambda: attribute(model, facts, steps=8, tolerance=None, **attr_kw)),
            "activation x gradient": cached(
                "gxa", lambda: attribute(model, facts, method="grad_x_act", **attr_kw)),
            "adaptive, layers 15-29 only": cached(
                "subset", lambda: attribute(model, facts, layers=list(range(15, 30)), **attr_kw)),
        }
        for name, (seconds, attr) in choices.items():
            index = [layers.index(layer) for layer in attr.layers]
            row = {"cpu_s": seconds, "cost_vs_default": seconds / engine["cpu_s"],
                   **neuron_error(attr.scores, exact.scores[:, index])}
            if attr.method == "ig":
                over = (relative_delta(attr) > 0.01).any(0).nonzero().flatten().tolist()
                row["max_relative_delta"] = float(relative_delta(attr).max())
                row["layers_over_1pct"] = [attr.layers[i] for i in over]
            rows[name] = row
        stages.put("alternatives", {"rows": rows})
    if "organism" in wanted and not stages.done("organism"):
        world = ns.FactWorld.synthetic()
        org = ns.organism(world, size="small", progress=False)
        org_facts = world.facts[: args.organism_facts]
        rows = {}
        settings = {"adaptive, tolerance 1e-2 (default)": {},
                    "fixed 20 Gauss-Legendre steps (old default)": {"steps": 20, "tolerance": None}}
        for name, kw in settings.items():
            seconds, attr = cpu(lambda kw=kw: attribute(org.bridge, org_facts, target="prob", progress=False,
                                                        **kw))
            rel = relative_delta(attr)
            rows[name] = {"cpu_s": seconds, "pairs": rel.numel(), "pairs_over_1pct": int((rel > 0.01).sum()),
                          "max_relative_delta": float(rel.max()),
                          "steps_mean": float(attr.steps_used.double().mean()),
                          "steps_max": int(attr.steps_used.max())}
        stages.put("organism", {"facts": len(org_facts), "layers": org.bridge.cfg.n_layers, "rows": rows})
    if stages.path is not None:
        print(f"wrote {stages.path}")


if __name__ == "__main__":
    main()
