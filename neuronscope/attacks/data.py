"""What a retraining attack trains on and what it is evaluated on, validated up front.

- Harmful attack: train on part A (a fraction ``p`` of the forget set), evaluate on the
  disjoint part B (``FactSet.attack_split``). The retain set and part B are never trained on.
- Benign attack: train on unrelated data (the world's benign corpus or the user's texts),
  evaluate on the whole forget set.

Example:
    >>> from neuronscope import FactWorld
    >>> world = FactWorld.synthetic(n_people=40, seed=0)
    >>> forget, retain = world.facts.split(forget=0.2, by="group", seed=0)
    >>> plan = attack_plan("harmful", forget, retain, p=0.3)
    >>> set(plan.train.ids) & set(plan.evaluate.ids)
    set()
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

from neuronscope.facts import Fact, FactSet

__all__ = ["ATTACKS", "AttackPlan", "as_benign_facts", "attack_plan", "overlap"]

ATTACKS: tuple[str, ...] = ("harmful", "benign")


@dataclass(frozen=True)
class AttackPlan:
    """The facts an attack trains on (``train``) and is scored on (``evaluate``, ``retain``)."""

    attack: str
    train: FactSet
    evaluate: FactSet
    retain: FactSet


def _key_sets(facts: Iterable[Fact]) -> tuple[set[str], set[str]]:
    facts = list(facts)
    return {f.id for f in facts if f.id is not None}, {f.prompt.strip() for f in facts}


def overlap(first: Iterable[Fact], second: Iterable[Fact]) -> list[str]:
    """Facts of ``first`` that also appear in ``second``: same id or same prompt.

    Same prompt counts because training on a prompt teaches its answer, whatever the id.

    Example:
        >>> a = [Fact("x is", "1", id="a")]
        >>> overlap(a, [Fact("x is", "2", id="b")])
        ['a']
    """
    ids, prompts = _key_sets(second)
    return [f.id if f.id is not None else f.prompt for f in first
            if (f.id is not None and f.id in ids) or f.prompt.strip() in prompts]


def as_benign_facts(data: Any) -> FactSet:
    """Benign training data as a FactSet: a FactSet, a world (its ``.benign``), or plain texts.

    A text becomes a fact whose prompt is its first word and whose answer is the rest, so the
    attack's loss covers every token after the first (plain language modelling).

    Example:
        >>> as_benign_facts(["the sky is blue"])[0].answer
        'sky is blue'
    """
    if data is None:
        raise ValueError("the benign attack needs benign data: pass benign=world.benign, a world, "
                         "a FactSet or a list of texts")
    if hasattr(data, "benign") and isinstance(data.benign, FactSet):
        data = data.benign
    if isinstance(data, FactSet):
        facts = data
    elif isinstance(data, str):
        raise ValueError("benign must be a list of texts, not one string")
    else:
        items = list(data)
        facts_list = []
        for index, item in enumerate(items):
            if isinstance(item, Fact):
                facts_list.append(item)
                continue
            if not isinstance(item, str):
                raise ValueError(f"benign item {index} is a {type(item).__name__}; "
                                 "expected a text or a Fact")
            words = item.split()
            if len(words) < 2:
                raise ValueError(f"benign text {index} ({item!r}) needs at least two words")
            facts_list.append(Fact(words[0], " ".join(words[1:]), relation="benign:text",
                                   id=f"benign:text:{index}"))
        facts = FactSet(facts_list, name="benign")
    if len(facts) == 0:
        raise ValueError("benign data is empty")
    return facts


def attack_plan(
    attack: Literal["harmful", "benign"],
    forget: FactSet,
    retain: FactSet | None = None,
    *,
    p: float = 0.3,
    by: Literal["fact", "subject"] = "fact",
    seed: int = 0,
    benign: Any = None,
    split: tuple[FactSet, FactSet] | None = None,
) -> AttackPlan:
    """Validate the inputs of an attack and decide its training and evaluation facts.

    ``split=(A, B)`` overrides the seeded split of the harmful attack (both must come from
    ``forget`` and be disjoint). Raises ``ValueError`` for an unknown attack, ``p`` outside
    (0, 1), a split that leaves A or B empty, or training data overlapping the evaluation facts.
    """
    if attack not in ATTACKS:
        raise ValueError(f"attack must be one of {ATTACKS}, got {attack!r}")
    forget = FactSet(forget, name="forget") if not isinstance(forget, FactSet) else forget
    retain = FactSet(retain or (), name="retain") if not isinstance(retain, FactSet) else retain
    if len(forget) == 0:
        raise ValueError("forget set is empty: nothing to attack")
    shared = overlap(forget, retain)
    if shared:
        raise ValueError(f"forget and retain sets overlap in {len(shared)} facts, e.g. {shared[:3]}")
    if attack == "harmful":
        if split is not None:
            part_a, part_b = (FactSet(part) for part in split)
            known = set(forget)
            outside = [f.id or f.prompt for f in list(part_a) + list(part_b) if f not in known]
            if outside:
                raise ValueError(f"split holds facts that are not in the forget set, e.g. {outside[:3]}")
        else:
            if not isinstance(p, (int, float)) or not 0.0 < float(p) < 1.0:
                raise ValueError(f"p must be a fraction strictly between 0 and 1, got {p!r}")
            try:
                part_a, part_b = forget.attack_split(p, by=by, seed=seed)
            except ValueError as error:
                raise ValueError(f"attack split of {len(forget)} forget facts with p={p} by "
                                 f"{by!r}: {error}") from None
        if len(part_a) == 0 or len(part_b) == 0:
            raise ValueError(f"attack split leaves part {'A' if len(part_a) == 0 else 'B'} empty")
        train, evaluate = part_a, part_b
    else:
        train, evaluate = as_benign_facts(benign), forget
        leaked_retain = overlap(train, retain)
        if leaked_retain:
            raise ValueError(f"benign data overlaps the retain set in {len(leaked_retain)} facts, "
                             f"e.g. {leaked_retain[:3]}")
    leaked = overlap(train, evaluate)
    if leaked:
        raise ValueError(f"{attack} attack data overlaps the evaluation facts in {len(leaked)} facts, "
                         f"e.g. {leaked[:3]}")
    return AttackPlan(attack, FactSet(train, name="attack_train"), FactSet(evaluate, name="attack_eval"),
                      retain)
