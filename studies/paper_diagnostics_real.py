"""The paper's diagnostics on the real-model preset: SmolLM2-135M-Instruct, GD vs SSIUU vs GA, 3 seeds.

Question: on a pretrained model unlearning real knowledge (the paper's FaithUn setting, issue
14's ``real`` preset), do the paper's definitions show what the paper reports?
(1) D- >> D+ after GD and GA (eqs. 4-5, per-token activation x gradient of P, top-100 sums),
with spurious (hiding) neurons mostly in attention Q and K (the module x layer map over the
attention and MLP sites); SSIUU erasing instead; (2) neuronscope's own diagnosis (IG of log P on
the MLP neurons, hide index, flags against the retain facts as the null); (3) the logit lens:
after GD the gold answer beats a same-relation distractor in ~20 % of cases in layers 18-27
(below the 0.5 chance), after SSIUU at chance; (4) attribution stability under one harmful
attack (p = 0.1, lr 1e-5, 10 steps, batch 8, pool of wrongly answered forget facts): GA 0.73,
NPO 0.87, SSIUU 0.99 in the paper.

Inputs (read only): the unlearned models, splits and unlearning summaries the ``real`` preset
saved under ``--real`` (``seed{S}/models/{method}.pt``, ``seed{S}/splits.json``,
``seed{S}/unlearn-{method}.json``). A unit (seed, method) waits until its model exists.
Units run in the order seed 0 (gd, gd+ssiuu, ga), seed 1, seed 2, skipping ahead to the next
available unit instead of idling. Each unit writes its stages atomically to
``studies/results/paper-diagnostics-real/seed{S}-{method}.json``; a rerun does only what is missing.

Run (one thread; the real preset's results folder as input):
    OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 nice -n 5 python studies/paper_diagnostics_real.py \\
        --real /work/main/benchmarks/results/real
Summary table (mean +- std over seeds): ``python studies/paper_diagnostics_real.py --table``.
Cited in ``docs/diagnostics.md``.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import statistics
import time
import warnings
from pathlib import Path
from typing import Any

import torch

import neuronscope as ns
from neuronscope.atomic import atomic_write_text
from neuronscope.attribution import attribute
from neuronscope.bench.real import REAL, model_path
from neuronscope.diagnostics import attribution_stability, diagnose, logit_lens
from neuronscope.diagnostics.paper import top_m_sum
from neuronscope.mcqa import mcqa_metric
from neuronscope.realworld import real_facts

OUT = Path(__file__).parent / "results" / "paper-diagnostics-real"
CACHE = Path("/tmp/neuronscope-paper-diagnostics-real")  # scratch: attributions (~130 MB each)
METHODS = ("gd", "gd+ssiuu", "ga", "gd+ssiuu(1)")  # gd+ssiuu(1): the lambda = 1 probe of docs/real-model.md
SSIUU_RUNS = ("gd+ssiuu", "gd+ssiuu(1)")
SEEDS = (0, 1, 2)
SITES = ["q", "k", "v", "o", "gate", "up", "mlp_post", "down"]
M = 100
LENS_LAYERS = range(18, 28)  # the paper's fig. 4 band
COMMAND = ("OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 nice -n 5 python studies/paper_diagnostics_real.py "
           "--real /work/main/benchmarks/results/real")
PAPER_OPTS = {"method": "grad_x_act", "sites": SITES, "progress": False, "batch_size": 8}
TARGETS = ("prob", "logprob")  # the paper's P; and log P (P collapses after unlearning)


def _read(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _write(path: Path, record: dict) -> None:
    atomic_write_text(path, json.dumps(record, indent=1))


def _subset(facts: ns.FactSet, ids: list[str]) -> ns.FactSet:
    by_id = {f.id: f for f in facts}
    return ns.FactSet([by_id[i] for i in ids])


def _load(state: Path | None) -> Any:
    model = ns.pretrained(REAL.model, device="cpu")
    if state is not None:
        model.load_state_dict(torch.load(state, map_location="cpu"))
    return model


def _paper_stage(diag: Any) -> dict:
    """Eqs. 4-5 summaries: top-m sums, totals, the module x layer map, where the top D- sits."""
    maps = diag.module_layer_map(M)
    sites = [name for name, _ in diag.site_widths]
    width = diag.n_neurons

    def by_site(values: torch.Tensor) -> dict[str, int]:
        """Sites of the top-M units, counting only units with a positive value (when fewer
        than M are positive, ties at 0 would otherwise fill the list in index order: q first)."""
        top = values.flatten().topk(M)
        out: dict[str, int] = dict.fromkeys(sites, 0)
        for value, index in zip(top.values.tolist(), top.indices.tolist(), strict=True):
            if value > 0:
                out[diag.unit_label(index % width).split("/")[0]] += 1
        return out

    per_site, start = {}, 0
    for name, w in diag.site_widths:  # each module alone, e.g. the MLP neurons (mlp_post)
        plus, minus = diag.d_plus[:, start : start + w], diag.d_minus[:, start : start + w]
        per_site[name] = {"top_m_d_plus": top_m_sum(plus, M), "top_m_d_minus": top_m_sum(minus, M),
                          "total_d_plus": float(plus.clamp(min=0).double().sum()),
                          "total_d_minus": float(minus.clamp(min=0).double().sum())}
        start += w
    flags: dict[str, int] = dict.fromkeys(sites, 0)
    for flag in diag.flagged:
        flags[diag.unit_label(flag.neuron).split("/")[0]] += 1
    return {"top_m": diag.top_m(M), "total_d_plus": diag.d_plus_total, "total_d_minus": diag.d_minus_total,
            "hide_index": diag.hide_index, "n_neurons": diag.n_neurons * len(diag.layers),
            "sites": sites, "module_map_d_plus": maps["d_plus"].tolist(),
            "module_map_d_minus": maps["d_minus"].tolist(),
            "module_mean_d_plus": dict(zip(sites, maps["d_plus"].mean(1).tolist(), strict=True)),
            "module_mean_d_minus": dict(zip(sites, maps["d_minus"].mean(1).tolist(), strict=True)),
            "top_m_d_minus_by_site": by_site(diag.d_minus), "top_m_d_plus_by_site": by_site(diag.d_plus),
            "flags": len(diag.flagged), "flags_by_site": flags, "per_site": per_site}


def _mem_available_gb() -> float:
    """MemAvailable of /proc/meminfo in GiB (inf where there is none)."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) / 2**20
    except OSError:
        pass
    return float("inf")


