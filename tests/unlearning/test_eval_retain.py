"""unlearn(eval_retain=False): the same run, without measuring the retain set at each evaluation."""

from __future__ import annotations

import torch

import neuronscope as ns


def test_skipping_retain_evaluation_changes_nothing_but_the_history(tiny_org, forget_retain):
    forget, retain = forget_retain
    common = dict(method="gd", max_steps=6, eval_every=2, target_forget_accuracy=0.5, seed=3,
                  progress=False)
    full = ns.unlearn(tiny_org.bridge, forget, retain, **common)
    quick = ns.unlearn(tiny_org.bridge, forget, retain, eval_retain=False, **common)
    assert quick.steps == full.steps
    assert [r["forget_accuracy"] for r in quick.history.steps if r.get("evaluated")] == \
           [r["forget_accuracy"] for r in full.history.steps if r.get("evaluated")]
    for (name, a), (_, b) in zip(full.bridge.state_dict().items(), quick.bridge.state_dict().items(),
                                 strict=True):
        assert torch.equal(a, b), name
    assert "retain_accuracy" in full.history.final_metrics
    assert "retain_accuracy" not in quick.history.final_metrics
