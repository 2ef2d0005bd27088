"""The paper's diagnostics on a real model: SmolLM2-135M-Instruct, GD vs GA, capitals it knows.

Question: on a pretrained model (real knowledge, as in the paper's FaithUn setting), do the
paper's definitions (per-token activation x gradient, D+ / D- of eqs. 4-5 with top-100 sums,
the module x layer map, the logit lens, attribution stability under a harmful attack) show
D- >> D+ after GD and GA, spurious neurons in attention Q / K, and a logit lens below chance?
One seed, a handful of facts: a small look, not the 3-seed study (that needs issue 14's
real-model preset). Facts: "The capital of X is" for capitals the model answers exactly;
8 are forgotten, the others retained (and used as the control facts).

Run (one thread, about 40 minutes on a shared machine):
    OMP_NUM_THREADS=1 PYTHONPATH=. python studies/paper_diagnostics_smollm2.py
(``--lr 5e-5``: GD reached forget accuracy 0 in 2 steps with retain accuracy 0 as well;
that run's GD row is kept in ``results/paper-diagnostics-smollm2-lr5e-5-gd.json``.)
Writes ``studies/results/paper-diagnostics-smollm2.json`` after each stage (atomically);
cited in ``docs/diagnostics.md``.
"""

from __future__ import annotations

import argparse
import json
import time
import warnings
from pathlib import Path

import torch

import neuronscope as ns
from neuronscope.atomic import atomic_write_text
from neuronscope.attribution import attribute
from neuronscope.diagnostics import attribution_stability, diagnose, logit_lens

OUT = Path(__file__).parent / "results" / "paper-diagnostics-smollm2.json"
CAPITALS = {"France": "Paris", "Germany": "Berlin", "Italy": "Rome", "Spain": "Madrid", "Japan": "Tokyo",
            "China": "Beijing", "Russia": "Moscow", "Egypt": "Cairo", "Canada": "Ottawa", "Greece": "Athens",
            "Portugal": "Lisbon", "Austria": "Vienna", "Poland": "Warsaw", "Norway": "Oslo",
            "Sweden": "Stockholm", "Finland": "Helsinki", "Denmark": "Copenhagen", "Ireland": "Dublin",
            "Hungary": "Budapest", "Thailand": "Bangkok", "Kenya": "Nairobi", "Peru": "Lima",
            "Chile": "Santiago", "Cuba": "Havana", "England": "London", "Belgium": "Brussels",
            "Netherlands": "Amsterdam", "Iran": "Tehran", "Syria": "Damascus", "Argentina": "Buenos Aires",
            "Mexico": "Mexico City", "Australia": "Canberra", "Vietnam": "Hanoi"}
SITES = ["q", "k", "v", "o", "gate", "up", "mlp_post", "down"]


def run(path: str = "smollm2-135m-instruct", n_forget: int = 8, seed: int = 0, lr: float = 1e-5,
        max_steps: int = 40, m: int = 100, out: Path = OUT) -> dict:
    model = ns.pretrained(path, device="cpu") if not Path(path).is_dir() else ns.load_model(path)
    facts = [ns.Fact(f"The capital of {c} is", a, subject=c, relation="capital", id=c)
             for c, a in CAPITALS.items()]
    known = [f for f, hit in zip(facts, ns.accuracy(model, facts, per_fact=True), strict=True) if hit]
    order = torch.randperm(len(known), generator=torch.Generator().manual_seed(seed)).tolist()
    forget = ns.FactSet([known[i] for i in order[:n_forget]])
    retain = ns.FactSet([known[i] for i in order[n_forget:]])
    everything = list(forget) + list(retain)
    command = "OMP_NUM_THREADS=1 PYTHONPATH=. python studies/paper_diagnostics_smollm2.py"
    record: dict = {"command": command,
                    "model": path, "forget": forget.ids, "retain": retain.ids, "lr": lr,
                    "max_steps": max_steps, "seed": seed, "m": m, "sites": SITES, "runs": []}
    opts = {"method": "grad_x_act", "sites": SITES, "token_extremes": True, "progress": False,
            "batch_size": 4}
    t0 = time.perf_counter()
    before = {t: attribute(model, everything, target=t, **opts) for t in ("prob", "logprob")}
    record["lens_before"] = logit_lens(model, forget, pool=facts, seed=seed).accuracy.tolist()
    record["seconds_before"] = time.perf_counter() - t0
    atomic_write_text(out, json.dumps(record, indent=1))
    for method in ("gd", "ga"):
        t0 = time.perf_counter()
        res = ns.unlearn(model, forget, retain, method=method, lr=lr, max_steps=max_steps,
                         target_forget_accuracy=0.0, eval_every=1, seed=seed, progress=False)
        after = res.bridge
        row = {"method": method, "steps": res.steps, "stopped": res.history.stopped_reason,
               "forget_acc": float(ns.accuracy(after, forget)),
               "retain_acc": float(ns.accuracy(after, retain)),
               "median_p": float(ns.answer_logprob(after, forget).median().exp())}
        for target in ("prob", "logprob"):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                diag = diagnose(before[target], attribute(after, everything, target=target, **opts), forget,
                                control=list(retain), definition="paper", progress=False)
            maps = diag.module_layer_map(m)
            flags: dict[str, int] = {}
            for flag in diag.flagged:
                start = 0
                for site, width in diag.site_widths:
                    if start <= flag.neuron < start + width:
                        flags[site] = flags.get(site, 0) + 1
                        break
                    start += width
            row[target] = {"top_m": diag.top_m(m), "total_d_plus": diag.d_plus_total,
                           "total_d_minus": diag.d_minus_total, "hide_index": diag.hide_index,
                           "flags": len(diag.flagged), "flags_by_site": flags,
                           "module_map_d_plus": maps["d_plus"].tolist(),
                           "module_map_d_minus": maps["d_minus"].tolist()}
        row["lens_after"] = logit_lens(after, forget, pool=facts, seed=seed).accuracy.tolist()
        attack = ns.relearn(after, attack="harmful", forget=forget, retain=retain, p=0.3, lr=1e-5,
                            seed=seed, progress=False)
        row["attack_max_eval_acc"] = float(attack.eval_accuracy.max())
        a = attribute(after, everything, target="prob", **opts)
        b = attribute(attack.bridge, everything, target="prob", **opts)
        stability = attribution_stability(a, b)
        row["stability_pearson"], row["stability_spearman"] = stability.pearson, stability.spearman
        row["seconds"] = time.perf_counter() - t0
        record["runs"].append(row)
        atomic_write_text(out, json.dumps(record, indent=1))
        print(json.dumps({k: v for k, v in row.items() if k not in ("prob", "logprob")}), flush=True)
    return record


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--path", default="smollm2-135m-instruct",
                        help="an ns.pretrained name or a Hugging Face folder")
    parser.add_argument("--lr", type=float, default=1e-5)
    parser.add_argument("--max-steps", type=int, default=40)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    run(path=args.path, lr=args.lr, max_steps=args.max_steps, out=args.out)


if __name__ == "__main__":
    main()
