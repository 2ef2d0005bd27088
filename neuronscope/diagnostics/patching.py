"""Activation patching of chosen MLP neurons, and the causal test behind ``Diagnosis.verify``.

``restore`` neurons in the unlearned model to the original model's activations (or to their
mean over control facts) and measure how far forget accuracy and answer probability come back;
compare with random neuron sets matched in size per layer. The reverse patches the unlearned
activations into the original model and measures the suppression. The models are never
modified: every hook is added inside the bridge's ``hooks(...)`` context, which removes it on
exit, also when an exception passes through.

Example:
    >>> from neuronscope import FactWorld
    >>> from neuronscope.tiny import tiny_model
    >>> world = FactWorld.synthetic(n_people=10)
    >>> before = tiny_model(tokenizer=world.tokenizer, seed=0)      # stand-ins for a model and
    >>> after = tiny_model(tokenizer=world.tokenizer, seed=1)       # its unlearned version
    >>> v = verify_neurons(before, after, world.facts[:6], [(1, 17)], n_random=4)
    >>> len(v.random_restored), v.restored._fields
    (4, ('accuracy', 'probability'))
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, NamedTuple

import torch
from jaxtyping import Bool, Float
from torch import Tensor

from neuronscope.attribution.sites import site_hook_name
from neuronscope.facts import Fact
from neuronscope.hooks import d_mlp, mlp_hook_name, mlp_hook_names, model_device
from neuronscope.scoring import batch_for, scores
from neuronscope.tokenization import POSITIONS, FactBatch, position_mask

__all__ = ["RESTORES", "Verification", "chunked", "matched_random_sets", "mlp_activations", "patch_from",
           "patched_scores", "position_mask", "site_activations", "verify_neurons"]

RESTORES = ("original", "control_mean")

Chunks = list[FactBatch]
# per chunk: layer -> activations [fact, seq, neuron] of that chunk
ChunkActs = list[dict[int, Tensor]]
# layer -> (neuron indices, per chunk values [fact, seq, k] or one [k] vector for every chunk);
# the key may also be a hook name (a site other than the MLP neurons, units flattened)
Patch = dict[Any, tuple[Tensor, list[Tensor] | Tensor]]


def chunked(batch: FactBatch, batch_size: int) -> Chunks:
    """A batch as consecutive chunks of at most ``batch_size`` facts, the unit that
    :func:`mlp_activations` and :func:`patched_scores` work in.

    Example::

        chunks = chunked(batch_for(model, forget), 16)
        patched_scores(model, chunks, {}, "all")      # no patch: the model's own scores
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    return [batch[start : start + batch_size] for start in range(0, len(batch), batch_size)]


def mlp_activations(model: Any, chunks: Chunks, layers: Iterable[int]) -> ChunkActs:
    """MLP neuron activations (``hook_post``) of ``layers`` for each chunk of facts."""
    layers = sorted(set(layers))
    names = mlp_hook_names(model, layers)
    device = model_device(model)
    out: ChunkActs = []
    for rows in chunks:
        store: dict[int, Tensor] = {}

        def grab(act: Tensor, hook: Any, store: dict = store) -> None:
            store[int(hook.name.split(".")[1])] = act.detach().float().cpu()

        with torch.no_grad(), model.hooks(fwd_hooks=[(name, grab) for name in names]):
            model(rows.tokens.to(device))
        missing = [layer for layer in layers if layer not in store]
        if missing:
            raise RuntimeError(f"hooks of layers {missing} did not fire")
        out.append(store)
    return out


def patched_scores(model: Any, chunks: Chunks, patch: Patch, positions: str = "prompt"
                   ) -> tuple[Float[Tensor, " fact"], Bool[Tensor, " fact"]]:
    """``(log P(answer), exact match)`` per fact with ``patch`` applied at ``positions``."""
    device = model_device(model)
    logprobs, hits = [], []
    for index, rows in enumerate(chunks):
        mask = position_mask(rows, positions).to(device)
        hooks = []
        for layer, (neurons, values) in patch.items():
            chunk_values = values[index] if isinstance(values, list) else values
            hooks.append((layer if isinstance(layer, str) else mlp_hook_name(layer),
                          _replace_hook(neurons.to(device), chunk_values.to(device), mask)))
        with torch.no_grad(), model.hooks(fwd_hooks=hooks):
            logits = model(rows.tokens.to(device))
        lp, hit = scores(logits, rows.to(device))
        logprobs.append(lp.cpu())
        hits.append(hit.cpu())
    return torch.cat(logprobs), torch.cat(hits)


