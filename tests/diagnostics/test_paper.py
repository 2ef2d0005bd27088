"""The paper's diagnostics: D+ / D- of eqs. 4-5 with top-m sums, cumulative curves and the
module x layer map; the logit lens; attribution stability; their plots and bad input."""

from __future__ import annotations

import dataclasses

import pytest
import torch

import neuronscope as ns
from neuronscope.attribution import NeuronAttribution, attribute
from neuronscope.diagnostics import diagnose, draw_distractors, logit_lens
from neuronscope.hooks import hook_count

pytestmark = pytest.mark.usefixtures("one_thread")


def _attr(token_max, token_min, ids, sites=None):
    token_max, token_min = torch.tensor(token_max), torch.tensor(token_min)
    return NeuronAttribution(scores=token_max + token_min, layers=[0], fact_ids=ids, method="grad_x_act",
                             steps=1, target="prob", token_max=token_max, token_min=token_min, sites=sites)


def _hand_made():
    """Two target facts (t0, t1), four control facts that do not change; two neurons."""
    facts = [ns.Fact(f"t{i} is", "a", id=f"t{i}") for i in range(2)]
    control = [ns.Fact(f"c{i} is", "b", id=f"c{i}") for i in range(4)]
    ids = [f.id for f in facts + control]
    still = [[[0.1, 0.1]]] * 4
    # neuron 0 loses its positive score on t0 and turns negative (the after max -1 counts as 0)
    before = _attr([[[2.0, 0.5]], [[1.0, 0.3]], *still], [[[0.0, -1.0]], [[-0.2, -0.5]], *still], ids)
    after = _attr([[[-1.0, 0.8]], [[0.5, 0.3]], *still], [[[-1.0, -0.5]], [[-0.4, -0.5]], *still], ids)
    return facts, control, before, after


def test_paper_definition_on_a_hand_made_example():
    facts, control, before, after = _hand_made()
    diag = diagnose(before, after, facts, control=control, definition="paper", n_permutations=100,
                    alpha=0.05, progress=False)
    # D+_0 = mean(2 - max(-1, 0), 1 - 0.5) = 1.25; D+_1 = mean(0.5 - 0.8, 0.3 - 0.3) = -0.15
    # D-_0 = mean(0 - (-1), -0.2 - (-0.4)) = 0.6;   D-_1 = mean(-1 - (-0.5), -0.5 - (-0.5)) = -0.25
    torch.testing.assert_close(diag.d_plus, torch.tensor([[1.25, -0.15]]))
    torch.testing.assert_close(diag.d_minus, torch.tensor([[0.6, -0.25]]))
    assert diag.d_plus_total == pytest.approx(1.25) and diag.d_minus_total == pytest.approx(0.6)  # clipped
    assert diag.top_m(1) == pytest.approx({"d_plus": 1.25, "d_minus": 0.6})
    assert diag.cumulative()["d_minus"].tolist() == pytest.approx([0.6, 0.6])
    assert diag.module_layer_map(2)["d_plus"].flatten().tolist() == pytest.approx([0.625])
    assert diag.meta["definition"] == "paper"
    ours = diagnose(before, after, facts, control=control, n_permutations=100, alpha=0.05, progress=False)
    assert ours.meta["definition"] == "neuronscope" and not torch.allclose(ours.d_plus, diag.d_plus)


def test_paper_bad_input_is_named():
    facts, control, before, after = _hand_made()
    diag = diagnose(before, after, facts, control=control, definition="paper", n_permutations=100,
                    alpha=0.05, progress=False)
    with pytest.raises(ValueError, match=r"m=3 is larger than the number of neurons \(2\)"):
        diag.top_m(3)
    with pytest.raises(ValueError, match="smallest module"):
        diag.module_layer_map(3)
    with pytest.raises(ValueError, match=r"method='grad_x_act'.*integrated gradients would need per-token"):
        diagnose(before, after, facts, control=control, definition="paper", method="ig", progress=False)
    plain = NeuronAttribution(scores=before.scores, layers=[0], fact_ids=before.fact_ids, method="grad_x_act",
                              steps=1, target="prob")
    with pytest.raises(ValueError, match="token_extremes=True"):
        diagnose(plain, plain, facts, control=control, definition="paper", n_permutations=100, alpha=0.05,
                 progress=False)
    with pytest.raises(ValueError, match="definition must be one of"):
        diagnose(before, after, facts, control=control, definition="Paper", progress=False)


