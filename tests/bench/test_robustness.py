"""The robustness benchmark: settings, tables, persistence, CLI, and a reproducible run of the fast preset."""

from __future__ import annotations

import json
import math

import pytest

import neuronscope as ns
from neuronscope.bench import PRESETS, BenchConfig, Recipe, RobustnessResult, mean_std, parse_methods
from neuronscope.bench.pipeline import control_sample
from neuronscope.cli import build_parser
from neuronscope.unlearning import SSIUU


def test_parse_methods():
    specs = parse_methods("ga, gd+ssiuu(0.03) ,npo+ssiuu, gd+ssiuu:0.001, gd+ssiuu(0.01,level=neuron)")
    assert specs == (Recipe("ga"), Recipe("gd", (SSIUU(0.03),)), Recipe("npo", (SSIUU(),)),
                     Recipe("gd", (SSIUU(0.001),)), Recipe("gd", (SSIUU(0.01, level="neuron"),)))
    assert [s.label for s in specs] == ["ga", "gd+ssiuu(0.03)", "npo+ssiuu(0.001)",
                                        "gd+ssiuu(0.001)", "gd+ssiuu(0.01,level=neuron)"]
    for bad in ("", "gd+foo", "gd+ssiuu(abc)", "gd+ssiuu(0.01,gradient=exact)", "xyz"):
        with pytest.raises(ValueError):
            parse_methods(bad)


@pytest.mark.parametrize(
    "overrides",
    [{"seeds": ()}, {"forget_by": "relation"}, {"forget": 1.0}, {"target": "median"},
     {"method_settings": {"ga": 1e-4}}, {"target": 1.5}, {"attacks": (("sneaky", None),)},
     {"attacks": (("harmful", 1.0),)},
     {"sweep": (-0.1,)}, {"attack_retain_sample": 0}],
)
def test_config_rejects_bad_settings(overrides):
    with pytest.raises(ValueError):
        PRESETS["fast"].with_overrides(**overrides)


def test_config_roundtrip_and_sweep_methods():
    config = PRESETS["full"]
    assert BenchConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    methods = config.all_methods()
    assert len(config.sweep) >= 5 and Recipe("gd") in methods
    assert Recipe("gd", (SSIUU(0.01),)) in methods and len(methods) == len(set(methods))
    assert Recipe("gd", (SSIUU(1e-3),)) in config.methods  # the paper's SSIUU row
    assert len(config.seeds) >= 3
    with pytest.raises(ValueError, match="unknown benchmark setting"):
        config.with_overrides(colour="red")


def test_mean_std_matches_statistics():
    import statistics

    values = [0.1, 0.4, 0.25]
    mean, std = mean_std(values)
    assert mean == pytest.approx(statistics.mean(values)) and std == pytest.approx(statistics.stdev(values))
    assert math.isnan(mean_std([0.3])[1]) and math.isnan(mean_std([])[0])


def _fake_result() -> RobustnessResult:
    rows = []
    for seed, shift in ((0, 0.0), (1, 0.2)):
        for method in ("oracle", "gd", "gd+ssiuu(0.01)"):
            for attack in ("harmful p=0.3", "benign"):
                attacked = {"oracle": 0.1, "gd": 0.5, "gd+ssiuu(0.01)": 0.2}[method] + shift
                rows.append({"seed": seed, "method": method, "base": "gd" if method != "oracle" else "oracle",
                             "lambda": 0.01 if "ssiuu" in method else 0.0, "attack": attack,
                             "attacked": attacked, "excess_recovery": attacked - 0.1 - shift,
                             "normalised_recovery": attacked, "forget_accuracy": 0.08,
                             "retain_accuracy": 0.95, "reached_target": seed == 0,
                             "retain_after_attack": 0.9})
    return RobustnessResult(PRESETS["fast"].with_overrides(seeds=(0, 1), sweep=(0.0, 0.01)), rows,
                            meta={"seconds": 1.0, "torch": "x", "threads": 1})


def test_tables_show_mean_and_std(tmp_path):
    result = _fake_result()
    table = result.table().splitlines()
    assert table[0] == "| method | forget acc | retain acc | reached target | harmful p=0.3 | benign |"
    gd = next(line for line in table if line.startswith("| gd |"))
    assert "0.60 ± 0.14" in gd and "1/2" in gd  # mean of 0.5 and 0.7, sample std 0.141
    assert "+0.40 ± 0.00" in result.table("excess_recovery")
    assert "0.01" in result.sweep_table()
    assert "Lambda sweep" in result.markdown()
    summary = {(s["method"], s["attack"]): s for s in result.summary()}
    assert summary[("gd", "benign")]["attacked"] == pytest.approx(0.6)
    path = result.save(tmp_path / "out")
    assert {p.name for p in (tmp_path / "out").iterdir()} == {"robustness.json", "robustness.md"}
    figures = ns.plots.save_benchmark_figures(result, tmp_path / "out")
    assert [p.name for p in figures] == ["robustness.html", "lambda-sweep.html"]
    assert all(p.stat().st_size > 1000 for p in figures)
    sweep = {row["lambda"]: row for row in result.sweep_rows()}
    assert sorted(sweep) == [0.0, 0.01]
    # gd: attacked 0.5 / 0.7 over seeds, excess 0.4 on both; ssiuu: 0.2 / 0.4, excess 0.1
    assert sweep[0.0]["excess recovery, benign"] == pytest.approx(0.4)
    assert sweep[0.01]["excess recovery, harmful p=0.3"] == pytest.approx(0.1)
    assert sweep[0.01]["retain accuracy"] == pytest.approx(0.95)
    names = [trace.name for trace in ns.plots.benchmark_sweep(result).data]
    assert names == ["forget accuracy", "retain accuracy", "excess recovery, harmful p=0.3",
                     "excess recovery, benign"]
    loaded = RobustnessResult.load(path)
    assert loaded.to_dict() == result.to_dict()
    assert len(ns.plots.benchmark_bars(result).data) == 3
    assert "gd" in result._repr_html_() and "3 methods" in repr(result)


