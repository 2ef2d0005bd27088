"""The ``real`` preset: the paper's FaithUn protocol on a real pretrained model (SmolLM2-135M).

Per seed, on the shipped real-world facts that the model *knows* (3-option MCQA right and
greedy answer right before unlearning):

1. FaithUn-like splits by entity group: forget / retain / test = 5 / 10 / 70 % of the known
   facts (the forget share is raised until it holds ``min_forget`` facts; the share used is
   recorded); a control set of the same size from facts the model never knew (MCQA wrong and
   greedy wrong);
2. each method (GA, GD, NPO, DPO, RMU, and SSIUU = GD + ``SSIUU(1e-3)``; methods are recipes of
   :mod:`neuronscope.unlearning.recipe`, ``"gd+ssiuu"`` reads as ``"gd+ssiuu(0.001)"`` and any
   recipe such as ``"gd+ssiuu(1)"`` or ``"npo+ssiuu"`` can be added) unlearns the forget
   set with the lowest learning rate of ``unlearn_lrs`` that brings forget MCQA accuracy to
   chance (1/3); retain and test MCQA accuracy are measured on the unlearned model;
3. on every unlearned model: the harmful attack (p = 0.1, 0.3; part A drawn from the forget
   facts it answers wrongly; lr grid ``harmful_lrs``) and the benign attack (the shipped
   instruction data; lr grid ``benign_lrs``), each reporting the maximum forget MCQA accuracy
   during retraining, the worst case over the grid;
4. the control: the same attacks on the *original* model with the never-known facts as the
   "forget" set: what an attack teaches by itself.

Every stage writes its result atomically under ``out`` (``known.json``, then per seed
``splits.json``, ``unlearn-<method>.json``, ``attack-<method>-<attack>.json``); a rerun reads
them back and does only what is missing.

Example:
    >>> REAL.forget, REAL.retain, REAL.test
    (0.05, 0.1, 0.7)
    >>> [m for m in REAL.methods]
    ['gd', 'gd+ssiuu', 'ga', 'npo', 'dpo', 'rmu']
"""

from __future__ import annotations

import json
import math
import random
import statistics
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from neuronscope.atomic import atomic_torch_save, atomic_write_text
from neuronscope.attacks import RelearnResult, relearn
from neuronscope.facts import FactSet
from neuronscope.mcqa import chance, check_mcqa, mcqa_accuracy, mcqa_metric
from neuronscope.models import copy_model
from neuronscope.pretrained import pretrained
from neuronscope.progress import progress_bar
from neuronscope.realworld import benign_instructions, real_facts
from neuronscope.scoring import accuracy
from neuronscope.unlearning import parse_recipe, search_lr

__all__ = ["LLAMA_TABLE1", "REAL", "RealConfig", "RealResult", "collect_real", "known_facts", "model_path",
           "real_splits", "run_real", "sample_groups"]

CONTROL = "control"
_PER_ROW = ("methods", "control")   # settings that choose rows, not how a row is computed
ATTACK_LABELS = ("harmful p=0.1", "harmful p=0.3", "benign")

# The paper's Table 1, Llama-3.2-3B rows (FaithUn, MCQA accuracy in percent; ``/work/shared`` PAPER.md).
LLAMA_TABLE1: dict[str, dict[str, float]] = {
    "default": {"FS": 91.92, "RS": 89.22, "US": 57.40},
    "ga": {"FS": 0.0, "RS": 58.41, "US": 54.01, "harmful p=0.1": 68.42, "harmful p=0.3": 73.33,
           "benign": 16.71},
    "gd": {"FS": 0.0, "RS": 81.03, "US": 55.77, "harmful p=0.1": 48.13, "harmful p=0.3": 54.76,
           "benign": 33.33},
    "dpo": {"FS": 0.0, "RS": 81.47, "US": 56.90, "harmful p=0.1": 31.58, "harmful p=0.3": 46.67,
            "benign": 15.34},
    "npo": {"FS": 0.0, "RS": 77.59, "US": 59.52, "harmful p=0.1": 18.33, "harmful p=0.3": 18.75,
            "benign": 18.62},
    "rmu": {"FS": 0.0, "RS": 77.80, "US": 56.31, "harmful p=0.1": 52.63, "harmful p=0.3": 75.53,
            "benign": 14.29},
    "gd+ssiuu": {"FS": 0.0, "RS": 84.70, "US": 56.28, "harmful p=0.1": 14.81, "harmful p=0.3": 14.29,
                 "benign": 13.33},
}