def _wait_for_memory(gib: float, poll: float = 30.0) -> None:
    """Wait until the machine has ``gib`` GiB available (the study shares it with other jobs)."""
    while _mem_available_gb() < gib:
        time.sleep(poll)


class Study:
    """Lean on memory: at most one SmolLM2 copy at a time outside the attack; attributions go
    to ``cache`` (a scratch folder, not results) and are read back one pair at a time."""

    def __init__(self, real: Path, out: Path, cache: Path, ours: bool, attack_memory: float,
                 work_memory: float) -> None:
        self.real, self.out, self.cache, self.ours = real, out, cache, ours
        self.attack_memory, self.work_memory = attack_memory, work_memory
        self.facts = real_facts()
        self.metric = mcqa_metric(style=REAL.mcqa_style)
        cache.mkdir(parents=True, exist_ok=True)

    def ready(self, seed: int, method: str) -> bool:
        return (model_path(self.real, seed, method).is_file()
                and (self.real / f"seed{seed}" / f"unlearn-{method}.json").is_file()
                and (self.real / f"seed{seed}" / "splits.json").is_file())

    def record(self, seed: int, method: str) -> dict:
        return _read(self.out / f"seed{seed}-{method}.json") or {}

    def cheap_stages(self) -> tuple[str, ...]:
        return ("unlearned", "paper", "paper_logprob", "ours_gxa", "lens") + (("ours",) if self.ours else ())

    def split(self, seed: int) -> tuple[ns.FactSet, ns.FactSet]:
        splits = _read(self.real / f"seed{seed}" / "splits.json")
        return _subset(self.facts, splits["forget"]), _subset(self.facts, splits["retain"])

    # --- model work, written to the cache ----------------------------------------------------
    def _model_work(self, seed: int, label: str, state: Path | None) -> dict:
        """Attributions (P and log P, all sites, token extremes) of the forget + retain facts,
        the logit lens and P on the forget facts, for one model (``label``: original or a method)."""
        info_path = self.cache / f"seed{seed}-{label}.json"
        info = _read(info_path)
        if info is not None and all((self.cache / f"seed{seed}-{label}-{t}.pt").is_file() for t in TARGETS):
            return info
        forget, retain = self.split(seed)
        _wait_for_memory(self.work_memory)
        model = _load(state)
        start = time.process_time()
        for target in TARGETS:
            attr = attribute(model, list(forget) + list(retain), token_extremes=True, target=target,
                             **PAPER_OPTS)
            attr.save(self.cache / f"seed{seed}-{label}-{target}.pt")
            del attr
            gc.collect()
        lens = logit_lens(model, forget, pool=self.facts, seed=seed)
        info = {"lens": lens.accuracy.tolist(), "lens_layers": list(lens.layers),
                "lens_model_accuracy": lens.model_accuracy,
                "forget_greedy": float(ns.accuracy(model, forget)),
                "median_p": float(ns.answer_logprob(model, forget).median().exp()),
                "cpu_seconds": time.process_time() - start}
        _write(info_path, info)
        del model
        gc.collect()
        return info

    def _attr(self, seed: int, label: str, target: str) -> Any:
        return ns.NeuronAttribution.load(self.cache / f"seed{seed}-{label}-{target}.pt")

    # --- the stages --------------------------------------------------------------------------
    def cheap(self, seed: int, method: str) -> dict:
        path = self.out / f"seed{seed}-{method}.json"
        forget, retain = self.split(seed)
        summary = _read(self.real / f"seed{seed}" / f"unlearn-{method}.json")
        record = self.record(seed, method) or {
            "seed": seed, "method": method, "command": COMMAND, "m": M, "sites": SITES,
            "n_forget": len(forget), "n_control": len(retain), "cpu_seconds": {}}
        original = self._model_work(seed, "original", None)
        after = self._model_work(seed, method, model_path(self.real, seed, method))

        def stage(name: str, work) -> None:
            if name in record:
                return
            start = time.process_time()
            try:
                record[name] = work()
            except (ValueError, RuntimeError) as error:  # recorded and reported, not retried
                record[name] = {"error": f"{type(error).__name__}: {error}"}
            gc.collect()
            record["cpu_seconds"][name] = time.process_time() - start
            _write(path, record)
            print(f"seed {seed} {method}: {name} done in {record['cpu_seconds'][name]:.0f} s CPU", flush=True)

        stage("unlearned", lambda: {
            "preset": {k: summary.get(k) for k in ("lr", "steps", "forget_mcqa", "retain_mcqa", "test_mcqa",
                                                   "reached")},
            "forget_greedy": after["forget_greedy"], "median_p_before": original["median_p"],
            "median_p_after": after["median_p"],
            "attribution_cpu_seconds": {"original": original["cpu_seconds"], "after": after["cpu_seconds"]}})

        def paper(target: str) -> dict:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # the collapse note: P is the paper's choice here
                diag = diagnose(self._attr(seed, "original", target), self._attr(seed, method, target),
                                forget, control=list(retain), definition="paper", progress=False, seed=seed)
            return {**_paper_stage(diag), "target": target, "notes": diag.meta["notes"]}

        stage("paper", lambda: paper("prob"))
        stage("paper_logprob", lambda: paper("logprob"))

        def ours_gxa() -> dict:
            """neuronscope's definition (scores summed over prompt tokens, per-fact d+/d-, hide
            index, flags against the retain facts) on the log P activation x gradient already
            computed: the default diagnosis with one-step attribution instead of IG."""
            out = {}
            before_attr = self._attr(seed, "original", "logprob")
            after_attr = self._attr(seed, method, "logprob")
            for name, site in (("all_sites", None), ("mlp_post", "mlp_post")):
                pair = [a if site is None else a.select(site=site) for a in (before_attr, after_attr)]
                diag = diagnose(*pair, forget, control=list(retain), definition="neuronscope", seed=seed,
                                progress=False)
                flags: dict[str, int] = {}
                for flag in diag.flagged:
                    key = diag.unit_label(flag.neuron).split("/")[0] if site is None else site
                    flags[key] = flags.get(key, 0) + 1
                out[name] = {"total_d_plus": diag.d_plus_total, "total_d_minus": diag.d_minus_total,
                             "hide_index": diag.hide_index, "flags": len(diag.flagged),
                             "flags_by_site": flags,
                             "flagged_layers": sorted({f.layer for f in diag.flagged}),
                             "criterion": diag.meta["criterion"]}
            return out

        stage("ours_gxa", ours_gxa)

        def lens() -> dict:
            layers = original["lens_layers"]
            band = [after["lens"][layers.index(layer)] for layer in LENS_LAYERS]
            before_band = [original["lens"][layers.index(layer)] for layer in LENS_LAYERS]
            return {"before": original["lens"], "after": after["lens"],
                    "band": [LENS_LAYERS.start, LENS_LAYERS.stop - 1],
                    "band_mean_before": sum(before_band) / len(before_band),
                    "band_mean_after": sum(band) / len(band),
                    "model_accuracy_after": after["lens_model_accuracy"]}

        stage("lens", lens)
        if self.ours:
            def ours() -> dict:
                _wait_for_memory(self.attack_memory)
                before_model, after_model = _load(None), _load(model_path(self.real, seed, method))
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    diag = diagnose(before_model, after_model, forget, control=list(retain), seed=seed,
                                    progress=False)
                return {"settings": {k: diag.meta[k] for k in ("method", "steps", "target", "positions",
                                                               "criterion")},
                        "total_d_plus": diag.d_plus_total, "total_d_minus": diag.d_minus_total,
                        "hide_index": diag.hide_index, "flags": len(diag.flagged),
                        "top_m": diag.top_m(M), "notes": diag.meta["notes"]}

            stage("ours", ours)
        return record

    def stability(self, seed: int, method: str) -> dict:
        """One harmful attack (the preset's settings at lr 1e-5, p = 0.1) on the unlearned model,
        in place (one model copy plus the optimiser), then the attribution correlation."""
        path = self.out / f"seed{seed}-{method}.json"
        record = self.record(seed, method)
        forget, _ = self.split(seed)
        self._model_work(seed, method, model_path(self.real, seed, method))  # the cache may be gone
        _wait_for_memory(self.attack_memory)
        start = time.process_time()
        try:
            model = _load(model_path(self.real, seed, method))
            attack = ns.relearn(model, attack="harmful", forget=forget, p=0.1, pool="wrong", lr=1e-5,
                                report="max", metric=self.metric, steps=REAL.attack_steps,
                                eval_every=REAL.attack_eval_every, batch_size=REAL.attack_batch_size,
                                seed=seed, progress=False, inplace=True)
            gc.collect()
            n = len(forget)
            out = {"attack_max_forget_mcqa": float(attack.attacked), "attack_train": len(attack.train_ids),
                   "attack_eval": len(attack.eval_ids), "correlation": "Pearson over neurons of the "
                   "fact-mean activation x gradient (forget facts, all sites); Spearman beside it"}
            for target in TARGETS:
                a = self._attr(seed, method, target).select(slice(0, n))
                b = attribute(attack.bridge, list(forget), target=target, **PAPER_OPTS)
                out[target] = {"all_sites": attribution_stability(a, b).to_dict(),
                               "mlp_post": attribution_stability(a.select(site="mlp_post"),
                                                                 b.select(site="mlp_post")).to_dict()}
                del a, b
                gc.collect()
        except (ValueError, RuntimeError) as error:
            out = {"error": f"{type(error).__name__}: {error}"}
        record["stability"] = out
        record.setdefault("cpu_seconds", {})["stability"] = time.process_time() - start
        _write(path, record)
        print(f"seed {seed} {method}: stability done in {record['cpu_seconds']['stability']:.0f} s CPU",
              flush=True)
        return record


