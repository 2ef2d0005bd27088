"""Attribution sites: which hidden representation of a block holds the "neurons".

neuronscope's default site is the MLP neurons (``mlp_post``, ``blocks.{l}.mlp.hook_post``).
The paper also analyses the outputs of the attention Q, K, V and O maps and of the MLP's
gate, up and down maps; each scalar of such an output is a neuron. Q, K and V are per head
dimension: their units are ``head * d_head + dim`` (K and V have the key/value heads, fewer
than Q's under grouped-query attention).

Example:
    >>> site_hook_name("q", 3)
    'blocks.3.attn.q.hook_out'
    >>> sorted(SITES)[:3]
    ['down', 'gate', 'k']
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from neuronscope.hooks import check_layers, model_device

__all__ = ["DEFAULT_SITE", "MODULE_ORDER", "SITES", "Site", "resolve_sites", "site_hook_name"]

DEFAULT_SITE = "mlp_post"
# name -> hook template (each hook's output is [batch, pos, ...]; trailing dims are flattened)
SITES: dict[str, str] = {
    "q": "blocks.{layer}.attn.q.hook_out",
    "k": "blocks.{layer}.attn.k.hook_out",
    "v": "blocks.{layer}.attn.v.hook_out",
    "o": "blocks.{layer}.attn.o.hook_out",
    "gate": "blocks.{layer}.mlp.gate.hook_out",
    "up": "blocks.{layer}.mlp.in.hook_out",
    "mlp_post": "blocks.{layer}.mlp.hook_post",
    "down": "blocks.{layer}.mlp.out.hook_out",
}
MODULE_ORDER = ("q", "k", "v", "o", "gate", "up", "mlp_post", "down")
_DESCRIPTION = {
    "q": "attention query projection output (per head dimension)",
    "k": "attention key projection output (per key/value head dimension)",
    "v": "attention value projection output (per key/value head dimension)",
    "o": "attention output projection (the attention block's output)",
    "gate": "MLP gate projection output (gated MLPs only)",
    "up": "MLP up/input projection output (the pre-activation on non-gated MLPs)",
    "mlp_post": "MLP neurons after the activation (neuronscope's default)",
    "down": "MLP down/output projection output",
}


def site_hook_name(site: str, layer: int) -> str:
    """The hook point of ``site`` in block ``layer``."""
    if site not in SITES:
        raise ValueError(f"unknown site {site!r}; expected one of {list(SITES)}")
    return SITES[site].format(layer=int(layer))


@dataclass(frozen=True)
class Site:
    """One resolved site: its name and how many units (scalars per token) it has."""

    name: str
    width: int

    @property
    def description(self) -> str:
        return _DESCRIPTION[self.name]


def _names(sites: str | Sequence[str] | None) -> list[str]:
    if sites is None:
        return [DEFAULT_SITE]
    names = [sites] if isinstance(sites, str) else list(sites)
    if not names:
        raise ValueError("sites is empty; pass None for the MLP neurons")
    bad = [s for s in names if s not in SITES]
    if bad:
        raise ValueError(f"unknown site(s) {bad}; expected names from {list(SITES)}")
    if len(set(names)) != len(names):
        raise ValueError(f"sites {names} repeat a site")
    return sorted(names, key=MODULE_ORDER.index)


def resolve_sites(model: Any, sites: str | Sequence[str] | None,
                  layers: Sequence[int] | None = None) -> list[Site]:
    """Check ``sites`` exist in every layer of ``layers`` and measure their widths.

    ``ValueError`` names a site the architecture lacks (e.g. ``gate`` on GPT-2, whose MLP
    is not gated) before any work. The widths come from one forward pass on one token.
    """
    hook_dict = getattr(model, "hook_dict", None)
    if hook_dict is None or getattr(model, "cfg", None) is None:
        raise ValueError(f"{type(model).__name__} is not a hooked TransformerLens model (no hook_dict/cfg)")
    names = _names(sites)
    layer_list = check_layers(model, layers)
    for name in names:
        missing = [site_hook_name(name, layer) for layer in layer_list
                   if site_hook_name(name, layer) not in hook_dict]
        if missing:
            have = [s for s in SITES if site_hook_name(s, layer_list[0]) in hook_dict]
            raise ValueError(f"site {name!r} ({_DESCRIPTION[name]}) does not exist in this architecture: "
                             f"no hook {missing[0]}; sites available here: {have}")
    widths: dict[str, int] = {}
    layer = layer_list[0]

    def measure(site: str):  # hook.name is the canonical name, not the alias: bind the site
        def hook(act: torch.Tensor, hook: Any) -> None:
            widths[site] = int(act[0, 0].numel())
        return hook

    token = torch.zeros(1, 1, dtype=torch.long, device=model_device(model))
    with torch.no_grad(), model.hooks(fwd_hooks=[(site_hook_name(s, layer), measure(s)) for s in names]):
        model(token)
    return [Site(name, widths[name]) for name in names]