@dataclass(frozen=True)
class RealConfig:
    """Every setting of the ``real`` preset (saved with the result)."""

    model: str = "smollm2-135m-instruct"
    facts: str | None = None             # a facts JSONL; None: the shipped real-world facts
    benign: str | None = None            # an instruction JSONL; None: the shipped pairs
    mcqa_style: str = "completion"
    fact_sample: int | None = None       # whole entity groups, seeded, until this many facts
    seeds: tuple[int, ...] = (0,)
    forget: float = 0.05
    retain: float = 0.10
    test: float = 0.70
    min_forget: int = 24
    test_sample: int | None = 150        # test facts scored (None: all of the test split)
    methods: tuple[str, ...] = ("gd", "gd+ssiuu", "ga", "npo", "dpo", "rmu")   # recipes, as written
    unlearn_lrs: tuple[float, ...] = (1e-4, 3e-5, 1e-5)   # tried from the highest down
    unlearn_steps: int = 20
    unlearn_eval_every: int = 2
    unlearn_batch_size: int = 32
    unlearn_retain_batch_size: int = 16
    refusals: tuple[str, ...] = ("I can't answer the question.",)
    harmful: tuple[float, ...] = (0.1, 0.3)
    harmful_lrs: tuple[float, ...] = (1e-5, 5e-6, 1e-6)
    benign_lrs: tuple[float, ...] = (1e-5, 1e-6, 1e-7)
    attack_steps: int = 10
    attack_eval_every: int = 5            # evaluations at steps 0, 5, 10: the max is over these
    attack_batch_size: int = 8
    control: bool = True
    save_models: tuple[str, ...] = ()    # methods whose unlearned weights are kept (models/<m>.pt)

    def __post_init__(self) -> None:
        for name in ("forget", "retain", "test"):
            if not 0.0 < getattr(self, name) < 1.0:
                raise ValueError(f"{name} must be a fraction in (0, 1), got {getattr(self, name)!r}")
        if self.forget + self.retain + self.test > 1.0 + 1e-9:
            raise ValueError("forget + retain + test fractions exceed 1")
        if not self.seeds:
            raise ValueError("seeds is empty")
        for name in ("unlearn_lrs", "harmful_lrs", "benign_lrs"):
            if not getattr(self, name) or any(v <= 0 for v in getattr(self, name)):
                raise ValueError(f"{name} must be a non-empty tuple of positive learning rates")
        canonical: dict[str, str] = {}
        for method in self.methods:
            if method == CONTROL:
                raise ValueError(f"{CONTROL!r} names the control rows, not a method (see control=)")
            try:
                label = parse_recipe(method).label
            except (ValueError, KeyError) as error:
                raise ValueError(f"method {method!r} of the real preset is not a recipe: {error}") from None
            if label in canonical:
                raise ValueError(f"methods {canonical[label]!r} and {method!r} are the same recipe ({label})")
            canonical[label] = method
        unsaved = [m for m in self.save_models if m not in self.methods]
        if unsaved:
            raise ValueError(f"save_models names method(s) {unsaved} that are not in methods")

    @classmethod
    def from_dict(cls, record: dict[str, Any]) -> RealConfig:
        """A config saved by :meth:`to_dict` (lists back to tuples). Configs saved before methods
        were recipes carry ``ssiuu_lam``; its value 1e-3 is what ``"gd+ssiuu"`` reads as now.

        Example:
            >>> RealConfig.from_dict({"methods": ["ga"], "ssiuu_lam": 0.001}).methods
            ('ga',)
        """
        record = dict(record)
        lam = record.pop("ssiuu_lam", 1e-3)
        if lam != 1e-3:
            raise ValueError(f"this config was saved with ssiuu_lam={lam!r}: write its method as "
                             f"'gd+ssiuu({lam:g})' instead")
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in record.items()})

    def with_overrides(self, **overrides: Any) -> RealConfig:
        unknown = set(overrides) - set(self.__dataclass_fields__)
        if unknown:
            raise ValueError(f"unknown real-preset setting(s) {sorted(unknown)}")
        return replace(self, **{k: tuple(v) if isinstance(v, list) else v for k, v in overrides.items()})

    def to_dict(self) -> dict:
        return json.loads(json.dumps(asdict(self)))


