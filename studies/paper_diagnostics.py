"""The paper's own diagnostics on the tiny organism: GA vs GD vs GD + SSIUU.

Question: with the paper's definitions (per-token activation x gradient of P, D+ / D- of eqs.
4-5, top-100 sums, per-module maps, logit lens, attribution stability under a harmful
attack), do the paper's claims hold on the organism? (D- >> D+ for GA/GD, spurious neurons
mostly in attention Q/K, GD's logit lens below chance, SSIUU's attributions stable under
attack.) Each method unlearns until forget accuracy reaches the oracle's (the organism
trained without the forget facts), as in ``hide_index_study.py``. SSIUU: the paper's
Algorithm 1 (``penalty=SSIUU(lam)``: parameter level, P) at lambda 1e-3 (the paper's FaithUn
value), 0.1 and 1, and the neuron-level penalty at lambda 0.1 (``SSIUU(0.1, level="neuron")``).

Run (one thread; the machine is shared; about 5 minutes):
    OMP_NUM_THREADS=1 python studies/paper_diagnostics.py --seeds 0
Writes ``studies/results/paper-diagnostics-tiny.json`` after each run (atomically);
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
from neuronscope.attribution.sites import SITES
from neuronscope.diagnostics import attribution_stability, diagnose, logit_lens
from neuronscope.unlearning import SSIUU, unlearn

METHODS = {"ga": ("ga", None), "gd": ("gd", None), "gd+ssiuu1e-3": ("gd", SSIUU(1e-3)),
           "gd+ssiuu0.1": ("gd", SSIUU(0.1)), "gd+ssiuu1": ("gd", SSIUU(1.0)),
           "gd+ssiuu0.1,neuron": ("gd", SSIUU(0.1, level="neuron"))}
OUT = Path(__file__).parent / "results" / "paper-diagnostics-tiny.json"


def _sites(model) -> list[str]:
    return [s for s in SITES if f"blocks.0.{SITES[s].split('.', 2)[2]}" in model.hook_dict]


def run(seeds=(0,), cache: str = "/tmp/hide_study_cache", control_max: int = 60, m: int = 100,
        module_m: int = 10, attack_p: float = 0.1, out: Path = OUT) -> dict:
    world = ns.FactWorld.synthetic(n_people=60, seed=0)
    org = ns.organism(world, size="tiny", seed=0, cache=cache, progress=False)
    before = org.bridge
    sites = _sites(before)
    paper_opts = {"method": "grad_x_act", "target": "prob", "sites": sites, "token_extremes": True,
                  "progress": False}
    record = {"command": "OMP_NUM_THREADS=1 python studies/paper_diagnostics.py --seeds "
                         + " ".join(map(str, seeds)), "sites": sites, "m": m, "module_m": module_m,
              "attack_p": attack_p, "runs": []}
    for seed in seeds:
        forget, retain = world.facts.split(forget=0.2, by="group", seed=seed)
        oracle = ns.organism(world, size="tiny", seed=0, exclude=forget, cache=cache, progress=False)
        target = float(ns.accuracy(oracle.bridge, forget))
        control = list(retain)
        pick = torch.randperm(len(control), generator=torch.Generator().manual_seed(seed))[:control_max]
        control = [control[int(i)] for i in pick]
        everything = list(forget) + control
        before_paper = attribute(before, everything, **paper_opts)
        before_paper_lp = attribute(before, everything, **{**paper_opts, "target": "logprob"})
        before_ig = attribute(before, everything, steps=8, target="logprob", progress=False)
        lens_before = logit_lens(before, forget, pool=world.facts, seed=seed)
        record.setdefault("logit_lens_before", {})[str(seed)] = lens_before.accuracy.tolist()
        for name, (base, penalty) in METHODS.items():
            t0 = time.perf_counter()
            res = unlearn(before, forget, retain, method=base, penalty=penalty,
                          max_steps=300, target_forget_accuracy=target, eval_every=1, seed=seed,
                          progress=False)
            after = res.bridge
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                paper = diagnose(before_paper, attribute(after, everything, **paper_opts), forget,
                                 control=control, definition="paper", progress=False)
                paper_lp = diagnose(before_paper_lp, attribute(after, everything, **{**paper_opts,
                                                                                     "target": "logprob"}),
                                    forget, control=control, definition="paper", progress=False)
                ours = diagnose(before_ig, attribute(after, everything, steps=8, target="logprob",
                                                     progress=False), forget, control=control,
                                progress=False)
            top = paper.top_m(m)
            maps = paper.module_layer_map(module_m)
            lens_after = logit_lens(after, forget, pool=world.facts, seed=seed)
            attack = ns.relearn(after, attack="harmful", forget=forget, retain=retain, p=attack_p,
                                seed=seed, progress=False)
            stability = attribution_stability(attribute(after, everything, **paper_opts),
                                              attribute(attack.bridge, everything, **paper_opts))
            row = {
                "seed": seed, "method": name,
                "ssiuu": penalty.to_dict() if penalty is not None else None,
                "steps": res.steps, "stopped": res.history.stopped_reason, "target_forget_acc": target,
                "forget_acc": float(ns.accuracy(after, forget)),
                "retain_acc": float(ns.accuracy(after, retain)),
                "paper_top_m_d_plus": top["d_plus"], "paper_top_m_d_minus": top["d_minus"],
                "paper_total_d_plus": paper.d_plus_total, "paper_total_d_minus": paper.d_minus_total,
                "paper_hide_index": paper.hide_index, "paper_flags": len(paper.flagged),
                "paper_flags_by_site": {},
                "module_map_sites": [s for s, _ in paper.site_widths],
                "module_map_d_plus": maps["d_plus"].tolist(),
                "module_map_d_minus": maps["d_minus"].tolist(),
                "ours_hide_index_ig_logprob": ours.hide_index, "ours_flags": len(ours.flagged),
                "logit_lens_after": lens_after.accuracy.tolist(),
                "attack_max_eval_acc": float(attack.eval_accuracy.max()),
                "attack_final_eval_acc": attack.attacked,
                "stability_pearson": stability.pearson, "stability_spearman": stability.spearman,
            }
            top_lp = paper_lp.top_m(m)
            maps_lp = paper_lp.module_layer_map(module_m)
            row.update({"paper_logp_top_m_d_plus": top_lp["d_plus"],
                        "paper_logp_top_m_d_minus": top_lp["d_minus"],
                        "paper_logp_hide_index": paper_lp.hide_index,
                        "paper_logp_flags": len(paper_lp.flagged),
                        "paper_logp_flags_by_site": {},
                        "module_map_logp_d_plus": maps_lp["d_plus"].tolist(),
                        "module_map_logp_d_minus": maps_lp["d_minus"].tolist()})
            for diag, key in ((paper, "paper_flags_by_site"), (paper_lp, "paper_logp_flags_by_site")):
                for flag in diag.flagged:
                    start = 0
                    for site, width in diag.site_widths:
                        if start <= flag.neuron < start + width:
                            row[key][site] = row[key].get(site, 0) + 1
                            break
                        start += width
            row["seconds"] = time.perf_counter() - t0
            record["runs"].append(row)
            atomic_write_text(out, json.dumps(record, indent=1))
            print(json.dumps({k: (round(v, 4) if isinstance(v, float) else v) for k, v in row.items()
                              if not k.startswith("module_map")}), flush=True)
    return record


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    run(seeds=args.seeds, out=args.out)


if __name__ == "__main__":
    main()
