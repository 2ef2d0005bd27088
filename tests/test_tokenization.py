"""Batches tokenized in separate calls concatenate into the batch one call would give."""

from __future__ import annotations

import pytest
import torch

from neuronscope import Fact, FactBatch, WordTokenizer, tokenize
from neuronscope.tokenization import POSITIONS, position_mask

TOK = WordTokenizer.from_texts(["Ada lives in Varno ; Bo was born in the town of New Varno"])
FACTS = [Fact("Ada lives in", "Varno"), Fact("Bo was born in the town of", "New Varno"),
         Fact("Bo lives in", "New Varno")]


class PaddedTokenizer:
    """A minimal tokenizer whose pad id is not 0."""

    pad_token_id, bos_token_id = 7, 1

    def encode(self, text: str) -> list[int]:
        return [10 + len(word) for word in text.split()]


@pytest.mark.parametrize("tokenizer", [TOK, PaddedTokenizer()])
def test_concat_equals_one_call(tokenizer):
    whole = tokenize(FACTS, tokenizer)
    parts = [tokenize(FACTS[:1], tokenizer), tokenize(FACTS[1:2], tokenizer), tokenize(FACTS[2:], tokenizer)]
    assert parts[0].tokens.shape[1] < whole.tokens.shape[1]  # the parts were padded differently
    assert FactBatch.concat(parts) == whole
    assert parts[0] + parts[1] + parts[2] == whole
    assert whole.pad_id == tokenizer.pad_token_id
    assert (whole.tokens[~whole.attention_mask] == tokenizer.pad_token_id).all()


def test_slices_and_moves_keep_the_pad_id():
    batch = tokenize(FACTS, PaddedTokenizer())
    assert batch[:1].pad_id == 7 and batch.to("cpu").pad_id == 7
    assert batch[:1] + batch[1:] == batch


def test_concat_refuses_nothing_and_non_batches():
    with pytest.raises(ValueError, match="at least one"):
        FactBatch.concat([])
    with pytest.raises(ValueError, match="FactBatch"):
        FactBatch.concat([tokenize(FACTS, TOK), torch.zeros(2, 3)])
    assert tokenize(FACTS, TOK) != tokenize(FACTS[:2], TOK)


def test_position_mask_on_a_hand_made_batch():
    """Two rows written out by hand: [bos, p, p, a, pad] and [bos, p, a, a, pad]."""
    batch = FactBatch(tokens=torch.tensor([[1, 5, 6, 7, 0], [1, 5, 8, 9, 0]]),
                      attention_mask=torch.tensor([[1, 1, 1, 1, 0], [1, 1, 1, 1, 0]], dtype=torch.bool),
                      prompt_mask=torch.tensor([[1, 1, 1, 0, 0], [1, 1, 0, 0, 0]], dtype=torch.bool),
                      answer_mask=torch.tensor([[0, 0, 0, 1, 0], [0, 0, 1, 1, 0]], dtype=torch.bool))
    expected = {"prompt": [[1, 1, 1, 0, 0], [1, 1, 0, 0, 0]],
                "last": [[0, 0, 1, 0, 0], [0, 1, 0, 0, 0]],
                "all": [[1, 1, 1, 1, 0], [1, 1, 1, 1, 0]]}
    assert set(expected) == set(POSITIONS)
    for positions, mask in expected.items():
        got = position_mask(batch, positions)
        assert got.dtype == torch.bool and got.int().tolist() == mask
        assert position_mask(batch, positions, width=3).int().tolist() == [row[:3] for row in mask]
        assert position_mask(batch, positions, width=7).int().tolist() == [[*row, 0, 0] for row in mask]
    position_mask(batch, "prompt")[0, 0] = False  # a copy: the batch's own mask is untouched
    assert bool(batch.prompt_mask[0, 0])
    with pytest.raises(ValueError, match="unknown positions 'answer'"):
        position_mask(batch, "answer")


def test_every_stage_reads_positions_through_the_one_helper():
    from neuronscope.attribution import spec
    from neuronscope.diagnostics import patching
    from neuronscope.unlearning import ssiuu

    assert spec.position_mask is patching.position_mask is ssiuu.position_mask is position_mask
    assert spec.POSITIONS == patching.POSITIONS == POSITIONS