REAL = RealConfig()


# --- stage helpers ----------------------------------------------------------------------------
def _read(path: Path) -> Any:
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except ValueError:
        return None


def _write(path: Path, record: Any) -> None:
    atomic_write_text(path, json.dumps(record, indent=1))


def known_facts(model: Any, facts: FactSet, *, style: str = "completion", progress: bool = False,
                chunk: int = 64) -> dict[str, dict[str, bool]]:
    """Per fact id: ``{"mcqa": right?, "greedy": right?}`` for ``model``."""
    known: dict[str, dict[str, bool]] = {}
    for start in progress_bar(range(0, len(facts), chunk), desc="which facts the model knows", unit="chunk",
                      enabled=progress, leave=False):
        part = facts[start : start + chunk]
        mc = mcqa_accuracy(model, part, style=style, per_fact=True).tolist()
        greedy = accuracy(model, part, per_fact=True).tolist()
        known.update({fid: {"mcqa": bool(m), "greedy": bool(g)}
                      for fid, m, g in zip(part.ids, mc, greedy, strict=True)})
    return known


def real_splits(facts: FactSet, known: dict[str, dict[str, bool]], config: RealConfig,
                seed: int) -> dict[str, Any]:
    """Seeded forget / retain / test ids (by entity group) among the known facts, the control
    ids among never-known ones, and the forget share actually used."""
    knows = [f for f in facts if known[f.id]["mcqa"] and known[f.id]["greedy"]]
    never = [f for f in facts if not known[f.id]["mcqa"] and not known[f.id]["greedy"]]
    groups: dict[str, list[str]] = {}
    for fact in knows:
        groups.setdefault(fact.group or fact.id, []).append(fact.id)
    keys = sorted(groups)
    random.Random(seed).shuffle(keys)
    needed = max(config.min_forget, math.ceil(config.forget * len(knows)))
    n_retain, n_test = round(config.retain * len(knows)), round(config.test * len(knows))
    if needed + n_retain + 1 > len(knows):
        raise ValueError(f"only {len(knows)} known facts: too few for a forget set of {needed}, "
                         f"{n_retain} retain facts and a test set")
    parts: dict[str, list[str]] = {"forget": [], "retain": [], "test": []}
    targets = {"forget": needed, "retain": n_retain, "test": n_test}
    for key in keys:
        for name in ("forget", "retain", "test"):
            if len(parts[name]) < targets[name]:
                parts[name].extend(groups[key])
                break
    control: list[str] = []
    if config.control:
        if len(never) < len(parts["forget"]):
            raise ValueError(f"only {len(never)} never-known facts; the control needs "
                             f"{len(parts['forget'])} (or pass control=False)")
        control = random.Random(seed + 1).sample([f.id for f in never], len(parts["forget"]))
    return {**parts, "control": control, "n_known": len(knows), "n_never": len(never),
            "forget_share": len(parts["forget"]) / len(knows)}


def sample_groups(facts: FactSet, n: int | None, seed: int = 0) -> FactSet:
    """Whole entity groups in a seeded order until at least ``n`` facts (None: all facts)."""
    if n is None or n >= len(facts):
        return facts
    groups: dict[str, list[int]] = {}
    for index, fact in enumerate(facts):
        groups.setdefault(fact.group or fact.id or str(index), []).append(index)
    keys = sorted(groups)
    random.Random(seed).shuffle(keys)
    keep: set[int] = set()
    for key in keys:
        if len(keep) >= n:
            break
        keep.update(groups[key])
    return FactSet([f for i, f in enumerate(facts) if i in keep], name=facts.name)