def run(real: Path, out: Path = OUT, cache: Path = CACHE, seeds=SEEDS, methods=METHODS, ours: bool = False,
        poll: float = 60.0, deadline: float | None = None, attack_memory: float = 6.0,
        work_memory: float = 3.0) -> None:
    """Cheap stages of every available unit first (seed 0's methods, then seed 1, ...), then
    the attack stages once the machine has ``attack_memory`` GiB available."""
    out.mkdir(parents=True, exist_ok=True)
    study = Study(real, out, cache, ours, attack_memory, work_memory)
    order = [(s, m) for s in seeds for m in methods]
    while True:
        cheap = [u for u in order if not all(k in study.record(*u) for k in study.cheap_stages())]
        attack = [u for u in order if u not in cheap and "stability" not in study.record(*u)]
        if not cheap and not attack:
            return
        if deadline is not None and time.time() > deadline:
            print(f"deadline passed; not done: cheap stages {cheap}, attack stages {attack}", flush=True)
            return
        ready = [u for u in cheap if study.ready(*u)]
        if ready:
            study.cheap(*ready[0])
        elif attack and _mem_available_gb() >= attack_memory:
            study.stability(*attack[0])
        else:
            time.sleep(poll)


# --- the summary ------------------------------------------------------------------------------
def _cell(values: list[float], digits: int = 3) -> str:
    if not values:
        return "-"
    if len(values) == 1:
        return f"{values[0]:.{digits}g} (1 seed)"
    return f"{statistics.mean(values):.{digits}g} ± {statistics.stdev(values):.{digits}g} ({len(values)})"


