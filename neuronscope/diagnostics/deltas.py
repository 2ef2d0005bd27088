"""D+ and D- (erase vs hide) from two attribution tensors, and the hide index.

Per fact f and neuron i (``../shared/PAPER.md``):

    d+_i(f) = max(A_i(f), 0) - max(A'_i(f), 0)      decrease of positive influence (erasing)
    d-_i(f) = max(-A'_i(f), 0) - max(-A_i(f), 0)    increase of negative influence (hiding)

A neuron's D+ / D- is the mean of the per-fact values over the target facts, clipped at 0
when summarised; the hide index is sum D- / (sum D+ + sum D-).

Example:
    >>> import torch
    >>> before = torch.tensor([[[1.0, -0.5]]]); after = torch.tensor([[[0.25, -2.0]]])
    >>> d_plus(before, after).flatten().tolist(), d_minus(before, after).flatten().tolist()
    ([0.75, 0.0], [0.0, 1.5])
    >>> round(hide_index(torch.tensor([0.75, 0.0]), torch.tensor([0.0, 1.5])), 4)
    0.6667
"""

from __future__ import annotations

from dataclasses import dataclass

from jaxtyping import Float
from torch import Tensor

__all__ = ["DeltaSummary", "check_pair", "d_minus", "d_plus", "hide_index", "summarise", "summarise_deltas"]


def check_pair(before: Tensor, after: Tensor) -> None:
    """Raise ``ValueError`` unless the two attribution tensors are [fact, layer, neuron] alike."""
    if before.ndim != 3 or after.ndim != 3:
        raise ValueError(
            f"attributions must be [fact, layer, neuron] tensors, got shapes {tuple(before.shape)} "
            f"and {tuple(after.shape)}")
    if before.shape != after.shape:
        raise ValueError(f"before and after attributions differ in shape: {tuple(before.shape)} "
                         f"vs {tuple(after.shape)} (same facts, layers and MLP width needed)")


def d_plus(before: Float[Tensor, "fact layer neuron"],
           after: Float[Tensor, "fact layer neuron"]) -> Float[Tensor, "fact layer neuron"]:
    """Per-fact decrease of positive influence, ``max(A, 0) - max(A', 0)`` (not clipped)."""
    check_pair(before, after)
    return before.clamp(min=0) - after.clamp(min=0)


def d_minus(before: Float[Tensor, "fact layer neuron"],
            after: Float[Tensor, "fact layer neuron"]) -> Float[Tensor, "fact layer neuron"]:
    """Per-fact increase of negative influence, ``max(-A', 0) - max(-A, 0)`` (not clipped)."""
    check_pair(before, after)
    return (-after).clamp(min=0) - (-before).clamp(min=0)


def hide_index(d_plus_values: Tensor, d_minus_values: Tensor) -> float:
    """sum D- / (sum D+ + sum D-), each clipped at 0 first; NaN when both sums are 0."""
    plus = float(d_plus_values.clamp(min=0).double().sum())
    minus = float(d_minus_values.clamp(min=0).double().sum())
    total = plus + minus
    return minus / total if total > 0 else float("nan")


@dataclass
class DeltaSummary:
    """Neuron-level and per-fact D+ / D- of one before/after pair on the target facts.

    ``d_plus`` and ``d_minus`` are the per-neuron means over facts (not clipped);
    ``fact_d_plus`` / ``fact_d_minus`` are, per fact, the sums over neurons of the clipped
    per-fact values.
    """

    d_plus: Float[Tensor, "layer neuron"]
    d_minus: Float[Tensor, "layer neuron"]
    fact_d_plus: Float[Tensor, " fact"]
    fact_d_minus: Float[Tensor, " fact"]


def summarise(before: Float[Tensor, "fact layer neuron"],
              after: Float[Tensor, "fact layer neuron"]) -> DeltaSummary:
    """Neuron means and per-fact totals of D+ and D- (see the module docstring).

    Example:
        >>> import torch
        >>> s = summarise(torch.zeros(2, 1, 3), -torch.ones(2, 1, 3))
        >>> s.d_minus.tolist(), s.fact_d_minus.tolist()
        ([[1.0, 1.0, 1.0]], [3.0, 3.0])
    """
    return summarise_deltas(d_plus(before, after), d_minus(before, after))


def summarise_deltas(plus: Float[Tensor, "fact layer neuron"],
                     minus: Float[Tensor, "fact layer neuron"]) -> DeltaSummary:
    """Neuron means and per-fact totals (clipped) from per-fact d+ and d- of any definition."""
    plus, minus = plus.double(), minus.double()
    if plus.shape[0] == 0:
        raise ValueError("no target facts in the attributions")
    return DeltaSummary(
        d_plus=plus.mean(0).float(),
        d_minus=minus.mean(0).float(),
        fact_d_plus=plus.clamp(min=0).sum((1, 2)).float(),
        fact_d_minus=minus.clamp(min=0).sum((1, 2)).float(),
    )