def model_path(out: str | Path, seed: int, method: str) -> Path:
    """Where ``run_real(save_models=...)`` keeps a method's unlearned weights (a state dict);
    ``model.load_state_dict(torch.load(path))`` on a fresh ``pretrained(config.model)``."""
    return Path(out) / f"seed{seed}" / "models" / f"{method}.pt"


def _subset(facts: FactSet, ids: list[str], name: str) -> FactSet:
    by_id = {f.id: f for f in facts}
    return FactSet([by_id[i] for i in ids], name=name)


def _unlearn_kwargs(config: RealConfig, method: str) -> dict[str, Any]:
    """``ns.search_lr`` keywords for one method's recipe (``"gd+ssiuu"``: GD with ``SSIUU(1e-3)``)."""
    kwargs: dict[str, Any] = {"method": method, "max_steps": config.unlearn_steps,
                              "eval_every": config.unlearn_eval_every,
                              "batch_size": config.unlearn_batch_size,
                              "retain_batch_size": config.unlearn_retain_batch_size,
                              "eval_retain": False}  # retain MCQA is scored once, at the end
    if parse_recipe(method).method_name == "dpo":
        kwargs["refusals"] = list(config.refusals)
    return kwargs


def _unlearn_lowest_lr(model: Any, forget: FactSet, retain: FactSet, config: RealConfig, method: str,
                       seed: int, metric: Any, target: float) -> tuple[Any, dict]:
    """The lowest rate of ``unlearn_lrs`` that brings forget MCQA to ``target``
    (:func:`~neuronscope.unlearning.search_lr`, bisection); when none does, the highest
    rate's run with ``reached=False``."""
    start = time.process_time()
    result = search_lr(model, forget, retain, grid=config.unlearn_lrs, target_forget_accuracy=target,
                       metric=metric, seed=seed, progress=False, **_unlearn_kwargs(config, method))
    seconds = time.process_time() - start
    forget_score = float(metric(result.bridge, forget))
    last = result.history.steps[-1] if result.history.steps else {}
    terms = {k: v for k, v in last.items() if k.startswith("loss_")}  # e.g. the SSIUU term
    penalty = {k: result.settings[k] for k in ("ssiuu", "penalties", "recipe") if k in result.settings}
    tried = [{"lr": t["lr"], "steps": t["steps"], "forget_mcqa": t["forget_accuracy"],
              "reached": t["reached"], "cpu_seconds": t["cpu_seconds"]}
             for t in result.settings["lr_search"]["tried"]]
    return result.bridge, {"lr": result.settings["lr_search"]["chosen"], "steps": result.history.n_steps,
                          "forget_mcqa": forget_score, "last_loss_terms": terms, "penalty": penalty,
                          "reached": forget_score <= target + 1e-6, "cpu_seconds": seconds,
                          "lr_search": tried}


def _attack_path(folder: Path | None, label: str, name: str) -> Path | None:
    tag = name.replace(" ", "").replace("=", "")
    return None if folder is None else folder / f"attack-{label}-{tag}.json"


def _attacks(model: Any, forget: FactSet, config: RealConfig, seed: int, metric: Any,
             benign: FactSet, folder: Path | None, label: str, progress: bool) -> dict[str, dict]:
    out = {}
    plans = [(_harmful_name(p), "harmful", p, config.harmful_lrs) for p in config.harmful]
    plans.append(("benign", "benign", 0.3, config.benign_lrs))
    for name, attack, p, lrs in plans:
        path = _attack_path(folder, label, name)
        record = _read(path) if path is not None else None
        if record is None:
            start = time.process_time()
            result = relearn(model, attack=attack, forget=forget, p=p, benign=benign,
                             pool="wrong" if attack == "harmful" else "all", lr=list(lrs),
                             report="max", metric=metric, steps=config.attack_steps,
                             eval_every=config.attack_eval_every, batch_size=config.attack_batch_size,
                             seed=seed, progress=progress)
            record = {"result": result.to_dict(), "cpu_seconds": time.process_time() - start}
            if path is not None:
                _write(path, record)
        out[name] = record
    return out


