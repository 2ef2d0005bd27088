"""3-option MCQA: the batched scorer against a one-option-at-a-time reference loop, bad input."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch

import neuronscope as ns
from neuronscope.mcqa import (
    LETTERS,
    check_mcqa,
    letters_prompt,
    mcqa_accuracy,
    mcqa_metric,
    mcqa_options,
    mcqa_scores,
    with_distractors,
)
from neuronscope.realworld import real_facts

SAMPLE = Path(__file__).parent / "data_real_sample.jsonl"
CHAT = ("{% for m in messages %}<{{ m['role'] }}>{{ m['content'] }}</{{ m['role'] }}>{% endfor %}"
        "{% if add_generation_prompt %}<assistant>{% endif %}")


def _fact(answer="Paris", distractors=("Berlin", "Madrid"), **meta):
    return ns.Fact("The capital of France is", answer, id="capital:france",
                   meta={"distractors": list(distractors), **meta})


def _reference(model, tokenizer, facts, style, normalize="sum"):
    """One fact, one option, one unpadded forward pass at a time."""
    rows = []
    for fact in facts:
        options, _ = mcqa_options(fact)
        scores = []
        for index, option in enumerate(options):
            if style == "completion":
                context = [tokenizer.bos_token_id, *tokenizer.encode(fact.prompt, add_special_tokens=False)]
                target = tokenizer.encode(" " + option, add_special_tokens=False)
            else:
                user = (fact.meta.get("question", fact.prompt) if style == "chat"
                        else letters_prompt(fact, options))
                text = tokenizer.apply_chat_template([{"role": "user", "content": user}], tokenize=False,
                                                     add_generation_prompt=True)
                context = tokenizer.encode(text, add_special_tokens=False)
                target = tokenizer.encode(option if style == "chat" else LETTERS[index],
                                          add_special_tokens=False)
            tokens = torch.tensor([context + target])
            with torch.no_grad():
                logp = model(tokens)[0].double().log_softmax(-1)
            if style == "letters":
                scores.append(float(logp[len(context) - 1, target[0]]))
                continue
            total = sum(float(logp[len(context) - 1 + j, t]) for j, t in enumerate(target))
            scores.append(total / len(target) if normalize == "mean" else total)
        rows.append(scores)
    return torch.tensor(rows, dtype=torch.float64)


@pytest.fixture(scope="module")
def tiny_llama(hf_folders):
    model = ns.load_model(hf_folders["llama"])
    tokenizer = copy.copy(model.tokenizer)
    tokenizer.chat_template = CHAT
    return model, tokenizer


@pytest.fixture(scope="module")
def sample_facts():
    return real_facts(SAMPLE)


# --- bad input ------------------------------------------------------------------------------
def test_distractor_repeating_the_answer_is_rejected():
    with pytest.raises(ValueError, match="capital:france: a distractor repeats the answer 'Paris'"):
        check_mcqa([_fact(distractors=("Berlin", " paris"))])


def test_fact_without_distractors_is_rejected():
    with pytest.raises(ValueError, match=r"capital:france: MCQA needs meta\['distractors'\]"):
        check_mcqa([ns.Fact("The capital of France is", "Paris", id="capital:france")])
    with pytest.raises(ValueError, match="needs 2 distractors, it has 1"):
        check_mcqa([_fact(distractors=("Berlin",))])
    with pytest.raises(ValueError, match="repeated distractors"):
        check_mcqa([_fact(distractors=("Berlin", "berlin"))])


def test_bad_settings_are_rejected(tiny_llama, sample_facts):
    model, tokenizer = tiny_llama
    with pytest.raises(ValueError, match="letters MCQA row is 161 tokens, longer than the model"):
        mcqa_accuracy(model, sample_facts, style="letters", tokenizer=tokenizer)
    with pytest.raises(ValueError, match="style must be one of"):
        mcqa_accuracy(model, sample_facts, style="essay")
    with pytest.raises(ValueError, match="n_options must be"):
        check_mcqa(sample_facts, n_options=1)
    with pytest.raises(ValueError, match="need a tokenizer with a chat template"):
        mcqa_accuracy(model, sample_facts, style="chat")  # the tiny tokenizer has none
    with pytest.raises(ValueError, match="unknown MCQA setting"):
        mcqa_metric(temperature=1.0)


def test_options_are_seeded_and_hold_the_answer():
    fact = _fact()
    assert mcqa_options(fact, seed=3) == mcqa_options(fact, seed=3)
    positions = {mcqa_options(fact, seed=s)[1] for s in range(30)}
    assert positions == {0, 1, 2}  # the answer is not always in the same place
    for seed in range(5):
        options, correct = mcqa_options(fact, seed=seed)
        assert options[correct] == "Paris" and sorted(options) == ["Berlin", "Madrid", "Paris"]


# --- the scorer against the reference loop --------------------------------------------------
@pytest.mark.parametrize("style", ["completion", "chat"])  # letters: too long for this model; see below
def test_scores_match_one_option_at_a_time(tiny_llama, sample_facts, style):
    model, tokenizer = tiny_llama
    values, answers = mcqa_scores(model, sample_facts, style=style, tokenizer=tokenizer, batch_size=5)
    expected = _reference(model, tokenizer, sample_facts, style)
    assert values.shape == (len(sample_facts), 3)
    torch.testing.assert_close(values, expected, atol=1e-4, rtol=1e-5)
    assert answers.tolist() == [mcqa_options(f)[1] for f in sample_facts]
    hits = mcqa_accuracy(model, sample_facts, style=style, tokenizer=tokenizer, per_fact=True)
    assert hits.tolist() == (expected.argmax(1) == answers).tolist()


def test_mean_normalisation_matches_reference(tiny_llama, sample_facts):
    model, tokenizer = tiny_llama
    values, _ = mcqa_scores(model, sample_facts, normalize="mean", tokenizer=tokenizer)
    torch.testing.assert_close(values, _reference(model, tokenizer, sample_facts, "completion", "mean"),
                               atol=1e-4, rtol=1e-5)


def test_metric_on_the_organism(tiny_org, tiny_world):
    facts = with_distractors(tiny_world.facts, seed=0)[:60]
    metric = mcqa_metric(style="completion")
    accuracy = metric(tiny_org.bridge, facts)
    assert accuracy >= 0.9  # the organism knows its world: it picks the right option
    assert accuracy == mcqa_accuracy(tiny_org.bridge, facts)
    for fact in facts:
        assert fact.answer not in fact.meta["distractors"]
        assert len(set(fact.meta["distractors"])) == 2


# --- the real model ---------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("style", ["completion", "chat", "letters"])
def test_smollm2_scores_match_reference(smollm2, sample_facts, style):
    facts = sample_facts[:4]
    values, _ = mcqa_scores(smollm2, facts, style=style)
    torch.testing.assert_close(values, _reference(smollm2, smollm2.tokenizer, facts, style),
                               atol=2e-3, rtol=1e-4)


@pytest.mark.slow
def test_smollm2_knows_the_sample_facts(smollm2, sample_facts):
    assert mcqa_accuracy(smollm2, sample_facts) >= 0.9


def test_shipped_facts_are_valid_three_option_questions():
    facts = check_mcqa(real_facts())
    assert len(facts) >= 600
    for fact in facts:
        options, correct = mcqa_options(fact)
        assert options[correct] == fact.answer and len(set(options)) == 3
