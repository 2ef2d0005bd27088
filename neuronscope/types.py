"""Shared type names: ``Model``, what every stage takes as "a model".

A ``Model`` is a TransformerLens ``TransformerBridge`` (or anything hooked the same way: a
``cfg``, a ``hook_dict`` and ``hooks()``). It is a runtime-checkable Protocol, so the package
can name it without importing TransformerLens at import time.

Example:
    >>> from neuronscope.tiny import tiny_model
    >>> isinstance(tiny_model(), Model), isinstance("gpt2", Model)
    (True, False)
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

__all__ = ["Model"]


@runtime_checkable
class Model(Protocol):
    """A hooked TransformerLens model (``TransformerBridge``): config, hook points, a forward."""

    cfg: Any
    hook_dict: Any

    def hooks(self, *args: Any, **kwargs: Any) -> Any: ...

    def __call__(self, *args: Any, **kwargs: Any) -> Any: ...
