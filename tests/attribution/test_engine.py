"""The attribution engine against the slow reference loop, completeness, identities, hygiene."""

from __future__ import annotations

import pytest
import torch

from neuronscope import Fact, FactSet
from neuronscope.attribution import NeuronAttribution, attribute
from neuronscope.attribution.engine import EngineOptions
from neuronscope.hooks import hook_count
from neuronscope.models import boot_native, load_model, native_config
from neuronscope.tokenization import WordTokenizer
from tests.conftest import make_native

WORDS = "ada bob cy dee eve fox gil hal ivy jo kai lu mo ned".split()
TOKENIZER = WordTokenizer.from_texts([" ".join(WORDS)])


def word_facts(n: int = 7) -> FactSet:
    """Facts of different prompt and answer lengths (so chunks carry padding)."""
    facts = []
    for i in range(n):
        prompt = " ".join(WORDS[i % 5 : i % 5 + 2 + i % 3])
        answer = WORDS[(3 * i + 1) % len(WORDS)] + (" " + WORDS[i] if i % 2 else "")
        facts.append(Fact(prompt, answer, id=f"f{i}"))
    return FactSet(facts)


CHAR_FACTS = FactSet([Fact("ab c", "de"), Fact("xyz w", "q"), Fact("hello", "wor ld"),
                      Fact("k", "mn")])


def all_hooks(model, warm: bool = True) -> int:
    """HookPoint hooks plus raw torch module hooks anywhere in the model (after one forward
    pass, which wires the bridge's own lazily installed capture hooks)."""
    if warm:
        with torch.no_grad():
            model(torch.tensor([[1, 2]]))
    module_hooks = sum(len(m._forward_pre_hooks) + len(m._forward_hooks) + len(m._backward_hooks)
                       for m in model.modules())
    return hook_count(model) + module_hooks


def _model(shape: str, hf_folders):
    if shape == "gpt2":
        return load_model(hf_folders["gpt2"]), None, CHAR_FACTS
    return make_native(shape, d_vocab=len(TOKENIZER), seed=1), TOKENIZER, word_facts()


@pytest.mark.parametrize("shape,method,quadrature,target", [
    ("ln_gelu", "ig", "gauss_legendre", "prob"),
    ("ln_gelu", "ig", "riemann_trapezoid", "logprob"),
    ("rms_gated_rotary", "ig", "gauss_legendre", "prob"),
    ("rms_gated_rotary", "grad_x_act", "gauss_legendre", "logprob"),
    ("gpt2", "ig", "gauss_legendre", "logprob"),
    ("gpt2", "ig", "riemann_middle", "logprob"),
])
def test_engine_matches_reference(shape, method, quadrature, target, hf_folders):
    model, tok, facts = _model(shape, hf_folders)
    if shape == "gpt2":
        target = "logprob"  # P(answer) ~ 1e-9 on a random character-level model: too small to test
    options = dict(method=method, steps=5, quadrature=quadrature, target=target, tokenizer=tok,
                   progress=False, per_position=True)
    before = all_hooks(model)
    fast = attribute(model, facts, batch_size=3, **options)  # several chunks with padding
    slow = attribute(model, facts, engine="reference", **options)
    assert fast.meta["mode"] == "shortcut" and fast.meta["chunks"] >= 2
    assert fast.scores.abs().max() > 1e-4  # the comparison is not vacuous
    torch.testing.assert_close(fast.scores, slow.scores, atol=1e-5, rtol=0)
    torch.testing.assert_close(fast.convergence_delta, slow.convergence_delta, atol=1e-5, rtol=0)
    torch.testing.assert_close(fast.target_input, slow.target_input, atol=1e-5, rtol=1e-5)
    width = fast.position_scores.shape[2]
    torch.testing.assert_close(fast.position_scores, slow.position_scores[:, :, :width], atol=1e-5, rtol=0)
    torch.testing.assert_close(fast.position_scores.sum(2), fast.scores, atol=1e-5, rtol=0)
    assert all_hooks(model) == before


def test_savings_switched_off_give_the_same_numbers():
    model = make_native("rms_gated_rotary", d_vocab=len(TOKENIZER), seed=2, n_layers=3)
    facts = word_facts(6)
    base = attribute(model, facts, tokenizer=TOKENIZER, steps=4, progress=False)
    for options in (EngineOptions(cache_residual=False), EngineOptions(mlp_shortcut=False),
                    EngineOptions(answer_logits_only=False),
                    EngineOptions(trim_padding=False), EngineOptions(max_memory=1)):
        other = attribute(model, facts, tokenizer=TOKENIZER, steps=4, progress=False, _options=options)
        torch.testing.assert_close(other.scores, base.scores, atol=1e-6, rtol=0)


