"""Retraining attacks: splits, validation, what the loop trains on, metrics, the oracle."""

from __future__ import annotations

import math

import pytest
import torch

import neuronscope as ns
from neuronscope.attacks import (
    AttackMetrics,
    RelearnResult,
    as_benign_facts,
    attack_plan,
    excess_recovery,
    normalised_recovery,
    relearn,
)
from neuronscope.attacks import runner as relearn_module
from neuronscope.facts import Fact, FactSet

FAST = {"steps": 6, "eval_every": 3, "lr": 1e-4, "progress": False}


# --- splits and validation -----------------------------------------------------------------
@pytest.mark.parametrize("by", ["fact", "subject"])
@pytest.mark.parametrize("p", [0.1, 0.3])
def test_harmful_parts_are_disjoint_and_cover_forget(forget_retain, p, by):
    forget, retain = forget_retain
    plan = attack_plan("harmful", forget, retain, p=p, by=by, seed=3)
    a, b = set(plan.train.ids), set(plan.evaluate.ids)
    assert a and b and not a & b
    assert a | b == set(forget.ids)
    assert not {f.prompt for f in plan.train} & {f.prompt for f in plan.evaluate}
    units = len(forget) if by == "fact" else len(forget.subjects)
    n_a = len(plan.train) if by == "fact" else len(plan.train.subjects)
    assert n_a == round(p * units)
    if by == "subject":
        assert not set(plan.train.subjects) & set(plan.evaluate.subjects)
    again = attack_plan("harmful", forget, retain, p=p, by=by, seed=3)
    assert again.train == plan.train
    assert attack_plan("harmful", forget, retain, p=p, by=by, seed=4).train != plan.train


def test_benign_plan_trains_on_benign_and_evaluates_forget(tiny_world, forget_retain):
    forget, retain = forget_retain
    plan = attack_plan("benign", forget, retain, benign=tiny_world)
    assert plan.train == tiny_world.benign and plan.evaluate == forget


def test_texts_become_language_modelling_facts():
    facts = as_benign_facts(["the sky is blue", "water is wet"])
    assert [(f.prompt, f.answer) for f in facts] == [("the", "sky is blue"), ("water", "is wet")]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"attack": "sneaky"}, "attack must be one of"),
        ({"p": 0.0}, "p must be a fraction"),
        ({"p": 1.0}, "p must be a fraction"),
        ({"p": -0.2}, "p must be a fraction"),
        ({"p": 0.001}, "leaves"),
        ({"p": 0.999}, "leaves"),
        ({"attack": "benign", "benign": None}, "needs benign data"),
        ({"attack": "benign", "benign": ["oneword"]}, "at least two words"),
    ],
)
def test_bad_input_is_a_value_error(forget_retain, kwargs, match):
    forget, retain = forget_retain
    with pytest.raises(ValueError, match=match):
        attack_plan(kwargs.pop("attack", "harmful"), forget, retain, **kwargs)


def test_overlapping_attack_data_is_rejected(tiny_world, forget_retain):
    forget, retain = forget_retain
    with pytest.raises(ValueError, match="overlaps the evaluation"):
        attack_plan("harmful", forget, retain, split=(forget[:5], forget[3:]))
    with pytest.raises(ValueError, match="not in the forget set"):
        attack_plan("harmful", forget, retain, split=(retain[:5], forget[5:]))
    with pytest.raises(ValueError, match="leaves part A empty"):
        attack_plan("harmful", forget, retain, split=(FactSet(), forget))
    leaky = FactSet([*tiny_world.benign[:20], forget[0]])
    with pytest.raises(ValueError, match="overlaps the evaluation"):
        attack_plan("benign", forget, retain, benign=leaky)
    # Same prompt, other id: still a leak (training on the prompt teaches the answer).
    twin = Fact(forget[0].prompt, "pony", id="someone-else")
    with pytest.raises(ValueError, match="overlaps the evaluation"):
        attack_plan("benign", forget, retain, benign=[twin])
    with pytest.raises(ValueError, match="forget and retain sets overlap"):
        attack_plan("harmful", forget, FactSet([*retain, forget[0]]))
    with pytest.raises(ValueError, match="forget set is empty"):
        attack_plan("harmful", FactSet(), retain)


