"""ns.unlearn on the tiny organism: every method forgets, the retain-protecting ones keep
the retain set, the caller's model is untouched, seeds reproduce, bad input fails early."""

from __future__ import annotations

import warnings

import pytest
import torch

import neuronscope as ns
from neuronscope.unlearning import METHODS, SSIUU, UnlearnResult, unlearn

ALL = ("ga", "gd", "npo", "simnpo", "dpo", "rmu")
PROTECTING = ("gd", "npo", "simnpo", "dpo", "rmu")


def _state(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _same(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.fixture(scope="module")
def original_state(tiny_org):
    return _state(tiny_org.bridge)


@pytest.fixture(scope="module")
def unlearned(tiny_org, forget_retain, tiny_world, original_state):
    """Each method run once with its default settings, stopping at forget accuracy <= 0.1."""
    forget, retain = forget_retain
    out = {}
    for method in ALL:
        refusals = tiny_world.refusals if method == "dpo" else None
        out[method] = unlearn(tiny_org.bridge, forget, retain, method=method, refusals=refusals,
                              target_forget_accuracy=0.1, progress=False)
    return out


@pytest.mark.parametrize("method", ALL)
def test_method_forgets_within_budget(unlearned, forget_retain, method):
    result = unlearned[method]
    forget, retain = forget_retain
    assert result.history.stopped_reason == "target", result
    measured = ns.accuracy(result.bridge, forget)
    assert measured <= 0.10 + 1e-6
    assert measured == pytest.approx(result.forget_accuracy)
    assert result.steps <= METHODS[method].settings({})["max_steps"]
    if method in PROTECTING:
        assert ns.accuracy(result.bridge, retain) >= 0.9, result


def test_caller_model_unchanged(unlearned, tiny_org, original_state):
    assert _same(original_state, _state(tiny_org.bridge))
    for result in unlearned.values():
        assert not _same(original_state, _state(result.bridge))


def test_same_seed_same_weights(tiny_org, forget_retain):
    forget, retain = forget_retain
    runs = [unlearn(tiny_org.bridge, forget, retain, method="npo", penalty=SSIUU(1e-2),
                    max_steps=4, batch_size=16, retain_batch_size=16, seed=s,
                    target_forget_accuracy=None, progress=False) for s in (3, 3, 4)]
    assert _same(_state(runs[0].bridge), _state(runs[1].bridge))
    assert not _same(_state(runs[0].bridge), _state(runs[2].bridge))
    assert runs[0].history.steps[1]["loss"] == runs[1].history.steps[1]["loss"]


@pytest.mark.parametrize("method", ALL)
@pytest.mark.parametrize("level", ["neuron", "parameter"])
def test_ssiuu_composes_with_every_method(tiny_org, forget_retain, method, level):
    forget, retain = forget_retain
    result = unlearn(tiny_org.bridge, forget, retain, method=method, penalty=SSIUU(1e-2, level=level),
                     max_steps=3, target_forget_accuracy=None, progress=False)
    terms = [r["loss_ssiuu"] for r in result.history.steps[1:]]
    assert len(terms) == 3
    assert terms[0] == 0.0, "no previous attribution on step 1, so no penalty"
    assert terms[1] > 0, "attributions changed after a step, so the penalty is active"
    total = result.history.steps[2]
    parts = total["loss_forget"] + total["loss_ssiuu"] + (
        result.settings["hyperparameters"]["retain_weight"] * total.get("loss_retain", 0.0))
    assert total["loss"] == pytest.approx(parts, rel=1e-5)


def test_kl_retain_and_rmu_settings(tiny_org, forget_retain):
    forget, retain = forget_retain
    result = unlearn(tiny_org.bridge, forget, retain, method="gd", retain_loss="kl", max_steps=2,
                     target_forget_accuracy=None, progress=False)
    first = result.history.steps[1]
    assert first["loss_retain"] == pytest.approx(0.0, abs=1e-5), "KL to itself at step 1"
    assert result.history.steps[2]["loss_retain"] > 0
    rmu = unlearn(tiny_org.bridge, forget, retain, method="rmu", layer=0, steering_coef=5.0,
                  max_steps=1, target_forget_accuracy=None, progress=False)
    assert rmu.settings["rmu_layer"] == 0 and rmu.settings["steering_coef"] == 5.0
    assert rmu.history.steps[1]["loss_retain"] == pytest.approx(0.0, abs=1e-6)


def test_inplace_and_ga_without_retain(tiny_org, forget_retain):
    forget, _ = forget_retain
    model = ns.training.detached_copy(tiny_org.bridge)
    result = unlearn(model, forget, None, method="ga", max_steps=2, inplace=True,
                     target_forget_accuracy=None, progress=False)
    assert result.bridge is model and result.retain_accuracy is None


def test_non_finite_loss_is_handled(tiny_org, forget_retain):
    forget, retain = forget_retain

    def poison(model, record):
        if record["step"] == 2:
            with torch.no_grad():
                next(model.parameters()).fill_(float("nan"))

    common = dict(method="gd", eval_every=1, target_forget_accuracy=None, progress=False)
    with pytest.warns(RuntimeWarning, match="non-finite"):
        result = unlearn(tiny_org.bridge, forget, retain, max_steps=6, callbacks=[poison], **common)
    assert result.history.non_finite and result.history.stopped_reason == "non_finite"
    assert result.history.restored_step == 2 and result.steps == 2
    reference = unlearn(tiny_org.bridge, forget, retain, max_steps=2, **common)
    assert _same(_state(result.bridge), _state(reference.bridge)), "not the last finite weights"


def test_save_load_roundtrip(tmp_path, unlearned, tiny_org):
    result = unlearned["npo"]
    result.save(tmp_path / "npo")
    back = UnlearnResult.load(tmp_path / "npo", like=tiny_org.bridge)
    assert _same(_state(back.bridge), _state(result.bridge))
    assert back.settings == result.settings
    assert back.history.to_dict() == result.history.to_dict()
    assert "npo" in repr(result) and "<b>" in result._repr_html_()
    assert set(result.to_pandas()["method"]) == {"npo"}


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"method": "sgd"}, "unknown method"),
        ({"forget": []}, "forget is empty"),
        ({"retain": [], "method": "gd"}, "retain"),
        ({"retain": None, "method": "npo"}, "retain"),
        ({"method": "dpo", "refusals": []}, "refusal"),
        ({"method": "dpo", "refusals": ["zzqx unknownword"]}, "refusal"),
        ({"method": "rmu", "layer": 7}, "out of range"),
        ({"method": "rmu", "steering_coef": -1.0}, "steering_coef"),
        ({"method": "gd", "layer": 0}, "do not apply to method 'gd'"),
        ({"method": "gd", "beta": 0.1}, "beta"),
        ({"method": "gd", "bogus": 1}, "unknown setting"),
        ({"retain_loss": "mse"}, "retain_loss"),
        ({"target_forget_accuracy": 2.0}, "target_forget_accuracy"),
    ],
)
def test_bad_input_raises_before_training(tiny_org, forget_retain, kwargs, match):
    forget, retain = forget_retain
    args = {"forget": forget, "retain": retain, "method": "gd", **kwargs}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(ValueError, match=match):
            unlearn(tiny_org.bridge, progress=False, **args)


