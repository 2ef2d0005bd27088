"""SSIUU as the paper's Algorithm 1: the penalty's gradient equals autograd of the written-out
penalty with g detached (float64, both levels, every option), a two-parameter example computed
by hand (signs, I- per step, no penalty at step 1, A_{t-1} detached), bad input."""

from __future__ import annotations

import math

import pytest
import torch

from neuronscope.tokenization import FactBatch
from neuronscope.unlearning import SSIUU, unlearn
from neuronscope.unlearning.loss import make_step
from neuronscope.unlearning.ssiuu import ParameterSSIUU, select_parameters


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


def _perturb(model, scale=0.05, seed=1):
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(scale * torch.randn(p.shape, generator=gen, dtype=p.dtype))


def _reference_logp(logits, batch):
    """log P(answer | prompt) per row, written out: next-token log-softmax, answer tokens only."""
    logp = logits[:, :-1].log_softmax(-1).gather(-1, batch.tokens[:, 1:, None])[..., 0]
    return (logp * batch.answer_mask[:, 1:].to(logp.dtype)).sum(-1)


def _reference_target(logits, batch, target):
    logp = _reference_logp(logits, batch)
    return logp.exp().sum() if target == "prob" else logp.sum()


def _written_penalty(now_fn, prev, lam, norm, negative_set):
    """lam * sum over I- of (A_t - A_{t-1})^2 (or |.|), written out; I- from the values."""
    now = now_fn()
    negative = (now.detach() < 0) if negative_set == "current" else (prev < 0)
    diff = (now - prev)[negative]
    return lam * (diff.square().sum() if norm == "squared" else diff.abs().sum())


OPTIONS = [dict(), dict(target="logprob"), dict(norm="abs"), dict(negative_set="previous")]


@pytest.mark.parametrize("options", OPTIONS, ids=lambda o: ",".join(o) or "paper")
def test_parameter_level_gradient_equals_autograd_of_the_written_penalty(tiny64, options):
    model, batch, lam = tiny64, _batch(), 0.7
    config = SSIUU(lam, **options)
    bound = config.bind(model, batch)
    params = [p for p in model.parameters() if p.requires_grad]
    assert len(bound.params) == len(params)

    def reference_a():  # A = phi * dP/dphi with a fresh, independent forward pass
        grads = torch.autograd.grad(_reference_target(model(batch.tokens), batch, config.target),
                                    params, allow_unused=True)
        return [torch.zeros_like(p) if g is None else g for p, g in zip(params, grads, strict=True)]

    first = bound(make_step(model, batch))  # step 1: no penalty, A_1 stored
    assert float(first) == 0.0 and not first.requires_grad
    g1 = reference_a()
    prev = torch.cat([(p.detach() * g).flatten() for p, g in zip(params, g1, strict=True)])
    stored = torch.cat([a.flatten() for a in bound.prev])
    assert not stored.requires_grad
    torch.testing.assert_close(stored, prev, rtol=1e-9, atol=1e-12)

    _perturb(model)  # as if an optimiser step happened
    term = bound(make_step(model, batch))
    ours = torch.autograd.grad(term, params, allow_unused=True)
    g2 = [g.detach() for g in reference_a()]

    def now():
        return torch.cat([(p * g).flatten() for p, g in zip(params, g2, strict=True)])  # g detached

    written = _written_penalty(now, prev, lam, config.norm, config.negative_set)
    expected = torch.autograd.grad(written, params, allow_unused=True)
    assert float(written.detach()) > 0
    assert float(term.detach()) == pytest.approx(float(written.detach()), rel=1e-9)
    for a, b, p in zip(ours, expected, params, strict=True):
        a = torch.zeros_like(p) if a is None else a
        b = torch.zeros_like(p) if b is None else b
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("options", [*OPTIONS, dict(positions="prompt")],
                         ids=lambda o: ",".join(o) or "default")