def test_relearn_validates_before_training(tiny_org, forget_retain, monkeypatch):
    forget, retain = forget_retain
    called = []
    monkeypatch.setattr(relearn_module, "finetune", lambda *a, **k: called.append(1))
    for bad in ({"steps": 0}, {"lr": -1.0}, {"batch_size": 2.5}, {"eval_every": 0}, {"p": 2},
                {"original": 1.5}):
        with pytest.raises(ValueError):
            relearn(tiny_org.bridge, forget=forget, retain=retain, **{**FAST, **bad})
    assert not called


# --- what the loop sees ----------------------------------------------------------------------
def _rows(batch) -> set[tuple[int, ...]]:
    return {tuple(int(t) for t, keep in zip(row, mask, strict=True) if keep)
            for row, mask in zip(batch.tokens, batch.attention_mask, strict=True)}


@pytest.mark.parametrize("attack", ["harmful", "benign"])
def test_attack_trains_only_on_its_own_data(tiny_world, tiny_org, forget_retain, monkeypatch, attack):
    """Record every minibatch the shared loop hands the loss: only part A (or benign) rows."""
    forget, retain = forget_retain
    real = relearn_module.finetune
    seen_names: list[set[str]] = []
    seen_rows: set[tuple[int, ...]] = set()

    def spy(model, loss_fn, data, settings, **kwargs):
        seen_names.append(set(data))

        def recording_loss(m, batches, step):
            for batch in batches.values():
                seen_rows.update(_rows(batch))
            return loss_fn(m, batches, step)

        return real(model, recording_loss, data, settings, **kwargs)

    monkeypatch.setattr(relearn_module, "finetune", spy)
    plan = attack_plan(attack, forget, retain, p=0.3, seed=1, benign=tiny_world.benign)
    relearn(tiny_org.bridge, attack=attack, forget=forget, retain=retain, p=0.3, seed=1,
            benign=tiny_world.benign, **{**FAST, "steps": 3})
    tokenizer = tiny_org.tokenizer
    a_rows = _rows(ns.tokenize(plan.train, tokenizer))
    b_rows = _rows(ns.tokenize(plan.evaluate, tokenizer))
    retain_rows = _rows(ns.tokenize(retain, tokenizer))
    assert seen_names == [{"train"}]
    assert seen_rows and seen_rows <= a_rows
    assert not seen_rows & b_rows
    assert not seen_rows & retain_rows
    if attack == "harmful":  # a minibatch of 16 holds all 15 facts of part A
        assert seen_rows == a_rows


# --- behaviour on the tiny organism ----------------------------------------------------------
def test_relearn_curves_and_model_untouched(tiny_org, forget_retain):
    forget, retain = forget_retain
    before = {k: v.clone() for k, v in tiny_org.bridge.state_dict().items()}
    result = relearn(tiny_org.bridge, forget=forget, retain=retain, p=0.3, seed=0, **FAST)
    after = tiny_org.bridge.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert result.steps.tolist() == [0, 3, 6]
    assert result.eval_accuracy.shape == result.retain_accuracy.shape == (3,)
    assert len(result.loss) == 6
    assert result.unlearned == pytest.approx(float(ns.accuracy(tiny_org.bridge, result_eval(result, forget))))
    assert result.attacked == pytest.approx(float(ns.accuracy(result.bridge, result_eval(result, forget))))
    assert result.retain_after == pytest.approx(float(ns.accuracy(result.bridge, retain)))
    assert any(not torch.equal(before[k], v) for k, v in result.bridge.state_dict().items())


