"""The unlearning core's seams: a method and a penalty defined here run through ``unlearn`` and
the robustness benchmark without any change to the package; bad objects fail early; RMU with
retain rows longer than the forget rows; a missed target warns; the learning-rate search; a
custom metric; ``api.py`` knows no method by name."""

from __future__ import annotations

import ast
import inspect
import warnings
from typing import ClassVar

import pytest
import torch

import neuronscope as ns
from neuronscope.bench import BenchConfig, robustness
from neuronscope.unlearning import (
    METHODS,
    BoundPenalty,
    Penalty,
    Recipe,
    UnlearningMethod,
    api,
    loss,
    parse_recipe,
    register_method,
    register_penalty,
    unlearn,
)


class HalfAscent(UnlearningMethod):
    """Ascent on the answer NLL at half strength, plus NLL descent on retain rows."""

    name = "half_ascent"
    summary = "test-only"
    defaults: ClassVar[dict] = {"retain_weight": 2.0, "strength": 0.5}

    def __init__(self):
        self.calls = 0

    def forget_loss(self, step):
        self.calls += 1
        picked, mask = step.token_logprobs("forget")
        return step.settings["strength"] * picked.sum() / mask.sum()


class Anchor(Penalty):
    """lam * squared distance of the trainable weights to where they started."""

    name = "anchor"

    def __init__(self, lam=1.0, needs_retain=False):
        self.lam, self.needs_retain = lam, needs_retain

    def to_dict(self):
        return {"name": self.name, "lam": self.lam}

    def bind(self, model, forget, retain=None):
        params = [p for p in model.parameters() if p.requires_grad]
        start = [p.detach().clone() for p in params]

        def term(step):
            return self.lam * sum(((p - s) ** 2).sum() for p, s in zip(params, start, strict=True))

        return BoundPenalty(term)


def test_custom_method_and_penalty_run_through_unlearn(tiny_org, forget_retain):
    forget, retain = forget_retain
    method = HalfAscent()
    result = unlearn(tiny_org.bridge, forget, retain, method=method, penalty=[Anchor(10.0)],
                     max_steps=3, target_forget_accuracy=None, progress=False)
    assert method.calls == 3 and result.settings["recipe"] == "half_ascent+anchor(lam=10)"
    first, second = result.history.steps[1], result.history.steps[2]
    assert first["loss_anchor"] == 0.0 and second["loss_anchor"] > 0
    assert second["loss"] == pytest.approx(second["loss_forget"] + 2.0 * second["loss_retain"]
                                           + second["loss_anchor"], rel=1e-5)
    plain = unlearn(tiny_org.bridge, forget, retain, method=method, strength=1.0, max_steps=3,
                    target_forget_accuracy=None, progress=False)
    assert plain.history.steps[1]["loss_forget"] == pytest.approx(
        2 * first["loss_forget"], rel=1e-5)


def test_registered_method_and_penalty_parse_in_recipes(tiny_org, forget_retain):
    forget, retain = forget_retain
    register_method("half_ascent_test", HalfAscent(), replace=True)
    register_penalty("anchor_test", Anchor, replace=True)
    try:
        recipe = parse_recipe("half_ascent_test+anchor_test(2.5)")
        assert recipe.penalties[0].lam == 2.5
        result = unlearn(tiny_org.bridge, forget, retain, method=recipe, max_steps=1,
                         target_forget_accuracy=None, progress=False)
        assert result.steps == 1 and "loss_anchor" in result.history.steps[1]
        with pytest.raises(ValueError, match="already registered"):
            register_method("half_ascent_test", HalfAscent())
    finally:
        METHODS.pop("half_ascent_test", None)
        ns.unlearning.PENALTIES.pop("anchor_test", None)


def test_custom_method_and_penalty_run_through_the_robustness_benchmark(cache_folder):
    config = BenchConfig(size="tiny", n_people=60, forget=0.2, seeds=(0,),
                         methods=(Recipe(HalfAscent(), (Anchor(1.0),)),),
                         attacks=(("harmful", 0.3),), attack_steps=4, attack_eval_every=2,
                         unlearn={"max_steps": 6})
    result = robustness(config, cache=cache_folder, progress=False)
    rows = [r for r in result.rows if r["method"] != "oracle"]
    assert [r["method"] for r in rows] == ["half_ascent+anchor(lam=1)"]
    assert rows[0]["base"] == "half_ascent" and rows[0]["lambda"] == 1.0
    assert rows[0]["unlearn_steps"] == 6 or rows[0]["reached_target"]


class NoLoss:
    name = "noloss"


@pytest.mark.parametrize("method, match", [
    (NoLoss(), "lacks"),
    (type("Bare", (UnlearningMethod,), {"name": "bare"})(), "forget_loss"),
    (type("Nameless", (UnlearningMethod,), {"forget_loss": lambda self, step: 0})(), "name"),
])
def test_incomplete_method_objects_fail_before_any_step(tiny_org, forget_retain, method, match):
    forget, retain = forget_retain
    with pytest.raises(ValueError, match=match):
        unlearn(tiny_org.bridge, forget, retain, method=method, progress=False)


