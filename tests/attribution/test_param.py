"""param_x_grad (from activations) equals parameter x gradient from real parameter gradients."""

from __future__ import annotations

import pytest
import torch

from neuronscope.attribution import attribute
from neuronscope.attribution.reference import reference_param_x_grad
from neuronscope.attribution.spec import AttributionSpec
from neuronscope.models import copy_model, load_model
from neuronscope.scoring import batch_for
from tests.attribution.test_engine import CHAR_FACTS, TOKENIZER, word_facts
from tests.conftest import make_native


@pytest.mark.parametrize("shape", ["ln_gelu", "rms_gated_rotary", "gpt2"])
def test_param_x_grad_matches_parameter_gradients(shape, hf_folders):
    if shape == "gpt2":
        model, tok, facts = load_model(hf_folders["gpt2"]), None, CHAR_FACTS
    else:
        model, tok, facts = make_native(shape, d_vocab=len(TOKENIZER), seed=9), TOKENIZER, word_facts(5)
    target = "logprob" if shape == "gpt2" else "prob"
    attr = attribute(model, facts, method="param_x_grad", target=target, tokenizer=tok, progress=False,
                     batch_size=2)
    assert attr.positions == "all" and attr.convergence_delta is None
    spec = AttributionSpec.make(method="param_x_grad", steps=1, quadrature="gauss_legendre", target=target,
                                positions="all", baseline="zero")
    expected = reference_param_x_grad(copy_model(model), batch_for(model, facts, tok), attr.layers, spec)
    assert expected.abs().max() > 1e-4
    torch.testing.assert_close(attr.scores, expected, atol=1e-5, rtol=1e-4)
    assert all(p.grad is None for p in model.parameters())
