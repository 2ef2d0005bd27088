"""Answer log-probabilities and accuracy, teacher-forced and batched.

Example:
    >>> from neuronscope import FactWorld
    >>> from neuronscope.tiny import tiny_model
    >>> world = FactWorld.synthetic(n_people=10)
    >>> model = tiny_model(tokenizer=world.tokenizer)           # untrained: answers at random
    >>> answer_logprob(model, world.facts[:5]).shape
    torch.Size([5])
    >>> 0.0 <= accuracy(model, world.facts) <= 1.0
    True
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from jaxtyping import Bool, Float
from torch import Tensor

from neuronscope.facts import Fact
from neuronscope.hooks import model_device
from neuronscope.tokenization import FactBatch, tokenize
from neuronscope.types import Model

__all__ = ["accuracy", "answer_logprob", "answer_token_logprobs", "batch_for", "get_tokenizer",
           "model_context", "scores"]


def get_tokenizer(model: Model, tokenizer: Any = None) -> Any:
    """The tokenizer to use: the one given, else the model's own."""
    tokenizer = tokenizer if tokenizer is not None else getattr(model, "tokenizer", None)
    if tokenizer is None:
        raise ValueError("model carries no tokenizer; pass tokenizer=...")
    return tokenizer


def model_context(model: Model) -> int | None:
    cfg = getattr(model, "cfg", None)
    value = getattr(cfg, "n_ctx", None)
    return int(value) if value else None


def batch_for(model: Model, facts: Iterable[Fact] | FactBatch, tokenizer: Any = None) -> FactBatch:
    """Tokenise facts for ``model`` (checked against its context), or pass a batch through."""
    if isinstance(facts, FactBatch):
        return facts
    return tokenize(facts, get_tokenizer(model, tokenizer), max_length=model_context(model))


def answer_token_logprobs(
    logits: Float[Tensor, "fact seq vocab"], batch: FactBatch
) -> tuple[Float[Tensor, "fact seq-1"], Bool[Tensor, "fact seq-1"]]:
    """Log-probability of each next token and a mask of the scored (answer) predictions.

    Entry ``t`` scores token ``t + 1`` given tokens ``0..t``.
    """
    target = batch.tokens[:, 1:]
    mask = batch.answer_mask[:, 1:]
    # at least float32 (half-precision logits upcast; float64 stays float64)
    logp = logits[:, :-1].to(torch.promote_types(logits.dtype, torch.float32)).log_softmax(-1)
    picked = logp.gather(-1, target.unsqueeze(-1)).squeeze(-1)
    return picked * mask, mask


def scores(logits: Float[Tensor, "fact seq vocab"], batch: FactBatch) -> tuple[Tensor, Tensor]:
    """``(log P(answer), exact-match)`` per fact from one forward pass's logits."""
    picked, mask = answer_token_logprobs(logits, batch)
    logprob = picked.sum(-1)
    hits = (logits[:, :-1].argmax(-1) == batch.tokens[:, 1:]) | ~mask
    return logprob, hits.all(-1)


def _forward_scores(model: Model, facts: Any, tokenizer: Any, batch_size: int) -> tuple[Tensor, Tensor]:
    batch = batch_for(model, facts, tokenizer)
    device = model_device(model)
    logprobs, hits = [], []
    with torch.no_grad():
        for start in range(0, len(batch), batch_size):
            rows = batch[start : start + batch_size].to(device)
            logits = model(rows.tokens)
            lp, hit = scores(logits, rows)
            logprobs.append(lp.cpu())
            hits.append(hit.cpu())
    return torch.cat(logprobs), torch.cat(hits)


def answer_logprob(
    model: Model, facts: Iterable[Fact] | FactBatch, *, tokenizer: Any = None, batch_size: int = 256
) -> Float[Tensor, " fact"]:
    """Teacher-forced log P(whole answer | prompt) per fact.

    Example:
        >>> from neuronscope import FactWorld
        >>> from neuronscope.tiny import tiny_model
        >>> world = FactWorld.synthetic(n_people=10)
        >>> model = tiny_model(tokenizer=world.tokenizer)
        >>> bool((answer_logprob(model, world.facts[:4]) < 0).all())
        True
    """
    return _forward_scores(model, facts, tokenizer, batch_size)[0]


def accuracy(
    model: Model,
    facts: Iterable[Fact] | FactBatch,
    *,
    tokenizer: Any = None,
    batch_size: int = 256,
    per_fact: bool = False,
) -> float | Bool[Tensor, " fact"]:
    """Greedy exact-match accuracy of the whole answer.

    Greedy decoding reproduces the answer exactly when the argmax at every answer position,
    given the previous answer tokens, is the answer's token; that is what is checked.
    """
    hits = _forward_scores(model, facts, tokenizer, batch_size)[1]
    return hits if per_fact else float(hits.float().mean())