def _harmful_name(p: float) -> str:
    return f"harmful p={p:g}"


def _attack_names(config: RealConfig) -> list[str]:
    return [_harmful_name(p) for p in config.harmful] + ["benign"]


def _missing_attacks(folder: Path | None, label: str, config: RealConfig) -> bool:
    if folder is None:
        return True
    return any(not _attack_path(folder, label, n).is_file() for n in _attack_names(config))


def _unit(seed: int, splits: dict, original: dict) -> dict:
    """A seed's splits and the original model's scores, as the result's ``units`` hold them."""
    return {"seed": seed, **{k: splits[k] for k in ("n_known", "n_never", "forget_share")},
            "n_forget": len(splits["forget"]), "n_retain": len(splits["retain"]), "original": original}


def _control_summary(control_score: float, original: dict) -> dict:
    """The control's "unlearning" row: nothing was unlearned; retain and test are the original's."""
    return {"forget_mcqa": control_score, "retain_mcqa": original["retain_mcqa"],
            "test_mcqa": original["test_mcqa"], "lr": None, "steps": 0, "reached": None}


# --- the result -------------------------------------------------------------------------------
@dataclass
class RealResult:
    """Rows (one per seed x method x attack) plus per-seed units; markdown beside the paper."""

    config: RealConfig
    rows: list[dict] = field(default_factory=list)
    units: list[dict] = field(default_factory=list)
    meta: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"format": "neuronscope.RealResult/1", "config": self.config.to_dict(),
                "rows": self.rows, "units": self.units, "meta": self.meta}

    @classmethod
    def from_dict(cls, record: dict) -> RealResult:
        if record.get("format") != "neuronscope.RealResult/1":
            raise ValueError(f"not a saved RealResult (format {record.get('format')!r})")
        config = RealConfig.from_dict(record["config"])
        return cls(config, list(record["rows"]), list(record["units"]), dict(record["meta"]))

    @classmethod
    def load(cls, folder: str | Path) -> RealResult:
        """Read ``real.json`` from a folder written by :meth:`save`."""
        path = Path(folder) / "real.json"
        if not path.is_file():
            raise FileNotFoundError(f"{str(path)!r} does not exist")
        return cls.from_dict(json.loads(path.read_text(encoding="utf-8")))

    def beside_paper(self) -> str:
        """Markdown: ours (percent) next to the paper's Llama-3.2-3B row, per method."""
        columns = [("FS", "forget_mcqa"), ("RS", "retain_mcqa"), ("US", "test_mcqa")]
        columns += [(a, "attacked") for a in ATTACK_LABELS]
        header = ["method"] + [f"{name}: ours / paper" for name, _ in columns]
        lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        originals = [u["original"] for u in self.units if "original" in u]
        paper = LLAMA_TABLE1["default"]
        row = ["original model"] + [
            f"{_cell([o[key] for o in originals])} / {paper[name]:.1f}" if name in paper else ""
            for name, key in columns]
        lines.append("| " + " | ".join(row) + " |")
        for method in dict.fromkeys(r["method"] for r in self.rows):
            paper = LLAMA_TABLE1.get(method, {})
            cells = [method]
            for name, key in columns:
                attack = name if name in ATTACK_LABELS else next(
                    (r["attack"] for r in self.rows if r["method"] == method), None)
                ours = _cell(self._values(method, attack, key))
                cells.append(f"{ours} / {paper[name]:.1f}" if name in paper else f"{ours} / -")
            lines.append("| " + " | ".join(cells) + " |")
        return "\n".join(lines)

    def recovery_table(self) -> str:
        """Markdown: per attack, the evaluated facts' MCQA accuracy before the attack (its step 0)
        and the recovery, the maximum during retraining minus that start (percentage points;
        mean ± std over seeds). Part A of the harmful attack is drawn from wrongly answered
        facts, so part B starts above the forget score; recovery removes that offset."""
        attacks = [a for a in ATTACK_LABELS if any(r["attack"] == a for r in self.rows)]
        header = ["method"] + [f"{a}: start / recovery" for a in attacks]
        lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        for method in dict.fromkeys(r["method"] for r in self.rows):
            cells = [method]
            for attack in attacks:
                start = _cell(self._values(method, attack, "attack_start"))
                gain = _cell(self._values(method, attack, "recovery"), signed=True)
                cells.append(f"{start} / {gain}")
            lines.append("| " + " | ".join(cells) + " |")
        return "\n".join(lines)

    def save(self, folder: str | Path) -> Path:
        folder = Path(folder)
        _write(folder / "real.json", self.to_dict())
        atomic_write_text(folder / "real.md", self.table() + "\n\n" + self.recovery_table() + "\n")
        return folder

    def to_pandas(self) -> Any:
        import pandas as pd

        return pd.DataFrame(self.rows)

    def _values(self, method: str, attack: str | None, key: str) -> list[float]:
        return [r[key] for r in self.rows
                if r["method"] == method and (attack is None or r["attack"] == attack)
                and r.get(key) is not None and not (isinstance(r[key], float) and math.isnan(r[key]))]

    def table(self) -> str:
        """Markdown, MCQA accuracy in percent (mean ± std over seeds where more than one)."""
        attacks = [a for a in ATTACK_LABELS if any(r["attack"] == a for r in self.rows)]
        attacks += sorted({r["attack"] for r in self.rows} - set(attacks))
        header = ["method", "lr", "FS", "RS", "US", *attacks, "seeds"]
        lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        methods = list(dict.fromkeys(r["method"] for r in self.rows))
        for method in methods:
            lrs = sorted({r["unlearn_lr"] for r in self.rows if r["method"] == method
                          and r.get("unlearn_lr") is not None})
            first = attacks[0] if attacks else None
            cells = [method, ", ".join(f"{v:g}" for v in lrs) or "-",
                     _cell(self._values(method, first, "forget_mcqa")),
                     _cell(self._values(method, first, "retain_mcqa")),
                     _cell(self._values(method, first, "test_mcqa"))]
            cells += [_cell(self._values(method, attack, "attacked")) for attack in attacks]
            cells.append(str(len({r["seed"] for r in self.rows if r["method"] == method})))
            lines.append("| " + " | ".join(cells) + " |")
        return "\n".join(lines)


