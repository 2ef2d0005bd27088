"""Diagnosis.verify takes what diagnose already had; its results say what they hold."""

from __future__ import annotations

import pytest

import neuronscope as ns
from neuronscope.diagnostics import Score, Verification


def test_scores_are_named():
    result = Verification(neurons=[(0, 1)], restore="original", positions="prompt", n_random=1, seed=0,
                          n_facts=3, before=(1.0, 0.9), after=(0.0, 0.1), restored=(0.5, 0.4),
                          suppressed=(0.2, 0.3), random_restored=[(0.1, 0.2)], random_suppressed=[(0.9, 0.8)])
    assert result.restored == Score(accuracy=0.5, probability=0.4)
    assert result.restored.accuracy == result.restored[0] == 0.5
    assert result.random_suppressed[0].probability == 0.8
    assert "Score(accuracy=0.5, probability=0.4)" in repr(result.restored)
    assert Verification.from_dict(result.to_dict()) == result


def test_verify_defaults_to_what_diagnose_was_given(tiny_org, forget_retain):
    forget, retain = forget_retain
    forget, retain = forget[:8], retain[:8]
    before = tiny_org.bridge
    after = ns.unlearn(before, forget, retain, method="ga", max_steps=3, progress=False).bridge
    diag = ns.diagnose(before, after, forget, control=retain, steps=2, n_permutations=200,
                       progress=False)
    neurons = [(0, 3), (1, 7)]
    implicit = diag.verify(neurons=neurons, n_random=3, seed=1)
    explicit = diag.verify(before, after, forget, neurons=neurons, n_random=3, seed=1, control=retain)
    assert implicit == explicit and diag.verification is explicit
    assert implicit.n_facts == len(forget)
    assert diag.inputs["before"] is before and diag.inputs["after"] is after
    from_attr = ns.diagnose(ns.attribute(before, forget + retain, steps=2, progress=False), after, forget,
                            control=retain, steps=2, n_permutations=200, progress=False)
    with pytest.raises(ValueError, match="verify needs before_model"):
        from_attr.verify(neurons=neurons)
