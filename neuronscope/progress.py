"""Progress bars that draw only where someone watches: on a terminal or in a notebook.

Redrawn bars written to a file or a CI log are hundreds of kilobytes of carriage-return frames,
so :func:`progress_bar` disables itself when its stream (stderr by default) is not a TTY and
no Jupyter kernel runs. ``NEURONSCOPE_PROGRESS=1`` forces bars on, ``=0`` off.

Example:
    >>> import io
    >>> with progress_bar(total=3, file=io.StringIO()) as bar:   # not a terminal: no bar
    ...     bar.update(3)
    >>> bar.disable
    True
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable
from typing import IO, Any

from tqdm.auto import tqdm

__all__ = ["progress_bar", "watched"]


def watched(stream: IO[str] | None = None) -> bool:
    """Whether a bar on ``stream`` (default stderr) would be seen: a TTY, a Jupyter kernel, or
    ``NEURONSCOPE_PROGRESS=1`` (``=0`` says no)."""
    forced = os.environ.get("NEURONSCOPE_PROGRESS", "").strip().lower()
    if forced in ("1", "true", "yes", "on"):
        return True
    if forced in ("0", "false", "no", "off"):
        return False
    if _in_notebook():
        return True
    stream = sys.stderr if stream is None else stream
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty and isatty())
    except ValueError:  # a closed stream
        return False


def _in_notebook() -> bool:
    """A Jupyter kernel runs this code (IPython imported is not enough: tools import it too)."""
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None and hasattr(ipython, "get_ipython") else None
    return shell is not None and getattr(shell, "kernel", None) is not None


def progress_bar(iterable: Iterable[Any] | None = None, *, enabled: bool = True,
                 file: IO[str] | None = None, **kwargs: Any) -> tqdm:
    """A ``tqdm`` bar (same arguments), disabled when ``enabled`` is False or nobody watches
    (see :func:`watched`)."""
    return tqdm(iterable, disable=not (enabled and watched(file)), file=file, **kwargs)
