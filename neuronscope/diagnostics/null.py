"""Calibrated flags: a per-neuron permutation test with family-wise error control (max-T).

A neuron is flagged as a spurious unlearning neuron when its D- on the target facts is larger
than the null allows. Two nulls are available, vectorised over all neurons at once:

* **control facts** (``two_sample_max_t``): the same neuron's per-fact D- on control facts
  (by default the retain facts). Under the null hypothesis "this neuron's D- does not tell target
  facts from control facts" the fact labels are exchangeable, so we permute them.
* **control fine-tune** (``paired_max_t``): the neuron's per-fact D- on the *same* target facts
  in a model fine-tuned on unrelated data. Under the null "unlearning changed this neuron on
  these facts no more than an unrelated fine-tune did", the paired differences are symmetric,
  so we flip their signs.

The statistic is a moderated Welch t, ``(mean_target - mean_null) / sqrt(se^2 + s0^2)``, where
``s0`` (the median standard error over neurons, a permutation-invariant constant, as in SAM by
Tusher et al. 2001) keeps near-constant neurons with tiny differences from dominating.
Westfall-Young single-step max-T: the adjusted p-value of a neuron is
``(1 + #{permutations whose largest statistic over all neurons >= its statistic}) / (1 + B)``.
Flagging ``p_adjusted <= alpha`` controls the **family-wise error rate**: when no neuron is
target-specific, the probability of flagging *any* neuron is at most ``alpha``.

Example:
    >>> import torch
    >>> g = torch.Generator().manual_seed(0)
    >>> target, control = torch.randn(30, 50, generator=g), torch.randn(60, 50, generator=g)
    >>> target[:, 7] += 3.0
    >>> test = two_sample_max_t(target, control, n_permutations=200, seed=0)
    >>> torch.nonzero(test.p_adjusted <= 0.05).flatten().tolist()
    [7]
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from jaxtyping import Float
from torch import Tensor

__all__ = ["NullTest", "cluster_labels", "paired_max_t", "two_sample_max_t"]

_CHUNK_ELEMENTS = 4_000_000  # permutations x units per block (float64): ~32 MB


@dataclass
class NullTest:
    """Result of one max-T permutation test over ``unit`` neurons."""

    statistic: Float[Tensor, " unit"]
    p_raw: Float[Tensor, " unit"]
    p_adjusted: Float[Tensor, " unit"]
    effect: Float[Tensor, " unit"]  # mean over target facts minus the null's mean
    null_mean: Float[Tensor, " unit"]
    s0: float
    n_permutations: int
    kind: str


def _check(values: Tensor, name: str) -> Tensor:
    if values.ndim != 2:
        raise ValueError(f"{name} must be a [fact, unit] tensor, got shape {tuple(values.shape)}")
    if not torch.isfinite(values).all():
        raise ValueError(f"{name} holds NaN or infinite values")
    return values.double()


def _check_permutations(n_permutations: int) -> None:
    if not isinstance(n_permutations, int) or n_permutations < 1:
        raise ValueError(f"n_permutations must be a positive integer, got {n_permutations!r}")


def _moderated_t(diff: Tensor, se2: Tensor, s0: float) -> Tensor:
    return diff / torch.sqrt(se2.clamp(min=0) + s0 * s0)


def _s0(se_all: Tensor) -> float:
    positive = se_all[se_all > 0]
    if positive.numel() == 0:
        return 1.0  # every unit constant: statistics are 0 whatever s0 is
    return float(positive.median())


def cluster_labels(keys: Sequence[object]) -> Tensor:
    """Integer cluster ids for fact keys (subjects, groups), in order of first appearance."""
    index: dict[object, int] = {}
    return torch.tensor([index.setdefault(key, len(index)) for key in keys], dtype=torch.long)


def _two_sample_stats(ind: Tensor, centred: Tensor, squares: Tensor, total: Tensor,
                      total_sq: Tensor, s0: float) -> Tensor:
    """Moderated Welch t for each labelling row of ``ind`` ([perm, fact] 0/1); the group sizes
    are read per row (cluster permutations may move unequal numbers of facts)."""
    n_t = ind.sum(1, keepdim=True)
    n_c = ind.shape[1] - n_t
    sum_t = ind @ centred
    sq_t = ind @ squares
    sum_c, sq_c = total - sum_t, total_sq - sq_t
    mean_t, mean_c = sum_t / n_t.clamp(min=1), sum_c / n_c.clamp(min=1)
    var_t = (sq_t - n_t * mean_t**2) / (n_t - 1).clamp(min=1)
    var_c = (sq_c - n_c * mean_c**2) / (n_c - 1).clamp(min=1)
    return _moderated_t(mean_t - mean_c, var_t / n_t.clamp(min=1) + var_c / n_c.clamp(min=1), s0)


def two_sample_max_t(
    target: Float[Tensor, "fact unit"],
    control: Float[Tensor, "control unit"],
    *,
    n_permutations: int = 1000,
    seed: int = 0,
    clusters: Tensor | None = None,
) -> NullTest:
    """One-sided max-T test that each unit's mean over ``target`` exceeds that over ``control``.

    ``clusters`` (one integer per fact, target rows first) permutes whole clusters (subjects,
    families) instead of single facts, for facts that are not independent; no cluster may hold
    both target and control facts.

    Example:
        >>> t = two_sample_max_t(torch.ones(5, 2), torch.zeros(5, 2), n_permutations=50)
        >>> bool((t.p_adjusted < 0.05).all())
        True
    """
    _check_permutations(n_permutations)
    x, y = _check(target, "target"), _check(control, "control")
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"target and control cover different units: {x.shape[1]} vs {y.shape[1]}")
    n_t, n_c = x.shape[0], y.shape[0]
    if n_t < 2 or n_c < 2:
        raise ValueError(f"need at least 2 target and 2 control facts, got {n_t} and {n_c}")
    values = torch.cat([x, y])
    centred = values - values.mean(0)
    squares = centred**2
    total, total_sq = centred.sum(0), squares.sum(0)
    pooled_var = squares.sum(0) / (n_t + n_c - 1)
    s0 = _s0(torch.sqrt(pooled_var * (1 / n_t + 1 / n_c)))
    observed_ind = torch.zeros(1, n_t + n_c, dtype=torch.float64)
    observed_ind[0, :n_t] = 1
    stat = _two_sample_stats(observed_ind, centred, squares, total, total_sq, s0)[0]

    generator = torch.Generator().manual_seed(seed)
    labels = _cluster_assignment(clusters, n_t, n_c)
    exceed = torch.zeros_like(stat)
    maxima = []
    chunk = max(1, _CHUNK_ELEMENTS // max(1, values.shape[1]))
    for start in range(0, n_permutations, chunk):
        size = min(chunk, n_permutations - start)
        ind = _random_labellings(size, n_t, n_c, labels, generator)
        perm_stat = _two_sample_stats(ind, centred, squares, total, total_sq, s0)
        exceed += (perm_stat >= stat - 1e-12).sum(0)
        maxima.append(perm_stat.max(1).values)
    return _finish(stat, exceed, torch.cat(maxima), n_permutations, s0,
                   effect=x.mean(0) - y.mean(0), null_mean=y.mean(0), kind="control facts")


def _cluster_assignment(clusters: Tensor | None, n_t: int, n_c: int) -> tuple[Tensor, int] | None:
    if clusters is None:
        return None
    clusters = torch.as_tensor(clusters, dtype=torch.long)
    if clusters.shape != (n_t + n_c,):
        raise ValueError(f"clusters must hold one id per fact ({n_t + n_c}), got {tuple(clusters.shape)}")
    _, ids = torch.unique(clusters, return_inverse=True)
    target_clusters = set(ids[:n_t].tolist())
    mixed = target_clusters & set(ids[n_t:].tolist())
    if mixed:
        raise ValueError(f"{len(mixed)} cluster(s) hold both target and control facts; permuting by "
                         "cluster needs clusters that are wholly target or wholly control")
    n_clusters = int(ids.max()) + 1
    k = len(target_clusters)
    if math.comb(n_clusters, k) < 100:
        warnings.warn(f"only {math.comb(n_clusters, k)} distinct cluster labellings: adjusted p-values "
                      "cannot go below their inverse", stacklevel=3)
    # Cluster permutations change how many facts are target; the statistic handles unequal sizes.
    return ids, k


def _random_labellings(size: int, n_t: int, n_c: int, labels: tuple[Tensor, int] | None,
                       generator: torch.Generator) -> Tensor:
    n = n_t + n_c
    if labels is None:
        order = torch.rand(size, n, generator=generator).argsort(1)
        return (order < n_t).double()
    ids, k = labels
    n_clusters = int(ids.max()) + 1
    chosen = torch.rand(size, n_clusters, generator=generator).argsort(1) < k
    return chosen[:, ids].double()


def _finish(stat: Tensor, exceed: Tensor, maxima: Tensor, n: int, s0: float, *, effect: Tensor,
            null_mean: Tensor, kind: str) -> NullTest:
    p_raw = (1 + exceed) / (1 + n)
    sorted_max = maxima.sort().values
    at_least = n - torch.searchsorted(sorted_max, stat - 1e-12, right=False)
    p_adj = (1 + at_least.double()) / (1 + n)
    return NullTest(statistic=stat.float(), p_raw=p_raw.float(), p_adjusted=p_adj.float(),
                    effect=effect.float(), null_mean=null_mean.float(), s0=s0,
                    n_permutations=n, kind=kind)


def paired_max_t(
    target: Float[Tensor, "fact unit"],
    null: Float[Tensor, "fact unit"],
    *,
    n_permutations: int = 1000,
    seed: int = 0,
    clusters: Tensor | None = None,
) -> NullTest:
    """One-sided sign-flip max-T test that ``target - null`` (paired by fact) is positive.

    ``clusters`` (one integer per fact) flips the signs of whole clusters (subjects) at once.

    Example:
        >>> t = paired_max_t(torch.ones(8, 2) + 0.1 * torch.arange(8.)[:, None], torch.zeros(8, 2))
        >>> bool((t.p_adjusted < 0.05).all())
        True
    """
    _check_permutations(n_permutations)
    x, z = _check(target, "target"), _check(null, "null")
    if x.shape != z.shape:
        raise ValueError(f"target and null must be paired by fact: shapes {tuple(x.shape)} vs "
                         f"{tuple(z.shape)}")
    n = x.shape[0]
    if n < 2:
        raise ValueError(f"need at least 2 target facts, got {n}")
    diff = x - z
    sum_sq = (diff**2).sum(0)
    s0 = _s0(torch.sqrt(sum_sq / n / n))  # sign-invariant scale of the standard error

    def stats(signs: Tensor) -> Tensor:
        mean = (signs @ diff) / n
        var = (sum_sq - n * mean**2) / max(n - 1, 1)
        return _moderated_t(mean, var / n, s0)

    stat = stats(torch.ones(1, n, dtype=torch.float64))[0]
    generator = torch.Generator().manual_seed(seed)
    ids = None
    if clusters is not None:
        clusters = torch.as_tensor(clusters, dtype=torch.long)
        if clusters.shape != (n,):
            raise ValueError(f"clusters must hold one id per fact ({n}), got {tuple(clusters.shape)}")
        ids = torch.unique(clusters, return_inverse=True)[1]
    exceed = torch.zeros_like(stat)
    maxima = []
    chunk = max(1, _CHUNK_ELEMENTS // max(1, diff.shape[1]))
    for start in range(0, n_permutations, chunk):
        size = min(chunk, n_permutations - start)
        width = n if ids is None else int(ids.max()) + 1
        signs = torch.randint(0, 2, (size, width), generator=generator).double() * 2 - 1
        if ids is not None:
            signs = signs[:, ids]
        perm_stat = stats(signs)
        exceed += (perm_stat >= stat - 1e-12).sum(0)
        maxima.append(perm_stat.max(1).values)
    return _finish(stat, exceed, torch.cat(maxima), n_permutations, s0,
                   effect=diff.mean(0), null_mean=z.mean(0), kind="control fine-tune")
