"""The SSIUU penalty: zero when attributions do not change, the cached attributions equal a
slow per-fact reference, and its gradient matches finite differences (float64)."""

from __future__ import annotations

import pytest
import torch

from neuronscope.scoring import batch_for
from neuronscope.tokenization import FactBatch
from neuronscope.training import detached_copy
from neuronscope.unlearning import SSIUU
from neuronscope.unlearning.forward import answer_logprobs, forward
from neuronscope.unlearning.ssiuu import NeuronPenalty, ParameterPenalty


def _batch() -> FactBatch:
    """Four rows of [bos] prompt answer with different prompt/answer lengths, right padded."""
    gen = torch.Generator().manual_seed(0)
    lengths = [(5, 3), (4, 2), (6, 1), (3, 3)]
    width = max(p + a for p, a in lengths)
    tokens = torch.zeros(4, width, dtype=torch.long)
    masks = [torch.zeros(4, width, dtype=torch.bool) for _ in range(3)]
    for row, (p, a) in enumerate(lengths):
        tokens[row, : p + a] = torch.randint(3, 50, (p + a,), generator=gen)
        tokens[row, 0] = 1
        masks[0][row, : p + a] = True
        masks[1][row, :p] = True
        masks[2][row, p : p + a] = True
    return FactBatch(tokens, *masks)


@pytest.fixture
def tiny64(native_factory):
    return native_factory("ln_gelu", d_vocab=50, seed=1).to(torch.float64)


def _v(tensor):
    return float(tensor.detach())


def _acts_logp(model, batch, penalty):
    out = forward(model, batch, penalty.hook_names)
    acts = [out.acts[name] for name in penalty.hook_names]
    return acts, answer_logprobs(out.logits, batch)[0]


def _perturb(model, scale=0.05, seed=1):
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(scale * torch.randn(p.shape, generator=gen, dtype=p.dtype))


def test_cached_attribution_matches_per_fact_reference(tiny64):
    batch = _batch()
    index = torch.arange(len(batch))
    penalty = SSIUU(0.3).build(tiny64, batch)
    acts, logp = _acts_logp(tiny64, batch, penalty)
    penalty.update(acts, logp, batch, index)
    for row in range(len(batch)):
        one = batch[row : row + 1]
        out = forward(tiny64, one, penalty.hook_names)
        lp = answer_logprobs(out.logits, one)[0].sum()
        for j, name in enumerate(penalty.hook_names):
            h = out.acts[name]
            (g,) = torch.autograd.grad(lp, h, retain_graph=True)
            prompt = one.prompt_mask[0]
            expected = (h[0, prompt] * g[0, prompt]).sum(0)
            torch.testing.assert_close(penalty.attr[row, j], expected.detach(), rtol=1e-9,
                                       atol=1e-12)


@pytest.mark.parametrize("level", ["neuron", "parameter"])
def test_penalty_zero_when_attributions_unchanged_and_positive_after_a_change(tiny64, level):
    model = detached_copy(tiny64)
    batch = _batch()
    index = torch.arange(len(batch))
    penalty = SSIUU(0.3, level=level).build(model, batch)
    if level == "neuron":
        acts, logp = _acts_logp(model, batch, penalty)
        assert _v(penalty.penalty(acts, batch, index)) == 0.0, "no previous attribution yet"
        penalty.update(acts, logp, batch, index)
        acts, _ = _acts_logp(model, batch, penalty)
        assert _v(penalty.penalty(acts, batch, index)) == 0.0
        assert bool((penalty.attr < 0).any()), "there are negative attributions to guard"
        _perturb(model)
        acts, _ = _acts_logp(model, batch, penalty)
        assert _v(penalty.penalty(acts, batch, index)) > 0
    else:
        assert _v(penalty.penalty()) == 0.0
        _, logp = _acts_logp(model, batch, SSIUU(0.3).build(model, batch))
        penalty.update(logp)
        assert _v(penalty.penalty()) == 0.0
        _perturb(model)
        assert _v(penalty.penalty()) > 0