def _replace_hook(neurons: Tensor, values: Tensor, mask: Tensor):
    def hook(act: Tensor, hook: Any) -> Tensor:
        flat = act.reshape(act.shape[0], act.shape[1], -1).clone()  # per-head sites: flatten the units
        current = flat[..., neurons]
        new = values.to(act.dtype).expand_as(current)
        flat[..., neurons] = torch.where(mask[..., None], new, current)
        return flat.view(act.shape)

    return hook


def matched_random_sets(neurons: Sequence[tuple[Any, int]], width: int | dict, n_sets: int, seed: int
                        ) -> list[list[tuple[Any, int]]]:
    """``n_sets`` random neuron sets with the same count per layer as ``neurons``, drawn
    (seeded) from the same layers without the given neurons. ``width`` may be a dict per
    layer key (sites of different widths).

    Example:
        >>> sets = matched_random_sets([(0, 1), (1, 2), (1, 3)], width=8, n_sets=2, seed=0)
        >>> [sorted({layer for layer, _ in s}) for s in sets], [len(s) for s in sets]
        ([[0, 1], [0, 1]], [3, 3])
    """
    per_layer: dict[Any, set[int]] = {}
    for layer, neuron in neurons:
        per_layer.setdefault(layer if isinstance(layer, str) else int(layer), set()).add(int(neuron))
    widths = width if isinstance(width, dict) else dict.fromkeys(per_layer, width)
    for layer, chosen in per_layer.items():
        width = widths[layer]
        if width - len(chosen) < len(chosen):
            raise ValueError(f"layer {layer}: {len(chosen)} neurons chosen of {width}; too few others "
                             "left to draw matched random sets from")
    generator = torch.Generator().manual_seed(seed)
    sets = []
    for _ in range(n_sets):
        drawn: list[tuple[int, int]] = []
        for layer in sorted(per_layer, key=str):
            chosen = per_layer[layer]
            pool = torch.tensor([n for n in range(widths[layer]) if n not in chosen])
            pick = pool[torch.randperm(len(pool), generator=generator)[: len(chosen)]]
            drawn.extend((layer, int(n)) for n in sorted(pick.tolist()))
        sets.append(drawn)
    return sets


def _group(neurons: Sequence[tuple[Any, int]]) -> dict[Any, Tensor]:
    per_layer: dict[Any, list[int]] = {}
    for layer, neuron in neurons:
        per_layer.setdefault(layer if isinstance(layer, str) else int(layer), []).append(int(neuron))
    return {layer: torch.tensor(sorted(ns)) for layer, ns in per_layer.items()}


def patch_from(acts: ChunkActs, neurons: Sequence[tuple[int, int]]) -> Patch:
    """A patch for :func:`patched_scores` that sets ``neurons`` (``(layer, neuron)`` pairs) to
    their values in ``acts`` (from :func:`mlp_activations` of another model on the same chunks).

    Example::

        acts = mlp_activations(other, chunks, [1])
        patched_scores(model, chunks, patch_from(acts, [(1, 5), (1, 7)]), "all")
    """
    return {layer: (idx, [chunk[layer][..., idx] for chunk in acts])
            for layer, idx in _group(neurons).items()}


def _patch_mean(means: dict[int, Tensor], neurons: Sequence[tuple[int, int]]) -> Patch:
    return {layer: (idx, means[layer][idx]) for layer, idx in _group(neurons).items()}


class Score(NamedTuple):
    """Greedy exact-match accuracy and mean P(answer) of one model state on the facts.

    Example:
        >>> Score(0.5, 0.25)
        Score(accuracy=0.5, probability=0.25)
    """

    accuracy: float
    probability: float


def _metrics(logprob: Tensor, hits: Tensor) -> Score:
    return Score(float(hits.float().mean()), float(logprob.exp().mean()))


