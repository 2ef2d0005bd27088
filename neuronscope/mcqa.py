"""Multiple-choice question answering (MCQA): 3-option accuracy by option likelihood.

Each fact offers its answer and the first ``n_options - 1`` distractors of
``fact.meta["distractors"]``, in a seeded per-fact order. The model picks the option it finds
most likely; chance is ``1 / n_options``. Three styles:

- ``"completion"``: log P(`` option`` | ``[bos] prompt``), the plain-text completion;
- ``"chat"``: the question (``meta["question"]``, else the prompt) as the user turn of the
  tokenizer's chat template and log P(option) as the assistant's reply;
- ``"letters"``: the paper's instruction template (its table 3): the question, "Select a
  proper answer among the given options." and the options as ``A. ... B. ... C. ...`` in the
  user turn; the model picks the letter with the highest next-token probability.

``normalize="mean"`` divides an option's log-probability by its number of tokens (``"sum"``
keeps the total; letters are one token either way). :func:`mcqa_metric` wraps the scorer as
a ``(model, facts) -> float`` metric, e.g. for the stop rule of :func:`neuronscope.unlearn`.

Example:
    >>> fact = Fact("The capital of France is", "Paris",
    ...             meta={"distractors": ["Berlin", "Madrid"]})
    >>> options, correct = mcqa_options(fact, seed=0)
    >>> sorted(options), options[correct]
    (['Berlin', 'Madrid', 'Paris'], 'Paris')
    >>> round(chance(3), 4)
    0.3333
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Literal

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

from neuronscope.facts import Fact, FactSet
from neuronscope.hooks import model_device
from neuronscope.scoring import answer_token_logprobs, get_tokenizer, model_context
from neuronscope.tokenization import WordTokenizer, batch_from_ids, encode_text, pad_token_id

__all__ = ["INSTRUCTION", "LETTERS", "STYLES", "chance", "check_mcqa", "mcqa_accuracy", "mcqa_metric",
           "mcqa_options", "mcqa_scores", "with_distractors"]

STYLES = ("completion", "chat", "letters")
LETTERS = "ABCDEFGH"
INSTRUCTION = "Select a proper answer among the given options."

Style = Literal["completion", "chat", "letters"]


def chance(n_options: int = 3) -> float:
    """The accuracy of a random pick among ``n_options``."""
    return 1.0 / n_options


def _label(fact: Fact, index: int) -> str:
    return fact.id or f"#{index} ({fact.prompt!r})"


def check_mcqa(facts: Iterable[Fact], n_options: int = 3) -> FactSet:
    """The facts as a FactSet, or ``ValueError`` naming the first fact without usable options.

    Every fact needs ``meta["distractors"]`` with at least ``n_options - 1`` distinct non-empty
    strings, none equal to the answer (compared case-insensitively, spaces trimmed).
    """
    if isinstance(n_options, bool) or not isinstance(n_options, int) or not 2 <= n_options <= len(LETTERS):
        raise ValueError(f"n_options must be an integer in [2, {len(LETTERS)}], got {n_options!r}")
    facts = facts if isinstance(facts, FactSet) else FactSet(list(facts))
    if len(facts) == 0:
        raise ValueError("MCQA needs at least one fact")
    for index, fact in enumerate(facts):
        distractors = fact.meta.get("distractors")
        if not isinstance(distractors, (list, tuple)) or not all(
                isinstance(d, str) and d.strip() for d in distractors):
            raise ValueError(f"fact {_label(fact, index)}: MCQA needs meta['distractors'], a list of "
                             f"non-empty strings; got {distractors!r}")
        chosen = [d.strip() for d in distractors[: n_options - 1]]
        if len(chosen) < n_options - 1:
            raise ValueError(f"fact {_label(fact, index)}: {n_options}-option MCQA needs "
                             f"{n_options - 1} distractors, it has {len(chosen)}")
        keys = [fact.answer.strip().casefold()] + [d.casefold() for d in chosen]
        if keys[0] in keys[1:]:
            raise ValueError(f"fact {_label(fact, index)}: a distractor repeats the answer "
                             f"{fact.answer!r}: {chosen}")
        if len(set(keys)) < len(keys):
            raise ValueError(f"fact {_label(fact, index)}: repeated distractors {chosen}")
    return facts


def mcqa_options(fact: Fact, *, n_options: int = 3, seed: int = 0) -> tuple[list[str], int]:
    """The options of ``fact`` in a seeded order (same fact and seed, same order) and the
    index of the answer among them."""
    check_mcqa([fact], n_options)
    options = [fact.answer.strip()] + [d.strip() for d in fact.meta["distractors"][: n_options - 1]]
    key = f"{seed}:{fact.id or fact.prompt}".encode()
    order = list(range(n_options))
    random.Random(int(hashlib.sha256(key).hexdigest()[:16], 16)).shuffle(order)
    return [options[i] for i in order], order.index(0)


def with_distractors(facts: Iterable[Fact], *, k: int = 2, seed: int = 0) -> FactSet:
    """Facts with ``meta["distractors"]`` filled from other answers of the same relation.

    For fact sets without shipped distractors (e.g. the synthetic world); each fact draws
    ``k`` distinct answers of its relation that differ from its own (seeded).

    Example:
        >>> fs = FactSet([Fact(f"p{i} plays the", a, relation="instrument", id=f"f{i}")
        ...               for i, a in enumerate(["harp", "oboe", "flute", "harp"])])
        >>> sorted(with_distractors(fs, k=2, seed=0)[0].meta["distractors"])
        ['flute', 'oboe']
    """
    facts = list(facts)
    values: dict[str, list[str]] = {}
    for fact in facts:
        pool = values.setdefault(fact.relation, [])
        if fact.answer.strip() not in pool:
            pool.append(fact.answer.strip())
    rng = random.Random(seed)
    out = []
    for index, fact in enumerate(facts):
        pool = [v for v in values[fact.relation] if v.casefold() != fact.answer.strip().casefold()]
        if len(pool) < k:
            raise ValueError(f"fact {_label(fact, index)}: relation {fact.relation!r} has only "
                             f"{len(pool)} other answers; {k} distractors needed")
        out.append(Fact(fact.prompt, fact.answer, fact.subject, fact.relation, fact.id, fact.group,
                        {**fact.meta, "distractors": rng.sample(pool, k)}))
    return FactSet(out, name=getattr(facts, "name", ""))


def _chat_prefix(tokenizer: Any, user: str) -> list[int]:
    template = getattr(tokenizer, "chat_template", None)
    if isinstance(tokenizer, WordTokenizer) or not template:
        raise ValueError("MCQA styles 'chat' and 'letters' need a tokenizer with a chat template; "
                         "use style='completion'")
    text = tokenizer.apply_chat_template([{"role": "user", "content": user}], tokenize=False,
                                         add_generation_prompt=True)
    return encode_text(tokenizer, text)


def _question(fact: Fact) -> str:
    return str(fact.meta.get("question") or fact.prompt).strip()


def letters_prompt(fact: Fact, options: Sequence[str]) -> str:
    """The user turn of the ``"letters"`` style."""
    listed = "\n".join(f"{LETTERS[i]}. {option}" for i, option in enumerate(options))
    return f"{_question(fact)}\n{INSTRUCTION}\n{listed}\nAnswer with the letter only."


def _rows(facts: FactSet, tokenizer: Any, style: str, n_options: int, seed: int
          ) -> tuple[list[list[int]], list[list[list[int]]], list[int]]:
    """Per fact: the context ids, each option's ids, and the answer's index."""
    bos = getattr(tokenizer, "bos_token_id", None)
    letter_ids = None
    if style == "letters":
        letter_ids = [encode_text(tokenizer, LETTERS[i]) for i in range(n_options)]
        if any(len(ids) != 1 for ids in letter_ids):
            raise ValueError(f"MCQA style 'letters' needs each of {LETTERS[:n_options]!r} to be one "
                             f"token; this tokenizer splits them")
    contexts, option_ids, answers = [], [], []
    for fact in facts:
        options, correct = mcqa_options(fact, n_options=n_options, seed=seed)
        if style == "completion":
            context = ([int(bos)] if bos is not None else []) + encode_text(tokenizer, fact.prompt)
            ids = [encode_text(tokenizer, " " + option) for option in options]
        elif style == "chat":
            context = _chat_prefix(tokenizer, _question(fact))
            ids = [encode_text(tokenizer, option) for option in options]
        else:
            context = _chat_prefix(tokenizer, letters_prompt(fact, options))
            ids = list(letter_ids)
        contexts.append(context)
        option_ids.append(ids)
        answers.append(correct)
    return contexts, option_ids, answers


def mcqa_scores(
    model: Any,
    facts: Iterable[Fact],
    *,
    style: Style = "completion",
    n_options: int = 3,
    normalize: Literal["sum", "mean"] = "sum",
    seed: int = 0,
    batch_size: int = 32,
    tokenizer: Any = None,
) -> tuple[Float[Tensor, "fact option"], Int[Tensor, " fact"]]:
    """Each option's score (log-probability, per token with ``normalize="mean"``) and the
    index of the right option, per fact; options in :func:`mcqa_options` order.

    Rows are scored in batches sorted by length (little padding), on the model's device.
    """
    if style not in STYLES:
        raise ValueError(f"style must be one of {STYLES}, got {style!r}")
    if normalize not in ("sum", "mean"):
        raise ValueError(f"normalize must be 'sum' or 'mean', got {normalize!r}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    facts = check_mcqa(facts, n_options)
    tokenizer = get_tokenizer(model, tokenizer)
    contexts, option_ids, answers = _rows(facts, tokenizer, style, n_options, seed)
    limit = model_context(model)
    if limit is not None:
        for index, (context, ids) in enumerate(zip(contexts, option_ids, strict=True)):
            longest = len(context) + max(len(o) for o in ids)
            if longest > limit:
                raise ValueError(f"fact {_label(facts[index], index)}: the {style} MCQA row is "
                                 f"{longest} tokens, longer than the model's context of {limit}")
    if style == "letters":  # one row per fact: the next-token log-probabilities of the letters
        rows = [(context, []) for context in contexts]
        letters = torch.tensor([ids[0] for ids in option_ids[0]])
        values = _letters(model, rows, letters, pad_token_id(tokenizer), batch_size)
    else:
        rows = [(context, ids) for context, ids in zip(contexts, option_ids, strict=True)
                for ids in ids]
        values = _option_logprobs(model, rows, pad_token_id(tokenizer), batch_size, normalize == "mean")
        values = values.view(len(facts), n_options)
    return values, torch.tensor(answers, dtype=torch.long)


def _option_logprobs(model: Any, rows: list[tuple[list[int], list[int]]], pad: int, batch_size: int,
                     mean: bool) -> Float[Tensor, " row"]:
    order = sorted(range(len(rows)), key=lambda i: len(rows[i][0]) + len(rows[i][1]))
    out = torch.empty(len(rows), dtype=torch.float64)
    device = model_device(model)
    with torch.no_grad():
        for start in range(0, len(order), batch_size):
            chunk = order[start : start + batch_size]
            batch = batch_from_ids([rows[i] for i in chunk], pad).to(device)
            picked, mask = answer_token_logprobs(model(batch.tokens), batch)
            total = picked.sum(-1).double()
            if mean:
                total = total / mask.sum(-1)
            out[torch.tensor(chunk)] = total.cpu()
    return out


def _letters(model: Any, rows: list[tuple[list[int], list[int]]], letters: Int[Tensor, " option"],
             pad: int, batch_size: int) -> Float[Tensor, "fact option"]:
    order = sorted(range(len(rows)), key=lambda i: len(rows[i][0]))
    out = torch.empty(len(rows), len(letters), dtype=torch.float64)
    device = model_device(model)
    with torch.no_grad():
        for start in range(0, len(order), batch_size):
            chunk = order[start : start + batch_size]
            batch = batch_from_ids([rows[i] for i in chunk], pad).to(device)
            logits = model(batch.tokens)
            last = batch.lengths - 1
            logp = logits[torch.arange(len(chunk), device=device), last].float().log_softmax(-1)
            out[torch.tensor(chunk)] = logp[:, letters.to(device)].double().cpu()
    return out


def mcqa_accuracy(
    model: Any,
    facts: Iterable[Fact],
    *,
    style: Style = "completion",
    n_options: int = 3,
    normalize: Literal["sum", "mean"] = "sum",
    seed: int = 0,
    batch_size: int = 32,
    tokenizer: Any = None,
    per_fact: bool = False,
) -> float | Bool[Tensor, " fact"]:
    """The fraction of facts whose answer scores highest among the options (chance
    ``1 / n_options``); ``per_fact=True`` gives the hits. A tie counts as a miss."""
    values, answers = mcqa_scores(model, facts, style=style, n_options=n_options, normalize=normalize,
                                  seed=seed, batch_size=batch_size, tokenizer=tokenizer)
    right = values.gather(1, answers[:, None])
    others = values.clone()
    others.scatter_(1, answers[:, None], float("-inf"))
    hits = right.squeeze(1) > others.max(1).values
    return hits if per_fact else float(hits.float().mean())


def mcqa_metric(**settings: Any) -> Callable[[Any, FactSet], float]:
    """``(model, facts) -> MCQA accuracy`` with fixed ``settings`` (those of :func:`mcqa_accuracy`);
    ``metric.per_fact(model, facts)`` gives the hits per fact.

    Example:
        >>> metric = mcqa_metric(style="completion")
        >>> metric.settings
        {'style': 'completion'}
    """
    bad = set(settings) - {"style", "n_options", "normalize", "seed", "batch_size", "tokenizer"}
    if bad:
        raise ValueError(f"unknown MCQA setting(s) {sorted(bad)}")
    if settings.get("style", "completion") not in STYLES:
        raise ValueError(f"style must be one of {STYLES}, got {settings['style']!r}")

    def metric(model: Any, facts: FactSet) -> float:
        return float(mcqa_accuracy(model, facts, **settings))

    def per_fact(model: Any, facts: FactSet) -> Tensor:
        return mcqa_accuracy(model, facts, per_fact=True, **settings)

    metric.settings = dict(settings)  # type: ignore[attr-defined]
    metric.per_fact = per_fact  # type: ignore[attr-defined]
    metric.__name__ = "mcqa_accuracy"
    return metric