def test_penalty_needing_retain_fails_without_one(tiny_org, forget_retain):
    forget, _ = forget_retain
    method = HalfAscent()
    with pytest.raises(ValueError, match=r"anchor.*retain"):
        unlearn(tiny_org.bridge, forget, None, method="ga", penalty=Anchor(needs_retain=True),
                progress=False)
    with pytest.raises(ValueError, match="lacks"):
        unlearn(tiny_org.bridge, forget, None, method="ga", penalty=object(), progress=False)
    assert method.calls == 0


@pytest.fixture(scope="module")
def gpt2_tiny(hf_folders):
    return ns.load_model(hf_folders["gpt2"])


def test_rmu_with_retain_rows_longer_than_the_forget_rows(gpt2_tiny):
    """Reproduces the crash: RMU's forget mask was narrower than the stacked batch."""
    forget = [ns.Fact("A is", "b", id="f1"), ns.Fact("C is", "d", id="f2")]
    retain = [ns.Fact("The long retain prompt number one is", "a long answer", id="r1"),
              ns.Fact("The long retain prompt number two is", "another answer", id="r2")]
    result = unlearn(gpt2_tiny, forget, retain, method="rmu", max_steps=2,
                     target_forget_accuracy=None, progress=False)
    assert result.steps == 2 and not result.history.non_finite
    assert result.history.steps[1]["loss_forget"] > 0


def test_a_missed_target_warns_and_shows_in_the_repr(tiny_org, forget_retain):
    forget, retain = forget_retain
    with pytest.warns(RuntimeWarning, match="above the target"):
        result = unlearn(tiny_org.bridge, forget, retain, method="gd", max_steps=2,
                         target_forget_accuracy=0.0, progress=False)
    assert result.reached_target is False and "DID NOT REACH" in repr(result)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        free = unlearn(tiny_org.bridge, forget, retain, method="gd", max_steps=2,
                       target_forget_accuracy=None, progress=False)
    assert free.reached_target is None and "DID NOT" not in repr(free)


@pytest.mark.slow
def test_learning_rate_search_takes_the_lowest_rate_that_reaches(tiny_org, forget_retain):
    forget, retain = forget_retain
    grid = (1e-6, 3e-3, 1e-3)
    result = unlearn(tiny_org.bridge, forget, retain, method="gd", lr="search", lr_grid=grid,
                     max_steps=30, target_forget_accuracy=0.1, progress=False)
    search = result.settings["lr_search"]
    tried = {t["lr"]: t["reached"] for t in search["tried"]}
    assert tried == {1e-3: True, 1e-6: False}  # bisection: the middle rate, then the lower half
    assert search["chosen"] == 1e-3 == result.settings["hyperparameters"]["lr"]
    assert result.reached_target
    with pytest.warns(RuntimeWarning, match="no learning rate"):
        miss = unlearn(tiny_org.bridge, forget, retain, method="gd", lr="search",
                       lr_grid=(1e-7, 1e-6), max_steps=2, target_forget_accuracy=0.0,
                       progress=False)
    assert miss.settings["lr_search"]["chosen"] == 1e-6 and not miss.reached_target
    with pytest.raises(ValueError, match="lr"):
        unlearn(tiny_org.bridge, forget, retain, lr="fast", progress=False)


def test_a_custom_metric_drives_the_history_and_the_stop(tiny_org, forget_retain):
    forget, retain = forget_retain
    seen = []

    def halved(model, facts):
        seen.append(len(facts))
        return 0.5 * ns.accuracy(model, facts)

    result = unlearn(tiny_org.bridge, forget, retain, method="gd", metric=halved,
                     target_forget_accuracy=0.3, eval_every=1, max_steps=30, progress=False)
    first = result.history.steps[0]
    assert first["forget_accuracy"] == pytest.approx(0.5 * ns.accuracy(tiny_org.bridge, forget))
    assert set(seen) == {len(forget), len(retain)}
    assert result.reached_target and result.forget_accuracy <= 0.3 + 1e-6
    assert ns.accuracy(result.bridge, forget) > 0.3  # stopped by the halved metric, not accuracy
    with pytest.raises(ValueError, match="metric"):
        unlearn(tiny_org.bridge, forget, retain, metric="accuracy", progress=False)


def test_the_core_branches_on_no_method_name():
    """No comparison in api.py or loss.py involves a method's name."""
    names = {"ga", "gd", "npo", "simnpo", "dpo", "rmu"}
    for module in (api, loss):
        for node in ast.walk(ast.parse(inspect.getsource(module))):
            if isinstance(node, ast.Compare):
                consts = {c.value for part in [node.left, *node.comparators]
                          for c in ast.walk(part) if isinstance(c, ast.Constant)}
                assert not consts & names, (module.__name__, ast.unparse(node))


def test_recipe_labels_parse_back():
    for text in ("gd", "gd+ssiuu", "npo+ssiuu(0.01,level=neuron,layers=0/1)",
                 "gd+ssiuu(1e-3,target=logprob,norm=abs,negative_set=previous,params=attn)"):
        recipe = parse_recipe(text)
        assert parse_recipe(recipe.label) == recipe
    assert parse_recipe("gd+ssiuu:0.01").label == "gd+ssiuu(0.01)"
    for bad in ("", "gd+", "gd+ssiuu(0.1", "gd+nope", "gd+ssiuu(level=x)", "sgd"):
        with pytest.raises(ValueError):
            parse_recipe(bad)
    assert torch.tensor(parse_recipe("gd+ssiuu(0.5)").lam) == 0.5