def test_tiny_memory_budget_splits_steps_and_facts():
    model = make_native("ln_gelu", d_vocab=len(TOKENIZER), seed=3)
    facts = word_facts(5)
    base = attribute(model, facts, tokenizer=TOKENIZER, steps=6, progress=False)
    small = attribute(model, facts, tokenizer=TOKENIZER, steps=6, progress=False, max_memory=1)
    assert small.meta["chunks"] == len(facts)
    torch.testing.assert_close(small.scores, base.scores, atol=1e-6, rtol=0)


def test_completeness_with_32_gauss_legendre_steps(tiny_org, tiny_world):
    facts = tiny_world.facts[:12]
    attr = attribute(tiny_org.bridge, facts, steps=32, progress=False)
    gap = (attr.target_input[:, None] - attr.target_baseline).abs()
    assert gap.max() > 0.05  # ablating a layer's prompt neurons changes P(answer)
    assert (attr.convergence_delta.abs() <= 1e-3 * gap + 1e-6).all()
    # the per-layer totals are the completeness identity itself
    torch.testing.assert_close(attr.per_layer(), attr.target_input[:, None] - attr.target_baseline,
                               atol=1e-3 * float(gap.max()) + 1e-6, rtol=0)


def test_grad_x_act_is_one_right_riemann_step():
    model = make_native("ln_gelu", d_vocab=len(TOKENIZER), seed=4)
    facts = word_facts(5)
    gxa = attribute(model, facts, method="grad_x_act", tokenizer=TOKENIZER, progress=False)
    one = attribute(model, facts, method="ig", steps=1, quadrature="riemann_right", tokenizer=TOKENIZER,
                    progress=False)
    assert gxa.method == "grad_x_act" and gxa.steps == 1
    torch.testing.assert_close(gxa.scores, one.scores, atol=0, rtol=0)
    # and it is literally activation x gradient at the unscaled model
    slow = attribute(model, facts, method="grad_x_act", tokenizer=TOKENIZER, progress=False,
                     engine="reference")
    torch.testing.assert_close(gxa.scores, slow.scores, atol=1e-6, rtol=0)


def test_deterministic_and_model_untouched():
    model = make_native("ln_gelu", d_vocab=len(TOKENIZER), seed=5)
    model.train()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    facts = word_facts(4)
    a = attribute(model, facts, tokenizer=TOKENIZER, steps=3, progress=False)
    b = attribute(model, facts, tokenizer=TOKENIZER, steps=3, progress=False)
    assert torch.equal(a.scores, b.scores)
    assert model.training
    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())
    assert all(p.grad is None for p in model.parameters())


def test_positions_and_layers():
    model = make_native("ln_gelu", d_vocab=len(TOKENIZER), seed=6, n_layers=3)
    facts = word_facts(4)
    last = attribute(model, facts, tokenizer=TOKENIZER, steps=3, positions="last", layers=[2, 0],
                     progress=False, per_position=True)
    assert last.layers == [0, 2] and last.scores.shape == (4, 2, 48)
    assert (last.position_mask.sum(1) == 1).all()
    every = attribute(model, facts, tokenizer=TOKENIZER, steps=3, positions="all", layers=[0, 2],
                      progress=False, per_position=True, engine="reference")
    prompt = attribute(model, facts, tokenizer=TOKENIZER, steps=3, layers=[0, 2], progress=False)
    assert every.position_mask.sum() > prompt.scores.shape[0]
    assert not torch.allclose(every.scores, prompt.scores)


def test_no_hooks_left_after_an_exception(monkeypatch):
    import neuronscope.attribution.engine as engine

    model = make_native("ln_gelu", d_vocab=len(TOKENIZER), seed=7)
    before = all_hooks(model)
    calls = {"n": 0}
    original = engine.unembed_rows

    def failing(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] > 2:
            raise RuntimeError("boom")
        return original(*args, **kwargs)

    monkeypatch.setattr(engine, "unembed_rows", failing)
    with pytest.raises(RuntimeError, match="boom"):
        attribute(model, word_facts(3), tokenizer=TOKENIZER, steps=2, progress=False)
    assert all_hooks(model) == before
    monkeypatch.undo()

    # an exception inside the capture pass (a user's own hook that fails)
    def user_hook(module, args, output):
        raise RuntimeError("user hook")

    handle = model.blocks[1].register_forward_hook(user_hook)
    with pytest.raises(RuntimeError, match="user hook"):
        attribute(model, word_facts(3), tokenizer=TOKENIZER, steps=2, progress=False)
    assert all_hooks(model, warm=False) == before + 1
    handle.remove()
    assert all_hooks(model) == before