def test_neuron_level_gradient_equals_autograd_of_the_written_penalty(tiny64, options):
    model, batch, lam = tiny64, _batch(), 0.3
    config = SSIUU(lam, level="neuron", **options)
    bound = config.bind(model, batch)
    hooks = bound.hooks
    assert hooks == [f"blocks.{layer}.mlp.hook_post" for layer in range(2)]
    params = [p for p in model.parameters() if p.requires_grad]
    mask = (batch.prompt_mask if config.positions == "prompt" else batch.attention_mask)

    def reference():  # h at the hooks and g = dP/dh from an independent pass
        seen = {}

        def keep(name):
            return lambda x, hook: seen.setdefault(name, x)

        logits = model.run_with_hooks(batch.tokens, fwd_hooks=[(h, keep(h)) for h in hooks])
        acts = [seen[h] for h in hooks]
        grads = torch.autograd.grad(_reference_target(logits, batch, config.target), acts,
                                    retain_graph=True)
        m = mask[..., None].to(acts[0].dtype)
        return acts, [g.detach() * m for g in grads]

    assert float(bound(make_step(model, batch, hooks))) == 0.0
    acts, grads = reference()
    prev = torch.stack([(h.detach() * g).sum((0, 1)) for h, g in zip(acts, grads, strict=True)])
    torch.testing.assert_close(bound.prev, prev, rtol=1e-9, atol=1e-12)

    _perturb(model)
    term = bound(make_step(model, batch, hooks))
    ours = torch.autograd.grad(term, params, allow_unused=True)
    acts, grads = reference()

    def now():
        return torch.stack([(h * g).sum((0, 1)) for h, g in zip(acts, grads, strict=True)])

    written = _written_penalty(now, prev, lam, config.norm, config.negative_set)
    expected = torch.autograd.grad(written, params, allow_unused=True)
    assert float(written.detach()) > 0
    assert float(term.detach()) == pytest.approx(float(written.detach()), rel=1e-9)
    for a, b, p in zip(ours, expected, params, strict=True):
        a = torch.zeros_like(p) if a is None else a
        b = torch.zeros_like(p) if b is None else b
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-12)


class _FakeStep:
    """log P = u . phi for one fact, so P = exp(u . phi) and dP/dphi = P u."""

    def __init__(self, phi, u):
        self.phi, self.u = phi, u

    def logprob(self, part="forget"):
        return (self.u * self.phi).sum().reshape(1)


def _hand(phi, u):
    """A = phi * dP/dphi by hand (plain floats)."""
    p = math.exp(sum(a * b for a, b in zip(phi, u, strict=True)))
    return [a * p * b for a, b in zip(phi, u, strict=True)], [p * b for b in u]


@pytest.mark.parametrize("negative_set", ["current", "previous"])
def test_two_parameter_example_by_hand(negative_set):
    lam, u = 0.5, torch.tensor([0.5, 0.25], dtype=torch.float64)
    phi = torch.nn.Parameter(torch.tensor([1.0, -2.0], dtype=torch.float64))
    bound = ParameterSSIUU(SSIUU(lam, negative_set=negative_set), [("phi", phi)])
    points = [[1.0, -2.0], [-1.0, -2.0], [2.0, 1.0]]
    previous = None
    for t, point in enumerate(points, start=1):
        with torch.no_grad():
            phi.copy_(torch.tensor(point, dtype=torch.float64))
        term = bound(_FakeStep(phi, u))
        a_now, g_now = _hand(point, [0.5, 0.25])
        if t == 1:  # A_1 = (0.5, -0.5): stored, no penalty, no gradient
            assert a_now == pytest.approx([0.5, -0.5])
            assert float(term) == 0.0 and not term.requires_grad
        else:
            chosen = a_now if negative_set == "current" else previous
            negative = [a < 0 for a in chosen]
            value = lam * sum((a - b) ** 2 for a, b, n in zip(a_now, previous, negative, strict=True) if n)
            grad = [2 * lam * (a - b) * g if n else 0.0
                    for a, b, g, n in zip(a_now, previous, g_now, negative, strict=True)]
            (ours,) = torch.autograd.grad(term, [phi], allow_unused=True)
            ours = [0.0, 0.0] if ours is None else ours.tolist()
            assert float(term.detach()) == pytest.approx(value, rel=1e-12, abs=1e-15)
            assert ours == pytest.approx(grad, rel=1e-12, abs=1e-15)
            if t == 2:  # A_2 = (-e^-1/2, -e^-1/2): both negative now, only phi_2 was before
                assert negative == ([True, True] if negative_set == "current" else [False, True])
                assert ours[0] < 0 if negative_set == "current" else ours[0] == 0
                assert ours[1] > 0
            if t == 3:  # A_3 > 0: I- is empty now, but both were negative at step 2
                assert negative == ([False, False] if negative_set == "current" else [True, True])
        assert not bound.prev[0].requires_grad  # A_{t-1} is stored detached
        assert bound.prev[0].tolist() == pytest.approx(a_now, rel=1e-12)
        previous = a_now