@pytest.fixture(scope="module")
def edited_llama(hf_folders):
    before = ns.load_model(hf_folders["llama"])
    after = ns.copy_model(before)
    with torch.no_grad():
        after.original_model.model.layers[1].self_attn.k_proj.weight.mul_(-2.0)
    return before, after


def _char_facts(prefix: str, n: int):
    return [ns.Fact(f"{prefix}{i} is", f"{chr(97 + i % 26)}{chr(98 + i % 20)}", subject=f"{prefix}{i}",
                    relation="r", id=f"{prefix}{i}") for i in range(n)]


@pytest.mark.filterwarnings("ignore:the original model gives")  # a random model knows nothing
def test_paper_diagnosis_on_sites_end_to_end(edited_llama, tmp_path):
    before, after = edited_llama
    forget, control = _char_facts("x", 6), _char_facts("y", 10)
    diag = diagnose(before, after, forget, control=control, definition="paper", sites=["q", "k", "mlp_post"],
                    n_permutations=100, alpha=0.05, progress=False)
    assert diag.site_widths == [("q", 32), ("k", 16), ("mlp_post", 64)] and diag.d_plus.shape == (2, 112)
    maps = diag.module_layer_map(8)
    assert diag.unit_label(32) == "k/0" and "definition paper, sites q, k, mlp_post" in diag.summary()
    assert maps["d_minus"].shape == (3, 2)
    assert float((diag.d_plus.abs() + diag.d_minus.abs())[1, 32:48].sum()) > 0  # the edited k units
    loaded = ns.Diagnosis.load(diag.save(tmp_path / "d.pt"))
    assert loaded.sites == diag.sites and loaded.meta["definition"] == "paper"
    result = diag.verify(before, after, forget, neurons=[(1, 32), (1, 33)], n_random=5)  # two k units
    assert len(result.random_restored) == 5 and result.neurons == [(1, 32), (1, 33)]
    assert result.after != result.restored  # patching the k units moved the answers
    with pytest.raises(ValueError, match="site units 112"):
        diag.verify(before, after, forget, neurons=[(1, 112)])
    figs = [ns.plots.cumulative_variation({"edited": diag}), ns.plots.module_layer_map(diag, m=8)]
    assert figs[0].data[0].y[-1] == pytest.approx(diag.d_plus_total, rel=1e-5)
    assert list(figs[1].data[0].y) == ["q", "k", "mlp_post"]
    assert hook_count(before) == 0 and hook_count(after) == 0


def test_logit_lens_last_layer_is_the_models_choice(tiny_org, tiny_world):
    facts = list(tiny_world.facts)[:40]
    lens = logit_lens(tiny_org.bridge, facts, seed=1)
    assert lens.layers == list(range(tiny_org.bridge.cfg.n_layers))
    torch.testing.assert_close(lens.margins[:, -1], lens.model_margins, atol=1e-4, rtol=1e-4)
    assert bool(((lens.margins[:, -1] > 0) == (lens.model_margins > 0)).all())
    assert lens.accuracy[-1] == pytest.approx(lens.model_accuracy)
    assert lens.model_accuracy > 0.9  # the organism knows its facts
    assert all(d != f.answer for d, f in zip(lens.distractors, facts, strict=True))
    fig = ns.plots.logit_lens({"organism": lens})
    assert [t.name for t in fig.data][:1] == ["organism"]


def test_logit_lens_llama_and_bad_input(edited_llama):
    before, _ = edited_llama
    facts = _char_facts("x", 6)
    lens = logit_lens(before, facts)
    assert bool(((lens.margins[:, -1] > 0) == (lens.model_margins > 0)).all())
    with pytest.raises(ValueError, match="has no distractor"):
        logit_lens(before, [ns.Fact("a is", "b", relation="only", id="lonely"), *facts])
    with pytest.raises(ValueError, match="has no relation"):
        draw_distractors([ns.Fact("a is", "b")])
    assert draw_distractors(facts, seed=3) == draw_distractors(facts, seed=3)


