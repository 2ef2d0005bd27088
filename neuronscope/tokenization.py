"""Tokenizers and the prompt+answer batch every stage shares.

``tokenize(facts, tokenizer)`` works with the organism's :class:`WordTokenizer` and with
Hugging Face tokenizers: each row holds ``[bos] prompt answer`` right-padded, and
``answer_mask`` is True exactly at the answer's tokens.

Example:
    >>> tok = WordTokenizer.from_texts(["Ada was born in Varno"])
    >>> batch = tokenize([Fact("Ada was born in", "Varno")], tok)
    >>> batch.tokens.shape, int(batch.answer_mask.sum())
    (torch.Size([1, 6]), 1)
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from jaxtyping import Bool, Int
from torch import Tensor

from neuronscope.facts import Fact

__all__ = ["POSITIONS", "FactBatch", "WordTokenizer", "batch_from_ids", "encode_text", "pad_token_id",
           "position_mask", "tokenize"]

_WORD = re.compile(r"\w+|[^\w\s]")

POSITIONS = ("prompt", "last", "all")
"""Token positions of a fact: its prompt (BOS included), its last prompt token, every real token."""


class WordTokenizer:
    """A closed-vocabulary word-level tokenizer (one token per word or punctuation mark).

    Unknown words raise ``ValueError``: the organism can only be asked about its own world.

    Example:
        >>> tok = WordTokenizer.from_texts(["two plus two is four"])
        >>> tok.decode(tok.encode("two plus two"))
        'two plus two'
    """

    specials = ("<pad>", "<bos>", "<eos>")

    def __init__(self, vocab: Sequence[str]) -> None:
        if list(vocab[: len(self.specials)]) != list(self.specials):
            raise ValueError(f"vocab must start with the special tokens {self.specials}")
        if len(set(vocab)) != len(vocab):
            raise ValueError("vocab holds duplicate words")
        self.vocab: list[str] = list(vocab)
        self._index = {word: i for i, word in enumerate(self.vocab)}
        self.pad_token_id, self.bos_token_id, self.eos_token_id = 0, 1, 2

    @classmethod
    def from_texts(cls, texts: Iterable[str]) -> WordTokenizer:
        """Build a vocabulary from every word in ``texts`` (sorted, so order-independent)."""
        words = sorted({w for text in texts for w in _WORD.findall(text)})
        return cls([*cls.specials, *words])

    def __len__(self) -> int:
        return len(self.vocab)

    @property
    def vocab_size(self) -> int:
        return len(self.vocab)

    def split(self, text: str) -> list[str]:
        return _WORD.findall(text)

    def encode(self, text: str) -> list[int]:
        ids = []
        for word in self.split(text):
            if word not in self._index:
                raise ValueError(f"word {word!r} in {text!r} is not in the organism's vocabulary")
            ids.append(self._index[word])
        return ids

    def decode(self, ids: Iterable[int]) -> str:
        return " ".join(self.vocab[int(i)] for i in ids if int(i) >= len(self.specials))

    def to_json(self) -> str:
        return json.dumps({"kind": "word", "vocab": self.vocab})

    @classmethod
    def from_json(cls, text: str) -> WordTokenizer:
        return cls(json.loads(text)["vocab"])

    def __eq__(self, other: object) -> bool:
        return isinstance(other, WordTokenizer) and self.vocab == other.vocab

    def __hash__(self) -> int:
        return hash(tuple(self.vocab))

    def __repr__(self) -> str:
        return f"WordTokenizer({len(self.vocab)} words)"


@dataclass
class FactBatch:
    """Token ids of ``[bos] prompt answer`` per fact, right-padded, with position masks.

    Position ``t`` of ``logits`` predicts token ``t + 1``; ``answer_mask[:, t + 1]`` says
    whether that prediction is scored. ``pad_id`` fills the padding. Batches tokenized in
    separate calls join with ``a + b`` or :meth:`concat` (padded to the widest).

    Example:
        >>> tok = WordTokenizer.from_texts(["Ada lives in Varno , Bo in New Varno"])
        >>> short = tokenize([Fact("Ada lives in", "Varno")], tok)
        >>> long = tokenize([Fact("Bo lives in", "New Varno")], tok)
        >>> both = short + long
        >>> both.tokens.shape, both == tokenize([Fact("Ada lives in", "Varno"),
        ...                                      Fact("Bo lives in", "New Varno")], tok)
        (torch.Size([2, 6]), True)
    """

    tokens: Int[Tensor, "fact seq"]
    attention_mask: Bool[Tensor, "fact seq"]
    prompt_mask: Bool[Tensor, "fact seq"]
    answer_mask: Bool[Tensor, "fact seq"]
    pad_id: int = 0

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, FactBatch):
            return NotImplemented
        return self.pad_id == other.pad_id and all(
            a.shape == b.shape and torch.equal(a, b)
            for a, b in zip(self._fields(), other._fields(), strict=True))

    __hash__ = None  # type: ignore[assignment]

    def _fields(self) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        return self.tokens, self.attention_mask, self.prompt_mask, self.answer_mask

    @classmethod
    def concat(cls, batches: Iterable[FactBatch]) -> FactBatch:
        """One batch of all rows, in order, right-padded to the widest (with the first batch's
        ``pad_id``). Right padding never changes a causal model's real positions."""
        batches = list(batches)
        if not batches:
            raise ValueError("concat needs at least one FactBatch")
        if not all(isinstance(b, FactBatch) for b in batches):
            raise ValueError(f"concat joins FactBatch objects, got {[type(b).__name__ for b in batches]}")
        width = max(b.tokens.shape[1] for b in batches)
        pad_id = batches[0].pad_id

        def pad(t: Tensor, value: int | bool) -> Tensor:
            extra = width - t.shape[1]
            return t if extra == 0 else torch.cat([t, t.new_full((t.shape[0], extra), value)], 1)

        tokens = torch.cat([pad(b.tokens, pad_id) for b in batches])
        masks = [torch.cat([pad(m, False) for m in column])
                 for column in zip(*(b._fields()[1:] for b in batches), strict=True)]
        return cls(tokens, *masks, pad_id=pad_id)

    def __add__(self, other: FactBatch) -> FactBatch:
        if not isinstance(other, FactBatch):
            return NotImplemented
        return FactBatch.concat([self, other])

    @property
    def lengths(self) -> Int[Tensor, " fact"]:
        return self.attention_mask.sum(-1)

    def __len__(self) -> int:
        return self.tokens.shape[0]

    def to(self, device: torch.device | str) -> FactBatch:
        return FactBatch(*(t.to(device) for t in self._fields()), pad_id=self.pad_id)

    def __getitem__(self, index: slice | Tensor) -> FactBatch:
        rows = FactBatch(self.tokens[index], self.attention_mask[index],
                         self.prompt_mask[index], self.answer_mask[index], pad_id=self.pad_id)
        width = int(rows.lengths.max()) if len(rows) else 0
        return rows.trim(width)

    def trim(self, width: int) -> FactBatch:
        """Drop padding columns beyond ``width``."""
        return FactBatch(self.tokens[:, :width], self.attention_mask[:, :width],
                         self.prompt_mask[:, :width], self.answer_mask[:, :width], pad_id=self.pad_id)