def test_parameter_groups_and_name_filters(native_factory):
    model = native_factory("ln_gelu")
    every = select_parameters(model, "all")
    attn = select_parameters(model, "attn")
    mlp = select_parameters(model, "mlp")
    embed = select_parameters(model, "embed")
    assert len(every) == sum(1 for p in model.parameters() if p.requires_grad)
    assert attn and all(".attn." in n for n, _ in attn)
    assert mlp and all(".mlp." in n for n, _ in mlp)
    assert {n for n, _ in embed} >= {"embed.weight"} or any("embed" in n for n, _ in embed)
    assert not {id(p) for _, p in attn} & {id(p) for _, p in mlp}
    layer0 = select_parameters(model, r"^layers\.0\.")
    assert layer0 and all(n.startswith("layers.0.") for n, _ in layer0)


@pytest.mark.parametrize("kwargs, match", [
    ({"lam": -1e-3}, "lam"), ({"lam": float("nan")}, "lam"), ({"lam": float("inf")}, "lam"),
    ({"target": "logit"}, "target"), ({"norm": "l1"}, "norm"),
    ({"negative_set": "both"}, "negative_set"), ({"level": "layer"}, "level"),
    ({"level": "neuron", "params": "attn"}, "params"), ({"layers": (0,)}, "layers"),
    ({"positions": "prompt"}, "positions"),
])
def test_bad_settings_are_named(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SSIUU(**kwargs)


@pytest.mark.parametrize("params", ["no_such_parameter", "["])
def test_a_selection_of_no_parameter_fails_before_any_step(tiny_org, forget_retain, params):
    forget, retain = forget_retain
    calls = []
    with pytest.raises(ValueError, match="params"):
        unlearn(tiny_org.bridge, forget, retain, method="gd", penalty=SSIUU(params=params),
                callbacks=[lambda model, record: calls.append(record)], progress=False)
    assert not calls


def test_neuron_layers_out_of_range_fail_early(tiny_org, forget_retain):
    forget, retain = forget_retain
    with pytest.raises(ValueError, match="layer"):
        unlearn(tiny_org.bridge, forget, retain, penalty=SSIUU(level="neuron", layers=[99]),
                progress=False)


def test_ssiuu_in_a_run_records_a_penalty_from_step_two(tiny_org, forget_retain):
    forget, retain = forget_retain
    result = unlearn(tiny_org.bridge, forget, retain, method="gd", penalty=SSIUU(1e-1),
                     max_steps=4, target_forget_accuracy=None, progress=False)
    values = [r["loss_ssiuu"] for r in result.history.steps if r["step"] > 0]
    assert values[0] == 0.0 and all(v > 0 for v in values[1:])
    assert result.settings["penalties"][0]["features"] == sum(
        p.numel() for p in tiny_org.bridge.parameters() if p.requires_grad)