def test_attribution_stability(edited_llama):
    before, after = edited_llama
    facts = _char_facts("x", 4)
    a = attribute(before, facts, method="grad_x_act", progress=False)
    b = attribute(after, facts, method="grad_x_act", progress=False)
    same = ns.attribution_stability(a, a)
    assert same.pearson == pytest.approx(1.0) and same.spearman == pytest.approx(1.0)
    moved = ns.attribution_stability(a, b)
    x, y = a.scores.double().mean(0).flatten(), b.scores.double().mean(0).flatten()
    assert moved.pearson == pytest.approx(float(torch.corrcoef(torch.stack([x, y]))[0, 1]), abs=1e-6)
    assert moved.pearson < 0.9999
    # Spearman with ties: coarse scores, against an obvious O(n^2) tie-averaged rank loop
    scale = float(a.scores.abs().max()) / 20
    coarse_a = dataclasses.replace(a, scores=(a.scores / scale).round())
    coarse_b = dataclasses.replace(b, scores=(b.scores / scale).round())
    cx, cy = coarse_a.scores.double().mean(0).flatten(), coarse_b.scores.double().mean(0).flatten()
    assert 2 < len(cx.unique()) < len(cx) and 2 < len(cy.unique()) < len(cy)  # ties to average

    def slow_ranks(v):
        return torch.tensor([float((v < e).sum()) + (float((v == e).sum()) - 1) / 2 for e in v],
                            dtype=torch.float64)

    expected = torch.corrcoef(torch.stack([slow_ranks(cx), slow_ranks(cy)]))[0, 1]
    assert ns.attribution_stability(coarse_a, coarse_b).spearman == pytest.approx(float(expected), abs=1e-9)
    fig = ns.plots.attribution_stability(moved)
    assert len(fig.data) == 3
    with pytest.raises(ValueError, match="different facts"):
        ns.attribution_stability(a, a.select([1, 0, 2, 3]))


def test_patching_a_whole_site_restores_the_original(edited_llama):
    """Only layer 1's k projection was edited: putting back all its units' original
    activations gives the original model's scores exactly (the site patching path of verify)."""
    from neuronscope.diagnostics.patching import patched_scores, site_activations
    from neuronscope.scoring import batch_for

    before, after = edited_llama
    batch = batch_for(before, _char_facts("x", 6))
    chunks = [batch[0:4], batch[4:6]]
    name = "blocks.1.attn.k.hook_out"
    acts = site_activations(before, chunks, [name])
    patch = {name: (torch.arange(16), [chunk[name] for chunk in acts])}
    expected, _ = patched_scores(before, chunks, {}, positions="all")
    unpatched, _ = patched_scores(after, chunks, {}, positions="all")
    restored, _ = patched_scores(after, chunks, patch, positions="all")
    assert float((unpatched - expected).abs().max()) > 1e-3
    torch.testing.assert_close(restored, expected, atol=1e-5, rtol=1e-5)
    assert hook_count(after) == 0


@pytest.mark.filterwarnings("ignore:the original model gives")
def test_no_flags_on_new_sites_when_nothing_is_specific(edited_llama):
    """The null at other sites: a change that does not single out the target facts (noise on
    every weight; target and control drawn from one set at random) is not flagged, with either
    definition (family-wise rate alpha = 0.01). With target "x.." and control "y.." prompts
    the noise does single them out (their first tokens differ), and flags appear."""
    before, _ = edited_llama
    noisy = ns.copy_model(before)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in noisy.original_model.parameters():
            p.add_(torch.randn(p.shape, generator=generator) * 0.05 * p.std())
    facts = _char_facts("x", 24)  # one distribution, split at random: target and control exchangeable
    order = torch.randperm(24, generator=torch.Generator().manual_seed(1)).tolist()
    forget, control = [facts[i] for i in order[:8]], [facts[i] for i in order[8:]]
    for definition in ("neuronscope", "paper"):
        diag = diagnose(before, noisy, forget, control=control, definition=definition, method="grad_x_act",
                        sites=["q", "k", "v", "o"], n_permutations=200, progress=False)
        assert float((diag.d_plus.abs() + diag.d_minus.abs()).sum()) > 0  # something did change
        assert diag.flagged == [], diag.summary()
