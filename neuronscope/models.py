"""Loading TransformerLens models from local Hugging Face checkpoints, and copying them.

Example:
    >>> model = load_model("/path/to/unlearned-checkpoint")      # doctest: +SKIP
    >>> model.tokenizer is not None                               # doctest: +SKIP
    True
"""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any

import torch

__all__ = ["TOKENIZER_FILES", "copy_model", "load_model", "native_config"]

TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json", "tokenizer_config.json",
                   "spiece.model")


def _bridge_class() -> Any:
    import transformer_lens.model_bridge.sources.native
    import transformer_lens.model_bridge.sources.transformers  # noqa: F401
    from transformer_lens.model_bridge import TransformerBridge

    return TransformerBridge


def native_config(**settings: Any) -> Any:
    """A ``TransformerBridgeConfig`` for ``TransformerBridge.boot_native``."""
    from transformer_lens.config import TransformerBridgeConfig

    return TransformerBridgeConfig(**settings)


def load_model(
    path: str | os.PathLike,
    *,
    device: str | torch.device | None = "cpu",
    dtype: torch.dtype = torch.float32,
    **boot_kwargs: Any,
) -> Any:
    """A ``TransformerBridge`` with its tokenizer from a local Hugging Face checkpoint folder.

    A name that is not a folder is passed to the hub loader (needs network). The folder is
    checked for a config and a tokenizer before anything is loaded.

    Example:
        >>> model = load_model("checkpoints/llama-unlearned")        # doctest: +SKIP
    """
    bridge = _bridge_class()
    text = os.fspath(path)
    folder = Path(text).expanduser()
    looks_local = folder.exists() or text.startswith((".", "/", "~")) or not _hub_like(text)
    if looks_local:
        if not folder.is_dir():
            raise FileNotFoundError(f"checkpoint folder {text!r} does not exist")
        if not (folder / "config.json").is_file():
            raise ValueError(f"checkpoint folder {text!r} has no config.json")
        if not any((folder / name).is_file() for name in TOKENIZER_FILES):
            raise ValueError(
                f"checkpoint folder {text!r} holds no tokenizer (expected one of {TOKENIZER_FILES})"
            )
        text = str(folder.resolve())
    model = bridge.boot_transformers(text, device=device, dtype=dtype, **boot_kwargs)
    model.eval()
    return model


def _hub_like(text: str) -> bool:
    """A hub id such as ``gpt2`` or ``org/name`` (at most one slash, no empty part)."""
    parts = text.split("/")
    return len(parts) <= 2 and all(parts)


def copy_model(model: Any) -> Any:
    """A deep copy with no hooks, parameters detached from the original's autograd graph.

    The tokenizer object is shared, not copied (tokenizers are read-only here).
    """
    tokenizer = getattr(model, "tokenizer", None)
    memo = {id(tokenizer): tokenizer} if tokenizer is not None else {}
    clone = copy.deepcopy(model, memo)
    if hasattr(clone, "reset_hooks"):
        clone.reset_hooks(including_permanent=False)
    return clone
