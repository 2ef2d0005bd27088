"""Write ``neuronscope/data/real_facts.jsonl`` from the hand-checked tables in real_facts_tables.py.

Deterministic: distractors are drawn with ``random.Random(fact_id)``, so a rerun writes the same
bytes (``tests/test_real_data.py`` checks that the shipped file matches this script's output).

Run from the repository root:
    python tools/data/make_real_data.py
"""

from __future__ import annotations

import json
import random
import sys
import unicodedata
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
sys.path[:0] = [str(HERE), str(ROOT)]

from benign_instructions import benign_rows  # noqa: E402
from real_facts_tables import (  # noqa: E402
    ALSO_FIELDS,
    ALSO_SPORTS,
    ALSO_TRUE,
    COUNTRIES,
    ELEMENTS,
    FAR_JOBS,
    LANDMARKS,
    PEOPLE,
)

from neuronscope.atomic import atomic_write_text  # noqa: E402

DATA = ROOT / "neuronscope" / "data"
N_DISTRACTORS = 2

#: landmarks whose names are plural ("the Petronas Towers are")
PLURAL_LANDMARKS = {"Petronas Towers", "Moai statues"}

#: countries written with "the" in running text
THE_COUNTRIES = {name for name, the, *_ in COUNTRIES if the}


def slug(text: str) -> str:
    """ASCII, lower case, words joined by underscores: ``"Schönbrunn Palace"`` -> ``schonbrunn_palace``."""
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    words = "".join(c if c.isalnum() else " " for c in ascii_text.lower()).split()
    return "_".join(words)


def the(country: str) -> str:
    """The country as it reads after a preposition: ``"the United States"``, ``"France"``."""
    return f"the {country}" if country in THE_COUNTRIES else country


def possessive(name: str) -> str:
    """``"Ada's"``, ``"Charles Dickens'"``."""
    return f"{name}'" if name.endswith("s") else f"{name}'s"


def cap(text: str) -> str:
    return text[0].upper() + text[1:]


def pick(fact_id: str, candidates: set[str], answer: str, wrong_too: set[str] = frozenset()) -> list[str]:
    """Two seeded distractors from ``candidates``, never the answer nor an also-correct value."""
    pool = sorted(candidates - {answer} - set(wrong_too))
    if len(pool) < N_DISTRACTORS:
        raise ValueError(f"{fact_id}: only {pool} left as distractors")
    return random.Random(fact_id).sample(pool, N_DISTRACTORS)


def record(relation: str, subject: str, prompt: str, answer: str, question: str, paraphrase: str,
           distractors: list[str]) -> dict:
    fact_id = f"{relation}:{slug(subject)}"
    return {"id": fact_id, "subject": subject, "relation": relation, "group": subject,
            "prompt": prompt, "answer": answer,
            "meta": {"question": question, "distractors": distractors, "paraphrase": paraphrase}}


def country_facts() -> list[dict]:
    out: list[dict] = []
    continent_of = {c[0]: c[5] for c in COUNTRIES}
    capitals = {c[0]: c[2] for c in COUNTRIES if c[2]}
    currencies = {c[3] for c in COUNTRIES if c[3]}
    languages = {c[4] for c in COUNTRIES if c[4]}
    continents = {c[5] for c in COUNTRIES if c[5]}
    for name, _, capital, currency, language, continent in COUNTRIES:
        c = the(name)
        if capital:
            same_continent = {v for k, v in capitals.items() if continent_of[k] == continent}
            pool = same_continent if len(same_continent - {capital}) >= 4 else set(capitals.values())
            fid = f"capital:{slug(name)}"
            out.append(record(
                "capital", name, f"The capital of {c} is", capital,
                f"What is the capital of {c}?", f"The capital city of {c} is",
                pick(fid, pool, capital, ALSO_TRUE["capital"].get(name, set()))))
        if currency:
            fid = f"currency:{slug(name)}"
            out.append(record(
                "currency", name, f"The currency of {c} is the", currency,
                f"What is the currency of {c}?", f"The official currency used in {c} is the",
                pick(fid, currencies, currency, ALSO_TRUE["currency"].get(name, set()))))
        if language:
            # languages official in a listed country of the same continent are never offered:
            # that keeps out close relatives and regional co-official languages
            nearby = {row[4] for row in COUNTRIES if row[5] == continent and row[4]}
            fid = f"official_language:{slug(name)}"
            out.append(record(
                "official_language", name, f"The official language of {c} is", language,
                f"What is the official language of {c}?", f"In {c}, the official language is",
                pick(fid, languages, language,
                     nearby | ALSO_TRUE["official_language"].get(name, set()))))
        if not continent:
            continue
        fid = f"continent:{slug(name)}"
        out.append(record(
            "continent", name, f"{cap(c)} is located on the continent of", continent,
            f"On which continent is {c} located?", f"{cap(c)} is a country on the continent of",
            pick(fid, continents, continent, ALSO_TRUE["continent"].get(name, set()))))
    return out


