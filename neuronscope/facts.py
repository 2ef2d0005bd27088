"""Facts: prompt/answer records, JSONL in and out, seeded splits.

Example:
    >>> facts = FactSet([Fact("Ada Lind was born in", "Varno", "Ada Lind", "birth_city")])
    >>> len(facts)
    1
"""

from __future__ import annotations

import hashlib
import json
import os
import random
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal, overload

from neuronscope.atomic import atomic_write_text

__all__ = ["Fact", "FactSet", "atomic_write_text"]


@dataclass(frozen=True)
class Fact:
    """One fact: the model should complete ``prompt`` with ``answer``.

    ``group`` is an optional coarser unit than the subject (a family name, an author's
    book series) used by ``FactSet.split(by="group")``.

    Example:
        >>> Fact("The capital of Norland is", "Vesk", subject="Norland", relation="capital").answer
        'Vesk'
    """

    prompt: str
    answer: str
    subject: str = ""
    relation: str = ""
    id: str | None = None
    group: str | None = None
    meta: dict = field(default_factory=dict, compare=False, hash=False)

    def __post_init__(self) -> None:
        if not isinstance(self.prompt, str) or not self.prompt.strip():
            raise ValueError(f"Fact {self.id or self.subject!r}: prompt must be a non-empty string")
        if not isinstance(self.answer, str) or not self.answer.strip():
            raise ValueError(
                f"Fact {self.id or self.prompt!r}: answer must be a non-empty string"
            )

    def to_dict(self) -> dict:
        """Plain dict, with empty optional fields left out."""
        record = asdict(self)
        return {k: v for k, v in record.items() if v not in (None, {}, "") or k in ("prompt", "answer")}

    @classmethod
    def from_dict(cls, record: dict) -> Fact:
        """Inverse of :meth:`to_dict`; unknown keys go into ``meta``."""
        known = {"prompt", "answer", "subject", "relation", "id", "group", "meta"}
        missing = {"prompt", "answer"} - record.keys()
        if missing:
            raise ValueError(f"fact record {record!r} lacks {sorted(missing)}")
        meta = dict(record.get("meta", {}))
        meta.update({k: v for k, v in record.items() if k not in known})
        return cls(
            prompt=record["prompt"],
            answer=record["answer"],
            subject=record.get("subject", ""),
            relation=record.get("relation", ""),
            id=record.get("id"),
            group=record.get("group"),
            meta=meta,
        )


def _check_fraction(name: str, value: float) -> None:
    if not isinstance(value, (int, float)) or not 0.0 < float(value) < 1.0:
        raise ValueError(f"{name} must be a fraction strictly between 0 and 1, got {value!r}")