def test_cli_parses_bench_robustness():
    args = build_parser().parse_args(["bench", "robustness", "--preset", "smoke", "--seeds", "3", "4",
                                      "--methods", "gd,gd+ssiuu(0.1)", "--out", "x"])
    assert args.preset == "smoke" and args.seeds == [3, 4] and args.func.__name__ == "run_robustness"


def test_robustness_rejects_unknown_preset():
    with pytest.raises(ValueError, match="preset must be one of"):
        ns.bench.robustness("huge")


@pytest.mark.slow
def test_fast_preset_reproduces_its_numbers(tmp_path):
    """Issue 5: the `fast` preset (tiny organism; ga, gd, gd+ssiuu) with a fixed seed, twice from
    scratch (fresh organisms both times): the same rows and curves. One seed of three, about
    25 s each here."""
    first = ns.bench.robustness("fast", seeds=[0], cache=str(tmp_path / "a"), progress=False,
                                out=tmp_path / "r")
    second = ns.bench.robustness("fast", seeds=[0], cache=False, progress=False)

    def numbers(result):  # everything but wall-clock time
        return [{k: v for k, v in row.items() if "seconds" not in k} for row in result.rows]

    assert numbers(first) == numbers(second) and first.curves == second.curves
    methods = {r["method"] for r in first.rows}
    assert methods == {"oracle", "ga", "gd", "gd+ssiuu(0.001)"}
    for row in first.rows:
        assert 0.0 <= row["attacked"] <= 1.0
        assert row["excess_recovery"] == pytest.approx(row["attacked"] - row["oracle_attacked"])
    oracle = [r for r in first.rows if r["method"] == "oracle"]
    unit = first.meta["units"][0]
    assert all(r["attacked"] <= unit["chance"] + 0.15 for r in oracle)
    assert unit["target"] == unit["chance"]  # the default target: the chance level
    ssiuu = [r for r in first.rows if r["method"] == "gd+ssiuu(0.001)"]
    assert ssiuu and all(r["base"] == "gd" and r["lambda"] == 0.001 for r in ssiuu)
    assert RobustnessResult.load(tmp_path / "r").rows == first.rows


def test_beside_paper_puts_our_percentages_next_to_the_papers():
    from neuronscope.bench import PAPER_TABLE, beside_paper

    result = _fake_result()
    table = beside_paper(result, ssiuu="gd+ssiuu(0.01)").splitlines()
    gd = next(line for line in table if line.startswith("| GD |")).split(" | ")
    # retain 95 %, paper 81.0; p=0.1 not run; p=0.3: 0.5 / 0.7 -> 60.0 ± 14.1 beside 54.8
    assert gd[1:5] == ["95.0 ± 0.0", "81.0", "n/a", "48.1"]
    assert gd[5:7] == ["60.0 ± 14.1", str(PAPER_TABLE["GD"]["harmful p=0.3"])]
    assert gd[-1].startswith("n/a / +40.0 ± 0.0 / +40.0 ± 0.0")
    assert any(line.startswith("| SSIUU (gd+ssiuu(0.01)) | 95.0") for line in table)
    assert not any(line.startswith("| GA |") for line in table)  # not in this result
    assert "Beside the paper's table" in result.markdown()


def test_method_settings_override_the_shared_unlearn_settings():
    config = PRESETS["fast"].with_overrides(unlearn={"lr": 5e-4, "max_steps": 50},
                                            method_settings={"ga": {"lr": 1e-4}})
    assert config.settings_for("ga") == {"lr": 1e-4, "max_steps": 50}
    assert config.settings_for("gd") == {"lr": 5e-4, "max_steps": 50}
    assert BenchConfig.from_dict(config.to_dict()) == config


def test_combine_joins_seeds_and_refuses_mismatches():
    one = _fake_result()
    rows0 = [r for r in one.rows if r["seed"] == 0]
    rows1 = [r for r in one.rows if r["seed"] == 1]
    a = RobustnessResult(one.config.with_overrides(seeds=(0,)), rows0, meta={"seconds": 1.0})
    b = RobustnessResult(one.config.with_overrides(seeds=(1,)), rows1, meta={"seconds": 2.0})
    joined = RobustnessResult.combine([a, b])
    assert joined.config.seeds == (0, 1) and joined.rows == one.rows and joined.table() == one.table()
    assert joined.meta["seconds"] == 3.0
    with pytest.raises(ValueError, match="more than one run"):
        RobustnessResult.combine([a, a])
    subset = RobustnessResult(one.config.with_overrides(seeds=(1,), sweep=()), rows1)
    assert RobustnessResult.combine([a, subset]).config.sweep == one.config.sweep
    c = RobustnessResult(one.config.with_overrides(seeds=(2,), attack_lr=1.0), rows1)
    with pytest.raises(ValueError, match="differ in"):
        RobustnessResult.combine([a, c])


def test_retain_sample_is_a_seeded_subset(tiny_world):
    facts = tiny_world.facts
    sample = control_sample(facts, 40, seed=1)
    assert len(sample) == 40 and set(sample.ids) <= set(facts.ids)
    assert control_sample(facts, 40, seed=1) == sample and control_sample(facts, 40, seed=2) != sample
    assert control_sample(facts, None, seed=1) == facts and control_sample(facts, 10_000, 0) == facts