def test_negative_lam_and_bad_level():
    with pytest.raises(ValueError, match="lam"):
        SSIUU(-0.1)
    with pytest.raises(ValueError, match="level"):
        SSIUU(0.1, level="block")
    with pytest.raises(ValueError, match="positions"):
        SSIUU(0.1, positions="answer")


def test_ssiuu_layers_out_of_range(tiny_org, forget_retain):
    forget, retain = forget_retain
    with pytest.raises(ValueError, match="out of range"):
        unlearn(tiny_org.bridge, forget, retain, penalty=SSIUU(0.1, level="neuron", layers=(5,)),
                progress=False)


@pytest.mark.parametrize("shape", ["gpt2", "llama"])
def test_runs_on_hugging_face_models(hf_folders, shape):
    model = ns.load_model(hf_folders[shape])
    forget = [ns.Fact("Ada was born in", "Varno", id="a"), ns.Fact("Bo plays the", "harp", id="b")]
    retain = [ns.Fact("The sky is", "blue", id="c"), ns.Fact("Two plus two is", "four", id="d")]
    before = _state(model)
    result = unlearn(model, forget, retain, method="dpo", penalty=SSIUU(1e-2), max_steps=2,
                     target_forget_accuracy=None, progress=False)
    assert result.steps == 2 and not result.history.non_finite
    assert result.history.steps[2]["loss_ssiuu"] > 0
    assert _same(before, _state(model))