def test_penalty_matches_its_definition(tiny64):
    """lam * sum over (fact, layer, neuron) with A_prev < 0 of |A_prev - h_now . g_prev|."""
    model = detached_copy(tiny64)
    batch = _batch()
    index = torch.arange(len(batch))
    penalty = SSIUU(0.3).build(model, batch)
    acts, logp = _acts_logp(model, batch, penalty)
    penalty.update(acts, logp, batch, index)
    _perturb(model)
    acts, _ = _acts_logp(model, batch, penalty)
    value = _v(penalty.penalty(acts, batch, index))
    expected = 0.0
    for f in range(len(batch)):
        prompt = batch.prompt_mask[f]
        n = int(prompt.sum())
        for j, h in enumerate(acts):
            now = (h[f, :n] * penalty.grad[j][f, :n]).sum(0)
            prev = penalty.attr[f, j]
            expected += _v(((prev - now).abs() * (prev < 0)).sum())
    assert value == pytest.approx(0.3 * expected, rel=1e-10)


@pytest.mark.parametrize("level", ["neuron", "parameter"])
def test_penalty_gradient_matches_finite_differences(tiny64, level):
    model = detached_copy(tiny64)
    batch = _batch()
    index = torch.arange(len(batch))
    probe = SSIUU(0.3).build(model, batch)
    penalty = SSIUU(0.3, level=level).build(model, batch)
    acts, logp = _acts_logp(model, batch, probe)
    if level == "neuron":
        penalty.update(acts, logp, batch, index)
    else:
        penalty.update(logp)
    _perturb(model)
    params = [p for p in model.parameters() if p.requires_grad]

    def value():
        if level == "parameter":
            return penalty.penalty()
        return penalty.penalty(_acts_logp(model, batch, penalty)[0], batch, index)

    grads = torch.autograd.grad(value(), params, allow_unused=True)
    gen = torch.Generator().manual_seed(7)
    for _ in range(3):
        direction = [torch.randn(p.shape, generator=gen, dtype=p.dtype) for p in params]
        analytic = sum(float((g * d).sum()) for g, d in zip(grads, direction, strict=True)
                       if g is not None)
        eps = 1e-6
        with torch.no_grad():
            for p, d in zip(params, direction, strict=True):
                p.add_(eps * d)
            plus = _v(value())
            for p, d in zip(params, direction, strict=True):
                p.sub_(2 * eps * d)
            minus = _v(value())
            for p, d in zip(params, direction, strict=True):
                p.add_(eps * d)
        numeric = (plus - minus) / (2 * eps)
        assert analytic != 0.0
        assert numeric == pytest.approx(analytic, rel=1e-5, abs=1e-9)


def test_penalty_only_on_facts_seen_before(tiny_org, forget_retain):
    forget, _ = forget_retain
    batch = batch_for(tiny_org.bridge, forget)[:6]
    model = detached_copy(tiny_org.bridge)
    penalty = SSIUU(1.0).build(model, batch)
    assert isinstance(penalty, NeuronPenalty)
    first = torch.arange(3)
    acts, logp = _acts_logp(model, batch[first], penalty)
    penalty.update(acts, logp, batch[first], first)
    _perturb(model, scale=0.01)
    rest = torch.arange(3, 6)
    acts, _ = _acts_logp(model, batch[rest], penalty)
    assert _v(penalty.penalty(acts, batch[rest], rest)) == 0.0
    acts, _ = _acts_logp(model, batch[first], penalty)
    assert _v(penalty.penalty(acts, batch[first], first)) > 0


def test_parameter_level_uses_mlp_parameters(tiny_org, forget_retain):
    forget, _ = forget_retain
    batch = batch_for(tiny_org.bridge, forget)
    penalty = SSIUU(1.0, level="parameter", layers=(1,)).build(tiny_org.bridge, batch)
    assert isinstance(penalty, ParameterPenalty)
    ids = {id(p) for p in tiny_org.bridge.blocks[1].mlp.parameters()}
    assert {id(p) for p in penalty.params} == ids


def test_ssiuu_limits_the_change_of_negative_attributions(tiny_org, forget_retain):
    """Against the original model's attributions (its own gradient held fixed), GD moves the
    negatively attributed neurons much less with SSIUU than without."""
    from neuronscope.unlearning import unlearn

    forget, retain = forget_retain
    batch = batch_for(tiny_org.bridge, forget)
    index = torch.arange(len(batch))
    reference = SSIUU(1.0).build(tiny_org.bridge, batch)
    acts, logp = _acts_logp(tiny_org.bridge, batch, reference)
    reference.update(acts, logp, batch, index)

    def change(model):
        with torch.no_grad():
            return _v(reference.penalty(_acts_logp(model, batch, reference)[0], batch, index))

    common = dict(method="gd", max_steps=15, target_forget_accuracy=None, progress=False)
    base = unlearn(tiny_org.bridge, forget, retain, **common)
    guarded = unlearn(tiny_org.bridge, forget, retain, ssiuu=SSIUU(0.05), **common)
    assert change(guarded.bridge) < 0.7 * change(base.bridge)


