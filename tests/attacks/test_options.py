"""The paper's attack options of ``relearn``: a learning-rate grid, the maximum during
retraining, an attack pool of wrongly answered forget facts, and any metric (organism)."""

from __future__ import annotations

import pytest
import torch

import neuronscope as ns
from neuronscope.attacks import RelearnResult, relearn
from neuronscope.attacks.runner import per_fact_correct, wrong_pool_split
from neuronscope.mcqa import mcqa_metric, with_distractors

FAST = {"steps": 6, "eval_every": 1, "progress": False}


def test_report_max_is_the_peak_during_retraining(tiny_org, forget_retain):
    forget, retain = forget_retain
    final = relearn(tiny_org.bridge, attack="harmful", forget=forget, retain=retain, lr=3e-3, **FAST)
    peak = relearn(tiny_org.bridge, attack="harmful", forget=forget, retain=retain, lr=3e-3,
                   report="max", **FAST)
    torch.testing.assert_close(peak.eval_accuracy, final.eval_accuracy)  # same run, other summary
    assert final.attacked == float(final.eval_accuracy[-1]) == final.final
    assert peak.attacked == float(peak.eval_accuracy[1:].max())
    assert len(peak.eval_accuracy) == FAST["steps"] + 1


def test_lr_grid_returns_the_worst_case_and_keeps_every_run(tiny_org, forget_retain):
    forget, retain = forget_retain
    grid = [1e-5, 3e-3, 1e-4]
    result = relearn(tiny_org.bridge, attack="harmful", forget=forget, retain=retain, lr=grid,
                     report="max", **FAST)
    assert [run.lr for run in result.grid] == grid
    assert result.attacked == max(run.attacked for run in result.grid)
    assert result.settings["lr_grid"] == grid
    single = relearn(tiny_org.bridge, attack="harmful", forget=forget, retain=retain, lr=grid[1],
                     report="max", **FAST)  # each grid run is the plain run at its lr
    torch.testing.assert_close(result.grid[1].eval_accuracy, single.eval_accuracy)
    assert sum(run.bridge is not None for run in result.grid) == 1


def test_lr_grid_scores_the_shared_start_once(tiny_org, forget_retain):
    forget, _ = forget_retain
    calls = []

    def metric(model, facts):
        calls.append(len(facts))
        return float(ns.accuracy(model, facts))

    steps, grid = 4, [1e-4, 1e-3, 3e-3]
    result = relearn(tiny_org.bridge, attack="harmful", forget=forget, lr=grid, report="max",
                     metric=metric, steps=steps, eval_every=2, progress=False)
    per_run = steps // 2  # evaluations after step 0
    assert len(calls) == 1 + len(grid) * per_run  # step 0 once for the grid, not once per rate
    assert len({float(run.eval_accuracy[0]) for run in result.grid}) == 1


def test_grid_result_saves_and_loads(tmp_path, tiny_org, tiny_oracle, forget_retain):
    forget, retain = forget_retain
    result = relearn(tiny_org.bridge, attack="harmful", forget=forget, retain=retain, lr=[1e-4, 1e-3],
                     report="max", oracle=tiny_oracle.bridge, **FAST)
    loaded = RelearnResult.load(result.save(tmp_path / "r.json"))
    assert loaded.attacked == result.attacked and loaded.oracle.attacked == result.oracle.attacked
    assert [run.lr for run in loaded.grid] == [1e-4, 1e-3]
    assert loaded.oracle.grid is not None and len(loaded.oracle.grid) == 2


def test_wrong_pool_holds_only_wrongly_answered_facts(tiny_oracle, forget_retain):
    forget, _ = forget_retain
    right = per_fact_correct(tiny_oracle.bridge, forget)
    assert 0 < int(right.sum()) < len(forget)  # the oracle gets some forget facts right by luck
    part_a, part_b = wrong_pool_split(tiny_oracle.bridge, forget, 0.3, seed=1)
    wrong_ids = {f.id for f, ok in zip(forget, right.tolist(), strict=True) if not ok}
    assert set(part_a.ids) <= wrong_ids
    assert len(part_a) == round(0.3 * len(forget))
    assert set(part_a.ids) | set(part_b.ids) == set(forget.ids) and not set(part_a.ids) & set(part_b.ids)
    result = relearn(tiny_oracle.bridge, attack="harmful", forget=forget, p=0.3, pool="wrong", seed=1,
                     lr=1e-4, **FAST)
    assert result.train_ids == part_a.ids and result.eval_ids == part_b.ids


def test_wrong_pool_on_a_model_that_knows_everything_is_an_error(tiny_org, forget_retain):
    forget, _ = forget_retain
    assert bool(per_fact_correct(tiny_org.bridge, forget).all())
    with pytest.raises(ValueError, match="attack pool is empty"):
        relearn(tiny_org.bridge, attack="harmful", forget=forget, pool="wrong", **FAST)


def test_mcqa_metric_scores_the_attack(tiny_org, tiny_world, forget_retain):
    forget, retain = forget_retain
    options = with_distractors(tiny_world.facts, seed=0)
    by_id = {f.id: f for f in options}
    forget_mc = ns.FactSet([by_id[f.id] for f in forget])
    retain_mc = ns.FactSet([by_id[f.id] for f in retain][:40])
    metric = mcqa_metric()
    result = relearn(tiny_org.bridge, attack="harmful", forget=forget_mc, retain=retain_mc, lr=1e-4,
                     metric=metric, **FAST)
    part_b = ns.FactSet([by_id[i] for i in result.eval_ids])
    assert float(result.eval_accuracy[0]) == pytest.approx(metric(tiny_org.bridge, part_b))
    assert float(result.retain_accuracy[0]) == pytest.approx(metric(tiny_org.bridge, retain_mc))
    assert result.settings["metric"] == "mcqa_accuracy"


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"report": "mean"}, "report must be one of"),
    ({"pool": "some"}, "pool must be one of"),
    ({"pool": "wrong", "attack": "benign", "benign": ["a b c"]}, "pool='wrong' applies to the harmful"),
    ({"lr": []}, "lr grid is empty"),
    ({"lr": [1e-4, -1.0]}, "lr must be a positive float"),
    ({"metric": 0.5}, "metric must be a callable"),
])
def test_bad_options_fail_before_training(tiny_org, forget_retain, kwargs, match):
    forget, retain = forget_retain
    with pytest.raises(ValueError, match=match):
        relearn(tiny_org.bridge, forget=forget, retain=retain, **{**FAST, **kwargs})