def weight_distances(real: Path, out: Path = OUT, seeds=SEEDS) -> dict:
    """How far each GD + SSIUU run's weights (lambda 1e-3 and 1) are from GD's, relative to GD's
    update, per seed (all parameters): ``||w_gd - w_ssiuu|| / ||w_gd - w_original||`` and the
    largest ``|w_gd - w_ssiuu|``."""
    original = _load(None).state_dict()
    result: dict[str, dict] = {}
    for seed in seeds:
        if not model_path(real, seed, "gd").is_file():
            continue
        gd = torch.load(model_path(real, seed, "gd"), mmap=True, map_location="cpu")
        update = sum(float((v.double() - original[k].double()).pow(2).sum()) for k, v in gd.items())
        for method in SSIUU_RUNS:
            if not model_path(real, seed, method).is_file():
                continue
            ssiuu = torch.load(model_path(real, seed, method), mmap=True, map_location="cpu")
            between = sum(float((v.double() - ssiuu[k].double()).pow(2).sum()) for k, v in gd.items())
            largest = max(float((v - ssiuu[k]).abs().max()) for k, v in gd.items())
            result.setdefault(f"seed{seed}", {})[method] = {
                "relative_distance": (between / update) ** 0.5 if update else float("nan"),
                "max_abs_difference": largest, "gd_update_norm": update ** 0.5}
    _write(out / "weights.json", result)
    return result


