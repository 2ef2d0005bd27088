"""jaxtyping shape checks for the test run (installed by the repository's root ``conftest.py``).

Every function and dataclass of the package checks the array arguments and results it annotates
with a jaxtyping shape (``Float[Tensor, "fact layer neuron"]``; dimensions shared across one
call). Only array annotations are checked: other bad input keeps raising the package's own
``ValueError``, which the tests assert.
"""

from __future__ import annotations

import functools
import inspect
import re
import types
import typing
from collections.abc import Callable
from typing import Any

import torch
from jaxtyping import AbstractArray, TypeCheckError

__all__ = ["check_shapes"]


def _is_array_hint(hint: Any) -> bool:
    return isinstance(hint, type) and issubclass(hint, AbstractArray)


def _matches(value: Any, hint: Any) -> bool:
    """Whether ``value`` fits ``hint`` where the hint holds a jaxtyping array type; True otherwise."""
    if _is_array_hint(hint):
        return isinstance(value, hint)
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        arrays = [a for a in args if _is_array_hint(a)]
        if not arrays or value is None or not isinstance(value, torch.Tensor):
            return True
        return any(isinstance(value, a) for a in arrays)
    if origin is tuple and args and Ellipsis not in args and isinstance(value, tuple):
        return len(value) != len(args) or all(_matches(v, a) for v, a in zip(value, args, strict=True))
    return True


def check_shapes(fn: Callable) -> Callable:
    """A typechecker for ``jaxtyping.jaxtyped``: ``TypeCheckError`` when an array argument or the
    result contradicts its annotated dtype or shape.

    jaxtyping hands the typechecker two stand-ins of each function: one with the parameters only,
    called before the function runs, and one that also takes the result, called after it. Only
    the second checks, so a function that refuses bad input with its own ``ValueError`` (which
    the tests assert) is heard first; one that runs on arrays contradicting its annotation
    fails the check.
    """
    try:
        hints = typing.get_type_hints(fn, include_extras=True)
        parameters = list(inspect.signature(fn).parameters.values())
    except Exception:  # unresolved forward references: nothing to check
        return fn
    last = parameters[-1] if parameters else None
    stand_in_for_params = (last is None or last.kind is not inspect.Parameter.KEYWORD_ONLY
                           or not re.fullmatch(r"ret\d*", last.name))
    if stand_in_for_params:
        return fn
    arrays = {name: hint for name, hint in hints.items()
              if name not in ("return", last.name) and "jaxtyping" in repr(hint)}
    result = hints.get("return")

    @functools.wraps(fn)
    def checked(*args: Any, **kwargs: Any) -> Any:
        out = kwargs[last.name]
        bound = inspect.signature(fn).bind(*args, **kwargs)
        wrong = [f"argument {name!r} does not match {hint}" for name, hint in arrays.items()
                 if name in bound.arguments and not _matches(bound.arguments[name], hint)]
        if result is not None and not _matches(out, result):
            wrong.append(f"the result does not match {result}")
        if wrong:
            raise TypeCheckError("; ".join(wrong))
        return fn(*args, **kwargs)

    return checked
