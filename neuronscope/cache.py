"""Where neuronscope keeps its on-disk caches (organisms, converted GGUF checkpoints).

Example:
    >>> import os
    >>> saved = os.environ.get("NEURONSCOPE_CACHE")
    >>> os.environ["NEURONSCOPE_CACHE"] = "/tmp/ns-cache-example"
    >>> str(cache_dir())
    '/tmp/ns-cache-example'
    >>> if saved is None:
    ...     del os.environ["NEURONSCOPE_CACHE"]
    ... else:
    ...     os.environ["NEURONSCOPE_CACHE"] = saved
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["cache_dir"]


def cache_dir() -> Path:
    """``$NEURONSCOPE_CACHE``, else ``$XDG_CACHE_HOME/neuronscope``, else ``~/.cache/neuronscope``."""
    explicit = os.environ.get("NEURONSCOPE_CACHE")
    if explicit:
        return Path(explicit).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "neuronscope"