def _qk(key: str):
    return lambda r: r[key]["top_m_d_minus_by_site"]["q"] + r[key]["top_m_d_minus_by_site"]["k"]


# (row, the paper's number or claim, getter); a unit lacking a stage is left out of that row
QUANTITIES = [
    ("forget MCQA after unlearning (preset)", "0 (stopped at chance 0.33 here)",
     lambda r: r["unlearned"]["preset"]["forget_mcqa"]),
    ("retain MCQA after unlearning (preset)", "Llama: GA 0.58, GD 0.81, SSIUU 0.85",
     lambda r: r["unlearned"]["preset"]["retain_mcqa"]),
    ("median P(answer) on forget facts after", "-", lambda r: r["unlearned"]["median_p_after"]),
    ("P (paper): top-100 ΣD+", "D- >> D+ for GA, GD; SSIUU erases (D+)",
     lambda r: r["paper"]["top_m"]["d_plus"]),
    ("P (paper): top-100 ΣD-", "", lambda r: r["paper"]["top_m"]["d_minus"]),
    ("P (paper): hide index ΣD-/(ΣD+ + ΣD-), all units", "high for GA, GD; low for SSIUU",
     lambda r: r["paper"]["hide_index"]),
    ("P (paper), MLP neurons only: top-100 ΣD+", "",
     lambda r: r["paper"]["per_site"]["mlp_post"]["top_m_d_plus"]),
    ("P (paper), MLP neurons only: top-100 ΣD-", "",
     lambda r: r["paper"]["per_site"]["mlp_post"]["top_m_d_minus"]),
    ("P (paper): units with D- > 0 among the top 100", "",
     lambda r: sum(r["paper"]["top_m_d_minus_by_site"].values())),
    ("P (paper): Q + K units among them (11 % of units are Q or K)", "mostly Q and K", _qk("paper")),
    ("log P: top-100 ΣD+", "(the paper uses P)", lambda r: r["paper_logprob"]["top_m"]["d_plus"]),
    ("log P: top-100 ΣD-", "", lambda r: r["paper_logprob"]["top_m"]["d_minus"]),
    ("log P: hide index, all units", "", lambda r: r["paper_logprob"]["hide_index"]),
    ("log P, MLP neurons only: top-100 ΣD+", "",
     lambda r: r["paper_logprob"]["per_site"]["mlp_post"]["top_m_d_plus"]),
    ("log P, MLP neurons only: top-100 ΣD-", "",
     lambda r: r["paper_logprob"]["per_site"]["mlp_post"]["top_m_d_minus"]),
    ("log P: units with D- > 0 among the top 100", "",
     lambda r: sum(r["paper_logprob"]["top_m_d_minus_by_site"].values())),
    ("log P: Q + K units among them (11 % of units are Q or K)", "mostly Q and K", _qk("paper_logprob")),
    ("log P: flags (eqs. 4-5 d-, max-T vs retain, α 0.01)", "-", lambda r: r["paper_logprob"]["flags"]),
    ("neuronscope definition, grad x act log P, MLP: hide index", "-",
     lambda r: r["ours_gxa"]["mlp_post"]["hide_index"]),
    ("neuronscope definition, grad x act log P, MLP: flags", "-",
     lambda r: r["ours_gxa"]["mlp_post"]["flags"]),
    ("neuronscope definition, grad x act log P, all sites: hide index", "-",
     lambda r: r["ours_gxa"]["all_sites"]["hide_index"]),
    ("neuronscope definition, grad x act log P, all sites: flags", "-",
     lambda r: r["ours_gxa"]["all_sites"]["flags"]),
    ("logit lens, mean over layers 18-27, before", "-", lambda r: r["lens"]["band_mean_before"]),
    ("logit lens, mean over layers 18-27, after", "GD ≈ 0.2 (below chance 0.5); SSIUU ≈ 0.5",
     lambda r: r["lens"]["band_mean_after"]),
    ("harmful attack p=0.1 (the preset's, worst of 3 lrs): max forget MCQA",
     "Llama: GA 0.68, GD 0.48, SSIUU 0.15", lambda r: r["preset_attack"]),
    ("harmful attack p=0.1, lr 1e-5 (this study's): max forget MCQA", "",
     lambda r: r["stability"]["attack_max_forget_mcqa"]),
    ("stability: Pearson r, P, all sites", "GA 0.73, NPO 0.87, SSIUU 0.99",
     lambda r: r["stability"]["prob"]["all_sites"]["pearson"]),
    ("stability: Spearman ρ, P, all sites", "", lambda r: r["stability"]["prob"]["all_sites"]["spearman"]),
    ("stability: Pearson r, log P, all sites", "",
     lambda r: r["stability"]["logprob"]["all_sites"]["pearson"]),
    ("neuronscope default (IG, log P, MLP): hide index", "-", lambda r: r["ours"]["hide_index"]),
]


