"""MLP neuron hook resolution: which hook points hold each layer's neurons.

Example:
    >>> from neuronscope.tiny import tiny_model
    >>> names = mlp_hook_names(tiny_model())
    >>> names[0]
    'blocks.0.mlp.hook_post'
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from neuronscope.types import Model

__all__ = [
    "MLP_POST",
    "check_layers",
    "d_mlp",
    "hook_count",
    "mlp_hook_name",
    "mlp_hook_names",
    "model_device",
    "n_layers",
]

MLP_POST = "blocks.{layer}.mlp.hook_post"


def mlp_hook_name(layer: int) -> str:
    """The hook alias of layer ``layer``'s MLP neurons (post-activation, before the output
    projection; also present on gated MLPs)."""
    return MLP_POST.format(layer=layer)


def n_layers(model: Model) -> int:
    return int(model.cfg.n_layers)


def d_mlp(model: Model) -> int:
    """Width of the MLP neuron layer."""
    value = getattr(model.cfg, "d_mlp", None)
    if not value:
        raise ValueError(f"model {type(model).__name__} reports no MLP width (cfg.d_mlp)")
    return int(value)


def check_layers(model: Model, layers: Sequence[int] | None) -> list[int]:
    """Validate ``layers`` against the model (None means every layer)."""
    total = n_layers(model)
    if layers is None:
        return list(range(total))
    layers = [int(layer) for layer in layers]
    if not layers:
        raise ValueError("layers is empty; pass None for every layer")
    bad = [layer for layer in layers if not 0 <= layer < total]
    if bad:
        raise ValueError(f"layer(s) {bad} out of range: the model has layers 0..{total - 1}")
    if len(set(layers)) != len(layers):
        raise ValueError(f"layers {layers} repeat a layer")
    return sorted(layers)


def mlp_hook_names(model: Model, layers: Sequence[int] | None = None) -> list[str]:
    """Hook names of the MLP neurons of ``layers`` (default all), checked to exist.

    Raises ``ValueError`` for a model without MLP neuron hooks (attention-only models,
    or objects that are not hooked TransformerLens models).
    """
    hook_dict = getattr(model, "hook_dict", None)
    if hook_dict is None or getattr(model, "cfg", None) is None:
        raise ValueError(
            f"{type(model).__name__} is not a hooked TransformerLens model (no hook_dict/cfg); "
            "load one with ns.load_model or ns.organism"
        )
    names = [mlp_hook_name(layer) for layer in check_layers(model, layers)]
    missing = [name for name in names if name not in hook_dict]
    if missing:
        raise ValueError(
            f"model has no MLP neuron hooks {missing[:3]}{'...' if len(missing) > 3 else ''} "
            "(attention-only model, or an architecture without blocks.{l}.mlp.hook_post)"
        )
    return names


def _hook_count(model: Model) -> int:
    return sum(len(hp._forward_hooks) + len(hp._backward_hooks) for hp in model.hook_dict.values())


def hook_count(model: Model) -> int:
    """How many forward/backward hooks the model's hook points carry right now."""
    return _hook_count(model)


def model_device(model: Model) -> torch.device:
    return next(model.parameters()).device
