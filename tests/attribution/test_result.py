"""NeuronAttribution: reductions, selection, lossless save/load, pandas, display."""

from __future__ import annotations

import pytest
import torch

from neuronscope.attribution import NeuronAttribution, attribute
from neuronscope.attribution.quadrature import quadrature_rule
from tests.attribution.test_engine import TOKENIZER, word_facts
from tests.conftest import make_native


@pytest.fixture(scope="module")
def attr():
    model = make_native("ln_gelu", d_vocab=len(TOKENIZER), seed=8)
    return attribute(model, word_facts(5), tokenizer=TOKENIZER, steps=3, progress=False, per_position=True)


def test_save_load_round_trip_is_exact(attr, tmp_path):
    path = attr.save(tmp_path / "sub" / "attr.pt")
    back = NeuronAttribution.load(path)
    for name in ("scores", "convergence_delta", "target_input", "target_baseline", "position_scores",
                 "position_mask"):
        assert torch.equal(getattr(back, name), getattr(attr, name)), name
    for name in ("layers", "fact_ids", "method", "steps", "target", "quadrature", "baseline", "positions",
                 "model_name", "meta"):
        assert getattr(back, name) == getattr(attr, name), name
    assert not list(tmp_path.glob("sub/.*tmp"))  # atomic write left no temporary file


def test_load_rejects_other_files(tmp_path):
    torch.save({"x": torch.zeros(1)}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="not a saved NeuronAttribution"):
        NeuronAttribution.load(tmp_path / "other.pt")


def test_reductions_and_top(attr):
    assert torch.allclose(attr.mean(), attr.scores.mean(0))
    assert torch.allclose(attr.sum(), attr.scores.sum(0))
    assert torch.allclose(attr.per_layer(), attr.scores.sum(-1))
    assert torch.equal(attr.layer(1), attr.scores[:, 1])
    top = attr.top(4)
    values = [v for _, _, v in top]
    assert values == sorted(values, reverse=True) and values[0] == pytest.approx(float(attr.mean().max()))
    layer, neuron, value = top[0]
    assert attr.mean()[attr.layers.index(layer), neuron].item() == pytest.approx(value)
    low = attr.top(2, largest=False)
    assert low[0][2] == pytest.approx(float(attr.mean().min()))
    big = attr.top(1, absolute=True)[0]
    assert abs(big[2]) == pytest.approx(float(attr.mean().abs().max()))
    with pytest.raises(ValueError, match="was not attributed"):
        attr.layer(7)


def test_select(attr):
    sub = attr.select([3, 1])
    assert sub.fact_ids == [attr.fact_ids[3], attr.fact_ids[1]]
    assert torch.equal(sub.scores, attr.scores[[3, 1]])
    assert torch.equal(sub.convergence_delta, attr.convergence_delta[[3, 1]])
    assert torch.equal(sub.position_scores, attr.position_scores[[3, 1]])
    mask = torch.tensor([True, False, True, False, False])
    assert attr.select(mask).fact_ids == [attr.fact_ids[0], attr.fact_ids[2]]
    assert attr.select(slice(1, 3)).n_facts == 2
    with pytest.raises(ValueError, match="out of range"):
        attr.select([9])


def test_to_pandas(attr):
    frame = attr.to_pandas()
    assert len(frame) == attr.scores.numel()
    row = frame[(frame.fact_id == attr.fact_ids[2]) & (frame.layer == 1) & (frame.neuron == 5)]
    assert row.score.item() == pytest.approx(attr.scores[2, 1, 5].item())
    mean = attr.to_pandas(reduce="mean")
    assert len(mean) == attr.scores[0].numel()
    assert mean.score.sum() == pytest.approx(float(attr.mean().sum()), rel=1e-5)


def test_repr(attr):
    text = repr(attr)
    assert "ig (3 steps, gauss_legendre)" in text and "5 facts x 2 layers x 48 neurons" in text
    assert "<table>" in attr._repr_html_()


def test_shape_checks():
    with pytest.raises(ValueError, match="does not match"):
        NeuronAttribution(scores=torch.zeros(2, 1, 3), layers=[0], fact_ids=["a"])


@pytest.mark.parametrize("name", ["riemann_left", "riemann_right", "riemann_middle", "riemann_trapezoid",
                                  "gauss_legendre"])
def test_quadrature_rules_integrate_polynomials(name):
    alphas, weights = quadrature_rule(name, 8)
    assert weights.sum().item() == pytest.approx(1.0)
    assert ((alphas >= 0) & (alphas <= 1)).all()
    # x^3 on [0, 1]: Gauss-Legendre exact, the Riemann rules within their O(1/n) or O(1/n^2) error
    estimate = float((weights * alphas**3).sum())
    tolerance = 1e-12 if name == "gauss_legendre" else 0.07
    assert estimate == pytest.approx(0.25, abs=tolerance)