def _reuse_step(model, batch, penalty, index, check=False):
    """One GD-style forget step in reuse mode: the forget term plus the penalty, one backward
    (with the guard's check when ``check``)."""
    out = forward(model, batch, penalty.hook_names)
    full = [out.acts[name] for name in penalty.hook_names]
    logp, _, picked, mask = answer_logprobs(out.logits, batch)
    value = penalty.reuse_step(full, batch, index, weight=1.0 / float(mask.sum()),
                               logprob=logp if check else None)
    (picked.sum() / mask.sum() + value).backward()
    return value


def _relative(a, b) -> float:
    return float((a - b).norm() / b.norm())


def _exact_grads(model, batch, penalty_like, index):
    """``d log P / d h`` by the extra backward pass, in a fresh exact-mode penalty."""
    exact = SSIUU(penalty_like.config.lam, gradient="exact").build(model, batch)
    acts, logp = _acts_logp(model, batch, exact)
    exact.update(acts, logp, batch, index)
    return exact


def test_reused_gradient_equals_the_extra_pass_on_a_first_visit(tiny64):
    """No penalty yet: the main backward's d loss / d h, divided by the forget weight, is
    d log P / d h (up to the float32 log-softmax both paths share)."""
    batch = _batch()
    index = torch.arange(len(batch))
    reuse = SSIUU(0.3, gradient="reuse").build(tiny64, batch, "gd")
    assert reuse.reuse
    exact = _exact_grads(tiny64, batch, reuse, index)
    assert _v(_reuse_step(tiny64, batch, reuse, index)) == 0.0
    assert bool(reuse.seen.all())
    for j in range(len(reuse.layers)):
        assert _relative(reuse.grad[j], exact.grad[j]) < 1e-6
    assert _relative(reuse.attr, exact.attr) < 1e-6


@pytest.mark.parametrize("lam", [1e-3, 1e-1])
def test_reused_gradient_with_an_active_penalty(tiny64, lam):
    """With the penalty active, the direct term is removed exactly (the last hooked layer has
    no later penalty: equal to the extra pass); lower layers keep the penalty's gradient from
    later layers, of relative size about lam."""
    batch = _batch()
    index = torch.arange(len(batch))
    reuse = SSIUU(lam, gradient="reuse").build(tiny64, batch, "gd")
    _reuse_step(tiny64, batch, reuse, index)  # first visit: records g and A
    model = detached_copy(tiny64)
    _perturb(model, scale=0.05)
    exact = _exact_grads(model, batch, reuse, index)
    assert _v(_reuse_step(model, batch, reuse, index)) > 0
    last = len(reuse.layers) - 1
    assert _relative(reuse.grad[last], exact.grad[last]) < 1e-6
    errors = [_relative(reuse.grad[j], exact.grad[j]) for j in range(last)]
    assert all(error < 5 * lam for error in errors), errors


def test_gradient_mode_per_method_and_bad_values(tiny_org, forget_retain):
    from neuronscope.unlearning import unlearn

    auto = SSIUU(1e-3)
    assert auto.reuses_gradient("ga") and auto.reuses_gradient("gd")
    assert not auto.reuses_gradient("npo") and not auto.reuses_gradient("rmu")
    assert not SSIUU(1e-3, gradient="exact").reuses_gradient("gd")
    assert not SSIUU(1e-3, level="parameter").reuses_gradient("gd")
    with pytest.raises(ValueError, match="gradient must be one of"):
        SSIUU(1e-3, gradient="cheap")
    forget, retain = forget_retain
    with pytest.raises(ValueError, match="same weight on every fact"):
        unlearn(tiny_org.bridge, forget, retain, method="npo", ssiuu=SSIUU(1e-3, gradient="reuse"),
                max_steps=1, progress=False)


