"""Real-world knowledge shipped with the package: facts with 3-option MCQA, benign instructions.

``real_facts()`` reads ``neuronscope/data/real_facts.jsonl``: questions about well-known
people, places and things (capital, currency, official language, continent, a person's
country / occupation / field, a landmark's city, an element's symbol), each with
``meta["question"]``, ``meta["distractors"]`` (same-relation wrong answers) and
``meta["paraphrase"]``, grouped by entity for related-fact splits. ``benign_instructions()``
reads ``neuronscope/data/benign_instructions.jsonl`` (instruction / response pairs) as facts
for the benign retraining attack.

Example:
    >>> from neuronscope.mcqa import check_mcqa
    >>> facts = real_facts()
    >>> len(check_mcqa(facts)) == len(facts) > 0
    True
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from neuronscope.facts import Fact, FactSet

__all__ = ["DATA_DIR", "benign_instructions", "paraphrased", "real_facts"]

DATA_DIR = Path(__file__).parent / "data"


def real_facts(path: str | os.PathLike | None = None) -> FactSet:
    """The shipped real-world facts (or those of ``path``, in the same schema)."""
    path = Path(path) if path is not None else DATA_DIR / "real_facts.jsonl"
    facts = FactSet.from_jsonl(path)
    return FactSet(facts, name="real_facts")


def paraphrased(facts: FactSet) -> FactSet:
    """The same facts asked through ``meta["paraphrase"]`` (facts without one are dropped)."""
    return FactSet([Fact(f.meta["paraphrase"], f.answer, f.subject, f.relation,
                         f"{f.id}:paraphrase" if f.id else None, f.group, dict(f.meta))
                    for f in facts if f.meta.get("paraphrase")], name=f"{facts.name}:paraphrase")


def benign_instructions(path: str | os.PathLike | None = None, *, limit: int | None = None) -> FactSet:
    """Benign instruction / response pairs as facts (prompt = instruction, answer = response)."""
    path = Path(path) if path is not None else DATA_DIR / "benign_instructions.jsonl"
    if not path.is_file():
        raise FileNotFoundError(f"benign instruction file {str(path)!r} does not exist")
    facts = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            facts.append(Fact(record["instruction"], record["response"], relation="benign:instruction",
                              id=str(record.get("id") or f"benign:{number}")))
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as error:
            raise ValueError(f"{path}:{number}: not an instruction/response record ({error})") from None
        if limit is not None and len(facts) >= limit:
            break
    return FactSet(facts, name="benign_instructions")
