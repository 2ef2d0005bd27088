"""The synthetic world and the prompt+answer tokenisation."""

from __future__ import annotations

from collections import Counter

import pytest
import torch

import neuronscope as ns
from neuronscope.facts import Fact


def test_world_is_seeded_and_complete():
    world = ns.FactWorld.synthetic(n_people=400, seed=0)
    again = ns.FactWorld.synthetic(n_people=400, seed=0)
    assert world.facts == again.facts and world.benign == again.benign
    assert world.tokenizer == again.tokenizer
    assert ns.FactWorld.synthetic(n_people=400, seed=1).facts != world.facts
    assert len(world.relations) >= 5
    assert all(len(r.templates) >= 2 and len(r.values) >= 5 for r in world.relations)
    assert len(world.benign) >= 1000
    assert len(world.refusals) >= 1
    families = Counter(p.family for p in world.people)
    assert len(families) < len(world.people) and max(families.values()) > 1
    assert len({p.name for p in world.people}) == len(world.people)
    # Benign sentences mention none of the people.
    names = {w for p in world.people for w in (p.first, p.family)}
    assert not any(set(f.prompt.split()) & names for f in world.benign)
    # Paraphrases ask the same question in other words.
    para = world.paraphrases_of(world.facts[:5])
    assert [f.answer for f in para] == [f.answer for f in world.facts[:5]]
    assert all(a.prompt != b.prompt for a, b in zip(para, world.facts[:5], strict=True))


def test_multi_token_answer_span_is_exact():
    world = ns.FactWorld.synthetic(n_people=50, seed=0)
    multi = [f for f in world.facts if len(f.answer.split()) > 1][:4]
    facts = [*multi, world.facts[0]]
    batch = ns.tokenize(facts, world.tokenizer)
    tok = world.tokenizer
    for row, fact in enumerate(facts):
        answer_ids = batch.tokens[row][batch.answer_mask[row]].tolist()
        prompt_ids = batch.tokens[row][batch.prompt_mask[row]].tolist()
        assert answer_ids == tok.encode(fact.answer)
        assert prompt_ids == [tok.bos_token_id, *tok.encode(fact.prompt)]
        # The answer directly follows the prompt; padding only after it.
        length = len(prompt_ids) + len(answer_ids)
        assert batch.attention_mask[row].tolist() == [True] * length + [False] * (
            batch.tokens.shape[1] - length)
    assert len(multi) == 4 and all(m.sum() >= 2 for m in batch.answer_mask[:4])


def test_tokenize_with_hugging_face_tokenizer(hf_folders):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(hf_folders["gpt2"])
    facts = [Fact("ab is", "cd ef"), Fact("x", "y")]
    batch = ns.tokenize(facts, tokenizer)
    for row, fact in enumerate(facts):
        answer = batch.tokens[row][batch.answer_mask[row]].tolist()
        assert answer == tokenizer(" " + fact.answer, add_special_tokens=False)["input_ids"]
        assert batch.tokens[row, 0] == tokenizer.bos_token_id


def test_tokenize_bad_input():
    tok = ns.WordTokenizer.from_texts(["a b c is d"])
    with pytest.raises(ValueError, match="'zebra'"):
        ns.tokenize([Fact("a b zebra is", "d")], tok)
    with pytest.raises(ValueError, match="longer than the model's context of 4"):
        ns.tokenize([Fact("a b c is", "d", id="long")], tok, max_length=4)
    with pytest.raises(ValueError, match="empty"):
        ns.tokenize([], tok)


def test_batch_slicing_trims_padding():
    tok = ns.WordTokenizer.from_texts(["a b c d e is f"])
    batch = ns.tokenize([Fact("a is", "f"), Fact("a b c d e is", "f")], tok)
    first = batch[0:1]
    assert first.tokens.shape == (1, 4)
    assert torch.equal(first.answer_mask[0], torch.tensor([False, False, False, True]))
