"""Old attribute names kept working for a while, with a warning that names the new one.

Example:
    >>> import warnings
    >>> class Box:
    ...     def __init__(self, bridge):
    ...         self.bridge = bridge
    ...     model = DeprecatedAlias("bridge", "a bridge's own .model is the Hugging Face module")
    >>> with warnings.catch_warnings(record=True) as caught:
    ...     warnings.simplefilter("always")
    ...     Box(3).model
    3
    >>> str(caught[0].message)
    "Box.model is deprecated; use Box.bridge (a bridge's own .model is the Hugging Face module)"
"""

from __future__ import annotations

import warnings
from typing import Any

__all__ = ["DeprecatedAlias"]


class DeprecatedAlias:
    """A class attribute that reads and writes ``new`` and warns (``DeprecationWarning``)."""

    def __init__(self, new: str, why: str = "") -> None:
        self.new, self.why, self.old = new, why, "?"

    def __set_name__(self, owner: type, name: str) -> None:
        self.old = name

    def _warn(self, owner: type) -> None:
        reason = f" ({self.why})" if self.why else ""
        warnings.warn(f"{owner.__name__}.{self.old} is deprecated; use {owner.__name__}.{self.new}{reason}",
                      DeprecationWarning, stacklevel=3)

    def __get__(self, instance: Any, owner: type) -> Any:
        if instance is None:
            return self
        self._warn(owner)
        return getattr(instance, self.new)

    def __set__(self, instance: Any, value: Any) -> None:
        self._warn(type(instance))
        setattr(instance, self.new, value)
