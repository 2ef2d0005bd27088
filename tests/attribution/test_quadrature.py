"""One spelling per quadrature name; the old spellings still work."""

from __future__ import annotations

import pytest
import torch

import neuronscope as ns
from neuronscope.attribution.quadrature import QUADRATURES, canonical_quadrature, quadrature_rule
from neuronscope.cli import build_parser


def test_every_name_is_spelled_with_underscores():
    assert all("-" not in name for name in QUADRATURES)


@pytest.mark.parametrize(("given", "canonical"), [("gauss-legendre", "gauss_legendre"),
                                                  ("gausslegendre", "gauss_legendre"),
                                                  ("Riemann-Left", "riemann_left"),
                                                  ("riemann_trapezoid", "riemann_trapezoid")])
def test_old_spellings_are_aliases(given, canonical):
    assert canonical_quadrature(given) == canonical
    for a, b in zip(quadrature_rule(given, 5), quadrature_rule(canonical, 5), strict=True):
        assert torch.equal(a, b)


def test_unknown_names_are_refused():
    with pytest.raises(ValueError, match="unknown quadrature 'simpson'"):
        canonical_quadrature("simpson")
    with pytest.raises(ValueError, match="unknown quadrature"):
        quadrature_rule(None, 4)


def test_results_record_the_one_spelling(native_factory):
    model = native_factory()
    facts = ns.FactSet([ns.Fact(prompt="A B", answer="C", subject="s", relation="r")])
    tokenizer = ns.WordTokenizer.from_texts(["A B C"])
    attr = ns.attribute(model, facts, steps=2, quadrature="gauss-legendre", tokenizer=tokenizer,
                        progress=False)
    assert attr.quadrature == "gauss_legendre"
    old = ns.NeuronAttribution(scores=torch.zeros(1, 1, 2), layers=[0], fact_ids=["a"],
                               quadrature="gauss-legendre")
    assert old.quadrature == "gauss_legendre"
    args = build_parser().parse_args(["attribute", "--out", "x.pt", "--quadrature", "gauss-legendre"])
    assert args.quadrature == "gauss_legendre"
