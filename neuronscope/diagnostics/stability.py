"""Attribution stability: how much an attack reshuffles the attribution distribution (the
paper's fig. 6b; it does not say which correlation or reduction it used).

neuronscope's choice: the **Pearson correlation over neurons of the fact-mean attribution**
(every attributed layer and site), with Spearman's rank correlation beside it.

Example:
    >>> import torch
    >>> from neuronscope.attribution import NeuronAttribution
    >>> a = NeuronAttribution(scores=torch.tensor([[[1.0, 2.0, 3.0]]]), layers=[0], fact_ids=["f"])
    >>> b = NeuronAttribution(scores=torch.tensor([[[2.0, 4.0, 7.0]]]), layers=[0], fact_ids=["f"])
    >>> s = attribution_stability(a, b)
    >>> round(s.pearson, 4), round(s.spearman, 4)
    (0.9934, 1.0)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from jaxtyping import Float
from torch import Tensor

__all__ = ["AttributionStability", "attribution_stability"]


@dataclass
class AttributionStability:
    """Correlations of two attribution distributions over neurons (``before``/``after``: the
    fact-mean score of every neuron, flattened in the attributions' order)."""

    pearson: float
    spearman: float
    before: Float[Tensor, " neuron"]
    after: Float[Tensor, " neuron"]

    @property
    def correlation(self) -> float:
        """The headline number: Pearson's r."""
        return self.pearson

    def to_dict(self) -> dict:
        return {"pearson": self.pearson, "spearman": self.spearman, "n_neurons": int(self.before.numel())}

    def __repr__(self) -> str:
        return (f"AttributionStability(pearson={self.pearson:.4f}, spearman={self.spearman:.4f}, "
                f"{self.before.numel()} neurons)")


def _pearson(x: Tensor, y: Tensor) -> float:
    x, y = x.double() - x.double().mean(), y.double() - y.double().mean()
    denom = float(x.norm() * y.norm())
    return float((x * y).sum()) / denom if denom > 0 else float("nan")


def _ranks(x: Tensor) -> Tensor:
    """Ranks from 0 with ties averaged, in O(n log n) (one sort; tied runs share their mean rank)."""
    values, order = x.double().sort()
    _, run, counts = torch.unique_consecutive(values, return_inverse=True, return_counts=True)
    ends = counts.cumsum(0).double()                 # one past each tied run's last position
    mean_rank = ends - (counts.double() + 1) / 2     # the mean of the run's positions
    ranks = torch.empty_like(values)
    ranks[order] = mean_rank[run]
    return ranks


def attribution_stability(a: Any, b: Any) -> AttributionStability:
    """Correlation of attributions ``a`` and ``b`` (same facts, layers, sites, method), e.g.
    the unlearned model before and after a relearning attack."""
    for name, value in (("a", a), ("b", b)):
        if not hasattr(value, "scores") or not hasattr(value, "fact_ids"):
            raise ValueError(f"{name} must be a NeuronAttribution, got {type(value).__name__}")
    if a.scores.shape != b.scores.shape or list(a.layers) != list(b.layers):
        raise ValueError(f"attributions differ in shape or layers: {tuple(a.scores.shape)} {a.layers} vs "
                         f"{tuple(b.scores.shape)} {b.layers}")
    if list(a.fact_ids) != list(b.fact_ids):
        raise ValueError("attributions cover different facts (fact_ids differ); attribute the same facts")
    if getattr(a, "sites", None) != getattr(b, "sites", None):
        raise ValueError(f"attributions cover different sites: {a.sites} vs {b.sites}")
    for key in ("method", "target"):
        if getattr(a, key) != getattr(b, key):
            raise ValueError(f"attributions differ in {key}: {getattr(a, key)!r} vs {getattr(b, key)!r}")
    before, after = a.scores.double().mean(0).flatten(), b.scores.double().mean(0).flatten()
    return AttributionStability(pearson=_pearson(before, after),
                                spearman=_pearson(_ranks(before), _ranks(after)),
                                before=before.float(), after=after.float())
