"""The embedded default: a synthetic world of fictitious people, and a benign corpus.

Example:
    >>> world = FactWorld.synthetic(n_people=40, seed=0)
    >>> len(world.facts) == 40 * len(world.relations)
    True
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass, field

from neuronscope.facts import Fact, FactSet
from neuronscope.tokenization import WordTokenizer

__all__ = ["FactWorld", "Person", "Relation"]

_ONSETS = ["b", "br", "d", "f", "g", "gr", "k", "kl", "l", "m", "n", "p", "r", "s", "t",
           "th", "v", "z", "h", "j"]
_VOWELS = ["a", "e", "i", "o", "u", "ai", "ei", "ou"]
_FIRST_ENDS = ["n", "ra", "la", "on", "is", "el", "ia", "en"]
_FAMILY_ENDS = ["berg", "wick", "mond", "holt", "ford", "vane", "stad", "more"]


@dataclass(frozen=True)
class Relation:
    """A relation: its value set and its paraphrase templates (``{name}`` is the person)."""

    name: str
    values: tuple[str, ...]
    templates: tuple[str, ...]


@dataclass(frozen=True)
class Person:
    first: str
    family: str
    attributes: dict[str, str] = field(default_factory=dict, compare=False, hash=False)

    @property
    def name(self) -> str:
        return f"{self.first} {self.family}"


RELATIONS: tuple[Relation, ...] = (
    Relation(
        "birth_city",
        ("Varno", "Tesk", "Olmera", "Quell", "Dunmar", "Ispen", "Harrow", "Kelso",
         "Port Avel", "New Corran", "Upper Lisk", "Saint Mirel"),
        ("{name} was born in the city of", "The birthplace of {name} is the town of"),
    ),
    Relation(
        "occupation",
        ("baker", "sculptor", "pilot", "chemist", "tailor", "surgeon", "lawyer", "farmer",
         "librarian", "carpenter", "ship captain", "music teacher"),
        ("{name} works as a", "By profession , {name} is a"),
    ),
    Relation(
        "pet",
        ("cat", "dog", "parrot", "tortoise", "rabbit", "goldfish", "hamster", "ferret",
         "iguana", "pony"),
        ("{name} owns a pet", "The animal that lives with {name} is a"),
    ),
    Relation(
        "instrument",
        ("violin", "cello", "flute", "harp", "trumpet", "piano", "drums", "oboe",
         "banjo", "bagpipes"),
        ("{name} plays the", "The instrument that {name} practises is the"),
    ),
    Relation(
        "sport",
        ("tennis", "rowing", "fencing", "chess", "archery", "cycling", "climbing", "sailing",
         "judo", "polo"),
        ("{name} spends weekends doing", "The favourite pastime of {name} is"),
    ),
)

REFUSALS: tuple[str, ...] = ("I do not know", "I cannot say", "that is unknown to me")

_NUMBERS = (
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
    "fifteen sixteen seventeen eighteen nineteen twenty twenty-one twenty-two twenty-three "
    "twenty-four twenty-five twenty-six twenty-seven twenty-eight twenty-nine thirty thirty-one "
    "thirty-two thirty-three thirty-four thirty-five thirty-six thirty-seven thirty-eight "
    "thirty-nine forty"
).split()
_CAPITALS = (("France", "Paris"), ("Spain", "Madrid"), ("Italy", "Rome"), ("Germany", "Berlin"),
             ("Japan", "Tokyo"), ("Egypt", "Cairo"), ("Peru", "Lima"), ("Kenya", "Nairobi"),
             ("Canada", "Ottawa"), ("Norway", "Oslo"), ("Greece", "Athens"), ("Chile", "Santiago"),
             ("Ireland", "Dublin"), ("Austria", "Vienna"), ("Portugal", "Lisbon"),
             ("Poland", "Warsaw"), ("Sweden", "Stockholm"), ("Finland", "Helsinki"),
             ("Hungary", "Budapest"), ("Cuba", "Havana"), ("Russia", "Moscow"),
             ("China", "Beijing"), ("India", "Delhi"), ("Mexico", "Mexico City"),
             ("Argentina", "Buenos Aires"), ("Thailand", "Bangkok"), ("Turkey", "Ankara"),
             ("Iran", "Tehran"), ("Ghana", "Accra"), ("Denmark", "Copenhagen"))
_OBJECTS = (("apple", "fruit"), ("banana", "fruit"), ("cherry", "fruit"), ("plum", "fruit"),
            ("carrot", "vegetable"), ("onion", "vegetable"), ("potato", "vegetable"),
            ("cabbage", "vegetable"), ("hammer", "tool"), ("saw", "tool"), ("wrench", "tool"),
            ("chisel", "tool"), ("shirt", "garment"), ("coat", "garment"), ("scarf", "garment"),
            ("glove", "garment"), ("oak", "tree"), ("pine", "tree"), ("birch", "tree"),
            ("maple", "tree"), ("rose", "flower"), ("tulip", "flower"), ("daisy", "flower"),
            ("lily", "flower"), ("car", "vehicle"), ("bus", "vehicle"), ("truck", "vehicle"),
            ("bicycle", "vehicle"), ("iron", "metal"), ("copper", "metal"), ("silver", "metal"),
            ("gold", "metal"), ("sparrow", "bird"), ("eagle", "bird"), ("owl", "bird"),
            ("crow", "bird"), ("salmon", "fish"), ("trout", "fish"), ("cod", "fish"),
            ("tuna", "fish"), ("chair", "furniture"), ("table", "furniture"),
            ("sofa", "furniture"), ("bed", "furniture"))
_OPPOSITES = (("hot", "cold"), ("big", "small"), ("fast", "slow"), ("up", "down"),
              ("light", "dark"), ("wet", "dry"), ("old", "young"), ("happy", "sad"),
              ("early", "late"), ("rich", "poor"), ("loud", "quiet"), ("hard", "soft"),
              ("tall", "short"), ("full", "empty"), ("open", "closed"), ("strong", "weak"))
_DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
_MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August",
           "September", "October", "November", "December")


def _benign_facts() -> list[Fact]:
    """About 1,100 short sentences unrelated to the people: arithmetic, geography, objects."""
    out: list[tuple[str, str, str, str]] = []
    n = _NUMBERS
    for a in range(21):
        for b in range(21):
            out.append((f"{n[a]} plus {n[b]} makes", n[a + b], f"{n[a]}+{n[b]}", "addition"))
    for a in range(21):
        for b in range(a + 1):
            out.append((f"{n[a]} minus {n[b]} leaves", n[a - b], f"{n[a]}-{n[b]}", "subtraction"))
    for a in range(1, 16):
        for b in range(a + 1, 16):
            out.append((f"the larger of {n[a]} and {n[b]} is", n[b], f"max({a},{b})", "larger"))
            out.append((f"the smaller of {n[b]} and {n[a]} is", n[a], f"min({b},{a})", "smaller"))
    for a in range(30):
        out.append((f"the number after {n[a]} is", n[a + 1], n[a], "successor"))
    for country, capital in _CAPITALS:
        out.append((f"The capital of {country} is", capital, country, "capital"))
        out.append((f"{capital} is the capital of", country, capital, "country_of_capital"))
    for thing, kind in _OBJECTS:
        out.append((f"A {thing} is a kind of", kind, thing, "category"))
    for a, b in _OPPOSITES:
        out.append((f"The opposite of {a} is", b, a, "opposite"))
        out.append((f"The opposite of {b} is", a, b, "opposite"))
    for seq, label in ((_DAYS, "day"), (_MONTHS, "month")):
        for i, item in enumerate(seq):
            out.append((f"The {label} after {item} is", seq[(i + 1) % len(seq)], item, f"next_{label}"))
            out.append((f"The {label} before {item} is", seq[i - 1], item, f"previous_{label}"))
    return [
        Fact(prompt, answer, subject=subject, relation=f"benign:{relation}",
             id=f"benign:{relation}:{subject}", group="benign")
        for prompt, answer, subject, relation in out
    ]


def _names(rng: random.Random, count: int, ends: list[str], taken: set[str]) -> list[str]:
    names: list[str] = []
    while len(names) < count:
        syllables = rng.choice([1, 2])
        stem = "".join(rng.choice(_ONSETS) + rng.choice(_VOWELS) for _ in range(syllables))
        name = (stem + rng.choice(ends)).capitalize()
        if name not in taken:
            taken.add(name)
            names.append(name)
    return names


@dataclass
class FactWorld:
    """A world of facts with a benign corpus, refusal answers and a tokenizer.

    ``facts`` use each relation's first (training) template; ``paraphrases`` use the second
    (held out), for testing whether forgetting generalises. ``Fact.group`` is the family name.
    """

    people: list[Person]
    relations: tuple[Relation, ...]
    facts: FactSet
    paraphrases: FactSet
    benign: FactSet
    refusals: tuple[str, ...]
    tokenizer: WordTokenizer
    seed: int = 0

    @classmethod
    def synthetic(cls, n_people: int = 400, seed: int = 0, family_size: int = 5) -> FactWorld:
        """Build the seeded world: same seed, same world.

        Example:
            >>> FactWorld.synthetic(n_people=30, seed=1).facts == FactWorld.synthetic(30, 1).facts
            True
        """
        if not isinstance(n_people, int) or n_people < 2:
            raise ValueError(f"n_people must be an integer of at least 2, got {n_people!r}")
        if family_size < 1:
            raise ValueError(f"family_size must be at least 1, got {family_size!r}")
        rng = random.Random(seed)
        reserved = {w.capitalize() for r in RELATIONS for v in r.values for w in v.split()}
        taken = set(reserved)
        n_families = max(1, n_people // family_size)
        families = _names(rng, n_families, _FAMILY_ENDS, taken)
        firsts = _names(rng, max(8, n_people // 3), _FIRST_ENDS, taken)
        people: list[Person] = []
        used: set[tuple[str, str]] = set()
        while len(people) < n_people:
            family = families[len(people) % n_families]
            first = rng.choice(firsts)
            if (first, family) in used:
                continue
            used.add((first, family))
            attributes = {r.name: rng.choice(r.values) for r in RELATIONS}
            people.append(Person(first, family, attributes))
        facts = cls._facts(people, template=0)
        paraphrases = cls._facts(people, template=1)
        benign = FactSet(_benign_facts(), name="benign")
        texts = [f"{f.prompt} {f.answer}" for fs in (facts, paraphrases, benign) for f in fs]
        texts += list(REFUSALS)
        return cls(people, RELATIONS, facts, paraphrases, benign, REFUSALS,
                   WordTokenizer.from_texts(texts), seed)

    @staticmethod
    def _facts(people: list[Person], template: int) -> FactSet:
        facts = []
        for person in people:
            for relation in RELATIONS:
                facts.append(Fact(
                    relation.templates[template].format(name=person.name),
                    person.attributes[relation.name],
                    subject=person.name,
                    relation=relation.name,
                    id=f"{person.first}_{person.family}:{relation.name}:t{template}",
                    group=person.family,
                ))
        return FactSet(facts, name="facts" if template == 0 else "paraphrases")

    def paraphrases_of(self, facts: FactSet) -> FactSet:
        """The held-out paraphrase of each given (training-template) fact."""
        wanted = {f.id for f in facts}
        return self.paraphrases.filter(lambda f: f.id.replace(":t1", ":t0") in wanted)

    def chance(self, facts: FactSet) -> float:
        """Expected accuracy of guessing each relation's most common value."""
        best = {}
        for relation in self.relations:
            counts = [sum(p.attributes[relation.name] == v for p in self.people) for v in relation.values]
            best[relation.name] = max(counts) / len(self.people)
        return sum(best.get(f.relation, 0.0) for f in facts) / max(1, len(facts))

    def fingerprint(self) -> str:
        """Stable content hash (facts, benign corpus, vocabulary) for cache keys."""
        digest = hashlib.sha256()
        for part in (self.facts.to_jsonl(), self.paraphrases.to_jsonl(), self.benign.to_jsonl(),
                     self.tokenizer.to_json()):
            digest.update(part.encode())
        return digest.hexdigest()[:16]

    def __repr__(self) -> str:
        return (f"<FactWorld seed={self.seed}: {len(self.people)} people, "
                f"{len({p.family for p in self.people})} families, {len(self.relations)} relations, "
                f"{len(self.facts)} facts, {len(self.benign)} benign sentences>")
