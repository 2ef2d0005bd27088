"""Exact by default: adaptive integration to a completeness tolerance, checked against an
independent reference (the slow hook-and-loop IG, doubling its own Gauss-Legendre points) on a
tiny Llama-shaped model with grouped-query attention and a curved path, and on SmolLM2."""

from __future__ import annotations

import warnings

import pytest
import torch

from neuronscope import Fact, FactSet
from neuronscope.attribution import NeuronAttribution, attribute
from neuronscope.attribution.adaptive import (
    LOGPROB_NOISE_FLOOR,
    PanelPath,
    PathRule,
    allowance,
    noise_floor,
)
from neuronscope.attribution.engine import EngineOptions
from neuronscope.models import load_model
from tests.conftest import save_hf_model

FACTS = FactSet([Fact("ab c", "de", id="a"), Fact("xyz w", "q", id="b"), Fact("hello", "wor ld", id="c"),
                 Fact("k", "mn", id="d")])


@pytest.fixture(scope="module")
def curved_llama(tmp_path_factory):
    """A tiny random Llama (2 layers, 4 query / 2 key-value heads, rotary, SwiGLU) whose
    projections are scaled up 15x: its attribution paths are curved enough that 2-4 fixed
    Gauss-Legendre steps miss a 1 % tolerance."""
    from transformers import LlamaForCausalLM

    folder = save_hf_model(tmp_path_factory.mktemp("curved-llama"), "llama", seed=0)
    hf = LlamaForCausalLM.from_pretrained(folder)
    assert hf.config.num_key_value_heads < hf.config.num_attention_heads  # GQA
    with torch.no_grad():
        for name, param in hf.named_parameters():
            if "proj" in name:
                param.mul_(15.0)
    hf.save_pretrained(folder)
    model = load_model(folder)
    model.eval()
    return model


def _relative(attr: NeuronAttribution) -> torch.Tensor:
    allowed = allowance(attr.target_input[:, None], attr.target_baseline, 1.0)
    return attr.convergence_delta.double().abs() / allowed


@pytest.mark.parametrize("target", ["prob", "logprob"])
def test_adaptive_engine_matches_reference_on_curved_gqa_llama(curved_llama, target, one_thread):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the adaptive default meets its tolerance: no warning
        fast = attribute(curved_llama, FACTS, target=target, progress=False)
    ref = attribute(curved_llama, FACTS, target=target, progress=False, engine="reference")
    assert fast.meta["mode"] != "full"
    assert fast.tolerance == 0.01
    # exact by default: every (fact, layer) within 1 % of f(x) - f(baseline)
    assert float(_relative(fast).max()) <= 0.01
    # the path is curved: some (fact, layer) needed more than the first 8 evaluations
    assert int(fast.steps_used.max()) > 8 and int(fast.steps_used.min()) == 8
    assert fast.steps == int(fast.steps_used.max())
    # the independent reference reached its own tolerance with its own points
    assert float(_relative(ref).max()) <= 0.01
    # per-layer sums agree within both tolerances
    both = 2 * allowance(fast.target_input[:, None], fast.target_baseline, 0.01)
    assert torch.all((fast.per_layer().double() - ref.per_layer().double()).abs() <= both + 1e-6)
    assert torch.allclose(fast.target_baseline, ref.target_baseline, rtol=1e-4, atol=1e-5)
    # neurons too: the two quadratures converge to the same integral
    scale = float(ref.scores.abs().max())
    assert float((fast.scores - ref.scores).abs().max()) < 0.05 * scale


def test_fixed_steps_that_miss_the_tolerance_warn_naming_the_layers(curved_llama, one_thread):
    with pytest.warns(UserWarning, match=r"2 fixed steps.*in layers \[0") as record:
        attr = attribute(curved_llama, FACTS, steps=2, target="logprob", progress=False)
    assert float(_relative(attr).max()) > 0.01
    assert attr.steps_used.unique().tolist() == [2]
    missed = (_relative(attr) > 0.01).any(0).nonzero().flatten().tolist()
    assert str([attr.layers[i] for i in missed]) in str(record[0].message)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        attribute(curved_llama, FACTS, steps=2, target="logprob", progress=False, tolerance=None)


def test_a_cap_too_low_to_converge_warns(curved_llama, one_thread):
    with pytest.warns(UserWarning, match="max_steps=8"):
        attr = attribute(curved_llama, FACTS, target="logprob", progress=False, max_steps=8)
    assert int(attr.steps_used.max()) <= 8


@pytest.mark.parametrize("kwargs,match", [
    (dict(tolerance=0), "tolerance"), (dict(tolerance=-0.1), "tolerance"),
    (dict(tolerance=float("nan")), "tolerance"), (dict(max_steps=7), "max_steps=7 is below"),
    (dict(max_steps=0), "steps"), (dict(quadrature="riemann_right"), "Gauss-Legendre panels"),
    (dict(tolerance=None), "needs a tolerance"),
])
def test_bad_path_settings_fail_before_work(kwargs, match, curved_llama):
    with pytest.raises(ValueError, match=match):
        attribute(curved_llama, FACTS, progress=False, **kwargs)