def test_reuse_step_backpropagates_the_penalty_exactly(tiny64):
    """The gradient the reuse hooks inject equals autograd's gradient of forget term + penalty:
    same parameter gradients as the plain differentiable penalty, and the same value."""
    batch = _batch()
    index = torch.arange(len(batch))
    first = SSIUU(0.3, gradient="reuse").build(tiny64, batch, "gd")
    _reuse_step(tiny64, batch, first, index)  # records g and A at the start
    tiny64.zero_grad(set_to_none=True)
    grads, values = {}, {}
    for mode in ("reuse", "autograd"):
        model = detached_copy(tiny64)
        _perturb(model, scale=0.05)
        penalty = SSIUU(0.3, gradient="reuse").build(model, batch, "gd")
        penalty.grad = [g.clone() for g in first.grad]
        penalty.attr, penalty.seen = first.attr.clone(), first.seen.clone()
        if mode == "reuse":
            values[mode] = _v(_reuse_step(model, batch, penalty, index))
        else:
            out = forward(model, batch, penalty.hook_names)
            acts = [out.acts[name] for name in penalty.hook_names]
            _, _, picked, mask = answer_logprobs(out.logits, batch)
            value = penalty.penalty(acts, batch, index)
            (picked.sum() / mask.sum() + value).backward()
            values[mode] = _v(value)
        grads[mode] = [p.grad.clone() for p in model.parameters()]
    assert values["reuse"] > 0 and values["reuse"] == pytest.approx(values["autograd"], rel=1e-12)
    for a, b in zip(grads["reuse"], grads["autograd"], strict=True):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-12)


def test_guard_measures_the_reused_gradient_against_an_independent_exact_pass(tiny64):
    """At a check step the guard's error and drift equal those computed from a separate
    exact-mode pass, and the cache keeps the exact g."""
    batch = _batch()
    index = torch.arange(len(batch))
    first = SSIUU(0.1, gradient="reuse").build(tiny64, batch, "gd")
    _reuse_step(tiny64, batch, first, index)  # first visit: records g and A
    model = detached_copy(tiny64)
    _perturb(model, scale=0.05)
    exact = _exact_grads(model, batch, first, index)
    states = {}
    for check in (False, True):
        penalty = SSIUU(0.1, gradient="reuse").build(model, batch, "gd")
        penalty.grad = [g.clone() for g in first.grad]
        penalty.attr, penalty.seen = first.attr.clone(), first.seen.clone()
        _reuse_step(model, batch, penalty, index, check=check)
        model.zero_grad(set_to_none=True)
        states[check] = penalty
    plain, checked = states[False], states[True]
    assert checked.checked_steps == [1] and plain.checked_steps == []
    for j in range(len(checked.layers)):
        assert checked.reuse_error[j] == pytest.approx(_relative(plain.grad[j], exact.grad[j]),
                                                       rel=1e-6, abs=1e-12)
        assert checked.drift[j] == pytest.approx(_relative(first.grad[j], exact.grad[j]), rel=1e-6)
        torch.testing.assert_close(checked.grad[j], exact.grad[j], rtol=1e-9, atol=1e-12)
    assert max(checked.reuse_error[:-1]) > 1e-3  # the lower layers do carry the penalty


def test_reuse_switches_to_the_extra_pass_when_its_error_passes_the_tolerance(tiny_org,
                                                                            forget_retain):
    """A large lam makes the reused g's error large against g's own drift: the run warns and
    switches to the exact gradient; a small lam keeps reusing, checked."""
    from neuronscope.unlearning import unlearn

    forget, retain = forget_retain
    common = dict(method="gd", max_steps=6, target_forget_accuracy=None, progress=False)
    with pytest.warns(RuntimeWarning, match="extra backward pass"):
        big = unlearn(tiny_org.bridge, forget, retain, ssiuu=SSIUU(1.0), **common)
    info = big.settings["ssiuu_gradient"]
    assert info["reused"] and info["switched_to_exact_after_step"] is not None

    def worst(info):
        return max(e / d for e, d in zip(info["last_reuse_error"], info["last_drift"], strict=True))

    assert worst(info) > 0.25
    small = unlearn(tiny_org.bridge, forget, retain, ssiuu=SSIUU(1e-5), **common)
    info = small.settings["ssiuu_gradient"]
    assert info["reused"] and info["switched_to_exact_after_step"] is None
    assert info["checked_at_steps"] and 0 < worst(info) < 0.25
    exact = unlearn(tiny_org.bridge, forget, retain, ssiuu=SSIUU(1.0, gradient="exact"), **common)
    assert not exact.settings["ssiuu_gradient"]["reused"]