def _cell(values: list[float], *, signed: bool = False) -> str:
    """Percent, mean ± std over seeds (the mean alone for one seed); n/a when empty."""
    if not values:
        return "n/a"
    mean = 100 * statistics.fmean(values)
    text = f"{mean:+.1f}" if signed else f"{mean:.1f}"
    return text if len(values) == 1 else f"{text} ± {100 * statistics.stdev(values):.1f}"


def _rows(seed: int, method: str, summary: dict, attacks: dict[str, dict]) -> list[dict]:
    rows = []
    for name, record in attacks.items():
        result = RelearnResult.from_dict(record["result"])
        best_lr = result.lr
        rows.append({"seed": seed, "method": method, "attack": name,
                     "unlearn_lr": summary.get("lr"), "unlearn_steps": summary.get("steps"),
                     "reached_chance": summary.get("reached"),
                     "forget_mcqa": summary["forget_mcqa"], "retain_mcqa": summary["retain_mcqa"],
                     "test_mcqa": summary["test_mcqa"], "attacked": result.attacked,
                     "attack_start": result.unlearned, "recovery": result.attacked - result.unlearned,
                     "attacked_final": result.final, "attack_lr": best_lr,
                     "attacked_by_lr": {str(r.lr): r.attacked for r in (result.grid or [result])},
                     "n_attack_train": len(result.train_ids), "n_attack_eval": len(result.eval_ids),
                     "attack_cpu_seconds": record["cpu_seconds"]})
    return rows


