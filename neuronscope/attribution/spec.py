"""Validated options of one attribution run, and the pieces every engine shares:
which positions are attributed, and the target computed from answer log-probabilities.

Example:
    >>> spec = AttributionSpec.make(method="ig", steps=4, quadrature="riemann_right",
    ...                             target="prob", positions="prompt", baseline="zero")
    >>> spec.alphas.tolist()
    [0.25, 0.5, 0.75, 1.0]
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from jaxtyping import Float
from torch import Tensor

from neuronscope.attribution.quadrature import canonical_quadrature, check_steps, quadrature_rule
from neuronscope.tokenization import POSITIONS, position_mask

__all__ = ["BASELINES", "METHODS", "POSITIONS", "TARGETS", "AttributionSpec", "position_mask",
           "target_value"]

METHODS = ("ig", "grad_x_act", "param_x_grad")
TARGETS = ("prob", "logprob")
BASELINES = ("zero",)


@dataclass(frozen=True)
class AttributionSpec:
    """What to compute: method, quadrature points/weights, target, positions, baseline.

    ``steps=None`` (integrated gradients only): adaptive Gauss-Legendre panels refined until
    ``|delta| <= tolerance`` of ``f(x) - f(baseline)`` per fact and layer (``adaptive``), with at
    most ``max_steps`` gradient evaluations each; ``alphas``/``weights`` are then empty. With
    a fixed ``steps``, ``tolerance`` is the level above which the run warns.
    """

    method: str
    steps: int | None
    quadrature: str
    target: str
    positions: str
    baseline: str
    alphas: Float[Tensor, " step"]
    weights: Float[Tensor, " step"]
    tolerance: float | None = 0.01
    max_steps: int = 512

    @property
    def adaptive(self) -> bool:
        return self.steps is None

    @classmethod
    def make(cls, *, method: str, steps: int | None, quadrature: str, target: str, positions: str,
             baseline: str, tolerance: float | None = 0.01, max_steps: int = 512) -> AttributionSpec:
        """Check every option (``ValueError`` naming the bad one) and build the rule."""
        if method not in METHODS:
            raise ValueError(f"unknown method {method!r}; expected one of {METHODS}")
        if target not in TARGETS:
            raise ValueError(f"unknown target {target!r}; expected one of {TARGETS}")
        if positions not in POSITIONS:
            raise ValueError(f"unknown positions {positions!r}; expected one of {POSITIONS}")
        if not isinstance(baseline, str) or baseline not in BASELINES:
            raise ValueError(f"unknown baseline {baseline!r}; expected one of {BASELINES}")
        if tolerance is not None and (isinstance(tolerance, bool) or not isinstance(tolerance, (int, float))
                                      or not tolerance > 0):
            raise ValueError(f"tolerance must be a number > 0 (a fraction of f(x) - f(baseline)) or None, "
                             f"got {tolerance!r}")
        max_steps = check_steps(max_steps)
        if steps is not None:
            steps = check_steps(steps)
        quadrature = canonical_quadrature(quadrature)
        if method == "ig" and steps is None:
            if quadrature != "gauss_legendre":
                raise ValueError(f"adaptive integration (steps=None) uses Gauss-Legendre panels; "
                                 f"quadrature={quadrature!r} needs a fixed steps=")
            if tolerance is None:
                raise ValueError("adaptive integration (steps=None) needs a tolerance > 0")
            alphas = weights = torch.zeros(0, dtype=torch.float64)
        elif method == "ig":
            alphas, weights = quadrature_rule(quadrature, steps)
        else:
            # grad_x_act is one right-Riemann step; param_x_grad has no path at all.
            steps, quadrature = 1, "riemann_right"
            alphas, weights = quadrature_rule("riemann_right", 1)
        if method == "param_x_grad":
            positions = "all"
        return cls(method, steps, quadrature, target, positions, baseline, alphas, weights,
                   None if tolerance is None else float(tolerance), max_steps)


def target_value(logprob_sum: Float[Tensor, " row"], target: str) -> Float[Tensor, " row"]:
    """The attributed quantity from the summed answer log-probability of each row."""
    return logprob_sum.exp() if target == "prob" else logprob_sum
