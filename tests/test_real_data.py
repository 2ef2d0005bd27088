"""The shipped real-world facts and benign instructions are well formed (issue 14, item 3)."""

from __future__ import annotations

import json
import re
import runpy
from collections import defaultdict
from pathlib import Path

import pytest

import neuronscope as ns

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "neuronscope" / "data"
FACTS_FILE = DATA / "real_facts.jsonl"
BENIGN_FILE = DATA / "benign_instructions.jsonl"


@pytest.fixture(scope="module")
def facts() -> ns.FactSet:
    return ns.FactSet.from_jsonl(FACTS_FILE)


@pytest.fixture(scope="module")
def benign() -> list[dict]:
    return [json.loads(line) for line in BENIGN_FILE.read_text(encoding="utf-8").splitlines()]


@pytest.fixture(scope="module")
def answer_sets(facts) -> dict[str, set[str]]:
    values: dict[str, set[str]] = defaultdict(set)
    for fact in facts:
        values[fact.relation].add(fact.answer)
    return values


def test_counts(facts, benign):
    assert len(facts) >= 600
    assert len({f.group for f in facts}) >= 150
    assert 900 <= len(benign) <= 1100
    per_relation = defaultdict(int)
    for fact in facts:
        per_relation[fact.relation] += 1
    assert set(per_relation) >= {"capital", "currency", "official_language", "continent",
                                 "person_country", "occupation", "field", "landmark_city",
                                 "element_symbol"}


def test_every_fact_is_complete(facts):
    for fact in facts:
        assert fact.id and fact.subject and fact.relation and fact.group == fact.subject, fact.id
        assert fact.id.startswith(f"{fact.relation}:"), fact.id
        assert fact.prompt == fact.prompt.strip() and fact.answer == fact.answer.strip(), fact.id
        question, paraphrase = fact.meta["question"], fact.meta["paraphrase"]
        assert question.endswith("?") and paraphrase and paraphrase != fact.prompt, fact.id
        assert paraphrase == paraphrase.strip(), fact.id
        for text in (fact.prompt, paraphrase, question):
            # the answer is never given away by the text that asks for it
            assert not re.search(rf"(?<!\w){re.escape(fact.answer)}(?!\w)", text), (fact.id, text)


def test_distractors_are_wrong_answers_of_the_same_relation(facts, answer_sets):
    for fact in facts:
        options = fact.meta["distractors"]
        assert isinstance(options, list) and len(options) in (2, 3), fact.id
        assert len(set(options)) == len(options), fact.id
        assert fact.answer not in options, fact.id
        assert set(options) <= answer_sets[fact.relation], (fact.id, options)


def test_no_duplicate_ids_prompts_or_questions(facts):
    ids = [f.id for f in facts]
    texts = [f.prompt for f in facts] + [f.meta["paraphrase"] for f in facts]
    questions = [f.meta["question"] for f in facts]
    assert len(set(ids)) == len(ids)
    assert len(set(texts)) == len(texts)
    assert len(set(questions)) == len(questions)


def test_one_value_per_subject_and_relation(facts):
    seen: dict[tuple[str, str], str] = {}
    for fact in facts:
        key = (fact.subject, fact.relation)
        assert key not in seen, key
        seen[key] = fact.answer


# An independent spot check, written apart from the generator's tables.
KNOWN = {
    "capital:france": "Paris", "capital:japan": "Tokyo", "capital:australia": "Canberra",
    "capital:canada": "Ottawa", "capital:turkey": "Ankara", "capital:brazil": "Brasília",
    "currency:japan": "yen", "currency:germany": "euro", "currency:united_kingdom": "pound sterling",
    "official_language:brazil": "Portuguese", "official_language:iran": "Persian",
    "continent:egypt": "Africa", "continent:argentina": "South America",
    "person_country:albert_einstein": "Germany", "person_country:marie_curie": "Poland",
    "person_country:frederic_chopin": "Poland", "person_country:vincent_van_gogh": "Netherlands",
    "occupation:wolfgang_amadeus_mozart": "composer", "occupation:pablo_picasso": "painter",
    "field:charles_darwin": "biology", "sport:roger_federer": "tennis",
    "landmark_city:eiffel_tower": "Paris", "landmark_city:taj_mahal": "Agra",
    "landmark_country:machu_picchu": "Peru", "element_symbol:gold": "Au",
    "element_symbol:potassium": "K", "atomic_number:carbon": "6", "atomic_number:iron": "26",
}


def test_spot_checks(facts):
    by_id = {f.id: f for f in facts}
    for fact_id, answer in KNOWN.items():
        assert by_id[fact_id].answer == answer, fact_id


def test_landmarks_in_capitals_agree_with_the_capital_facts(facts):
    """A landmark in a capital city lies in that capital's country (England/Scotland: the UK)."""
    capital_of = {f.answer: f.subject for f in facts if f.relation == "capital"}
    country_of = {f.subject: f.answer for f in facts if f.relation == "landmark_country"}
    uk = {"England": "United Kingdom", "Scotland": "United Kingdom"}
    checked = 0
    for fact in facts:
        if fact.relation == "landmark_city" and fact.answer in capital_of:
            country = country_of[fact.subject]
            assert uk.get(country, country) == capital_of[fact.answer], fact.id
            checked += 1
    assert checked >= 20


def test_element_symbols_and_numbers_are_unique(facts):
    for relation in ("element_symbol", "atomic_number"):
        answers = [f.answer for f in facts if f.relation == relation]
        assert len(set(answers)) == len(answers) >= 40


def test_benign_rows_are_well_formed_and_unrelated(benign, facts):
    assert len({row["id"] for row in benign}) == len(benign)
    assert len({row["instruction"] for row in benign}) == len(benign)
    subjects = sorted({f.subject for f in facts}, key=len, reverse=True)
    mention = re.compile(r"(?<!\w)(" + "|".join(map(re.escape, subjects)) + r")(?!\w)", re.IGNORECASE)
    for row in benign:
        assert row["instruction"].strip() and row["response"].strip(), row["id"]
        text = f"{row['instruction']} {row['response']}"
        hit = mention.search(text)
        assert hit is None, (row["id"], hit and hit.group(0))


def test_subject_check_would_catch_a_mention(facts):
    subjects = sorted({f.subject for f in facts}, key=len, reverse=True)
    mention = re.compile(r"(?<!\w)(" + "|".join(map(re.escape, subjects)) + r")(?!\w)", re.IGNORECASE)
    assert mention.search("Tell me about gold coins.")
    assert mention.search("A trip to the eiffel tower")
    assert not mention.search("A golden sunset over the hills.")


def test_files_match_their_generator(facts, benign):
    script = runpy.run_path(str(ROOT / "tools" / "data" / "make_real_data.py"))
    assert script["to_jsonl"](script["real_facts"]()) == FACTS_FILE.read_text(encoding="utf-8")
    assert script["to_jsonl"](script["benign_rows"]()) == BENIGN_FILE.read_text(encoding="utf-8")


def test_data_files_ship_with_the_package():
    config = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    section = config.split("[tool.setuptools.package-data]", 1)[1].split("\n[", 1)[0]
    assert '"data/*.jsonl"' in section
    assert (DATA / "__init__.py").is_file()