@dataclass
class Verification:
    """Outcome of the causal test of one neuron set (see :func:`verify_neurons`).

    Every state is a :class:`Score` ``(accuracy, probability)``: accuracy is greedy exact
    match, probability the mean P(answer) over the facts. ``before`` / ``after``: the original
    and unlearned models; ``restored``: the unlearned model with the tested neurons restored;
    ``suppressed``: the original model with them patched to their unlearned values;
    ``random_restored`` / ``random_suppressed``: the same per random neuron set.
    """

    neurons: list[tuple[int, int]]
    restore: str
    positions: str
    n_random: int
    seed: int
    n_facts: int
    before: Score
    after: Score
    restored: Score
    suppressed: Score
    random_restored: list[Score] = field(default_factory=list)
    random_suppressed: list[Score] = field(default_factory=list)

    def __post_init__(self) -> None:
        for key in ("before", "after", "restored", "suppressed"):
            setattr(self, key, Score(*getattr(self, key)))
        for key in ("random_restored", "random_suppressed"):
            setattr(self, key, [Score(*v) for v in getattr(self, key)])

    # --- effects and empirical p-values -------------------------------------------------
    @property
    def rebound_accuracy(self) -> float:
        return self.restored[0] - self.after[0]

    @property
    def rebound_probability(self) -> float:
        return self.restored[1] - self.after[1]

    @property
    def suppression_accuracy(self) -> float:
        return self.before[0] - self.suppressed[0]

    @property
    def suppression_probability(self) -> float:
        return self.before[1] - self.suppressed[1]

    def _p(self, observed: float, values: list[float]) -> float:
        return (1 + sum(v >= observed - 1e-12 for v in values)) / (1 + len(values))

    @property
    def p_accuracy(self) -> float:
        """(1 + #random sets with a rebound >= the observed) / (1 + n_random)."""
        return self._p(self.rebound_accuracy, [a - self.after[0] for a, _ in self.random_restored])

    @property
    def p_probability(self) -> float:
        return self._p(self.rebound_probability, [p - self.after[1] for _, p in self.random_restored])

    @property
    def p_suppression_accuracy(self) -> float:
        return self._p(self.suppression_accuracy, [self.before[0] - a for a, _ in self.random_suppressed])

    @property
    def p_suppression_probability(self) -> float:
        return self._p(self.suppression_probability,
                       [self.before[1] - p for _, p in self.random_suppressed])

    @property
    def recovered_fraction(self) -> float:
        """Rebound of accuracy as a fraction of what unlearning removed (NaN if nothing)."""
        lost = self.before[0] - self.after[0]
        return self.rebound_accuracy / lost if lost > 0 else float("nan")

    def random_mean(self) -> dict[str, float]:
        n = max(1, len(self.random_restored))
        return {
            "rebound_accuracy": sum(a for a, _ in self.random_restored) / n - self.after[0],
            "rebound_probability": sum(p for _, p in self.random_restored) / n - self.after[1],
            "suppression_accuracy": self.before[0] - sum(a for a, _ in self.random_suppressed) / n,
            "suppression_probability": self.before[1] - sum(p for _, p in self.random_suppressed) / n,
        }

    def summary(self) -> str:
        rnd = self.random_mean()
        return "\n".join([
            f"causal test of {len(self.neurons)} neuron(s) on {self.n_facts} facts "
            f"(restore={self.restore}, positions={self.positions}, {self.n_random} matched random sets)",
            f"  forget accuracy  before {self.before[0]:.3f}  after {self.after[0]:.3f}  "
            f"after+restored {self.restored[0]:.3f}",
            f"  rebound: accuracy {self.rebound_accuracy:+.3f} (random {rnd['rebound_accuracy']:+.3f}, "
            f"p = {self.p_accuracy:.3f}); probability {self.rebound_probability:+.4f} "
            f"(random {rnd['rebound_probability']:+.4f}, p = {self.p_probability:.3f})",
            f"  reverse (unlearned activations patched into the original): suppression accuracy "
            f"{self.suppression_accuracy:+.3f} (random {rnd['suppression_accuracy']:+.3f}, "
            f"p = {self.p_suppression_accuracy:.3f}); probability {self.suppression_probability:+.4f} "
            f"(p = {self.p_suppression_probability:.3f})",
        ])

    def __repr__(self) -> str:
        return (f"Verification({len(self.neurons)} neurons, rebound accuracy {self.rebound_accuracy:+.3f} "
                f"p={self.p_accuracy:.3f}, rebound probability {self.rebound_probability:+.4f} "
                f"p={self.p_probability:.3f})")

    def to_pandas(self) -> Any:
        """One row per neuron set: the tested set first, then each random set, with the
        restored (unlearned model) and suppressed (original model) accuracy and probability."""
        import pandas as pd

        rows = [("tested", self.restored, self.suppressed)]
        rows += [(f"random {i}", r, p) for i, (r, p) in enumerate(zip(self.random_restored,
                                                                      self.random_suppressed, strict=True))]
        return pd.DataFrame([{
            "set": name, "restored_accuracy": r[0], "restored_probability": r[1],
            "rebound_accuracy": r[0] - self.after[0], "rebound_probability": r[1] - self.after[1],
            "suppressed_accuracy": p[0], "suppressed_probability": p[1],
        } for name, r, p in rows])

    def _repr_html_(self) -> str:
        return (f"<div><b>Verification</b> of {len(self.neurons)} neuron(s) against {self.n_random} "
                f"random sets: rebound accuracy <b>{self.rebound_accuracy:+.3f}</b> "
                f"(p = {self.p_accuracy:.3f}), probability {self.rebound_probability:+.4f} "
                f"(p = {self.p_probability:.3f}); reverse "
                f"suppression {self.suppression_accuracy:+.3f} (p = {self.p_suppression_accuracy:.3f})</div>")

    def to_dict(self) -> dict:
        record = asdict(self)
        record["neurons"] = [list(n) for n in self.neurons]
        return json.loads(json.dumps(record))

    @classmethod
    def from_dict(cls, record: dict) -> Verification:
        record = dict(record)
        record["neurons"] = [tuple(n) for n in record["neurons"]]
        for key in ("before", "after", "restored", "suppressed"):
            record[key] = tuple(record[key])
        for key in ("random_restored", "random_suppressed"):
            record[key] = [tuple(v) for v in record[key]]
        return cls(**record)


