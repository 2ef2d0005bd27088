"""Answer scoring, and real checkpoints loaded from local folders."""

from __future__ import annotations

import pytest
import torch

import neuronscope as ns
from neuronscope.hooks import hook_count, mlp_hook_names


def _slow_logprob(model, fact, tokenizer):
    """One fact at a time, token by token: an independent reference."""
    prompt = [tokenizer.bos_token_id, *tokenizer.encode(fact.prompt)]
    answer = tokenizer.encode(fact.answer)
    total, greedy_ok = 0.0, True
    with torch.no_grad():
        for i, token in enumerate(answer):
            logits = model(torch.tensor([prompt + answer[:i]]))[0, -1]
            total += float(logits.log_softmax(-1)[token])
            greedy_ok &= int(logits.argmax()) == token
    return total, greedy_ok


def test_batched_scores_match_one_by_one(tiny_org, tiny_world):
    facts = [f for f in tiny_world.facts if " " in f.answer][:3] + list(tiny_world.facts[:5])
    logprob = ns.answer_logprob(tiny_org.bridge, facts, batch_size=3)
    hits = ns.accuracy(tiny_org.bridge, facts, per_fact=True)
    for i, fact in enumerate(facts):
        ref, ok = _slow_logprob(tiny_org.bridge, fact, tiny_world.tokenizer)
        assert logprob[i].item() == pytest.approx(ref, abs=1e-4)
        assert bool(hits[i]) == ok


def test_accuracy_distinguishes_wrong_answers(tiny_org, tiny_world):
    fact = tiny_world.facts[0]
    relation = next(r for r in tiny_world.relations if r.name == fact.relation)
    wrong = next(v for v in relation.values if v != fact.answer)
    assert ns.accuracy(tiny_org.bridge, [fact]) == 1.0
    assert ns.accuracy(tiny_org.bridge, [ns.Fact(fact.prompt, wrong)]) == 0.0


@pytest.mark.parametrize("shape", ["gpt2", "llama", "pythia"])
def test_local_checkpoints_load_and_mlp_hooks_fire(hf_folders, shape):
    model = ns.load_model(hf_folders[shape])
    assert model.tokenizer is not None
    names = mlp_hook_names(model)
    assert len(names) == model.cfg.n_layers
    before = hook_count(model)
    seen = {}

    def recorder(name):
        def record(activation, hook):
            seen[name] = tuple(activation.shape)
        return record

    with model.hooks(fwd_hooks=[(name, recorder(name)) for name in names]):
        ns.answer_logprob(model, [ns.Fact("ab c", "de")])
    assert set(seen) == set(names)
    assert all(shape_[-1] == model.cfg.d_mlp for shape_ in seen.values())
    assert hook_count(model) == before


def test_load_model_bad_folders(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"does not exist"):
        ns.load_model(tmp_path / "nowhere")
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(ValueError, match="no tokenizer"):
        ns.load_model(tmp_path)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match=r"no config\.json"):
        ns.load_model(empty)


def test_prompt_longer_than_context_rejected(hf_folders):
    model = ns.load_model(hf_folders["gpt2"])
    long_fact = ns.Fact("a" * 200, "b", id="too-long")
    with pytest.raises(ValueError, match=r"too-long.*context of 128"):
        ns.answer_logprob(model, [long_fact])


def test_unknown_word_rejected(tiny_org):
    with pytest.raises(ValueError, match="'Zanzibar'"):
        ns.accuracy(tiny_org.bridge, [ns.Fact("Zanzibar was born in the city of", "Varno")])