def _bos_id(tokenizer: Any) -> int | None:
    return getattr(tokenizer, "bos_token_id", None)


def pad_token_id(tokenizer: Any) -> int:
    """The id used for right padding: the tokenizer's pad, else its end, else its start token, else 0."""
    for name in ("pad_token_id", "eos_token_id", "bos_token_id"):
        value = getattr(tokenizer, name, None)
        if value is not None:
            return int(value)
    return 0


def encode_text(tokenizer: Any, text: str) -> list[int]:
    """Token ids of ``text`` without special tokens, for either tokenizer kind."""
    if isinstance(tokenizer, WordTokenizer):
        return tokenizer.encode(text)
    try:
        return list(tokenizer(text, add_special_tokens=False)["input_ids"])
    except TypeError:
        return list(tokenizer.encode(text))


def tokenize(
    facts: Iterable[Fact],
    tokenizer: Any,
    *,
    max_length: int | None = None,
    prepend_bos: bool = True,
) -> FactBatch:
    """Tokenise facts into one right-padded batch of ``[bos] prompt answer``.

    The answer is encoded as ``" " + answer`` so that BPE tokenizers see a word boundary.
    ``max_length`` (the model's context) is checked for every fact before anything else.

    Example:
        >>> tok = WordTokenizer.from_texts(["Ada lives in New Varno"])
        >>> b = tokenize([Fact("Ada lives in", "New Varno")], tok)
        >>> b.tokens[0][b.answer_mask[0]].tolist() == tok.encode("New Varno")
        True
    """
    facts = list(facts)
    if not facts:
        raise ValueError("cannot tokenize an empty fact set")
    bos = _bos_id(tokenizer) if prepend_bos else None
    rows: list[tuple[list[int], list[int]]] = []
    for index, fact in enumerate(facts):
        label = fact.id or f"#{index} ({fact.prompt!r})"
        prompt_ids = encode_text(tokenizer, fact.prompt)
        answer_ids = encode_text(tokenizer, " " + fact.answer.strip())
        if bos is not None:
            prompt_ids = [int(bos), *prompt_ids]
        if not answer_ids:
            raise ValueError(f"fact {label}: answer {fact.answer!r} tokenizes to nothing")
        if not prompt_ids:
            raise ValueError(f"fact {label}: prompt tokenizes to nothing and there is no BOS")
        total = len(prompt_ids) + len(answer_ids)
        if max_length is not None and total > max_length:
            raise ValueError(
                f"fact {label}: prompt plus answer is {total} tokens, longer than the "
                f"model's context of {max_length}"
            )
        rows.append((prompt_ids, answer_ids))
    return batch_from_ids(rows, pad_token_id(tokenizer))