def people_facts() -> list[dict]:
    out: list[dict] = []
    countries = {p[1] for p in PEOPLE}
    jobs = {p[2] for p in PEOPLE if p[2]}
    fields = {p[3] for p in PEOPLE if p[2] == "scientist"}
    sports = {p[3] for p in PEOPLE if p[2] == "athlete"}
    for name, country, job, detail, living, not_country, not_job in PEOPLE:
        fid = f"person_country:{slug(name)}"
        the_ = " the" if country in THE_COUNTRIES else ""
        out.append(record(
            "person_country", name, f"{name} was born in the country of{the_}", country,
            f"Which country is {name} from?", f"{possessive(name)} home country is{the_}",
            pick(fid, countries, country, not_country)))
        if job:
            fid = f"occupation:{slug(name)}"
            far = set(FAR_JOBS[job]) & jobs
            tense = "is" if living else "was"
            out.append(record(
                "occupation", name, f"{name} {tense} a famous", job,
                f"What {tense} {name}'s occupation?",
                f"{name} is {'known around the world' if living else 'remembered today'} as a great",
                pick(fid, far, job, not_job)))
        if job == "scientist" and detail:
            fid = f"field:{slug(name)}"
            out.append(record(
                "field", name, f"{name} made important discoveries in the field of", detail,
                f"Which field of science did {name} work in?",
                f"{name} is famous for work in the field of",
                pick(fid, fields, detail, ALSO_FIELDS.get(name, set()))))
        if job == "athlete" and detail:
            fid = f"sport:{slug(name)}"
            out.append(record(
                "sport", name, f"{name} became famous in the sport of", detail,
                f"Which sport is {name} famous for?", f"{name} is known for the sport of",
                pick(fid, sports, detail, ALSO_SPORTS.get(name, set()))))
    return out


def landmark_facts() -> list[dict]:
    out: list[dict] = []
    cities = {row[2] for row in LANDMARKS if row[2]}
    countries = {row[3] for row in LANDMARKS}
    for name, article, city, country in LANDMARKS:
        lower = f"{article} {name}".strip()
        upper = cap(lower)
        plural = name in PLURAL_LANDMARKS
        be = "are" if plural else "is"
        if city:
            fid = f"landmark_city:{slug(name)}"
            out.append(record(
                "landmark_city", name, f"{upper} {be} located in the city of", city,
                f"In which city {be} {lower} located?", f"You can visit {lower} in the city of",
                pick(fid, cities, city)))
        fid = f"landmark_country:{slug(name)}"
        the_ = " the" if country in THE_COUNTRIES else ""
        out.append(record(
            "landmark_country", name, f"{upper} {be} located in the country of{the_}", country,
            f"In which country {be} {lower} located?", f"You can visit {lower} in the country of{the_}",
            pick(fid, countries, country)))
    return out


def element_facts() -> list[dict]:
    out: list[dict] = []
    symbols = {row[1] for row in ELEMENTS}
    numbers = {str(row[2]) for row in ELEMENTS}
    for name, symbol, number in ELEMENTS:
        subject = cap(name)
        fid = f"element_symbol:{slug(name)}"
        out.append(record(
            "element_symbol", subject, f"The chemical symbol for {name} is", symbol,
            f"What is the chemical symbol for {name}?",
            f"On the periodic table, {name} is written with the symbol", pick(fid, symbols, symbol)))
        fid = f"atomic_number:{slug(name)}"
        out.append(record(
            "atomic_number", subject, f"The atomic number of {name} is", str(number),
            f"What is the atomic number of {name}?",
            f"The number of protons in an atom of {name} is",
            pick(fid, numbers, str(number))))
    return out


def real_facts() -> list[dict]:
    """Every fact record, in a fixed order."""
    return country_facts() + people_facts() + landmark_facts() + element_facts()


def to_jsonl(records: list[dict]) -> str:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)


def main() -> None:
    facts = real_facts()
    atomic_write_text(DATA / "real_facts.jsonl", to_jsonl(facts))
    rows = benign_rows()
    atomic_write_text(DATA / "benign_instructions.jsonl", to_jsonl(rows))
    print(f"{len(facts)} facts about {len({f['group'] for f in facts})} entities; "
          f"{len(rows)} benign rows")


if __name__ == "__main__":
    main()