def test_panel_path_integrates_a_sharp_step_to_tolerance():
    """A sigmoid step at alpha = 0.3 (the shape of an early layer's path): the panels crowd
    around the step, the total meets the tolerance, and the cap is respected."""
    def f(a: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(60 * (a - 0.3))

    def df(a: torch.Tensor) -> torch.Tensor:
        return 60 * f(a) * (1 - f(a))

    def run(rule: PathRule) -> PanelPath:
        path = PanelPath(None, f(torch.tensor([1.0, 1.0])) * torch.tensor([1.0, 2.0]), rule)
        facts, alphas = path.endpoints()
        assert alphas.tolist() == [0.0, 0.0]  # first f(0), nothing else
        path.set_endpoints(f(alphas) * (1 + facts))
        while path.pending():
            facts, alphas, weights, _ = path.nodes()
            path.record(weights * df(alphas) * (1 + facts))
            facts, alphas = path.endpoints()
            path.set_endpoints(f(alphas) * (1 + facts))  # fact 1's path is twice as high
            path.refine()
        return path

    path = run(PathRule(tolerance=1e-4, max_steps=512))
    exact = torch.tensor([1.0, 2.0]) * (f(torch.tensor(1.0)) - f(torch.tensor(0.0)))
    assert torch.all(path.delta().abs() <= path.allowed())
    live = path.live_panels().tolist()
    widths = [path.b[p] - path.a[p] for p in live]
    near = [w for p, w in zip(live, widths, strict=True) if path.a[p] <= 0.3 <= path.b[p]]
    assert min(near) < max(widths) / 4  # refined where the path is curved
    assert int(path.steps_used()[0]) > 8
    total = path.delta() + (path.f_end - path.f_start)
    assert torch.allclose(total, exact.double(), rtol=2e-4)
    capped = run(PathRule(tolerance=1e-9, max_steps=40))
    assert int(capped.steps_used().max()) <= 40


def test_result_records_steps_and_tolerance_and_round_trips(curved_llama, tmp_path, one_thread):
    attr = attribute(curved_llama, FACTS, target="logprob", progress=False, layers=[0])
    assert attr.steps_used.shape == (len(FACTS), 1)
    assert "adaptive" in repr(attr)
    back = NeuronAttribution.load(attr.save(tmp_path / "a.pt"))
    assert torch.equal(back.steps_used, attr.steps_used) and back.tolerance == attr.tolerance
    assert torch.equal(attr.select([2]).steps_used, attr.steps_used[[2]])


def test_memory_accounting_matches_the_tensors(curved_llama, one_thread):
    attr = attribute(curved_llama, FACTS, target="logprob", progress=False, per_position=True)
    actual = sum(t.numel() * t.element_size() for t in (
        attr.scores, attr.convergence_delta, attr.target_input, attr.target_baseline,
        attr.position_scores, attr.position_mask, attr.steps_used))
    assert attr.nbytes == actual
    width = attr.position_scores.shape[2]
    predicted = NeuronAttribution.estimate_bytes(len(FACTS), len(attr.layers), attr.n_neurons,
                                                 per_position_width=width)
    assert predicted == actual
    # the issue's budget: SmolLM2's 30 x 1536 for 200 facts, per token over 64 positions
    assert NeuronAttribution.estimate_bytes(200, 30, 1536, per_position_width=64) < 4 * 1024**3


def test_engine_equals_bare_schedule_rows(curved_llama, one_thread):
    """The engine's gradient rows are exactly the evaluations it reports per fact and layer."""
    attr = attribute(curved_llama, FACTS, target="logprob", progress=False,
                     _options=EngineOptions(panel_points=2, initial_panels=3))
    assert attr.meta["grad_rows"] == int(attr.steps_used.sum())
    assert int(attr.steps_used.min()) == 6


@pytest.mark.slow
def test_smollm2_adaptive_matches_reference(smollm2, one_thread):
    """On the real 30-layer model (GQA 9/3 heads, rotary): the adaptive engine meets 1 % on
    the strongly curved layer 0 and on a late layer, and agrees with the reference loop
    (about a minute of CPU time on one thread)."""
    facts = FactSet([Fact("The capital of France is", " Paris"),
                     Fact("The capital of Germany is", " Berlin")])
    fast = attribute(smollm2, facts, layers=[0, 27], progress=False)
    assert fast.meta["mode"] == "shortcut"
    assert float(_relative(fast).max()) <= 0.01
    with pytest.warns(UserWarning, match=r"layers \[0"):  # 8 fixed steps are far off on layer 0
        attribute(smollm2, facts[:1], layers=[0], steps=8, progress=False)
    # the slow reference (full forward passes, its own doubling Gauss-Legendre rule) on one fact
    ref = attribute(smollm2, facts[:1], layers=[0, 27], progress=False, engine="reference")
    assert float(_relative(ref).max()) <= 0.01
    both = 2 * allowance(fast.target_input[:1, None], fast.target_baseline[:1], 0.01)
    assert torch.all((fast.per_layer()[:1].double() - ref.per_layer().double()).abs() <= both + 1e-5)


def test_logprob_allowance_never_goes_below_float32_noise():
    """A fact the model is certain of (log P = -9e-6, zeroing a layer moves it by 3e-6): 1 % of that
    change is below the float32 error of log P, so the log P allowance stops at the noise floor
    (found on an unlearned organism, where such facts were refined to the step cap); P has none."""
    f_x, f_b = torch.tensor([-8.6e-6, -2.0]), torch.tensor([-5.4e-6, -3.0])
    logp = allowance(f_x, f_b, 0.01, noise_floor("logprob"))
    assert float(logp[0]) == LOGPROB_NOISE_FLOOR and abs(float(logp[1]) - 0.01) < 1e-12
    tiny_p = allowance(torch.tensor([1e-6]), torch.tensor([0.5e-6]), 0.01, noise_floor("prob"))
    assert abs(float(tiny_p[0]) - 5e-9) < 1e-15  # P's error scales with P: no absolute floor
