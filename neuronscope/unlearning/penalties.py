"""Penalties: terms added to an unlearning method's loss, as objects, found by name.

A :class:`Penalty` is a frozen description (its settings); ``bind(model, forget, retain)``
checks it against the model being trained and returns a :class:`BoundPenalty`, the per-run
state, before any step runs. At each step ``bound(step)`` returns a scalar tensor that is added
to the loss; its gradient is the penalty's gradient (it may be a surrogate whose value is the
penalty and whose gradient is the one the penalty prescribes). ``bound.hooks`` names the
activations it reads (captured in the graph); ``separate_retain = True`` asks for the forget
rows' own forward pass (no retain rows in it), which makes an extra backward pass over the
forget rows cheaper.

Example:
    >>> class L2(Penalty):
    ...     name = "l2"
    ...     def __init__(self, lam): self.lam = lam
    ...     def to_dict(self): return {"name": self.name, "lam": self.lam}
    ...     def bind(self, model, forget, retain=None):
    ...         params = [p for p in model.parameters() if p.requires_grad]
    ...         start = [p.detach().clone() for p in params]
    ...         def term(step):
    ...             return self.lam * sum(((p - s) ** 2).sum() for p, s in zip(params, start))
    ...         return BoundPenalty(term)
    >>> L2(0.1).label
    'l2(lam=0.1)'
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from torch import Tensor

from neuronscope.tokenization import FactBatch

__all__ = ["PENALTIES", "BoundPenalty", "Penalty", "as_penalties", "get_penalty",
           "register_penalty"]


class BoundPenalty:
    """A penalty's per-run state: ``term(step) -> Tensor``, the hooks it reads, a record."""

    def __init__(self, term: Callable[[Any], Tensor] | None = None,
                 hooks: Sequence[str] = ()) -> None:
        self._term, self.hooks = term, list(hooks)

    def __call__(self, step: Any) -> Tensor:
        if self._term is None:
            raise NotImplementedError("a BoundPenalty needs a term function or a __call__")
        return self._term(step)

    def record(self) -> dict[str, Any]:
        """What the run's settings record keeps of this run (default: nothing)."""
        return {}


class Penalty:
    """Base of every penalty: ``bind`` is the one to write; ``to_dict`` records the settings."""

    name: str = "penalty"
    needs_retain: bool = False
    separate_retain: bool = False

    def bind(self, model: Any, forget: FactBatch, retain: FactBatch | None = None) -> BoundPenalty:
        raise NotImplementedError(f"penalty {self.name!r} has no bind")

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name}

    @property
    def label(self) -> str:
        """``name(key=value,...)``: readable, and parsed back by ``parse_recipe`` when registered."""
        args = [f"{k}={_fmt(v)}" for k, v in self.to_dict().items() if k != "name"]
        return f"{self.name}({','.join(args)})" if args else self.name


def _fmt(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


PENALTIES: dict[str, Callable[..., Any]] = {}


def register_penalty(name: str, factory: Callable[..., Any], *, replace: bool = False) -> None:
    """Make ``factory(*args, **options)`` (a Penalty class or function) available by ``name``
    in recipes (``"gd+name(0.1,key=value)"``)."""
    if not isinstance(name, str) or not name or any(c in name for c in "+,():= "):
        raise ValueError(f"penalty name must be a plain word, got {name!r}")
    if not callable(factory):
        raise ValueError(f"penalty {name!r}: factory must be callable, got {factory!r}")
    if name in PENALTIES and not replace:
        raise ValueError(f"penalty {name!r} is already registered (pass replace=True)")
    PENALTIES[name] = factory


def get_penalty(name: str) -> Callable[..., Any]:
    if name not in PENALTIES:
        raise ValueError(f"unknown penalty {name!r}; expected one of {sorted(PENALTIES)}")
    return PENALTIES[name]


def check_penalty(penalty: Any) -> Any:
    missing = [part for part in ("name", "bind", "to_dict") if not hasattr(penalty, part)]
    if missing:
        raise ValueError(f"penalty {penalty!r} lacks {missing}: subclass "
                         f"neuronscope.unlearning.Penalty and write bind()")
    return penalty


def as_penalties(penalty: Any) -> tuple[Any, ...]:
    """None, one penalty or a sequence of them -> a tuple of checked penalties."""
    if penalty is None:
        return ()
    if isinstance(penalty, (list, tuple)):
        return tuple(check_penalty(p) for p in penalty)
    return (check_penalty(penalty),)