def result_eval(result: RelearnResult, forget: FactSet) -> FactSet:
    wanted = set(result.eval_ids)
    return forget.filter(lambda f: f.id in wanted)


def test_same_seed_same_numbers(tiny_org, forget_retain):
    forget, retain = forget_retain
    one = relearn(tiny_org.bridge, forget=forget, retain=retain, seed=2, **FAST)
    two = relearn(tiny_org.bridge, forget=forget, retain=retain, seed=2, **FAST)
    assert torch.equal(one.eval_accuracy, two.eval_accuracy) and torch.equal(one.loss, two.loss)


def test_oracle_stays_near_chance_and_original_remembers(tiny_world, tiny_org, tiny_oracle,
                                                         forget_retain):
    """The oracle never saw the forget facts: a harmful attack on part A cannot reveal part B.
    The original model knows B; the same attack on it keeps B far above the oracle."""
    forget, retain = forget_retain
    result = relearn(tiny_oracle.bridge, forget=forget, retain=retain, p=0.3, seed=0,
                     oracle=tiny_oracle.bridge, original=tiny_org.bridge,
                     **{**FAST, "steps": 20, "eval_every": 20, "lr": 3e-4})
    part_b = result_eval(result, forget)
    chance = tiny_world.chance(part_b)
    assert result.unlearned <= chance + 0.1
    assert result.attacked <= chance + 0.15
    assert result.original_accuracy >= 0.95
    # Identical attack, identical model: the control reproduces the run and excess is 0.
    assert torch.equal(result.oracle.eval_accuracy, result.eval_accuracy)
    assert result.metrics.excess_recovery == 0.0
    on_original = relearn(tiny_org.bridge, forget=forget, retain=retain, p=0.3, seed=0,
                          **{**FAST, "steps": 20, "eval_every": 20, "lr": 3e-4})
    assert on_original.eval_ids == result.eval_ids
    assert on_original.attacked - result.oracle.attacked >= 0.5


# --- metrics -----------------------------------------------------------------------------------
def test_metric_identities():
    assert normalised_recovery(attacked=0.2, unlearned=0.2, original=1.0) == 0.0
    assert normalised_recovery(attacked=0.9, unlearned=0.1, original=0.9) == pytest.approx(1.0)
    assert math.isnan(normalised_recovery(attacked=0.5, unlearned=0.9, original=0.9))
    assert excess_recovery(0.4, 0.1) == pytest.approx(0.3)
    m = AttackMetrics(original=1.0, unlearned=0.0, attacked=0.25)
    assert m.normalised_recovery == 0.25 and math.isnan(m.excess_recovery)
    assert set(m.to_dict()) >= {"normalised_recovery", "excess_recovery", "attacked"}
    with pytest.raises(ValueError, match="accuracy in"):
        excess_recovery(1.5, 0.1)


# --- results object -------------------------------------------------------------------------
def test_result_save_load_and_views(tmp_path, tiny_org, tiny_oracle, forget_retain):
    forget, retain = forget_retain
    result = relearn(tiny_org.bridge, attack="benign", forget=forget, retain=retain,
                     benign=["two plus two makes four", "the number after one is two"],
                     oracle=tiny_oracle.bridge, original=1.0, **FAST)
    loaded = RelearnResult.load(result.save(tmp_path / "r.json"))
    for name in ("steps", "eval_accuracy", "retain_accuracy", "loss"):
        assert torch.equal(getattr(loaded, name), getattr(result, name))
        assert torch.equal(getattr(loaded.oracle, name), getattr(result.oracle, name))
    assert loaded.to_dict() == result.to_dict()
    assert loaded.metrics == result.metrics
    frame = result.to_pandas()
    assert set(frame["model"]) == {"attacked", "oracle"} and len(frame) == 6
    assert "benign" in repr(result) and "excess recovery" in repr(result)
    assert "<table>" in result._repr_html_()
    with pytest.raises(ValueError, match="not a saved RelearnResult"):
        RelearnResult.from_dict({"format": "x"})
