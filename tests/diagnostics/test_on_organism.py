"""Ground-truth tests of ``diagnose`` and ``Diagnosis.verify`` on the tiny organism.

* planted hider: one idle last-layer MLP neuron, its weights alone trained (everything else
  frozen) to fire on the forget facts and write against their answers;
* planted eraser: the first layer's neurons damped (output columns scaled into [0, 1]) to
  remove the forget facts;
* null: a few steps of fine-tuning on the benign corpus (unrelated data);
* a Llama-shaped checkpoint folder, and the mismatch errors.
"""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch

import neuronscope as ns
from neuronscope.attribution import attribute
from neuronscope.diagnostics import check_compatible, diagnose
from neuronscope.diagnostics.patching import chunked, mlp_activations, patch_from, patched_scores
from neuronscope.hooks import hook_count
from neuronscope.models import boot_native, native_config
from neuronscope.scoring import answer_token_logprobs, batch_for

STEPS = 8  # integrated-gradients steps: enough on the tiny organism, keeps the tests fast


pytestmark = pytest.mark.usefixtures("one_thread")


def _state(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _same_state(model, state):
    return all(torch.equal(v, state[k]) for k, v in model.state_dict().items())


# --- the planted organisms ---------------------------------------------------------------
def idle_neuron(model, facts) -> int:
    """The last-layer neuron with the smallest mean |activation| over the facts' tokens."""
    layer = model.cfg.n_layers - 1
    batch = batch_for(model, facts)
    store = {}
    with torch.no_grad(), model.hooks(fwd_hooks=[(f"blocks.{layer}.mlp.hook_post",
                                                  lambda a, hook: store.setdefault("h", a.detach()))]):
        model(batch.tokens)
    return int(store["h"][batch.attention_mask].abs().mean(0).argmin())


def plant_hider(model, forget, keep, neuron: int, *, steps: int = 150, seed: int = 0):
    """A copy of ``model`` where only ``neuron`` of the last layer (its input row, bias and
    output column) is trained to suppress ``forget`` answers while keeping ``keep``.

    Since only a last-layer neuron changes, the residual stream without it is cached and the
    logits are recomputed from it exactly (checked), which makes training cheap.
    """
    layer = model.cfg.n_layers - 1
    net = model.original_model
    mlp = net.layers[layer].mlp

    def cached(facts):
        batch, store = batch_for(model, facts), {}

        def grab(name):
            return lambda act, hook: store.__setitem__(name, act.detach())

        names = [(f"blocks.{layer}.mlp.hook_in", grab("x")), (f"blocks.{layer}.mlp.hook_post", grab("h")),
                 (f"blocks.{layer}.hook_out", grab("r"))]
        with torch.no_grad(), model.hooks(fwd_hooks=names):
            logits = model(batch.tokens)
        base = store["r"] - store["h"][..., neuron, None] * mlp.fc_out.weight[:, neuron].detach()
        rows, cols = torch.nonzero(batch.answer_mask[:, 1:], as_tuple=True)  # scored predictions
        return (store["x"][rows, cols], base[rows, cols], batch.tokens[rows, cols + 1], rows,
                logits[rows, cols])

    def logits_of(part, w_in, b_in, w_out):
        x, base, _, _, _ = part
        h = torch.nn.functional.gelu(x @ w_in + b_in)
        return net.head(net.ln_out(base + h[:, None] * w_out))

    parts = [cached(forget), cached(keep)]
    with torch.no_grad():
        exact = logits_of(parts[0], mlp.fc_in.weight[neuron], mlp.fc_in.bias[neuron],
                          mlp.fc_out.weight[:, neuron])
    assert torch.allclose(exact, parts[0][4], atol=1e-4), "cached residual does not reproduce the logits"
    generator = torch.Generator().manual_seed(seed)
    width = parts[0][0].shape[-1]
    w_in = (torch.randn(width, generator=generator) * 0.1).requires_grad_()
    b_in = torch.zeros(()).requires_grad_()
    w_out = (torch.randn(width, generator=generator) * 0.01).requires_grad_()
    optimizer = torch.optim.Adam([w_in, b_in, w_out], lr=3e-2)
    for _ in range(steps):
        losses = []
        for part in parts:
            logp = logits_of(part, w_in, b_in, w_out).log_softmax(-1)
            picked = logp.gather(-1, part[2][:, None]).squeeze(-1)
            losses.append(torch.zeros(int(part[3].max()) + 1).index_add(0, part[3], picked))
        loss = losses[0].clamp(min=-4).mean() - 5 * losses[1].mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    hidden = ns.copy_model(model)
    target = hidden.original_model.layers[layer].mlp
    with torch.no_grad():
        target.fc_in.weight[neuron] = w_in
        target.fc_in.bias[neuron] = b_in
        target.fc_out.weight[:, neuron] = w_out
    return hidden


def plant_eraser(model, forget, retain, *, steps: int = 60, lr: float = 0.5):
    """A copy of ``model`` whose layer-0 neurons are damped (output columns scaled by learned
    factors in [0, 1], no other change) to remove the forget facts while keeping the retain."""
    scale_logit = torch.full((ns.hooks.d_mlp(model),), 3.0, requires_grad=True)
    optimizer = torch.optim.Adam([scale_logit], lr=lr)
    forget_batch, retain_batch = batch_for(model, forget), batch_for(model, retain)

    def damp(act, hook):
        return act * torch.sigmoid(scale_logit)

    trainable = [p for p in model.parameters() if p.requires_grad]
    for p in trainable:
        p.requires_grad_(False)
    try:
        for _ in range(steps):
            with model.hooks(fwd_hooks=[("blocks.0.mlp.hook_post", damp)]):
                forget_lp, _ = answer_token_logprobs(model(forget_batch.tokens), forget_batch)
                retain_lp, mask = answer_token_logprobs(model(retain_batch.tokens), retain_batch)
            loss = forget_lp.sum(-1).clamp(min=-6).mean() - retain_lp.sum() / mask.sum()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    finally:
        for p in trainable:
            p.requires_grad_(True)
    erased = ns.copy_model(model)
    with torch.no_grad():
        erased.original_model.layers[0].mlp.fc_out.weight.mul_(torch.sigmoid(scale_logit)[None, :])
    return erased


def finetune(model, facts, *, steps: int = 20, lr: float = 1e-3, batch_size: int = 64, seed: int = 0):
    """A copy of ``model`` fine-tuned with Adam on ``facts`` (unrelated data for a null)."""
    tuned = ns.copy_model(model)
    net = tuned.original_model
    batch, generator = batch_for(tuned, facts), torch.Generator().manual_seed(seed)
    optimizer = torch.optim.Adam(net.parameters(), lr=lr)
    net.train()
    for _ in range(steps):
        rows = batch[torch.randperm(len(batch), generator=generator)[:batch_size]]
        logp, mask = answer_token_logprobs(net(rows.tokens), rows)
        loss = -logp.sum() / mask.sum()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    net.eval()
    tuned.eval()
    return tuned


# --- fixtures ----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def case(tiny_world, tiny_org, forget_retain):
    forget, retain = forget_retain
    before = tiny_org.bridge
    layer = before.cfg.n_layers - 1
    neuron = idle_neuron(before, list(forget) + list(retain))
    keep = list(retain) + list(tiny_world.benign)[:300]
    hider = plant_hider(before, forget, keep, neuron)
    before_attr = attribute(before, list(forget) + list(retain), steps=STEPS, progress=False)
    return {"before": before, "forget": forget, "retain": retain, "hider": hider,
            "planted": (layer, neuron), "before_attr": before_attr, "world": tiny_world}


@pytest.fixture(scope="module")
def hider_diag(case):
    return diagnose(case["before_attr"], case["hider"], case["forget"], control=case["retain"],
                    steps=STEPS, progress=False)


# --- tests ---------------------------------------------------------------------------------
def test_planted_hider_hides_without_changing_anything_else(case):
    before, hider = case["before"], case["hider"]
    assert ns.accuracy(before, case["forget"]) >= 0.98
    assert ns.accuracy(hider, case["forget"]) <= 0.5 * ns.accuracy(before, case["forget"])
    assert ns.accuracy(hider, case["retain"]) >= ns.accuracy(before, case["retain"]) - 0.03
    layer, neuron = case["planted"]
    changed = {k for k, v in hider.state_dict().items() if not torch.equal(v, before.state_dict()[k])}
    assert changed and all(f"blocks.{layer}.mlp" in k or f"layers.{layer}" in k for k in changed)
    w_in = hider.original_model.layers[layer].mlp.fc_in.weight
    other = torch.ones(w_in.shape[0], dtype=torch.bool)
    other[neuron] = False
    assert torch.equal(w_in[other], before.original_model.layers[layer].mlp.fc_in.weight[other])


def test_planted_hider_is_flagged_first(case, hider_diag):
    flagged = hider_diag.flagged
    assert flagged, hider_diag.summary()
    assert (flagged[0].layer, flagged[0].neuron) == case["planted"]
    assert flagged[0].p_adjusted <= hider_diag.alpha
    assert hider_diag.top(1, by="d_minus")[0][:2] == case["planted"]
    # the planted neuron carries most of the layer's D-
    layer_index = hider_diag.layers.index(case["planted"][0])
    row = hider_diag.d_minus[layer_index].clamp(min=0)
    assert row[case["planted"][1]] > 0.5 * row.sum()


def test_verify_restores_the_hidden_facts_and_random_sets_do_not(case, hider_diag, tmp_path):
    before, hider = case["before"], case["hider"]
    states = _state(before), _state(hider)
    counts = hook_count(before), hook_count(hider)
    result = hider_diag.verify(before, hider, case["forget"], n_random=20, seed=0)
    assert _same_state(before, states[0]) and _same_state(hider, states[1])
    assert (hook_count(before), hook_count(hider)) == counts
    assert result.neurons[0] == case["planted"]
    assert result.restored[0] >= result.before[0] - 0.1  # the facts come back
    assert result.rebound_accuracy >= 0.5
    assert result.random_mean()["rebound_accuracy"] <= 0.05
    assert result.p_accuracy == pytest.approx(1 / 21) and result.p_probability == pytest.approx(1 / 21)
    assert hider_diag.verification is result and "rebound" in hider_diag.summary()
    frame = result.to_pandas()
    assert len(frame) == 21 and frame.set[0] == "tested"
    assert frame.rebound_accuracy[0] == pytest.approx(result.rebound_accuracy)
    assert "Verification" in result._repr_html_() and "p=" in repr(result)
    assert ns.Diagnosis.load(hider_diag.save(tmp_path / "d.pt")).verification == result
    mean = hider_diag.verify(before, hider, case["forget"], n_random=20, restore="control_mean",
                             control=case["retain"])
    assert mean.rebound_accuracy >= 0.5 and mean.p_accuracy <= 0.05
    with pytest.raises(ValueError, match="control facts"):
        hider_diag.verify(before, hider, case["forget"], restore="control_mean", control=[])


def test_hider_is_flagged_against_a_control_fine_tune_too(case):
    null_model = finetune(case["before"], case["world"].benign, steps=20)
    diag = diagnose(case["before_attr"], case["hider"], case["forget"], control=case["retain"],
                    control_after=null_model, steps=STEPS, progress=False)
    assert (diag.flagged[0].layer, diag.flagged[0].neuron) == case["planted"]
    assert diag.meta["tests"] == ["control", "finetune"]


def test_null_fine_tune_flags_within_the_false_positive_rate(case):
    null_model = finetune(case["before"], case["world"].benign, steps=20)
    diag = diagnose(case["before_attr"], null_model, case["forget"], control=case["retain"], steps=STEPS,
                    progress=False)
    assert diag.d_minus_total > 0  # two models always differ: the point of the null
    # FWER alpha: expected 0 flags; allow the per-neuron rate alpha * n_neurons
    assert len(diag.flagged) <= math.floor(diag.alpha * diag.d_minus.numel()), diag.summary()


@pytest.mark.slow
def test_planted_eraser_has_large_d_plus_and_no_spurious_flags(case):
    before, forget, retain = case["before"], case["forget"], case["retain"]
    eraser = plant_eraser(before, forget, retain)
    assert ns.accuracy(eraser, forget) <= 0.6 * ns.accuracy(before, forget)
    diag = diagnose(case["before_attr"], eraser, forget, control=retain, steps=STEPS, progress=False)
    assert diag.d_plus_total > 2 * diag.d_minus_total, diag.summary()
    assert diag.hide_index < 0.35
    assert len(diag.flagged) <= math.floor(diag.alpha * diag.d_minus.numel()), diag.summary()


def test_attribution_method_is_selectable(case, hider_diag):
    states = _state(case["before"]), _state(case["hider"])
    counts = hook_count(case["before"]), hook_count(case["hider"])
    diag = diagnose(case["before"], case["hider"], case["forget"], control=case["retain"],
                    method="grad_x_act", progress=False)
    assert _same_state(case["before"], states[0]) and _same_state(case["hider"], states[1])
    assert (hook_count(case["before"]), hook_count(case["hider"])) == counts
    assert diag.meta["method"] == "grad_x_act"
    assert diag.top(1, by="d_minus")[0][:2] == case["planted"]


def test_patching_every_neuron_of_the_changed_layer_reproduces_the_other_model(tiny_org, forget_retain):
    """Identity: two models that differ only in one layer's MLP *input* weights compute the same
    function once that layer's activations are all patched from one into the other."""
    forget, _ = forget_retain
    before = tiny_org.bridge
    other = ns.copy_model(before)
    with torch.no_grad():
        weight = other.original_model.layers[1].mlp.fc_in.weight
        weight.add_(torch.randn(weight.shape, generator=torch.Generator().manual_seed(0)) * 0.5)
    chunks = chunked(batch_for(before, forget), 16)
    every = [(1, n) for n in range(ns.hooks.d_mlp(before))]
    plain_other = patched_scores(other, chunks, {}, "all")
    plain_before = patched_scores(before, chunks, {}, "all")
    assert not torch.allclose(plain_other[0], plain_before[0], atol=1e-3)  # they differ
    hooks = hook_count(before)
    acts_other, acts_before = mlp_activations(other, chunks, [1]), mlp_activations(before, chunks, [1])
    into_before = patched_scores(before, chunks, patch_from(acts_other, every), "all")
    into_other = patched_scores(other, chunks, patch_from(acts_before, every), "all")
    torch.testing.assert_close(into_before[0], plain_other[0], atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(into_other[0], plain_before[0], atol=1e-4, rtol=1e-4)
    assert hook_count(before) == hooks and hook_count(other) == hooks


# --- mismatches and other models -------------------------------------------------------------
def test_mismatched_models_raise(native_factory, tiny_org, forget_retain):
    forget, retain = forget_retain
    two, three = native_factory(n_layers=2), native_factory(n_layers=3)
    with pytest.raises(ValueError, match="n_layers"):
        check_compatible(two, three, tokenizer="given")
    with pytest.raises(ValueError, match=r"gated_mlp|act_fn"):
        check_compatible(two, native_factory("rms_gated_rotary"), tokenizer="given")
    wide = boot_native(native_config(d_model=32, d_head=8, n_heads=4, n_layers=2, n_ctx=24,
                                                     d_vocab=50, d_mlp=64, act_fn="gelu",
                                                     normalization_type="LN"))
    with pytest.raises(ValueError, match="d_mlp"):
        check_compatible(two, wide, tokenizer="given")
    # the same network carrying another tokenizer (a bridge refuses to hold a second one)
    model = tiny_org.bridge
    other = SimpleNamespace(cfg=model.cfg, hook_dict=model.hook_dict, original_model=model.original_model,
                            tokenizer=ns.WordTokenizer.from_texts(["a different world entirely"]))
    with pytest.raises(ValueError, match="different tokenizers"):
        diagnose(model, other, forget, control=retain, progress=False)
    stranger = [ns.Fact("Zyxwv Qqq was born in the city of", "Varno", subject="Zyxwv Qqq")]
    with pytest.raises(ValueError, match="cannot tokenise"):
        diagnose(tiny_org.bridge, tiny_org.bridge, stranger, control=retain, progress=False)
    with pytest.raises(ValueError, match="control is empty"):
        diagnose(tiny_org.bridge, tiny_org.bridge, forget, control=[], progress=False)


def _char_facts(prefix: str, n: int):
    return [ns.Fact(f"{prefix}{i} is", f"{chr(97 + i % 26)}{chr(98 + i % 20)}", subject=f"{prefix}{i}",
                    id=f"{prefix}{i}") for i in range(n)]


@pytest.mark.filterwarnings("ignore:the original model gives")  # a random model knows nothing
def test_llama_checkpoint_folder_end_to_end(hf_folders, tmp_path):
    before = ns.load_model(hf_folders["llama"])
    after = ns.copy_model(before)
    with torch.no_grad():
        after.original_model.model.layers[1].mlp.down_proj.weight.mul_(-1.0)
    forget, control = _char_facts("x", 8), _char_facts("y", 16)
    diag = diagnose(before, after, forget, control=control, steps=4, n_permutations=200, alpha=0.05,
                    progress=False)
    assert diag.d_plus.shape == (2, 64) and diag.layers == [0, 1]
    assert diag.d_minus[1].abs().sum() > diag.d_minus[0].abs().sum()  # the edited layer moves most
    path = diag.save(tmp_path / "llama.pt")
    assert ns.Diagnosis.load(path).layers == [0, 1]
    neurons = [(1, n) for n, _ in sorted(enumerate(diag.d_minus[1].tolist()), key=lambda t: -t[1])[:2]]
    result = diag.verify(before, after, forget, neurons=neurons, n_random=20)
    assert 0 < result.p_probability <= 1 and len(result.random_restored) == 20
    with pytest.raises(ValueError, match=r"differ in|different"):
        diag.verify(before, ns.load_model(hf_folders["gpt2"]), forget, neurons=neurons)
    with pytest.raises(ValueError, match="does not exist"):
        diag.verify(before, after, forget, neurons=[(1, 64)])
    with pytest.raises(ValueError, match="unknown token"):
        diagnose(before, after, [ns.Fact("caf\u00e9 is", "ok")], control=control, progress=False)


# GA against GD + SSIUU (issue 6) is a research question, not a behaviour: it is measured by
# studies/hide_index_study.py (results in studies/results/hide-index-tiny-*.json, cited in
# docs/research-log.md), not asserted here.


# --- issue 15 item 7: the default target finds hiders in every layer -------------------------
def plant_hiders(model, forget, keep, planted, *, steps: int = 100, seed: int = 0, lr: float = 3e-2):
    """A copy of ``model`` where only the ``planted`` (layer, neuron) MLP neurons (input row,
    bias, output column) are trained, everything else frozen (gradients masked), to suppress
    ``forget`` answers while keeping ``keep``. Full forward passes (any layer)."""
    hider = ns.copy_model(model)
    net = hider.original_model
    for p in net.parameters():
        p.requires_grad_(False)
    generator = torch.Generator().manual_seed(seed)
    params, masks = [], []
    for layer, n in planted:
        mlp = net.layers[layer].mlp
        with torch.no_grad():
            mlp.fc_in.weight[n] = torch.randn(mlp.fc_in.weight.shape[1], generator=generator) * 0.1
            mlp.fc_in.bias[n] = 0.0
            mlp.fc_out.weight[:, n] = torch.randn(mlp.fc_out.weight.shape[0], generator=generator) * 0.01
        rows = ((mlp.fc_in.weight, (n,)), (mlp.fc_in.bias, (n,)), (mlp.fc_out.weight, (slice(None), n)))
        for p, index in rows:
            mask = torch.zeros_like(p, dtype=torch.bool)
            mask[index] = True
            p.requires_grad_(True)
            params.append(p)
            masks.append(mask)
    optimizer = torch.optim.Adam(params, lr=lr)  # zero gradients leave Adam's other entries unchanged
    forget_batch, keep_batch = batch_for(hider, forget), batch_for(hider, keep)
    for _ in range(steps):
        forget_lp, _ = answer_token_logprobs(net(forget_batch.tokens), forget_batch)
        keep_lp, keep_mask = answer_token_logprobs(net(keep_batch.tokens), keep_batch)
        loss = forget_lp.sum(-1).clamp(min=-4).mean() - 5 * keep_lp.sum() / keep_mask.sum()
        optimizer.zero_grad()
        loss.backward()
        for p, mask in zip(params, masks, strict=True):
            p.grad[~mask] = 0
        optimizer.step()
    for p in net.parameters():
        p.requires_grad_(True)
    hider.eval()
    return hider


def _idle_in(model, facts, layer: int) -> int:
    batch, store = batch_for(model, facts), {}
    with torch.no_grad(), model.hooks(fwd_hooks=[(f"blocks.{layer}.mlp.hook_post",
                                                  lambda a, hook: store.setdefault("h", a.detach()))]):
        model(batch.tokens)
    return int(store["h"][batch.attention_mask].abs().mean(0).argmin())


@pytest.mark.slow
def test_default_target_flags_hiders_in_every_layer(tiny_world, tiny_org, forget_retain):
    """Issue 15 item 7: two hiders planted (layers 0 and 1, nothing else changed). Under the
    default target (log P) both are flagged first and restoring them brings the facts back.
    (Measured with target="prob", the old default: only the last-layer hider is flagged.)"""
    forget, retain = forget_retain
    before = tiny_org.bridge
    facts = list(forget) + list(retain)
    planted = [(layer, _idle_in(before, facts, layer)) for layer in range(before.cfg.n_layers)]
    hider = plant_hiders(before, forget, list(retain) + list(tiny_world.benign)[:100], planted)
    assert ns.accuracy(hider, forget) <= 0.1 and ns.accuracy(hider, retain) >= 0.95
    diag = diagnose(before, hider, forget, control=retain, steps=STEPS, progress=False)
    assert diag.meta["target"] == "logprob"
    assert {(f.layer, f.neuron) for f in diag.flagged[:2]} == set(planted), diag.summary()
    check = diag.verify(before, hider, forget, neurons=planted, n_random=10)
    assert check.restored[0] >= 0.9 and check.p_accuracy <= 0.1