def _slots(neurons: Sequence[tuple[int, int]], sites: Sequence[tuple[str, int]]
           ) -> tuple[list[tuple[str, int]], dict[str, int]]:
    """(layer, unit) pairs on a concatenated site axis -> (hook name, index in the site), and
    each hook's width."""
    out, widths = [], {}
    for layer, unit in neurons:
        start = 0
        for site, width in sites:
            if start <= unit < start + width:
                name = site_hook_name(site, layer)
                out.append((name, unit - start))
                break
            start += width
    for layer in {layer for layer, _ in neurons}:
        for site, width in sites:
            widths[site_hook_name(site, layer)] = int(width)
    return out, widths


def site_activations(model: Any, chunks: Chunks, names: Iterable[str]) -> ChunkActs:
    """Activations ``[fact, seq, unit]`` (units flattened) at hook ``names``, per chunk."""
    names = sorted(set(names))
    device = model_device(model)
    out: list = []
    for rows in chunks:
        store: dict = {}

        def grab(name: str, store: dict = store):
            def hook(act: Tensor, hook: Any) -> None:
                store[name] = act.detach().reshape(act.shape[0], act.shape[1], -1).float().cpu()
            return hook

        with torch.no_grad(), model.hooks(fwd_hooks=[(name, grab(name)) for name in names]):
            model(rows.tokens.to(device))
        missing = [name for name in names if name not in store]
        if missing:
            raise RuntimeError(f"hooks {missing[:3]} did not fire")
        out.append(store)
    return out


def check_neurons(neurons: Sequence[tuple[int, int]], model: Any,
                  sites: Sequence[tuple[str, int]] | None = None) -> list[tuple[int, int]]:
    """Validate (layer, neuron) pairs against the model (``neuron`` on the concatenated
    ``sites`` axis when given)."""
    width = d_mlp(model) if sites is None else sum(int(w) for _, w in sites)
    layers = int(model.cfg.n_layers)
    out = []
    for pair in neurons:
        layer, neuron = (int(v) for v in pair)
        if not (0 <= layer < layers and 0 <= neuron < width):
            raise ValueError(f"neuron {(layer, neuron)} does not exist: the model has layers 0..{layers - 1}"
                             f" and {'MLP width' if sites is None else 'site units'} {width}")
        out.append((layer, neuron))
    if not out:
        raise ValueError("no neurons to verify (nothing flagged?); pass neurons=[(layer, neuron), ...]")
    if len(set(out)) != len(out):
        raise ValueError("neurons repeat a (layer, neuron) pair")
    return out


