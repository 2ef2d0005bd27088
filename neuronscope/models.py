"""Loading TransformerLens models from local Hugging Face checkpoints or GGUF files, and copying them.

Example (needs a checkpoint folder with its tokenizer)::

    model = load_model("/path/to/unlearned-checkpoint")
    clone = copy_model(model)          # independent; safe where copy.deepcopy of a bridge is not
"""

from __future__ import annotations

import copy
import os
import types
from pathlib import Path
from typing import Any

import torch

from neuronscope.gguf import check_gguf, convert_gguf

__all__ = ["TOKENIZER_FILES", "boot_native", "copy_model", "guard_deepcopy", "load_model", "native_config",
           "resolve_device"]

TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json", "tokenizer_config.json",
                   "spiece.model")


def _bridge_class() -> Any:
    import transformer_lens.model_bridge.sources.native
    import transformer_lens.model_bridge.sources.transformers  # noqa: F401
    from transformer_lens.model_bridge import TransformerBridge

    return TransformerBridge


def native_config(**settings: Any) -> Any:
    """A ``TransformerBridgeConfig`` for :func:`boot_native`."""
    from transformer_lens.config import TransformerBridgeConfig

    return TransformerBridgeConfig(**settings)


def boot_native(config: Any, **boot_kwargs: Any) -> Any:
    """A TransformerBridge of TransformerLens' own (native) architecture with ``config``'s random
    weights (a :func:`native_config`), in eval mode and safe to ``copy.deepcopy``.

    Example:
        >>> config = native_config(d_model=16, d_head=4, n_heads=4, n_layers=1, n_ctx=8, d_vocab=20,
        ...                        d_mlp=32, act_fn="gelu", normalization_type="LN")
        >>> boot_native(config).cfg.d_mlp
        32
    """
    model = _bridge_class().boot_native(config, **boot_kwargs)
    model.eval()
    return guard_deepcopy(model)


def resolve_device(device: str | torch.device | None, *,
                   cuda_available: bool | None = None) -> torch.device:
    """``"auto"`` (or None): CUDA when available, else CPU; anything else as ``torch.device``.

    ``cuda_available`` overrides ``torch.cuda.is_available()`` (for tests of the logic).
    """
    if device is None or (isinstance(device, str) and device == "auto"):
        available = torch.cuda.is_available() if cuda_available is None else cuda_available
        return torch.device("cuda" if available else "cpu")
    try:
        return torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(f"device must be 'auto', 'cpu', 'cuda', 'cuda:N' or a torch.device, "
                         f"got {device!r}") from None


def load_model(
    path: str | os.PathLike,
    *,
    device: str | torch.device | None = "cpu",
    dtype: torch.dtype = torch.float32,
    cache: str | os.PathLike | None = None,
    **boot_kwargs: Any,
) -> Any:
    """A ``TransformerBridge`` with its tokenizer from a local Hugging Face folder or a GGUF file.

    A GGUF file (``*.gguf``) is converted once into a Hugging Face folder in the neuronscope
    cache (``cache``, default :func:`neuronscope.cache.cache_dir`; see :mod:`neuronscope.gguf`)
    and loaded from there. A name that is neither a folder nor a file is passed to the hub
    loader (needs network). A folder is checked for a config and a tokenizer before anything is
    loaded. ``device``: ``"cpu"``, ``"cuda"``, ``"auto"`` (CUDA when available) or a device.

    Example (needs a checkpoint folder)::

        model = load_model("checkpoints/llama-unlearned")
    """
    bridge = _bridge_class()
    device = resolve_device(device)
    text = os.fspath(path)
    folder = Path(text).expanduser()
    if text.lower().endswith(".gguf") or folder.is_file():
        folder = convert_gguf(check_gguf(folder), cache=cache, dtype=dtype)
        text = str(folder)
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
    return guard_deepcopy(model)


def _hub_like(text: str) -> bool:
    """A hub id such as ``gpt2`` or ``org/name`` (at most one slash, no empty part)."""
    parts = text.split("/")
    return len(parts) <= 2 and all(parts)


def copy_model(model: Any, memo: dict[int, Any] | None = None) -> Any:
    """An independent deep copy: no user hooks, nothing shared with the original but the tokenizer.

    Two TransformerLens details make a plain ``copy.deepcopy`` unsafe, and both are handled:

    * tensors that bridge modules cache from their last forward pass (the attention pattern)
      may still carry an autograd graph; they are copied detached (``deepcopy`` refuses
      non-leaf tensors);
    * a bridge block that has already run holds capture pre-hooks whose closures point at the
      *original* block; a copied closure would make the copy write into the original. Those
      hooks are dropped from the clone (never from the original), and each clone block wires
      its own on its first forward.

    Bridges from :func:`load_model`, ``ns.organism`` and ``copy_model`` itself route a plain
    ``copy.deepcopy`` here (:func:`guard_deepcopy`). ``memo``: ``deepcopy``'s memo, when called
    from it.

    Example:
        >>> from neuronscope.tiny import tiny_model
        >>> model = tiny_model()
        >>> clone = copy_model(model)
        >>> clone is not model and torch.equal(clone.embed.W_E, model.embed.W_E)
        True
    """
    tokenizer = getattr(model, "tokenizer", None)
    memo = {} if memo is None else memo
    if tokenizer is not None:
        memo.setdefault(id(tokenizer), tokenizer)
    for module in model.modules():
        for value in vars(module).values():
            if isinstance(value, torch.Tensor) and value.grad_fn is not None:
                memo[id(value)] = value.detach().clone()
    guard = vars(model).pop("__deepcopy__", None)  # deepcopy would call it again
    try:
        clone = copy.deepcopy(model, memo)
    finally:
        if guard is not None:
            vars(model)["__deepcopy__"] = guard
    _drop_copied_capture_hooks(clone)
    if hasattr(clone, "reset_hooks"):
        clone.reset_hooks(including_permanent=False)
    return guard_deepcopy(clone)


def guard_deepcopy(model: Any) -> Any:
    """Make a plain ``copy.deepcopy(model)`` as safe as :func:`copy_model` (which it then calls);
    returns ``model``.

    ``copy.deepcopy`` of a bridge that has run copies closures that point at the original, so
    the copy writes into the original. This sets an instance-level ``__deepcopy__`` on
    ``model`` (its class is untouched); bridges from :func:`load_model`, ``ns.organism``,
    ``copy_model`` and :func:`neuronscope.tiny.tiny_model` carry it already.

    Example:
        >>> import copy
        >>> from neuronscope.tiny import tiny_model
        >>> model = tiny_model()
        >>> clone = copy.deepcopy(model)      # goes through copy_model
        >>> clone.__deepcopy__.__self__ is clone
        True
    """
    vars(model)["__deepcopy__"] = types.MethodType(copy_model, model)
    return model


_HOOK_DICTS = ("_forward_pre_hooks", "_forward_hooks", "_forward_pre_hooks_with_kwargs",
               "_forward_hooks_with_kwargs", "_forward_hooks_always_called")


def _drop_copied_capture_hooks(clone: Any) -> None:
    stale: set[int] = set()
    for module in clone.modules():
        handles = getattr(module, "_capture_hook_handles", None)
        if handles:
            stale.update(handle.id for handle in handles)
            module._capture_hook_handles = []
            module._capture_hooks_wired = False
    if not stale:
        return
    for module in clone.modules():
        for name in _HOOK_DICTS:
            hooks = getattr(module, name, None)
            if hooks:
                for key in stale & set(hooks):
                    hooks.pop(key)
