"""Facts, fact sets, JSONL and seeded splits."""

from __future__ import annotations

import pytest

import neuronscope as ns
from neuronscope.facts import Fact, FactSet


def _facts(n_subjects: int = 10, per_subject: int = 3) -> FactSet:
    return FactSet(
        Fact(f"q{s}-{r} is", f"a{r}", subject=f"s{s}", relation=f"r{r}", id=f"s{s}:r{r}",
             group=f"g{s % 4}")
        for s in range(n_subjects) for r in range(per_subject)
    )


def test_jsonl_round_trip_is_exact(tmp_path):
    facts = _facts() + FactSet([Fact("Élan est né à", "Brest Ville", meta={"source": "x"})])
    path = tmp_path / "facts.jsonl"
    facts.to_jsonl(path)
    again = FactSet.from_jsonl(path)
    assert again == facts
    assert [f.meta for f in again] == [f.meta for f in facts]
    assert again.to_jsonl() == path.read_text(encoding="utf-8")


def test_jsonl_reports_bad_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"prompt": "a", "answer": "b"}\n{"prompt": "a"}\n')
    with pytest.raises(ValueError, match=r"bad.jsonl:2"):
        FactSet.from_jsonl(path)
    with pytest.raises(FileNotFoundError, match=r"missing\.jsonl"):
        FactSet.from_jsonl(tmp_path / "missing.jsonl")


@pytest.mark.parametrize("by", ["subject", "group", "fact"])
def test_split_is_disjoint_complete_and_reproducible(by):
    facts = _facts()
    forget, retain = facts.split(forget=0.3, by=by, seed=3)
    assert set(forget).isdisjoint(retain)
    assert len(forget) + len(retain) == len(facts)
    assert facts.split(forget=0.3, by=by, seed=3) == (forget, retain)
    if by != "fact":
        key = "subject" if by == "subject" else "group"
        assert {getattr(f, key) for f in forget}.isdisjoint({getattr(f, key) for f in retain})


def test_different_seeds_give_different_splits():
    facts = _facts(40)
    assert facts.split(forget=0.2, seed=0)[0] != facts.split(forget=0.2, seed=1)[0]


@pytest.mark.parametrize("by", ["fact", "subject"])
def test_attack_split_disjoint(by):
    forget, _ = _facts(20).split(forget=0.5, seed=0)
    part_a, part_b = forget.attack_split(p=0.3, by=by, seed=1)
    assert set(part_a).isdisjoint(part_b)
    assert len(part_a) + len(part_b) == len(forget)
    assert forget.attack_split(p=0.3, by=by, seed=1) == (part_a, part_b)


@pytest.mark.parametrize("fraction", [0.0, 1.0, -0.1, 1.5])
def test_fractions_outside_unit_interval_rejected(fraction):
    with pytest.raises(ValueError, match="between 0 and 1"):
        _facts().split(forget=fraction)
    with pytest.raises(ValueError, match="between 0 and 1"):
        _facts().attack_split(p=fraction)


def test_split_leaving_a_side_empty_rejected():
    with pytest.raises(ValueError, match="empty"):
        _facts(n_subjects=3).split(forget=0.1, by="subject")


def test_bad_records_rejected():
    with pytest.raises(ValueError, match="prompt"):
        Fact("  ", "x", id="f1")
    with pytest.raises(ValueError, match="answer"):
        Fact("who?", "", id="f2")
    with pytest.raises(ValueError, match="duplicate fact id 'a'"):
        FactSet([Fact("p", "x", id="a"), Fact("q", "y", id="a")])
    with pytest.raises(ValueError, match="no group"):
        FactSet([Fact("p", "x"), Fact("q", "y")]).split(forget=0.5, by="group")


def test_public_names():
    assert ns.Fact is Fact and ns.FactSet is FactSet
    assert isinstance(ns.__version__, str)


def test_split_default_keeps_whole_groups_when_every_fact_has_one():
    grouped = _facts(12)
    assert grouped.split_unit() == "group"
    assert grouped.split(forget=0.25, seed=3) == grouped.split(forget=0.25, by="group", seed=3)
    loose = FactSet(Fact(f"q{i}", "a", subject=f"s{i % 6}") for i in range(18))
    assert loose.split_unit() == "subject"
    assert loose.split(forget=0.5, seed=2) == loose.split(forget=0.5, by="subject", seed=2)
    mixed = grouped + FactSet([Fact("lone", "a", subject="x")])
    assert mixed.split_unit() == "subject" and mixed.split_unit("fact") == "fact"
    with pytest.raises(ValueError, match="'auto'"):
        grouped.split(by="family")
