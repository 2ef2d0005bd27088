"""Adaptive integration of the attribution path: Gauss-Legendre panels refined until each
fact's completeness holds to a tolerance.

Integrated gradients has an exact check of its own accuracy: the attributions of a stretch
``[a, b]`` of the path must add up to ``f(b) - f(a)``. The path is cut into panels, each
integrated with ``points`` Gauss-Legendre nodes; ``f`` is evaluated (forward only) at the panel
ends, so every panel knows its own error ``delta_p = sum(attributions in p) - (f(b) - f(a))``.
Only ``f(0)`` is needed for every fact (the total's check); panel ends inside the path are
evaluated only for facts that fail it. While a fact's total ``|delta|`` exceeds its allowance,
the panels whose error exceeds their
share of the allowance (proportional to width) are halved, each half with fresh nodes, until
the tolerance holds or the fact has spent ``max_steps`` gradient evaluations.

The allowance of a fact and layer is ``tolerance * max(|f(x) - f(b)|, 1e-3 * max(|f(x)|, |f(b)|))``:
relative to the change the layer makes, with a floor at 0.1 % of the target itself for layers
that barely change it.

:class:`PanelPath` does only the bookkeeping (which alphas to evaluate, which panels to halve);
the engine runs the model.

Example:
    >>> import torch
    >>> f = lambda a: torch.sin(3 * a)                                 # a curved path
    >>> path = PanelPath(f_start=torch.tensor([0.0]), f_end=f(torch.tensor([1.0])),
    ...                  rule=PathRule(tolerance=1e-6, max_steps=64, points=2, initial_panels=1))
    >>> while path.pending():
    ...     facts, alphas, weights, panel = path.nodes()
    ...     path.record(weights * 3 * torch.cos(3 * alphas))          # f' at the nodes, weighted
    ...     facts, alphas = path.endpoints()                          # ends the decision needs
    ...     path.set_endpoints(f(alphas))
    ...     dropped = path.refine()
    >>> bool(path.delta().abs().max() < 1e-6), int(path.steps_used()[0]) > 2
    (True, True)
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
import torch
from jaxtyping import Float, Int
from torch import Tensor

__all__ = ["RELATIVE_FLOOR", "PanelPath", "PathRule", "allowance"]

RELATIVE_FLOOR = 1e-3  # below 0.1 % of the target, a layer's change is measured against that
# For target="logprob", below this |delta| the completeness check is float32 noise (log P near 0
# comes out of a float32 log-softmax with an absolute error of about 1e-7), so no refinement can
# meet a smaller allowance: without it, facts the model is certain of (log P = -1e-5, or P
# rounded to 1) were refined to the step cap and reported as missed.
LOGPROB_NOISE_FLOOR = 1e-6


def noise_floor(target: str) -> float:
    """The smallest allowance for ``target``: ``LOGPROB_NOISE_FLOOR`` for ``"logprob"``, 0 for
    ``"prob"`` (whose float32 error scales with P itself).

    Example:
        >>> noise_floor("logprob"), noise_floor("prob")
        (1e-06, 0.0)
    """
    return LOGPROB_NOISE_FLOOR if target == "logprob" else 0.0
MIN_WIDTH = 2.0**-14  # panels are not halved below this width


@dataclass(frozen=True)
class PathRule:
    """How the path is integrated: fixed nodes (``alphas``/``weights`` over one panel [0, 1],
    no refinement), or ``initial_panels`` Gauss-Legendre panels of ``points`` nodes each,
    halved until ``tolerance`` holds or ``max_steps`` gradient evaluations are spent."""

    tolerance: float | None = 0.01
    max_steps: int = 512
    points: int = 4
    initial_panels: int = 2
    floor: float = 0.0  # smallest allowance (noise_floor of the target)
    alphas: Tensor | None = None  # a fixed rule on [0, 1]: no refinement
    weights: Tensor | None = None

    @property
    def adaptive(self) -> bool:
        return self.alphas is None

    @property
    def min_steps(self) -> int:
        """Gradient evaluations the rule spends at least (the initial panels)."""
        return self.points * self.initial_panels if self.adaptive else len(self.alphas)

    def check(self) -> PathRule:
        """``ValueError`` naming a bad setting; returns ``self``."""
        if self.tolerance is not None and not (float(self.tolerance) > 0):
            raise ValueError(f"tolerance must be > 0 (a fraction of f(x) - f(baseline)), "
                             f"got {self.tolerance!r}")
        for name in ("points", "initial_panels", "max_steps"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if self.adaptive and self.tolerance is None:
            raise ValueError("adaptive integration (steps=None) needs a tolerance")
        if self.adaptive and self.max_steps < self.min_steps:
            raise ValueError(f"max_steps={self.max_steps} is below the adaptive rule's minimum of "
                             f"{self.min_steps} steps ({self.initial_panels} panels x {self.points} "
                             "Gauss-Legendre points)")
        return self


def allowance(f_end: Tensor, f_start: Tensor, tolerance: float, floor: float = 0.0) -> Tensor:
    """Largest ``|delta|`` accepted per fact: ``tolerance * max(|f(x) - f(b)|, 1e-3 * max(|f(x)|, |f(b)|))``,
    and never below ``floor`` (see :func:`noise_floor`).

    Example:
        >>> allowance(torch.tensor([0.5, 0.5, 0.0]), torch.tensor([0.0, 0.5, 0.0]), 0.01).tolist()
        [0.005, 5e-06, 0.0]
        >>> allowance(torch.tensor([0.0]), torch.tensor([0.0]), 0.01, floor=1e-6).tolist()
        [1e-06]
    """
    f_end, f_start = f_end.double(), f_start.double()
    scale = torch.maximum((f_end - f_start).abs(), RELATIVE_FLOOR * torch.maximum(f_end.abs(), f_start.abs()))
    return (tolerance * scale).clamp_min(floor)


def _gauss_legendre(points: int) -> tuple[np.ndarray, np.ndarray]:
    nodes, weights = np.polynomial.legendre.leggauss(points)
    return (nodes + 1.0) / 2.0, weights / 2.0


class PanelPath:
    """Panels of the path ``alpha in [0, 1]`` for each fact, with their ends' values and sums.

    Without ``f_start``, first :meth:`endpoints` / :meth:`set_endpoints` for ``f(0)``. Then
    rounds: :meth:`nodes` (alphas and weights whose gradient is needed), :meth:`record` (each
    node's weighted contribution ``w * grad . (h - baseline)``), :meth:`endpoints` (the panel
    ends still unknown for facts that fail the tolerance; forward only), :meth:`refine`.
    """

    def __init__(self, f_start: Float[Tensor, " fact"] | None, f_end: Float[Tensor, " fact"],
                 rule: PathRule) -> None:
        self.rule = rule.check()
        n = f_end.shape[0]
        self.n_facts = n
        self.f_end = f_end.double().cpu()
        self.f_start = None if f_start is None else f_start.double().cpu()
        # panel table (python lists; a few per fact)
        self.fact: list[int] = []
        self.a: list[float] = []
        self.b: list[float] = []
        self.alive: list[bool] = []
        self.sum: list[float | None] = []
        self.values: dict[tuple[int, float], float] = {}
        self.spent = [0] * n
        self._new: list[int] = []
        self._rows: tuple[list[int], list[float], list[float], list[int]] | None = None
        if self.f_start is not None:
            for f in range(n):
                self.values[(f, 0.0)] = float(self.f_start[f])
        for f in range(n):
            self.values[(f, 1.0)] = float(self.f_end[f])
        panels = rule.initial_panels if rule.adaptive else 1
        edges = [i / panels for i in range(panels + 1)]
        for f in range(n):
            for a, b in itertools.pairwise(edges):
                self._add(f, a, b)

    # --- table ------------------------------------------------------------------------
    def _add(self, fact: int, a: float, b: float) -> None:
        self.fact.append(fact)
        self.a.append(a)
        self.b.append(b)
        self.alive.append(True)
        self.sum.append(None)
        self._new.append(len(self.fact) - 1)

    @property
    def n_panels(self) -> int:
        """Panels made so far (dead ones included); panel ids index :meth:`nodes`' output."""
        return len(self.fact)

    def pending(self) -> bool:
        """Whether panels wait for their nodes to be evaluated."""
        return bool(self._new)

    # --- one round --------------------------------------------------------------------
    def endpoints(self) -> tuple[Int[Tensor, " row"], Float[Tensor, " row"]]:
        """``(fact, alpha)`` rows whose target is needed now and not known (forward only):
        ``f(0)`` of every fact until it is known; after :meth:`record`, the ends of the live
        panels of the facts that fail the tolerance (what :meth:`refine` decides on)."""
        if self.f_start is None:
            need = [(f, 0.0) for f in range(self.n_facts)]
        elif self._new or not self.rule.adaptive:
            need = []
        else:
            failing = set(self._failing())
            need = sorted({(self.fact[p], x) for p in range(self.n_panels)
                           if self.alive[p] and self.fact[p] in failing for x in (self.a[p], self.b[p])}
                          - set(self.values))
        self._asked = need
        return (torch.tensor([f for f, _ in need], dtype=torch.long),
                torch.tensor([x for _, x in need], dtype=torch.float64))

    def set_endpoints(self, values: Float[Tensor, " row"]) -> None:
        """The targets at the rows :meth:`endpoints` asked for, in that order."""
        for key, value in zip(self._asked, values.double().cpu().tolist(), strict=True):
            self.values[key] = value
        if self.f_start is None and all((f, 0.0) in self.values for f in range(self.n_facts)):
            self.f_start = torch.tensor([self.values[(f, 0.0)] for f in range(self.n_facts)],
                                        dtype=torch.float64)

    def nodes(self) -> tuple[Int[Tensor, " row"], Float[Tensor, " row"], Float[Tensor, " row"],
                             Int[Tensor, " row"]]:
        """``(fact, alpha, weight, panel)`` rows whose gradient is needed (the new panels' nodes)."""
        facts: list[int] = []
        alphas: list[float] = []
        weights: list[float] = []
        panels: list[int] = []
        if self.rule.adaptive:
            x, w = _gauss_legendre(self.rule.points)
        else:
            x, w = self.rule.alphas.double().numpy(), self.rule.weights.double().numpy()
        for p in self._new:
            width = self.b[p] - self.a[p]
            facts += [self.fact[p]] * len(x)
            alphas += (self.a[p] + width * x).tolist()
            weights += (width * w).tolist()
            panels += [p] * len(x)
            self.spent[self.fact[p]] += len(x)
        self._rows = (facts, alphas, weights, panels)
        return (torch.tensor(facts, dtype=torch.long), torch.tensor(alphas, dtype=torch.float64),
                torch.tensor(weights, dtype=torch.float64), torch.tensor(panels, dtype=torch.long))

    def record(self, contributions: Float[Tensor, " row"]) -> None:
        """Each node row's weighted contribution (summed over neurons and positions)."""
        if self._rows is None:
            raise RuntimeError("record() before nodes()")
        sums: dict[int, float] = {}
        for p, c in zip(self._rows[3], contributions.double().cpu().tolist(), strict=True):
            sums[p] = sums.get(p, 0.0) + c
        for p in self._new:
            self.sum[p] = sums.get(p, 0.0)
        self._new = []
        self._rows = None

    # --- decisions --------------------------------------------------------------------
    def _panel_error(self, p: int) -> float:
        f = self.fact[p]
        return self.sum[p] - (self.values[(f, self.b[p])] - self.values[(f, self.a[p])])

    def delta(self) -> Float[Tensor, " fact"]:
        """Completeness error per fact: sum of the live panels minus ``f(x) - f(baseline)``."""
        total = torch.zeros(self.n_facts, dtype=torch.float64)
        for p in range(self.n_panels):
            if self.alive[p] and self.sum[p] is not None:
                total[self.fact[p]] += self.sum[p]
        return total - (self.f_end - self.f_start)

    def _failing(self) -> list[int]:
        delta, allowed = self.delta(), self.allowed()
        return [f for f in range(self.n_facts) if abs(float(delta[f])) > float(allowed[f])]

    def allowed(self) -> Float[Tensor, " fact"]:
        tol = self.rule.tolerance if self.rule.tolerance is not None else float("inf")
        return allowance(self.f_end, self.f_start, tol, self.rule.floor)

    def refine(self) -> list[int]:
        """Halve the panels that carry too much of a failing fact's error (within the fact's
        step budget); returns the ids of the panels dropped (replaced by their halves)."""
        if not self.rule.adaptive:
            return []
        allowed = self.allowed()
        dropped = []
        for f in self._failing():
            share = float(allowed[f])
            candidates = []
            for p in range(self.n_panels):
                if self.alive[p] and self.fact[p] == f:
                    width = self.b[p] - self.a[p]
                    error = abs(self._panel_error(p))
                    if error > share * width and width / 2 >= MIN_WIDTH:
                        candidates.append((error / width, p))
            planned = self.spent[f]
            for _, p in sorted(candidates, reverse=True):
                if planned + 2 * self.rule.points > self.rule.max_steps:
                    break
                planned += 2 * self.rule.points  # nodes() counts them when it hands them out
                self.alive[p] = False
                dropped.append(p)
                mid = (self.a[p] + self.b[p]) / 2
                self._add(f, self.a[p], mid)
                self._add(f, mid, self.b[p])
        return dropped

    def live_panels(self) -> Int[Tensor, " panel"]:
        return torch.tensor([p for p in range(self.n_panels) if self.alive[p]], dtype=torch.long)

    def panel_facts(self) -> Int[Tensor, " panel"]:
        return torch.tensor(self.fact, dtype=torch.long)

    def steps_used(self) -> Int[Tensor, " fact"]:
        """Gradient evaluations spent per fact (discarded panels included)."""
        return torch.tensor(self.spent, dtype=torch.long)
