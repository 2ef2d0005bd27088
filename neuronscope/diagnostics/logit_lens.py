"""Logit lens: does each layer's residual stream already prefer the gold answer over a
random same-relation distractor? (the paper's fig. 4; chance is 0.5).

For every fact, the residual stream after block ``l`` (``blocks.{l}.hook_resid_post``) at the
positions that predict the answer goes through the model's final norm and unembedding; the
teacher-forced log-probability of the whole gold answer is compared with that of a
distractor answer (another answer of the same relation, drawn with a seed). After the last
block this is the model's own choice.

Example:
    >>> import neuronscope as ns
    >>> facts = [ns.Fact("a is", "x", relation="r"), ns.Fact("b is", "y", relation="r")]
    >>> draw_distractors(facts, seed=0)
    ['y', 'x']
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from jaxtyping import Float
from torch import Tensor

from neuronscope.facts import Fact
from neuronscope.hooks import model_device, n_layers
from neuronscope.scoring import answer_token_logprobs, batch_for

__all__ = ["LogitLens", "draw_distractors", "logit_lens"]

CHANCE = 0.5


def draw_distractors(facts: Sequence[Fact], pool: Sequence[Fact] | None = None, *,
                     seed: int = 0) -> list[str]:
    """One random distractor answer per fact: an answer of another fact of ``pool`` (default
    ``facts``) with the same relation and a different answer. ``ValueError`` names a fact
    without a relation or without any such answer."""
    pool = list(pool) if pool is not None else list(facts)
    answers: dict[str, list[str]] = {}
    for f in pool:
        if f.relation and f.answer not in answers.setdefault(f.relation, []):
            answers[f.relation].append(f.answer)
    generator = torch.Generator().manual_seed(seed)
    out = []
    for index, fact in enumerate(facts):
        label = fact.id or f"#{index} ({fact.prompt!r})"
        if not fact.relation:
            raise ValueError(f"logit lens: fact {label} has no relation, so no same-relation distractor "
                             "can be drawn; give facts a relation or pass distractors=[...]")
        options = [a for a in answers.get(fact.relation, []) if a != fact.answer]
        if not options:
            raise ValueError(f"logit lens: fact {label} has no distractor: no other answer of relation "
                             f"{fact.relation!r} among the facts; pass distractors=[...] or a larger pool")
        out.append(options[int(torch.randint(len(options), (1,), generator=generator))])
    return out


@dataclass
class LogitLens:
    """Per-layer accuracy of gold vs distractor through the final norm and unembedding.

    ``margins[f, i]`` is log P(gold) - log P(distractor) of fact ``f`` read after model layer
    ``layers[i]``; ``accuracy[i]`` the fraction of facts with a positive margin (ties count
    one half); ``model_margins`` the same from the model's own logits.
    """

    layers: list[int]
    accuracy: Float[Tensor, " layer"]
    margins: Float[Tensor, "fact layer"]
    model_margins: Float[Tensor, " fact"]
    fact_ids: list[str]
    distractors: list[str]
    chance: float = CHANCE
    meta: dict = field(default_factory=dict)

    @property
    def model_accuracy(self) -> float:
        """Accuracy of the model's own logits (gold vs distractor)."""
        return float(_accuracy(self.model_margins[:, None])[0])

    def to_dict(self) -> dict:
        return {"layers": self.layers, "accuracy": self.accuracy.tolist(), "chance": self.chance,
                "model_accuracy": self.model_accuracy, "meta": self.meta}

    def to_pandas(self) -> Any:
        import pandas as pd

        return pd.DataFrame({"layer": self.layers, "accuracy": self.accuracy.numpy()})

    def __repr__(self) -> str:
        acc = ", ".join(f"{a:.2f}" for a in self.accuracy.tolist())
        return f"LogitLens({len(self.fact_ids)} facts, accuracy per layer [{acc}], chance {self.chance})"


def _accuracy(margins: Tensor) -> Tensor:
    return ((margins > 0).double() + 0.5 * (margins == 0).double()).mean(0).float()


def _lens_logprobs(model: Any, batch: Any, layers: Sequence[int], batch_size: int) -> tuple[Tensor, Tensor]:
    """Answer log-probabilities per layer [fact, layer] and from the model's logits [fact]."""
    device = model_device(model)
    per_layer, own = [], []
    names = [f"blocks.{layer}.hook_resid_post" for layer in layers]
    for start in range(0, len(batch), batch_size):
        rows = batch[start : start + batch_size].to(device)
        store: dict[str, Tensor] = {}

        def keep(name: str, store: dict = store):
            def hook(act: Tensor, hook: Any) -> None:
                store[name] = act.detach()
            return hook

        with torch.no_grad(), model.hooks(fwd_hooks=[(name, keep(name)) for name in names]):
            logits = model(rows.tokens)
            values = []
            for name in names:
                lens = model.unembed(model.ln_final(store[name]))
                picked, _ = answer_token_logprobs(lens, rows)
                values.append(picked.sum(-1))
        own.append(answer_token_logprobs(logits, rows)[0].sum(-1).cpu())
        per_layer.append(torch.stack(values, -1).cpu())
    return torch.cat(per_layer), torch.cat(own)


def logit_lens(model: Any, facts: Iterable[Fact], *, distractors: Sequence[str] | None = None,
               pool: Sequence[Fact] | None = None, layers: Sequence[int] | None = None, seed: int = 0,
               tokenizer: Any = None, batch_size: int = 64) -> LogitLens:
    """Per-layer binary accuracy of the gold answer against a distractor (chance 0.5).

    ``distractors``: one answer per fact; by default drawn (``seed``) among the other
    answers of the same relation in ``pool`` (default ``facts``).

    Example:
        >>> import neuronscope as ns
        >>> world = ns.FactWorld.synthetic(n_people=8)
        >>> org = ns.organism(world, size="tiny", cache=False, progress=False)
        >>> lens = logit_lens(org.bridge, world.facts[:6], pool=world.facts)
        >>> len(lens.accuracy) == org.bridge.cfg.n_layers
        True
    """
    facts = list(facts)
    if not facts:
        raise ValueError("facts is empty")
    if distractors is None:
        distractors = draw_distractors(facts, pool, seed=seed)
    distractors = [str(d) for d in distractors]
    if len(distractors) != len(facts):
        raise ValueError(f"distractors has {len(distractors)} entries for {len(facts)} facts")
    same = [i for i, (f, d) in enumerate(zip(facts, distractors, strict=True)) if f.answer == d]
    if same:
        raise ValueError(f"distractor of fact #{same[0]} is its own answer {distractors[same[0]]!r}")
    total = n_layers(model)
    layer_list = list(range(total)) if layers is None else sorted({int(x) for x in layers})
    if not layer_list or any(not 0 <= x < total for x in layer_list):
        raise ValueError(f"layers {layers} out of range: the model has layers 0..{total - 1}")
    gold = batch_for(model, facts, tokenizer)
    other = batch_for(model, [Fact(f.prompt, d) for f, d in zip(facts, distractors, strict=True)], tokenizer)
    gold_layers, gold_own = _lens_logprobs(model, gold, layer_list, batch_size)
    other_layers, other_own = _lens_logprobs(model, other, layer_list, batch_size)
    margins = (gold_layers - other_layers).float()
    return LogitLens(layers=layer_list, accuracy=_accuracy(margins), margins=margins,
                     model_margins=(gold_own - other_own).float(),
                     fact_ids=[f.id or f"#{i}" for i, f in enumerate(facts)], distractors=distractors,
                     meta={"seed": seed, "readout": "blocks.{l}.hook_resid_post -> ln_final -> unembed"})
