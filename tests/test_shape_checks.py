"""The test run checks the package's jaxtyping shape annotations (root conftest.py)."""

from __future__ import annotations

import os

import pytest
import torch
from jaxtyping import TypeCheckError

from neuronscope import Fact
from neuronscope.attribution.spec import target_value
from neuronscope.diagnostics.deltas import d_plus
from neuronscope.scoring import answer_token_logprobs
from neuronscope.tokenization import WordTokenizer, tokenize

pytestmark = pytest.mark.skipif(os.environ.get("NEURONSCOPE_TYPECHECK") == "0",
                                reason="shape checks switched off")


def test_a_contradicted_shape_fails():
    assert target_value(torch.zeros(3), "prob").shape == (3,)
    with pytest.raises(TypeCheckError, match="logprob_sum"):
        target_value(torch.zeros(3, 2), "prob")  # annotated " row": one dimension


def test_dimensions_are_shared_within_one_call():
    tok = WordTokenizer.from_texts(["a b c"])
    batch = tokenize([Fact("a b", "c")], tok)
    logits = torch.zeros(1, batch.tokens.shape[1], len(tok))
    logp, _ = answer_token_logprobs(logits, batch)
    assert logp.shape == (1, batch.tokens.shape[1] - 1)  # "fact seq-1"
    with pytest.raises(TypeCheckError):
        answer_token_logprobs(torch.zeros(2, batch.tokens.shape[1], len(tok)), batch)  # fact: 2 vs 1


def test_the_package_own_value_errors_come_first():
    with pytest.raises(ValueError, match="differ in shape"):
        d_plus(torch.zeros(2, 1, 3), torch.zeros(2, 1, 4))
