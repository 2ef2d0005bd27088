"""The paper's D+ and D- (eqs. 4-5) and its summaries: top-m sums, cumulative curves, and
the module x layer map (``../shared/PAPER.md``, "D+ and D-").

Per fact f and neuron i, from per-token activation x gradient scores A_i,k reduced over the
tokens k by max and min, before (theta) and after (theta') unlearning:

    d+_i(f) = max_k A_i,k(theta) - max(max_k A_i,k(theta'), 0)
    d-_i(f) = min_k A_i,k(theta) - min_k A_i,k(theta')

D+_i and D-_i are the means over the facts, each then clipped at 0 (contradictory changes
dropped). Summaries sort neurons by D+ and by D- separately.

Example:
    >>> import torch
    >>> hi_b, lo_b = torch.tensor([[[2.0, 0.5]]]), torch.tensor([[[0.0, -1.0]]])
    >>> hi_a, lo_a = torch.tensor([[[-1.0, 0.5]]]), torch.tensor([[[-1.0, -0.5]]])
    >>> plus, minus = paper_fact_deltas(hi_b, lo_b, hi_a, lo_a)
    >>> plus.flatten().tolist(), minus.flatten().tolist()
    ([2.0, 0.0], [1.0, -0.5])
    >>> top_m_sum(minus.mean(0), 1)
    1.0
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from jaxtyping import Float
from torch import Tensor

__all__ = ["cumulative_curve", "module_layer_map", "paper_fact_deltas", "top_m_sum"]


Scores = Float[Tensor, "fact layer unit"]


def paper_fact_deltas(max_before: Scores, min_before: Scores, max_after: Scores, min_after: Scores
                      ) -> tuple[Scores, Scores]:
    """Per-fact d+ and d- of eqs. 4-5 (not yet averaged or clipped)."""
    shapes = {tuple(t.shape) for t in (max_before, min_before, max_after, min_after)}
    if len(shapes) != 1 or max_before.ndim != 3:
        raise ValueError(f"token max/min tensors must be [fact, layer, unit] alike, got {sorted(shapes)}")
    plus = max_before.double() - max_after.double().clamp(min=0)
    minus = min_before.double() - min_after.double()
    return plus, minus


def _clipped(values: Tensor) -> Tensor:
    return values.double().flatten().clamp(min=0)


def top_m_sum(values: Float[Tensor, "..."], m: int = 100) -> float:
    """Sum of the ``m`` largest clipped values (the paper's bar chart, m = 100)."""
    flat = _clipped(values)
    if isinstance(m, bool) or not isinstance(m, int) or m < 1:
        raise ValueError(f"m must be a positive integer, got {m!r}")
    if m > flat.numel():
        raise ValueError(f"m={m} is larger than the number of neurons ({flat.numel()})")
    return float(flat.topk(m).values.sum())


def cumulative_curve(values: Float[Tensor, "..."]) -> Float[Tensor, " neuron"]:
    """Cumulative sum of the clipped values sorted from largest (entry j: the top j+1)."""
    return _clipped(values).sort(descending=True).values.cumsum(0)


def module_layer_map(values: Float[Tensor, "layer unit"], sites: Sequence[tuple[str, int]],
                     m: int = 100) -> Float[Tensor, "site layer"]:
    """Per site (module) and layer: the mean of the ``m`` largest clipped values of that
    module's units (the paper's fig. 5 uses the top 100)."""
    if values.ndim != 2 or sum(w for _, w in sites) != values.shape[1]:
        raise ValueError(f"values {tuple(values.shape)} do not match sites {list(sites)}")
    smallest = min(w for _, w in sites)
    if isinstance(m, bool) or not isinstance(m, int) or m < 1:
        raise ValueError(f"m must be a positive integer, got {m!r}")
    if m > smallest:
        raise ValueError(f"m={m} is larger than the smallest module's number of neurons ({smallest}); "
                         "pass a smaller m")
    out = torch.zeros(len(sites), values.shape[0], dtype=torch.float64)
    start = 0
    for si, (_, width) in enumerate(sites):
        block = values[:, start : start + width].double().clamp(min=0)
        out[si] = block.topk(m, dim=1).values.mean(1)
        start += width
    return out.float()
