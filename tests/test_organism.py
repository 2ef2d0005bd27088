"""The model organism: memorisation, the oracle, the disk cache."""

from __future__ import annotations

import importlib
import math
from dataclasses import replace

import pytest
import torch

import neuronscope as ns
from neuronscope.organism import SIZES, training_facts, untrained_organism
from neuronscope.scoring import answer_token_logprobs, scores
from neuronscope.training import EpochSampler


def test_organism_memorises_its_facts(tiny_org, tiny_world):
    assert tiny_org.record["reached_target"]
    assert ns.accuracy(tiny_org.bridge, tiny_world.facts) >= 0.99
    model, tokenizer, record = tiny_org
    assert tokenizer is tiny_world.tokenizer and model.tokenizer is tokenizer
    assert record["n_facts"] == len(tiny_world.facts)
    assert model.cfg.n_layers == SIZES["tiny"].n_layers


def test_oracle_is_at_chance_on_forget_facts(tiny_oracle, tiny_org, forget_retain, tiny_world):
    forget, retain = forget_retain
    assert tiny_oracle.record["n_facts"] == len(tiny_world.facts) - len(forget)
    oracle_forget = ns.accuracy(tiny_oracle.bridge, forget)
    assert ns.accuracy(tiny_oracle.bridge, retain) >= 0.99
    # Chance: the most common value of each relation. Allow sampling noise on 60 facts.
    assert oracle_forget <= tiny_world.chance(forget) + 0.15
    assert ns.accuracy(tiny_org.bridge, forget) >= 0.99
    # The oracle puts far less probability on the forget answers than the original.
    assert (ns.answer_logprob(tiny_oracle.bridge, forget).mean()
            < ns.answer_logprob(tiny_org.bridge, forget).mean() - 2.0)


def test_second_call_reuses_cache_with_identical_weights(tiny_org, tiny_world, cache_folder):
    again = ns.organism(tiny_world, size="tiny", seed=0, cache=cache_folder, progress=False)
    assert again.record["cached"] is True
    assert again.path == tiny_org.path
    first, second = tiny_org.bridge.state_dict(), again.bridge.state_dict()
    assert first.keys() == second.keys()
    assert all(torch.equal(first[k], second[k]) for k in first)


def test_corrupted_cache_is_rebuilt(tiny_world, tmp_path):
    small_world = ns.FactWorld.synthetic(n_people=8, seed=5)
    built = ns.organism(small_world, size="tiny", seed=1, cache=tmp_path, progress=False)
    path = built.path
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])  # a partial write
    rebuilt = ns.organism(small_world, size="tiny", seed=1, cache=tmp_path, progress=False)
    assert rebuilt.record["cached"] is False
    assert path.stat().st_size == len(data)
    # A file whose bytes were flipped inside a tensor fails its digest and is rebuilt too.
    payload = torch.load(path, weights_only=True)
    name = next(iter(payload["state_dict"]))
    payload["state_dict"][name] = payload["state_dict"][name] + 1.0
    torch.save(payload, path)
    again = ns.organism(small_world, size="tiny", seed=1, cache=tmp_path, progress=False)
    assert again.record["cached"] is False
    assert not list(tmp_path.glob(".*.tmp"))
    final = ns.organism(small_world, size="tiny", seed=1, cache=tmp_path, progress=False)
    assert final.record["cached"] is True


def test_cache_key_hashes_settings(tiny_world, tmp_path):
    a = ns.organism(ns.FactWorld.synthetic(n_people=8, seed=5), size="tiny", seed=1,
                    cache=tmp_path, progress=False)
    b = ns.organism(ns.FactWorld.synthetic(n_people=8, seed=5), size="tiny", seed=2,
                    cache=tmp_path, progress=False)
    assert a.path != b.path
    assert not torch.equal(a.bridge.state_dict()["embed.weight"], b.bridge.state_dict()["embed.weight"])