def verify_neurons(
    before: Any,
    after: Any,
    facts: Iterable[Fact],
    neurons: Sequence[tuple[int, int]],
    *,
    n_random: int = 20,
    seed: int = 0,
    restore: str = "original",
    control: Iterable[Fact] | None = None,
    positions: str = "prompt",
    tokenizer: Any = None,
    batch_size: int = 64,
    sites: Sequence[tuple[str, int]] | None = None,
) -> Verification:
    """The causal test: restore ``neurons`` in ``after`` and patch them into ``before``.

    ``restore="original"`` sets the neurons of the unlearned model, at ``positions``, to the
    original model's activations on the same facts; ``"control_mean"`` sets them to their mean
    activation in the unlearned model over ``control`` facts (all real tokens). Each of
    ``n_random`` random sets (same count per layer, other neurons) gets the same treatment.
    ``sites``: the ``(site, width)`` layout of a diagnosis over other sites than the MLP
    neurons; ``neurons`` are then ``(layer, unit)`` pairs on that concatenated axis, and the
    random sets are matched per site and layer.
    """
    if restore not in RESTORES:
        raise ValueError(f"restore must be one of {RESTORES}, got {restore!r}")
    if positions not in POSITIONS:
        raise ValueError(f"unknown positions {positions!r}; expected one of {POSITIONS}")
    if not isinstance(n_random, int) or n_random < 1:
        raise ValueError(f"n_random must be a positive integer, got {n_random!r}")
    neurons = check_neurons(neurons, after, sites)
    facts = list(facts)
    if not facts:
        raise ValueError("no facts to verify on")
    if restore == "control_mean":
        control = list(control) if control is not None else []
        if not control:
            raise ValueError("restore='control_mean' needs control facts (control=...)")
    batch = batch_for(after, facts, tokenizer)
    chunks = chunked(batch, batch_size)
    if sites is None:
        slots, widths = neurons, d_mlp(after)
        layers = sorted({layer for layer, _ in neurons})
        acts_before = mlp_activations(before, chunks, layers)
        acts_after = mlp_activations(after, chunks, layers)
    else:
        slots, widths = _slots(neurons, sites)
        layers = sorted({name for name, _ in slots})
        acts_before = site_activations(before, chunks, layers)
        acts_after = site_activations(after, chunks, layers)
    random_sets = matched_random_sets(slots, widths, n_random, seed)
    if restore == "control_mean":
        means = _control_means(after, batch_for(after, control, tokenizer), layers, batch_size,
                               by_name=sites is not None)

    def restored_with(subset: Sequence[tuple[int, int]]) -> tuple[float, float]:
        patch = patch_from(acts_before, subset) if restore == "original" else _patch_mean(means, subset)
        return _metrics(*patched_scores(after, chunks, patch, positions))

    def suppressed_with(subset: Sequence[tuple[int, int]]) -> tuple[float, float]:
        return _metrics(*patched_scores(before, chunks, patch_from(acts_after, subset), positions))

    return Verification(
        neurons=list(neurons), restore=restore, positions=positions, n_random=n_random, seed=seed,
        n_facts=len(facts),
        before=_metrics(*patched_scores(before, chunks, {}, positions)),
        after=_metrics(*patched_scores(after, chunks, {}, positions)),
        restored=restored_with(slots),
        suppressed=suppressed_with(slots),
        random_restored=[restored_with(s) for s in random_sets],
        random_suppressed=[suppressed_with(s) for s in random_sets],
    )


def _control_means(model: Any, batch: FactBatch, layers: list, batch_size: int,
                   by_name: bool = False) -> dict[Any, Tensor]:
    chunks = chunked(batch, batch_size)
    acts = site_activations(model, chunks, layers) if by_name else mlp_activations(model, chunks, layers)
    means = {}
    for layer in layers:
        total = sum((chunk[layer] * rows.attention_mask[..., None]).sum((0, 1))
                    for chunk, rows in zip(acts, chunks, strict=True))
        count = sum(int(rows.attention_mask.sum()) for rows in chunks)
        means[layer] = total / count
    return means