@pytest.mark.parametrize("kwargs,message", [
    (dict(steps=0), "steps"),
    (dict(steps=2.5), "steps"),
    (dict(quadrature="simpson"), "quadrature"),
    (dict(target="loss"), "target"),
    (dict(method="saliency"), "method"),
    (dict(positions="answer"), "positions"),
    (dict(layers=[5]), "out of range"),
    (dict(baseline="mean"), "baseline"),
    (dict(batch_size=0), "batch_size"),
    (dict(quadrature="riemann_trapezoid", steps=1), "trapezoid"),
    (dict(method="param_x_grad", per_position=True), "per_position"),
    (dict(engine="turbo"), "engine"),
])
def test_bad_options_raise(kwargs, message):
    model = make_native("ln_gelu", d_vocab=len(TOKENIZER))
    with pytest.raises(ValueError, match=message):
        attribute(model, word_facts(2), tokenizer=TOKENIZER, progress=False, **kwargs)


def test_bad_facts_and_models_raise():
    model = make_native("ln_gelu", d_vocab=len(TOKENIZER))
    with pytest.raises(ValueError, match="empty"):
        attribute(model, FactSet([]), tokenizer=TOKENIZER, progress=False)

    class DropsWords:  # a tokenizer that maps some words to no tokens at all
        bos_token_id = 1

        def encode(self, text):
            return [3 + len(w) for w in text.split() if w != "silent"]

    with pytest.raises(ValueError, match="tokenizes to nothing"):
        attribute(model, [Fact("ab cd", "silent")], tokenizer=DropsWords(), progress=False)
    with pytest.raises(ValueError, match="hooked TransformerLens"):
        attribute(torch.nn.Linear(2, 2), word_facts(2), tokenizer=TOKENIZER, progress=False)

    class NoMLP:  # a hooked model whose blocks have no MLP neuron hooks
        def __init__(self, model):
            self.cfg = model.cfg
            self.hook_dict = {k: v for k, v in model.hook_dict.items() if "mlp" not in k}

    with pytest.raises(ValueError, match="no MLP neuron hooks"):
        attribute(NoMLP(model), word_facts(2), tokenizer=TOKENIZER, progress=False)


def test_result_metadata(tiny_org, tiny_world):
    facts = tiny_world.facts[:3]
    attr = attribute(tiny_org.bridge, facts, steps=4, layers=[1], progress=False)
    assert isinstance(attr, NeuronAttribution)
    assert attr.fact_ids == facts.ids and attr.layers == [1]
    assert (attr.method, attr.steps, attr.target, attr.quadrature) == ("ig", 4, "prob", "gauss_legendre")
    assert attr.scores.dtype == torch.float32 and attr.scores.device.type == "cpu"
    assert attr.convergence_delta.shape == (3, 1)


def test_falls_back_where_the_fast_paths_do_not_reproduce_the_model():
    facts = word_facts(4)
    # logits soft-capped after the unembedding, outside the blocks: only full passes are exact
    cfg = native_config(d_model=32, d_head=8, n_heads=4, n_layers=2, n_ctx=24, d_vocab=len(TOKENIZER),
                        d_mlp=48, seed=0, act_fn="gelu", normalization_type="LN", output_logits_soft_cap=2.0)
    capped = boot_native(cfg)
    with pytest.warns(UserWarning, match="full forward passes"):
        fast = attribute(capped, facts, tokenizer=TOKENIZER, steps=3, progress=False)
    slow = attribute(capped, facts, tokenizer=TOKENIZER, steps=3, progress=False, engine="reference")
    assert fast.meta["mode"] == "full"
    torch.testing.assert_close(fast.scores, slow.scores, atol=1e-5, rtol=0)
    # a block whose output is not linear in its MLP output (as with a post-MLP norm): no shortcut
    model = make_native("ln_gelu", d_vocab=len(TOKENIZER), seed=12)

    def squash(module, args, out):
        return (torch.tanh(out[0]), *out[1:]) if isinstance(out, tuple) else torch.tanh(out)

    handle = model.blocks[0].register_forward_hook(squash)
    try:
        fast = attribute(model, facts, tokenizer=TOKENIZER, steps=3, progress=False)
        slow = attribute(model, facts, tokenizer=TOKENIZER, steps=3, progress=False, engine="reference")
    finally:
        handle.remove()
    assert fast.meta["mode"] == "blocks"
    torch.testing.assert_close(fast.scores, slow.scores, atol=1e-5, rtol=0)