def batch_from_ids(rows: Sequence[tuple[list[int], list[int]]], pad_id: int) -> FactBatch:
    """A right-padded :class:`FactBatch` from ``(prompt ids, answer ids)`` pairs.

    Example:
        >>> batch_from_ids([([5, 6], [7]), ([5], [8, 9])], pad_id=0).tokens.tolist()
        [[5, 6, 7], [5, 8, 9]]
    """
    width = max(len(p) + len(a) for p, a in rows)
    n = len(rows)
    tokens = torch.full((n, width), pad_id, dtype=torch.long)
    attention = torch.zeros((n, width), dtype=torch.bool)
    prompt_mask = torch.zeros((n, width), dtype=torch.bool)
    answer_mask = torch.zeros((n, width), dtype=torch.bool)
    for row, (prompt_ids, answer_ids) in enumerate(rows):
        p, a = len(prompt_ids), len(answer_ids)
        tokens[row, : p + a] = torch.tensor(prompt_ids + answer_ids)
        attention[row, : p + a] = True
        prompt_mask[row, :p] = True
        answer_mask[row, p : p + a] = True
    return FactBatch(tokens, attention, prompt_mask, answer_mask, pad_id=pad_id)


def position_mask(batch: FactBatch, positions: str, width: int | None = None) -> Bool[Tensor, "fact seq"]:
    """The token positions ``positions`` of each row: ``"prompt"`` (BOS and the prompt tokens: the
    context the model reads before the answer), ``"last"`` (the last prompt token only) or
    ``"all"`` (every real token, the answer's included). With ``width``, the mask is cut or
    padded with False to that many columns (for activations narrower or wider than the batch).

    Example:
        >>> tok = WordTokenizer.from_texts(["Ada was born in Varno"])
        >>> batch = tokenize([Fact("Ada was born in", "Varno")], tok)    # [bos] Ada was born in Varno
        >>> position_mask(batch, "last").int().tolist(), position_mask(batch, "all", width=7).sum().item()
        ([[0, 0, 0, 0, 1, 0]], 6)
    """
    if positions == "prompt":
        mask = batch.prompt_mask.clone()
    elif positions == "last":
        mask = torch.zeros_like(batch.prompt_mask)
        rows = torch.arange(len(batch), device=mask.device)
        mask[rows, batch.prompt_mask.sum(-1) - 1] = True
    elif positions == "all":
        mask = batch.attention_mask.clone()
    else:
        raise ValueError(f"unknown positions {positions!r}; expected one of {POSITIONS}")
    if width is not None and width != mask.shape[1]:
        full = torch.zeros(mask.shape[0], width, dtype=torch.bool, device=mask.device)
        take = min(width, mask.shape[1])
        full[:, :take] = mask[:, :take]
        mask = full
    return mask