def collect_real(out: str | Path) -> RealResult:
    """The result of the stages already written under ``out``, without a model and without
    running anything: every (seed, method) whose unlearning and attacks are all on disk (the
    control: its attacks) becomes rows. For a look at a run in progress, or at one stopped early.

    Example:
        >>> import tempfile
        >>> collect_real(tempfile.mkdtemp()).rows
        Traceback (most recent call last):
        ...
        FileNotFoundError: ... holds no config.json of a real-preset run
    """
    folder = Path(out)
    stored = _read(folder / "config.json")
    if stored is None:
        raise FileNotFoundError(f"{str(folder)!r} holds no config.json of a real-preset run")
    config = RealConfig.from_dict(stored)
    seed_dirs = sorted((p for p in folder.glob("seed*") if p.name[4:].isdigit()),
                       key=lambda p: int(p.name[4:]))
    result = RealResult(config.with_overrides(seeds=tuple(int(p.name[4:]) for p in seed_dirs) or (0,)),
                        meta={"collected": True, "chance": chance(3)})
    labels = list(config.methods) + ([CONTROL] if config.control else [])
    for seed_dir in seed_dirs:
        seed = int(seed_dir.name[4:])
        splits, original = _read(seed_dir / "splits.json"), _read(seed_dir / "original.json")
        if splits is None or original is None:
            continue
        result.units.append(_unit(seed, splits, original))
        for label in labels:
            if _missing_attacks(seed_dir, label, config):
                continue
            attacks = {n: _read(_attack_path(seed_dir, label, n)) for n in _attack_names(config)}
            if label == CONTROL:  # the benign attack scores the whole control set at its step 0
                control_score = RelearnResult.from_dict(attacks["benign"]["result"]).unlearned
                summary = _control_summary(control_score, original)
            else:
                summary = _read(seed_dir / f"unlearn-{label}.json")
                if summary is None:
                    continue
            result.rows.extend(_rows(seed, label, summary, attacks))
    return result