class FactSet(Sequence[Fact]):
    """An ordered, immutable collection of facts with unique ids (where given).

    Example:
        >>> world_facts = FactSet([Fact(f"p{i} is", "x", subject=f"s{i}") for i in range(10)])
        >>> forget, retain = world_facts.split(forget=0.2, seed=0)
        >>> len(forget), len(retain)
        (2, 8)
    """

    def __init__(self, facts: Iterable[Fact] = (), name: str = "") -> None:
        self._facts: tuple[Fact, ...] = tuple(facts)
        self.name = name
        seen: dict[str, int] = {}
        for index, fact in enumerate(self._facts):
            if not isinstance(fact, Fact):
                raise ValueError(f"FactSet item {index} is a {type(fact).__name__}, expected Fact")
            if fact.id is None:
                continue
            if fact.id in seen:
                raise ValueError(
                    f"duplicate fact id {fact.id!r} at positions {seen[fact.id]} and {index}"
                )
            seen[fact.id] = index

    # --- sequence protocol -------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._facts)

    @overload
    def __getitem__(self, index: int) -> Fact: ...
    @overload
    def __getitem__(self, index: slice) -> FactSet: ...
    def __getitem__(self, index: int | slice) -> Fact | FactSet:
        if isinstance(index, slice):
            return FactSet(self._facts[index], name=self.name)
        return self._facts[index]

    def __iter__(self) -> Iterator[Fact]:
        return iter(self._facts)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, FactSet) and self._facts == other._facts

    def __hash__(self) -> int:
        return hash(self._facts)

    def __add__(self, other: FactSet) -> FactSet:
        return FactSet(self._facts + tuple(other), name=self.name)

    def __repr__(self) -> str:
        label = f" {self.name!r}" if self.name else ""
        return f"<FactSet{label}: {len(self)} facts, {len(self.subjects)} subjects>"

    # --- views ------------------------------------------------------------------------
    @property
    def ids(self) -> list[str]:
        """Each fact's id, or ``#<index>`` where it has none."""
        return [f.id if f.id is not None else f"#{i}" for i, f in enumerate(self._facts)]

    @property
    def subjects(self) -> list[str]:
        """Distinct subjects in order of first appearance."""
        return list(dict.fromkeys(f.subject for f in self._facts))

    def filter(self, keep: Callable[[Fact], bool]) -> FactSet:
        """The facts for which ``keep`` is true."""
        return FactSet((f for f in self._facts if keep(f)), name=self.name)

    def without(self, other: Iterable[Fact]) -> FactSet:
        """These facts minus those in ``other`` (compared by value)."""
        drop = set(other)
        return self.filter(lambda f: f not in drop)

    def fingerprint(self) -> str:
        """A stable hash of the content, for cache keys."""
        return hashlib.sha256(self.to_jsonl().encode()).hexdigest()[:16]

    # --- JSONL ------------------------------------------------------------------------
    def to_jsonl(self, path: str | os.PathLike | None = None) -> str:
        """Serialise one JSON object per line; writes atomically when ``path`` is given."""
        text = "".join(json.dumps(f.to_dict(), ensure_ascii=False) + "\n" for f in self._facts)
        if path is not None:
            atomic_write_text(path, text)
        return text

    @classmethod
    def from_jsonl(cls, path: str | os.PathLike) -> FactSet:
        """Read facts from a JSONL file (one object with at least prompt and answer per line)."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"fact file {str(path)!r} does not exist")
        facts = []
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as error:
                raise ValueError(f"{path}:{number}: not valid JSON ({error.msg})") from None
            try:
                facts.append(Fact.from_dict(record))
            except ValueError as error:
                raise ValueError(f"{path}:{number}: {error}") from None
        return cls(facts, name=path.stem)

    # --- splits -----------------------------------------------------------------------
    def _units(self, by: str) -> dict[str, list[int]]:
        if by not in ("subject", "group", "fact", "relation"):
            raise ValueError(f"by must be 'auto', 'fact', 'subject', 'group' or 'relation', got {by!r}")
        units: dict[str, list[int]] = {}
        for index, fact in enumerate(self._facts):
            if by == "fact":
                key = str(index)
            elif by == "group":
                if fact.group is None:
                    raise ValueError(f"split by group, but fact {self.ids[index]!r} has no group")
                key = fact.group
            else:
                key = getattr(fact, by)
            units.setdefault(key, []).append(index)
        return units

    def _two_way(
        self, fraction: float, by: str, seed: int, names: tuple[str, str]
    ) -> tuple[FactSet, FactSet]:
        if len(self) == 0:
            raise ValueError("cannot split an empty FactSet")
        units = self._units(by)
        keys = sorted(units)
        random.Random(seed).shuffle(keys)
        n_first = round(fraction * len(keys))
        if n_first == 0 or n_first == len(keys):
            raise ValueError(
                f"a {names[0]} fraction of {fraction} over {len(keys)} {by} units leaves "
                f"{'the ' + names[0] if n_first == 0 else 'the ' + names[1]} side empty"
            )
        chosen = {i for key in keys[:n_first] for i in units[key]}
        first = FactSet((f for i, f in enumerate(self._facts) if i in chosen), name=names[0])
        second = FactSet((f for i, f in enumerate(self._facts) if i not in chosen), name=names[1])
        return first, second

    def split(
        self,
        forget: float = 0.1,
        by: Literal["auto", "subject", "group", "fact", "relation"] = "auto",
        seed: int = 0,
    ) -> tuple[FactSet, FactSet]:
        """Seeded split into ``(forget, retain)``; whole units (``by``) stay on one side.

        ``by="auto"`` (the default) keeps whole groups together when every fact has a group
        (the organism's families: the paper's protocol, as the docs use it) and whole subjects
        otherwise; :meth:`split_unit` says which it picks.

        Example:
            >>> fs = FactSet([Fact(f"q{i}", "a", subject=f"s{i % 5}") for i in range(20)])
            >>> f, r = fs.split(forget=0.2, by="subject", seed=1)
            >>> set(f.subjects) & set(r.subjects)
            set()
            >>> fs.split_unit(), fs.split(forget=0.2, seed=1) == (f, r)
            ('subject', True)
        """
        _check_fraction("forget", forget)
        return self._two_way(forget, self.split_unit(by), seed, ("forget", "retain"))

    def split_unit(self, by: str = "auto") -> str:
        """The unit :meth:`split` keeps together for ``by``: ``"auto"`` is ``"group"`` when every
        fact has a group, else ``"subject"``; any other value is returned as given."""
        if by != "auto":
            return by
        return "group" if self._facts and all(f.group is not None for f in self._facts) else "subject"

    def attack_split(
        self, p: float = 0.3, by: Literal["fact", "subject"] = "fact", seed: int = 0
    ) -> tuple[FactSet, FactSet]:
        """Seeded split into attack part A (fraction ``p``) and a disjoint evaluation part B."""
        _check_fraction("p", p)
        if by not in ("fact", "subject"):
            raise ValueError(f"attack_split by must be 'fact' or 'subject', got {by!r}")
        return self._two_way(p, by, seed, ("attack_A", "attack_B"))
