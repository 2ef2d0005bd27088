"""Unit tests of the diagnostics math on synthetic tensors: D+/D-, the max-T null, flags,
the Diagnosis object, and input checks. The organism tests are in test_diagnostics_organism.py."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from neuronscope.attribution import NeuronAttribution
from neuronscope.diagnostics import (
    Diagnosis,
    d_minus,
    d_plus,
    diagnose,
    hide_index,
    matched_random_sets,
    paired_max_t,
    summarise,
    two_sample_max_t,
)
from neuronscope.facts import Fact

pytestmark = pytest.mark.usefixtures("one_thread")


# --- D+ and D- ---------------------------------------------------------------------------
def test_deltas_match_the_paper_formulas_elementwise():
    g = torch.Generator().manual_seed(0)
    before, after = torch.randn(4, 2, 5, generator=g), torch.randn(4, 2, 5, generator=g)
    plus, minus = d_plus(before, after), d_minus(before, after)
    for f, layer, n in itertools.product(range(4), range(2), range(5)):
        a, b = float(before[f, layer, n]), float(after[f, layer, n])
        assert plus[f, layer, n].item() == pytest.approx(max(a, 0) - max(b, 0))
        assert minus[f, layer, n].item() == pytest.approx(max(-b, 0) - max(-a, 0))
    # identity: A - A' = D+ + D- for every entry
    torch.testing.assert_close(plus + minus, before - after)


def test_summary_hide_index_extremes():
    before = torch.rand(6, 2, 8) + 0.1
    before[:, :, 4:] = 0
    after = before.clone()
    after[:, :, 4:] = -1.0  # positives kept, new negative influence: pure hiding
    hidden = summarise(before, after)
    erased = summarise(before, torch.zeros_like(before))  # positives removed: pure erasing
    assert hide_index(hidden.d_plus, hidden.d_minus) == 1.0
    assert hide_index(erased.d_plus, erased.d_minus) == 0.0
    assert math.isnan(hide_index(torch.zeros(3), torch.zeros(3)))
    assert erased.fact_d_plus.shape == (6,)
    torch.testing.assert_close(erased.fact_d_plus, before.sum((1, 2)))


def test_deltas_reject_mismatched_shapes():
    with pytest.raises(ValueError, match="differ in shape"):
        d_plus(torch.zeros(2, 1, 3), torch.zeros(2, 1, 4))
    with pytest.raises(ValueError, match="fact, layer, neuron"):
        d_minus(torch.zeros(2, 3), torch.zeros(2, 3))


# --- the null test -----------------------------------------------------------------------
def _null_data(generator, n_target, n_other, units):
    """Heavy-tailed, correlated, mostly-zero values like per-fact D- (exchangeable rows)."""
    base = torch.randn(n_target + n_other, units, generator=generator)
    shared = torch.randn(n_target + n_other, 1, generator=generator)
    scale = torch.rand(units, generator=generator) * 3
    values = (base + shared).clamp(min=0) ** 2 * scale
    return values[:n_target], values[n_target:]


def test_two_sample_family_wise_error_rate_is_at_most_alpha():
    g, alpha, runs = torch.Generator().manual_seed(1), 0.05, 150
    false = 0
    for run in range(runs):
        target, control = _null_data(g, 15, 30, 40)
        test = two_sample_max_t(target, control, n_permutations=100, seed=run)
        false += int((test.p_adjusted <= alpha).any())
    bound = alpha + 3 * math.sqrt(alpha * (1 - alpha) / runs)
    assert false / runs <= bound, f"FWER {false / runs:.3f} above {bound:.3f}"


def test_paired_family_wise_error_rate_is_at_most_alpha():
    g, alpha, runs = torch.Generator().manual_seed(2), 0.05, 150
    false = 0
    for run in range(runs):
        target, null = _null_data(g, 15, 15, 40)
        false += int((paired_max_t(target, null, n_permutations=100, seed=run).p_adjusted <= alpha).any())
    assert false / runs <= alpha + 3 * math.sqrt(alpha * (1 - alpha) / runs)


def test_planted_unit_is_found_and_ranked_first():
    g = torch.Generator().manual_seed(3)
    target, control = _null_data(g, 20, 60, 100)
    target[:, 42] += 2 * control[:, 42].std() + 0.5
    test = two_sample_max_t(target, control, n_permutations=500, seed=0)
    assert torch.nonzero(test.p_adjusted <= 0.01).flatten().tolist() == [42]
    assert int(test.statistic.argmax()) == 42


def _exact_max_t(target, control):
    """Slow reference: every labelling enumerated, unmoderated-free formula written out."""
    values = torch.cat([target, control]).double()
    n, n_t = values.shape[0], target.shape[0]

    def stat(rows):
        mask = torch.zeros(n, dtype=torch.bool)
        mask[list(rows)] = True
        a, b = values[mask], values[~mask]
        se2 = a.var(0) / len(a) + b.var(0) / len(b)
        return (a.mean(0) - b.mean(0)) / torch.sqrt(se2 + s0**2)

    pooled = values.var(0) * (1 / n_t + 1 / (n - n_t))
    s0 = float(torch.sqrt(pooled)[pooled > 0].median())
    observed = stat(range(n_t))
    maxima = torch.stack([stat(rows).max() for rows in itertools.combinations(range(n), n_t)])
    return ((maxima[None, :] >= observed[:, None] - 1e-12).double().mean(1)).float()


def test_max_t_p_values_match_exhaustive_enumeration():
    g = torch.Generator().manual_seed(4)
    target, control = torch.randn(4, 3, generator=g), torch.randn(6, 3, generator=g)
    target[:, 0] += 1.5
    exact = _exact_max_t(target, control)  # 210 labellings
    mc = two_sample_max_t(target, control, n_permutations=20000, seed=0).p_adjusted
    torch.testing.assert_close(mc, exact, atol=0.012, rtol=0)


def test_cluster_permutation_checks_clusters():
    target, control = torch.rand(4, 3), torch.rand(6, 3)
    with pytest.raises(ValueError, match="both target and control"):
        two_sample_max_t(target, control, clusters=torch.tensor([0, 0, 1, 1, 1, 2, 2, 3, 3, 4]))
    with pytest.warns(UserWarning, match="distinct cluster labellings"):
        test = two_sample_max_t(target, control, n_permutations=50,
                                clusters=torch.tensor([0, 0, 1, 1, 2, 2, 3, 3, 4, 4]))
    assert test.p_adjusted.min() >= 1 / 51


def test_clustered_null_needs_cluster_permutation():
    """Facts sharing a subject move together; permuting subjects keeps the error rate."""
    g, runs, alpha = torch.Generator().manual_seed(5), 60, 0.05
    clusters = torch.arange(30).repeat_interleave(4)  # 30 subjects x 4 facts, 8 target subjects
    false_subject = false_fact = 0
    for run in range(runs):
        subject_effect = torch.randn(30, 20, generator=g).repeat_interleave(4, 0) * 2
        values = subject_effect + torch.randn(120, 20, generator=g)
        target, control = values[:32], values[32:]
        by_subject = two_sample_max_t(target, control, n_permutations=100, seed=run, clusters=clusters)
        by_fact = two_sample_max_t(target, control, n_permutations=100, seed=run)
        false_subject += int((by_subject.p_adjusted <= alpha).any())
        false_fact += int((by_fact.p_adjusted <= alpha).any())
    assert false_subject / runs <= alpha + 3 * math.sqrt(alpha * (1 - alpha) / runs)
    assert false_fact / runs > 0.3  # what the subject permutation protects against


def test_statistic_is_the_moderated_welch_t_and_unequal_clusters_stay_calibrated():
    g = torch.Generator().manual_seed(6)
    target, control = torch.randn(7, 5, generator=g), torch.randn(11, 5, generator=g) + 0.3
    test = two_sample_max_t(target, control, n_permutations=20)
    se2 = target.double().var(0) / 7 + control.double().var(0) / 11
    expected = (target.double().mean(0) - control.double().mean(0)) / torch.sqrt(se2 + test.s0**2)
    torch.testing.assert_close(test.statistic.double(), expected, atol=1e-5, rtol=1e-5)
    # clusters of 1 to 6 facts: permuting them moves unequal numbers of facts
    sizes = torch.tensor([1, 6, 2, 5, 3, 4] * 6)
    clusters = torch.arange(len(sizes)).repeat_interleave(sizes)
    n_target = int(sizes[:12].sum())
    runs, alpha, false = 100, 0.05, 0
    for run in range(runs):
        effect = torch.randn(len(sizes), 10, generator=g).repeat_interleave(sizes, 0)
        values = effect + torch.randn(len(clusters), 10, generator=g)
        result = two_sample_max_t(values[:n_target], values[n_target:], n_permutations=100, seed=run,
                                  clusters=clusters)
        false += int((result.p_adjusted <= alpha).any())
    assert false / runs <= alpha + 3 * math.sqrt(alpha * (1 - alpha) / runs)


def test_null_test_rejects_bad_input():
    with pytest.raises(ValueError, match="at least 2"):
        two_sample_max_t(torch.rand(1, 3), torch.rand(5, 3))
    with pytest.raises(ValueError, match="NaN"):
        two_sample_max_t(torch.full((3, 3), float("nan")), torch.rand(5, 3))
    with pytest.raises(ValueError, match="paired"):
        paired_max_t(torch.rand(3, 3), torch.rand(4, 3))
    with pytest.raises(ValueError, match="n_permutations"):
        paired_max_t(torch.rand(3, 3), torch.rand(3, 3), n_permutations=0)


# --- random sets -------------------------------------------------------------------------
def test_matched_random_sets_match_layers_and_are_seeded():
    chosen = [(0, 1), (1, 2), (1, 3)]
    sets = matched_random_sets(chosen, width=10, n_sets=30, seed=7)
    assert sets == matched_random_sets(chosen, width=10, n_sets=30, seed=7)
    assert sets != matched_random_sets(chosen, width=10, n_sets=30, seed=8)
    for drawn in sets:
        assert sorted(layer for layer, _ in drawn) == [0, 1, 1]
        assert not set(drawn) & set(chosen)
        assert len(set(drawn)) == 3
    with pytest.raises(ValueError, match="too few"):
        matched_random_sets([(0, n) for n in range(6)], width=10, n_sets=1, seed=0)


# --- diagnose on precomputed attributions --------------------------------------------------
def _facts(prefix, n, subjects):
    return [Fact(f"{prefix} prompt {i}", "yes", subject=f"{prefix}{i % subjects}", id=f"{prefix}{i}")
            for i in range(n)]


def _attr(scores, facts):
    return NeuronAttribution(scores=scores, layers=[0, 2], fact_ids=[f.id for f in facts], method="ig",
                             steps=4, target="prob", model_name="synthetic")


@pytest.fixture(scope="module")
def synthetic_case():
    """Before/after attributions with one planted hider (layer 2, neuron 5)."""
    g = torch.Generator().manual_seed(0)
    target, control = _facts("t", 24, 8), _facts("c", 60, 20)
    facts = target + control
    before = torch.randn(len(facts), 2, 16, generator=g) * 0.1
    after = before + torch.randn(len(facts), 2, 16, generator=g) * 0.05
    after[:24, 1, 5] -= 1.0 + torch.rand(24, generator=g)  # negative influence on targets only
    after[:24, 0, :] *= 0.5  # some erasing too
    return target, control, _attr(before, facts), _attr(after, facts)


def test_diagnose_flags_the_planted_hider_from_attributions(synthetic_case, tmp_path):
    target, control, before, after = synthetic_case
    diag = diagnose(before, after, target, control=control, n_permutations=300, alpha=0.05)
    assert [(f.layer, f.neuron) for f in diag.flagged] == [(2, 5)]
    assert diag.meta["permute_by"] == "subject"
    assert diag.d_minus[1, 5] > 1.0 and diag.hide_index > 0.5
    # same numbers through attributions=(...), and deterministic for a seed
    again = diagnose(None, None, target, control=control, attributions=(before, after), n_permutations=300,
                     alpha=0.05)
    torch.testing.assert_close(again.p_adjusted, diag.p_adjusted)
    # lossless save / load
    path = diag.save(tmp_path / "diag.pt")
    loaded = Diagnosis.load(path)
    for name in ("d_plus", "d_minus", "statistic", "p_adjusted", "control_d_minus", "fact_d_minus"):
        torch.testing.assert_close(getattr(loaded, name), getattr(diag, name))
    assert loaded.layers == [0, 2] and loaded.fact_ids == diag.fact_ids and loaded.meta == diag.meta
    assert loaded.flagged == diag.flagged
    # exports
    frame = diag.to_pandas()
    assert len(frame) == 32 and int(frame.flagged.sum()) == 1
    assert frame.loc[frame.flagged, ["layer", "neuron"]].values.tolist() == [[2, 5]]
    assert list(diag.to_pandas("layers").layer) == [0, 2]
    assert len(diag.to_pandas("facts")) == 24
    assert "hide index" in repr(diag) and "<table>" in diag._repr_html_()
    text = diag.summary()
    assert "flagged spurious neurons: 1 of 32" in text and "family-wise" in text
    assert diag.top(1) == [(2, 5, pytest.approx(float(diag.d_minus[1, 5])))]


def test_verify_needs_neurons_when_nothing_is_flagged(synthetic_case):
    target, control, before, _ = synthetic_case
    same = diagnose(before, before, target, control=control, n_permutations=300, alpha=0.05)
    assert same.flagged == [] and same.d_minus_total == 0
    assert math.isnan(same.hide_index) and "no change" in same.summary()
    with pytest.raises(ValueError, match="no neurons were flagged"):
        same.verify(None, None, target)


def test_collapsed_probability_is_noted(synthetic_case):
    target, control, before, after = synthetic_case
    collapsed = NeuronAttribution(scores=after.scores, layers=after.layers, fact_ids=after.fact_ids,
                                  method="ig", steps=4, target="prob",
                                  target_input=torch.full((len(after.fact_ids),), 1e-6))
    with pytest.warns(UserWarning, match="target='logprob'"):
        diag = diagnose(before, collapsed, target, control=control, n_permutations=300, alpha=0.05)
    assert "note:" in diag.summary() and diag.meta["notes"]
    fine = diagnose(before, after, target, control=control, n_permutations=300, alpha=0.05)
    assert fine.meta["notes"] == []


def test_diagnose_with_a_control_fine_tune_null(synthetic_case):
    target, control, before, after = synthetic_case
    g = torch.Generator().manual_seed(9)
    null_scores = before.scores[:24] + torch.randn(24, 2, 16, generator=g) * 0.05
    null = _attr(null_scores, target)
    diag = diagnose(before, after, target, control_after=null, n_permutations=300, alpha=0.05)
    assert [(f.layer, f.neuron) for f in diag.flagged] == [(2, 5)]
    both = diagnose(before, after, target, control=control, control_after=null, n_permutations=300,
                    alpha=0.05)
    assert both.p_control is not None and both.p_finetune is not None
    torch.testing.assert_close(both.p_adjusted, torch.maximum(both.p_control, both.p_finetune))


def test_diagnose_rejects_bad_input(synthetic_case):
    target, control, before, after = synthetic_case
    with pytest.raises(ValueError, match="needs a null"):
        diagnose(before, after, target)
    with pytest.raises(ValueError, match="control is empty"):
        diagnose(before, after, target, control=[])
    with pytest.raises(ValueError, match="alpha"):
        diagnose(before, after, target, control=control, alpha=1.5)
    with pytest.raises(ValueError, match="n_permutations"):
        diagnose(before, after, target, control=control, alpha=0.01, n_permutations=20)
    other = NeuronAttribution(scores=after.scores[:, :1], layers=[0], fact_ids=after.fact_ids, method="ig",
                              steps=4, target="prob")
    with pytest.raises(ValueError, match="different layers"):
        diagnose(before, other, target, control=control)
    with pytest.raises(ValueError, match="hold both target"):
        diagnose(before, after, target, control=target[:4] + control, permute_by="subject")
    unknown = [Fact("never attributed", "x", id="zzz")]
    with pytest.raises(ValueError, match="lacks facts"):
        diagnose(before, after, unknown + target, control=control)
