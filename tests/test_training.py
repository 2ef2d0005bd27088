"""The shared fine-tuning loop: copies, seeds, stopping, non-finite handling, history I/O."""

from __future__ import annotations

import math

import pytest
import torch

import neuronscope as ns
from neuronscope.scoring import answer_token_logprobs, batch_for
from neuronscope.training import (
    IndexedBatch,
    MinibatchSampler,
    TrainHistory,
    TrainSettings,
    at_most,
    detached_copy,
    finetune,
)


def nll(model, batches, step):
    rows = batches["train"]
    logp, mask = answer_token_logprobs(model(rows.tokens), rows)
    value = -logp.sum() / mask.sum()
    return {"loss": value, "nll": value}


def ascent(model, batches, step):
    rows = batches["forget"]
    logp, mask = answer_token_logprobs(model(rows.tokens), rows)
    return {"loss": logp.sum() / mask.sum()}


def _state(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _same(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.fixture(scope="module")
def forget_batch(tiny_org, forget_retain):
    return batch_for(tiny_org.bridge, forget_retain[0])


def test_settings_validate():
    with pytest.raises(ValueError, match="lr"):
        TrainSettings(lr=0)
    with pytest.raises(ValueError, match="eval_every"):
        TrainSettings(eval_every=0)
    with pytest.raises(ValueError, match="retain"):
        TrainSettings(batch_sizes={"retain": 0})
    s = TrainSettings(lr=1e-4, batch_sizes={"retain": 7})
    assert TrainSettings.from_dict(s.to_dict()) == s
    assert s.batch_size_for("retain") == 7 and s.batch_size_for("forget") == 32


def test_sampler_covers_every_row_each_epoch(forget_batch):
    sampler = MinibatchSampler(forget_batch, 7, seed=3, name="forget")
    n = len(forget_batch)
    seen = torch.cat([sampler.next().index for _ in range(math.ceil(2 * n / 7))])
    first_epoch = seen[:n]
    assert sorted(first_epoch.tolist()) == list(range(n))
    again = MinibatchSampler(forget_batch, 7, seed=3, name="forget")
    assert torch.equal(again.next().index, seen[:7])
    other = MinibatchSampler(forget_batch, 7, seed=4, name="forget")
    assert not torch.equal(other.next().index, seen[:7])
    rows = MinibatchSampler(forget_batch, 5, seed=0, name="x").next()
    assert isinstance(rows, IndexedBatch)
    assert torch.equal(rows.tokens, forget_batch[rows.index].tokens)


def test_whole_batch_when_smaller_than_batch_size(forget_batch):
    small = forget_batch[:3]
    sampler = MinibatchSampler(small, 32, seed=0, name="forget")
    assert sampler.next().index.tolist() == [0, 1, 2]


def test_copy_seed_and_stop(tiny_org, forget_retain, forget_batch):
    model = tiny_org.bridge
    before = _state(model)
    settings = TrainSettings(lr=3e-3, max_steps=6, batch_size=8, eval_every=2, seed=1)
    new, hist = finetune(model, ascent, {"forget": forget_batch}, settings, progress=False)
    assert _same(before, _state(model)), "the caller's model changed"
    assert not _same(before, _state(new))
    again, _ = finetune(model, ascent, {"forget": forget_batch}, settings, progress=False)
    assert _same(_state(new), _state(again)), "same seed gave different weights"
    assert hist.n_steps == 6 and hist.stopped_reason == "max_steps"
    assert [r["step"] for r in hist.steps] == list(range(7))
    assert all(r["seconds"] > 0 for r in hist.steps[1:])

    forget = forget_retain[0]
    evaluate = lambda m: {"forget_accuracy": ns.accuracy(m, forget)}  # noqa: E731
    settings = TrainSettings(lr=3e-3, max_steps=200, batch_size=16, eval_every=3, seed=0)
    new, hist = finetune(model, ascent, {"forget": forget_batch}, settings, evaluate=evaluate,
                         stop_when=at_most("forget_accuracy", 0.5), progress=False)
    assert hist.stopped_reason == "target"
    assert hist.n_steps % 3 == 0 and hist.n_steps < 200
    assert hist.final_metrics["forget_accuracy"] <= 0.5
    assert ns.accuracy(new, forget) == pytest.approx(hist.final_metrics["forget_accuracy"])
    assert hist.evaluations[0]["step"] == 0 and hist.evaluations[0]["forget_accuracy"] > 0.9


def test_target_already_met_does_no_step(tiny_org, forget_batch):
    _, hist = finetune(tiny_org.bridge, ascent, {"forget": forget_batch},
                       TrainSettings(max_steps=5), evaluate=lambda m: {"a": 0.0},
                       stop_when=at_most("a", 0.0), progress=False)
    assert hist.n_steps == 0 and hist.stopped_reason == "target"


def test_non_finite_loss_keeps_last_finite_weights(tiny_org, forget_batch):
    settings = TrainSettings(lr=3e-3, max_steps=10, batch_size=8, seed=2)

    def broken(model, batches, step):
        terms = ascent(model, batches, step)
        if step == 3:
            terms["loss"] = terms["loss"] * float("nan")
        return terms

    with pytest.warns(RuntimeWarning, match="non-finite"):
        new, hist = finetune(tiny_org.bridge, broken, {"forget": forget_batch}, settings,
                             progress=False)
    assert hist.non_finite and hist.stopped_reason == "non_finite"
    assert hist.n_steps == 3 and hist.steps[-1]["updated"] is False
    reference, _ = finetune(tiny_org.bridge, ascent, {"forget": forget_batch},
                            TrainSettings(lr=3e-3, max_steps=3, batch_size=8, seed=2),
                            progress=False)
    assert _same(_state(new), _state(reference))
    assert all(torch.isfinite(p).all() for p in new.parameters())


def test_callback_stops_and_inplace(tiny_org, forget_batch):
    model = detached_copy(tiny_org.bridge)
    seen = []
    out, hist = finetune(model, ascent, {"forget": forget_batch},
                         TrainSettings(max_steps=10, batch_size=4),
                         callbacks=[lambda m, r: seen.append(r["step"]) or r["step"] == 2],
                         inplace=True, progress=False)
    assert out is model and seen == [1, 2] and hist.stopped_reason == "callback"


def test_bad_input(tiny_org, forget_batch):
    with pytest.raises(ValueError, match="empty"):
        finetune(tiny_org.bridge, ascent, {"forget": forget_batch[:0]}, progress=False)
    with pytest.raises(ValueError, match="FactBatch"):
        finetune(tiny_org.bridge, ascent, {"forget": [1, 2]}, progress=False)
    with pytest.raises(ValueError, match="evaluate"):
        finetune(tiny_org.bridge, ascent, {"forget": forget_batch}, stop_when=lambda m: True,
                 progress=False)
    with pytest.raises(ValueError, match="'loss'"):
        finetune(tiny_org.bridge, lambda m, b, s: {"x": torch.tensor(1.0)},
                 {"forget": forget_batch}, TrainSettings(max_steps=1), progress=False)


def test_history_roundtrip(tmp_path, tiny_org, forget_batch):
    _, hist = finetune(tiny_org.bridge, ascent, {"forget": forget_batch},
                       TrainSettings(max_steps=2, batch_size=4), progress=False,
                       evaluate=lambda m: {"x": 1.0})
    hist.save(tmp_path / "h.json")
    back = TrainHistory.load(tmp_path / "h.json")
    assert back.to_dict() == hist.to_dict()
    assert len(hist.to_pandas()) == 3 and "loss" in hist.to_pandas()
    assert "2 steps" in repr(hist) and "<table>" in hist._repr_html_()


def test_detached_copy_does_not_write_into_the_original(tiny_org, forget_batch):
    model = tiny_org.bridge
    with torch.no_grad():
        model(forget_batch.tokens[:2])  # wires the bridge's capture hooks on the original
    clone = detached_copy(model)
    clone(forget_batch.tokens[:4]).sum().backward()
    with torch.no_grad():
        assert torch.allclose(clone(forget_batch.tokens), model(forget_batch.tokens))
    leaked = [t for m in model.modules()
              for t in [getattr(m, "_captured_pre_ln_residual", None)]
              if isinstance(t, torch.Tensor) and t.grad_fn is not None]
    assert not leaked
    detached_copy(model)  # would raise if a graph tensor had leaked into the original


@pytest.mark.parametrize("how", ["deepcopy of a guarded bridge", "deepcopy inside a container"])
def test_plain_deepcopy_is_safe(tiny_org, forget_batch, how):
    """copy.deepcopy of a bridge that has run used to copy closures pointing at the original, so
    a backward pass through the copy left graph tensors in the original."""
    import copy

    model = tiny_org.bridge
    with torch.no_grad():
        model(forget_batch.tokens[:2])
    if how == "deepcopy of a guarded bridge":
        clone = copy.deepcopy(model)
    else:
        box = copy.deepcopy({"a": model, "b": model})
        assert box["a"] is box["b"]
        clone = box["a"]
    assert clone.tokenizer is model.tokenizer
    clone(forget_batch.tokens[:4]).sum().backward()
    leaked = [t for m in model.modules() for t in vars(m).values()
              if isinstance(t, torch.Tensor) and t.grad_fn is not None]
    assert not leaked
    with torch.no_grad():
        assert torch.allclose(clone(forget_batch.tokens), model(forget_batch.tokens))


def test_unguarded_bridge_shows_the_hazard_that_guard_deepcopy_removes(forget_batch):
    import copy

    from neuronscope.models import guard_deepcopy
    from neuronscope.tiny import tiny_model

    tokens = forget_batch.tokens[:2].clamp(max=49)
    model = tiny_model()
    del vars(model)["__deepcopy__"]  # as a bridge booted by TransformerLens directly
    with torch.no_grad():
        model(tokens)
    copy.deepcopy(model)(tokens).sum().backward()
    assert any(isinstance(t, torch.Tensor) and t.grad_fn is not None
               for m in model.modules() for t in vars(m).values())
    fresh = guard_deepcopy(tiny_model())
    with torch.no_grad():
        fresh(tokens)
    copy.deepcopy(fresh)(tokens).sum().backward()
    assert not any(isinstance(t, torch.Tensor) and t.grad_fn is not None
                   for m in fresh.modules() for t in vars(m).values())


def test_detached_copy_of_a_model_holding_graph_tensors(tiny_org, forget_batch):
    """A module that cached a tensor from a pass with gradients (as bridge attention does with
    its last pattern) cannot be deep-copied plainly; copy_model (and its alias detached_copy)
    copies it detached and leaves the original as it was."""
    import copy

    model = detached_copy(tiny_org.bridge)
    module = model.blocks[0].attn
    module._cached_for_test = next(model.parameters()) * 2  # a non-leaf tensor
    clone = ns.copy_model(model)
    assert _same(_state(copy.deepcopy(model)), _state(model))  # guarded: goes through copy_model
    assert _same(_state(clone), _state(model))
    assert module._cached_for_test.grad_fn is not None
    assert clone.blocks[0].attn._cached_for_test.grad_fn is None
    assert torch.equal(clone.blocks[0].attn._cached_for_test, module._cached_for_test)