def run_real(config: RealConfig | None = None, *, seeds: Any = None, out: str | Path | None = None,
             progress: bool = True, model: Any = None, **overrides: Any) -> RealResult:
    """Run the ``real`` preset (see the module docstring); ``out`` holds the stages and results.

    ``model``: an already loaded model to use instead of ``pretrained(config.model)``.
    """
    config = (config or REAL).with_overrides(**overrides)
    if seeds is not None:
        config = config.with_overrides(seeds=tuple(int(s) for s in seeds))
    folder = Path(out) if out is not None else None
    if folder is not None:  # stages of another configuration must not be mixed in
        stored_config = _read(folder / "config.json")
        mine = {k: v for k, v in config.to_dict().items() if k not in ("seeds", "save_models")}
        if stored_config is not None:
            changed = sorted(k for k in mine if k not in _PER_ROW and stored_config.get(k) != mine[k])
            if changed:
                raise ValueError(f"{folder} holds stages of another real-preset configuration "
                                 f"(differs in {changed}); use another out folder")
            # which methods an out folder holds grows with each run (a row depends only on its seed)
            methods = list(dict.fromkeys([*stored_config.get("methods", []), *mine["methods"]]))
            try:  # one label per recipe in a folder: "gd+ssiuu" and "gd+ssiuu(0.001)" would both run
                config.with_overrides(methods=tuple(methods))
            except ValueError as error:
                raise ValueError(f"{folder} holds stages of methods {stored_config.get('methods')}: "
                                 f"{error}; write each method as it is written there") from None
            control = bool(stored_config.get("control")) or mine["control"]
            mine = {**mine, "methods": methods, "control": control}
        _write(folder / "config.json", mine)
    facts = sample_groups(check_mcqa(real_facts(config.facts)), config.fact_sample)
    benign = benign_instructions(config.benign)
    metric = mcqa_metric(style=config.mcqa_style)
    target = chance(3)
    model = model if model is not None else pretrained(config.model)
    start = time.process_time()
    stamp = {"facts": facts.fingerprint(), "model": config.model, "style": config.mcqa_style}
    stored = _read(folder / "known.json") if folder is not None else None
    if stored is not None and stored.get("stamp") == stamp:
        known = stored["known"]
    else:
        known = known_facts(model, facts, style=config.mcqa_style, progress=progress)
        if folder is not None:
            _write(folder / "known.json", {"stamp": stamp, "known": known})
    result = RealResult(config, meta={"n_facts": len(facts), "chance": target,
                                      "this_run_seeds": list(config.seeds),
                                      "torch": torch.__version__, "threads": torch.get_num_threads()})
    labels = list(config.methods) + ([CONTROL] if config.control else [])
    bar = progress_bar(total=len(config.seeds) * len(labels), desc="real preset", enabled=progress)
    try:
        for seed in config.seeds:
            seed_dir = folder / f"seed{seed}" if folder is not None else None
            splits = real_splits(facts, known, config, seed)
            if seed_dir is not None:
                _write(seed_dir / "splits.json", splits)
            forget = _subset(facts, splits["forget"], "forget")
            retain = _subset(facts, splits["retain"], "retain")
            test_ids = splits["test"]
            if config.test_sample is not None and config.test_sample < len(test_ids):
                test_ids = random.Random(seed).sample(test_ids, config.test_sample)
            test = _subset(facts, test_ids, "test")
            base_path = seed_dir / "original.json" if seed_dir is not None else None
            original = _read(base_path) if base_path is not None else None
            if original is None:
                original = {"forget_mcqa": metric(model, forget), "retain_mcqa": metric(model, retain),
                            "test_mcqa": metric(model, test)}
                if base_path is not None:
                    _write(base_path, original)
            result.units.append({**_unit(seed, splits, original), "n_test_scored": len(test)})
            for label in labels:
                bar.set_postfix(seed=seed, method=label)
                summary_path = seed_dir / f"unlearn-{label}.json" if seed_dir is not None else None
                summary = _read(summary_path) if summary_path is not None else None
                if label == CONTROL:
                    control = _subset(facts, splits["control"], "control")
                    summary = _control_summary(metric(model, control), original)
                    attacks = _attacks(model, control, config, seed, metric, benign, seed_dir, label,
                                       progress)
                elif summary is not None and _missing_attacks(seed_dir, label, config) and \
                        model_path(folder, seed, label).is_file():  # unlearned and kept: load it back
                    unlearned = copy_model(model)
                    unlearned.load_state_dict(torch.load(model_path(folder, seed, label)))
                    attacks = _attacks(unlearned, forget, config, seed, metric, benign, seed_dir,
                                       label, progress)
                    del unlearned
                elif summary is None or _missing_attacks(seed_dir, label, config):
                    unlearned, summary = _unlearn_lowest_lr(model, forget, retain, config, label, seed,
                                                            metric, target)
                    summary.update(retain_mcqa=metric(unlearned, retain), test_mcqa=metric(unlearned, test))
                    if summary_path is not None:
                        _write(summary_path, summary)
                    if seed_dir is not None and label in config.save_models:
                        atomic_torch_save(model_path(folder, seed, label), unlearned.state_dict())
                    attacks = _attacks(unlearned, forget, config, seed, metric, benign, seed_dir,
                                       label, progress)
                    del unlearned
                else:
                    attacks = _attacks(model, forget, config, seed, metric, benign, seed_dir, label,
                                       progress)  # all on disk: read back, nothing runs
                result.rows.extend(_rows(seed, label, summary, attacks))
                bar.update(1)
                if folder is not None:
                    result.meta["cpu_seconds"] = time.process_time() - start
                    _save_folder(folder, result.meta)
    finally:
        bar.close()
    result.meta["cpu_seconds"] = time.process_time() - start
    if folder is not None:
        _save_folder(folder, result.meta)
    return result


def _save_folder(folder: Path, meta: dict) -> None:
    """``real.json`` and ``real.md`` hold every finished row in the folder (the seeds and methods
    of earlier runs too), not only this run's; ``meta`` is this run's."""
    collected = collect_real(folder)
    collected.meta.update(meta)
    collected.save(folder)