def _preset_attack(real: Path, seed: int, method: str) -> float | None:
    """The real preset's own harmful p = 0.1 attack: max forget MCQA during retraining, worst lr."""
    record = _read(real / f"seed{seed}" / f"attack-{method}-harmfulp0.1.json")
    if record is None:
        return None
    curve = record["result"]["eval_accuracy"]
    return max(curve[1:]) if len(curve) > 1 else curve[-1]


def table(out: Path = OUT, real: Path | None = None) -> str:
    """Markdown: mean ± std over the seeds that have each quantity (count in brackets)."""
    rows = {m: [r for s in SEEDS if (r := _read(out / f"seed{s}-{m}.json"))] for m in METHODS}
    methods = [m for m in METHODS if rows[m]]
    if real is not None:  # the preset's attack beside this study's units (by seed)
        for m in methods:
            for r in rows[m]:
                r["preset_attack"] = _preset_attack(real, r["seed"], m)
    lines = ["| quantity | the paper | " + " | ".join(methods) + " |", "|---" * (len(methods) + 2) + "|"]
    for name, claim, get in QUANTITIES:
        cells = []
        for m in methods:
            values = []
            for r in rows[m]:
                with contextlib.suppress(KeyError, TypeError):
                    values.append(float(get(r)))
            cells.append(_cell(values))
        if all(c == "-" for c in cells):
            continue
        lines.append(f"| {name} | {claim} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--real", type=Path, default=Path("benchmarks/results/real"),
                        help="the real preset's out folder (read only)")
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--seeds", type=int, nargs="+", default=list(SEEDS))
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    parser.add_argument("--ours", action="store_true", help="also neuronscope's default diagnosis (IG)")
    parser.add_argument("--cache", type=Path, default=CACHE, help="scratch folder for attributions")
    parser.add_argument("--deadline", type=float, help="stop waiting for models after this Unix time")
    parser.add_argument("--attack-memory", type=float, default=6.0,
                        help="GiB the machine must have available before an attack stage starts")
    parser.add_argument("--work-memory", type=float, default=3.0,
                        help="GiB the machine must have available before a model is loaded")
    parser.add_argument("--table", action="store_true", help="print the summary table and exit")
    parser.add_argument("--weights", action="store_true",
                        help="GD + SSIUU's distance from GD relative to GD's update (writes weights.json)")
    args = parser.parse_args()
    if args.table:
        print(table(args.out, args.real))
        return
    if args.weights:
        print(json.dumps(weight_distances(args.real, args.out, args.seeds), indent=1))
        return
    run(args.real, args.out, args.cache, seeds=args.seeds, methods=args.methods, ours=args.ours,
        deadline=args.deadline, attack_memory=args.attack_memory, work_memory=args.work_memory)


if __name__ == "__main__":
    main()