def test_cache_folder_from_environment(monkeypatch, tmp_path):
    from neuronscope.organism import cache_dir

    monkeypatch.setenv("NEURONSCOPE_CACHE", str(tmp_path / "here"))
    assert cache_dir() == tmp_path / "here"


def test_organism_bad_input(tiny_world):
    with pytest.raises(ValueError, match="size must be one of"):
        ns.organism(tiny_world, size="huge")
    stranger = ns.FactSet([ns.Fact("Nobody was born in the city of", "Varno", id="x")])
    with pytest.raises(ValueError, match="not in the world"):
        ns.organism(tiny_world, size="tiny", exclude=stranger)


def _reference_training(model, facts, benign, recipe, seed):
    """The organism's own loop before it trained through ``finetune`` (the reference): seeded
    epochs cut in order, AdamW (0.9, 0.98), warm-up then cosine, clipping, early stop."""
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    net = model.original_model
    data = ns.tokenize(list(facts) + list(benign), model.tokenizer, max_length=recipe.n_ctx)
    n, size = len(data), recipe.batch_size
    per_epoch = math.ceil(n / size)
    total, warmup = per_epoch * recipe.max_epochs, per_epoch * 2
    optimizer = torch.optim.AdamW(net.parameters(), lr=recipe.lr, weight_decay=recipe.weight_decay,
                                  betas=(0.9, 0.98))

    def factor(step):
        if step < warmup:
            return (step + 1) / warmup
        done = (step - warmup) / max(1, total - warmup)
        return recipe.final_lr_fraction + (1 - recipe.final_lr_fraction) * 0.5 * (
            1 + math.cos(math.pi * min(1.0, done)))

    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
    for epoch in range(1, recipe.max_epochs + 1):
        net.train()
        order = torch.randperm(n, generator=generator)
        for step in range(per_epoch):
            rows = data[order[step * size : (step + 1) * size]]
            picked, mask = answer_token_logprobs(net(rows.tokens), rows)
            loss = -(picked.sum() / mask.sum())
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
            optimizer.step()
            schedule.step()
        if epoch % recipe.eval_every == 0 or epoch == recipe.max_epochs:
            net.eval()
            with torch.no_grad():
                _, hits = scores(net(data[: len(facts)].tokens), data[: len(facts)])
            if float(hits.float().mean()) >= recipe.target_accuracy:
                return epoch
    return recipe.max_epochs


def test_organism_trains_through_finetune_bit_for_bit_like_its_old_loop(tmp_path, monkeypatch):
    """Same batches, optimiser, schedule and stop as the organism's former loop: same weights."""
    organism_module = importlib.import_module("neuronscope.organism")  # ns.organism is the function
    world = ns.FactWorld.synthetic(n_people=6, seed=2)
    calls = []
    real_finetune = organism_module.finetune

    def spy(*args, **kwargs):
        calls.append(kwargs)
        return real_finetune(*args, **kwargs)

    monkeypatch.setattr(organism_module, "finetune", spy)
    recipe = replace(SIZES["tiny"], benign_sentences=10, eval_every=2)  # a shorter run, same loop
    monkeypatch.setitem(SIZES, "tiny", recipe)
    org = ns.organism(world, size="tiny", seed=2, cache=False, progress=False)
    assert len(calls) == 1 and calls[0]["sampler"] is EpochSampler
    reference = untrained_organism(world, recipe, 2)
    facts, benign = training_facts(world, recipe, 2)
    epochs = _reference_training(reference, facts, benign, recipe, 2)
    assert org.record["epochs"] == epochs and org.record["reached_target"]
    mine, theirs = org.bridge.state_dict(), reference.state_dict()
    assert mine.keys() == theirs.keys() and all(torch.equal(mine[k], theirs[k]) for k in mine)
    assert [h["epoch"] for h in org.record["history"]] == list(range(recipe.eval_every, epochs + 1,
                                                                     recipe.eval_every))
