"""The ``real`` preset: splits among known facts, settings, routing, and a tiny end-to-end run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import neuronscope as ns
from neuronscope.bench.real import (
    REAL,
    RealConfig,
    RealResult,
    collect_real,
    model_path,
    real_splits,
    run_real,
    sample_groups,
)
from neuronscope.cli import main


def _facts(n_groups: int = 40, per_group: int = 3) -> ns.FactSet:
    return ns.FactSet([ns.Fact(f"q{g}-{i} is", "a", subject=f"s{g}", relation="r", id=f"f{g}-{i}",
                               group=f"g{g}",
                               meta={"distractors": ["b", "c"]})
                       for g in range(n_groups) for i in range(per_group)])


def _known(facts: ns.FactSet, never_every: int = 4) -> dict:
    # every 4th group never known, every 7th fact known by MCQA only (excluded from both sides)
    known = {}
    for index, fact in enumerate(facts):
        group = int(fact.group[1:])
        never = group % never_every == 0
        known[fact.id] = {"mcqa": not never, "greedy": not never and index % 7 != 0}
    return known


def test_splits_are_disjoint_by_group_and_among_known_facts():
    facts = _facts()
    known = _known(facts)
    splits = real_splits(facts, known, RealConfig(min_forget=6), seed=0)
    by_id = {f.id: f for f in facts}
    parts = {name: set(splits[name]) for name in ("forget", "retain", "test", "control")}
    for a in parts:
        for b in parts:
            assert a == b or not parts[a] & parts[b]
    groups = {name: {by_id[i].group for i in parts[name]} for name in ("forget", "retain", "test")}
    assert not groups["forget"] & groups["retain"] and not groups["forget"] & groups["test"]
    for name in ("forget", "retain", "test"):
        assert all(known[i]["mcqa"] and known[i]["greedy"] for i in parts[name])
    assert all(not known[i]["mcqa"] and not known[i]["greedy"] for i in parts["control"])
    assert len(parts["control"]) == len(parts["forget"]) >= 6  # 5 % would be 4: raised to min_forget
    assert splits["forget_share"] == pytest.approx(len(parts["forget"]) / splits["n_known"])
    assert real_splits(facts, known, RealConfig(min_forget=6), seed=0) == splits
    assert real_splits(facts, known, RealConfig(min_forget=6), seed=1)["forget"] != splits["forget"]


def test_too_few_known_facts_is_an_error():
    facts = _facts(n_groups=4)
    with pytest.raises(ValueError, match="known facts: too few for a forget set of 24"):
        real_splits(facts, _known(facts), REAL, seed=0)


@pytest.mark.parametrize(("overrides", "match"), [
    ({"forget": 0.0}, "forget must be a fraction"),
    ({"forget": 0.5, "test": 0.7}, "exceed 1"),
    ({"methods": ("gd", "bogus")}, "'bogus' of the real preset is not a recipe"),
    ({"methods": ("gd+ssiuu", "gd+ssiuu(0.001)")}, "are the same recipe"),
    ({"methods": ("gd+ssiuu(-1)",)}, "is not a recipe"),
    ({"methods": ("control",)}, "names the control rows"),
    ({"harmful_lrs": ()}, "harmful_lrs must be"),
    ({"nonsense": 1}, "unknown real-preset setting"),
    ({"methods": ("gd",), "save_models": ("ga",)}, "not in methods"),
])
def test_bad_settings_fail_before_work(overrides, match):
    with pytest.raises(ValueError, match=match):
        ns.bench.robustness("real", **overrides)  # routed to run_real; fails before loading a model


@pytest.mark.slow
def test_tiny_real_run_resumes_from_its_stages(smollm2, tmp_path):
    sample = Path(__file__).parent.parent / "data_real_sample.jsonl"
    settings = dict(facts=str(sample), benign=None, methods=("gd",), min_forget=3, test_sample=3,
                    unlearn_lrs=(1e-4,), unlearn_steps=2, unlearn_eval_every=1, harmful=(0.3,),
                    harmful_lrs=(1e-5,), benign_lrs=(1e-6,), attack_steps=1, attack_eval_every=1,
                    control=False, save_models=("gd",), out=tmp_path, progress=False, model=smollm2)
    benign = tmp_path / "benign.jsonl"
    benign.write_text("".join(json.dumps({"instruction": f"Say the number {i}.", "response": f"{i}."}) + "\n"
                              for i in range(8)))
    settings["benign"] = str(benign)
    result = run_real(**settings)
    assert {r["attack"] for r in result.rows} == {"harmful p=0.3", "benign"}
    row = result.rows[0]
    assert row["method"] == "gd" and 0.0 <= row["attacked"] <= 1.0 and row["unlearn_lr"] == 1e-4
    stages = sorted(p.name for p in (tmp_path / "seed0").iterdir())
    assert stages == ["attack-gd-benign.json", "attack-gd-harmfulp0.3.json", "models", "original.json",
                      "splits.json", "unlearn-gd.json"]
    saved = torch.load(model_path(tmp_path, 0, "gd"))
    changed_weights = [k for k, v in smollm2.state_dict().items() if not torch.equal(v, saved[k])]
    assert changed_weights  # the unlearned weights, not the original's
    mtimes = {p: p.stat().st_mtime_ns for p in (tmp_path / "seed0").iterdir()}
    again = run_real(**settings)
    assert again.rows == result.rows
    assert collect_real(tmp_path).rows == result.rows  # the same rows from the stage files alone
    changed = [p.name for p, t in mtimes.items() if p.stat().st_mtime_ns != t and p.name != "splits.json"]
    assert changed == []  # nothing recomputed
    unlearn_mtime = (tmp_path / "seed0" / "unlearn-gd.json").stat().st_mtime_ns
    (tmp_path / "seed0" / "attack-gd-benign.json").unlink()
    resumed = run_real(**settings)  # the attack reruns on the kept weights; no second unlearning
    assert (tmp_path / "seed0" / "unlearn-gd.json").stat().st_mtime_ns == unlearn_mtime
    benign_rows = [r for r in resumed.rows if r["attack"] == "benign"]
    first_benign = [r for r in result.rows if r["attack"] == "benign"]
    assert [r["attacked"] for r in benign_rows] == [r["attacked"] for r in first_benign]
    assert (tmp_path / "real.md").read_text().startswith("| method |")
    other_seed = run_real(**settings, seeds=(1,))  # a later run adds a seed to the folder
    assert {r["seed"] for r in other_seed.rows} == {1}
    saved_rows = RealResult.load(tmp_path).rows  # real.json holds the folder's rows, both seeds
    assert {r["seed"] for r in saved_rows} == {0, 1}
    assert [r for r in saved_rows if r["seed"] == 0] == [r for r in resumed.rows if r["seed"] == 0]


def test_fact_sample_keeps_whole_groups():
    facts = _facts(n_groups=10, per_group=3)
    sample = sample_groups(facts, 7, seed=0)
    assert 7 <= len(sample) <= 9 and len(sample) % 3 == 0
    assert sample == sample_groups(facts, 7, seed=0)
    assert sample_groups(facts, None) == facts


def test_out_folder_of_another_configuration_is_refused(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model": "smollm2-135m-instruct"}))
    with pytest.raises(ValueError, match="holds stages of another real-preset configuration"):
        run_real(out=tmp_path, progress=False)


def test_methods_are_recipes_labelled_as_written():
    config = RealConfig(methods=("gd+ssiuu(1)", "npo+ssiuu", "ga"))
    assert config.methods == ("gd+ssiuu(1)", "npo+ssiuu", "ga")
    assert RealConfig.from_dict(config.to_dict()) == config


def test_config_saved_with_ssiuu_lam_still_loads():
    saved = {**REAL.to_dict(), "ssiuu_lam": 0.001}  # configs written before methods were recipes
    assert RealConfig.from_dict(saved) == REAL
    with pytest.raises(ValueError, match=r"ssiuu_lam=0.5: write its method as 'gd\+ssiuu\(0.5\)'"):
        RealConfig.from_dict({**saved, "ssiuu_lam": 0.5})


def test_out_folder_keeps_one_label_per_recipe(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({**REAL.to_dict(), "methods": ["gd+ssiuu"]}))
    with pytest.raises(ValueError, match=r"are the same recipe .* write each method as it is written there"):
        run_real(out=tmp_path, methods=("gd+ssiuu(0.001)",), progress=False)  # before any model loads


def test_cli_real_preset_reads_methods_as_recipes(tmp_path, capsys):
    """Commas inside a penalty's parentheses stay in it; a recipe written twice fails before any
    model loads."""
    args = ["bench", "robustness", "--preset", "real", "--quiet", "--out", str(tmp_path),
            "--methods", "gd+ssiuu(0.001,level=neuron), gd+ssiuu(1e-3,level=neuron)"]
    assert main(args) != 0
    assert "'gd+ssiuu(0.001,level=neuron)' and 'gd+ssiuu(1e-3,level=neuron)' are the same recipe" in \
        capsys.readouterr().err


def test_control_needs_enough_never_known_facts():
    facts = _facts()
    known = {f.id: {"mcqa": True, "greedy": True} for f in facts}
    with pytest.raises(ValueError, match="only 0 never-known facts; the control needs 6"):
        real_splits(facts, known, RealConfig(min_forget=6), seed=0)
    assert real_splits(facts, known, RealConfig(min_forget=6, control=False), seed=0)["control"] == []


def test_result_tables_and_round_trip(tmp_path):
    rows = [{"seed": s, "method": "gd", "attack": a, "unlearn_lr": 1e-4, "forget_mcqa": 0.25,
             "retain_mcqa": 0.9, "test_mcqa": 0.8, "attacked": v, "attack_start": 0.4,
             "recovery": v - 0.4}
            for s, v in ((0, 0.5), (1, 0.7)) for a in ("harmful p=0.1", "benign")]
    result = RealResult(REAL, rows, [{"seed": 0, "original": {"forget_mcqa": 1.0, "retain_mcqa": 1.0,
                                                               "test_mcqa": 1.0}}], {})
    table = result.table()
    assert "| gd | 0.0001 | 25.0 ± 0.0 | 90.0 ± 0.0 | 80.0 ± 0.0 | 60.0 ± 14.1 | 60.0 ± 14.1 | 2 |" in table
    assert "harmful p=0.3" not in table  # only the attacks that ran
    paper = result.beside_paper()
    assert "| gd | 25.0 ± 0.0 / 0.0 | 90.0 ± 0.0 / 81.0 | 80.0 ± 0.0 / 55.8 | 60.0 ± 14.1 / 48.1 |" in paper
    assert "| original model | 100.0 / 91.9 |" in paper
    loaded = RealResult.load(result.save(tmp_path))
    assert loaded.rows == rows and loaded.config == REAL
    recovery = result.recovery_table()
    assert "| gd | 40.0 ± 0.0 / +20.0 ± 14.1 | 40.0 ± 0.0 / +20.0 ± 14.1 |" in recovery
    assert (tmp_path / "real.md").read_text().strip() == table + "\n\n" + recovery
