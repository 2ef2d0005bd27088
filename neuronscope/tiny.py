"""Tiny random TransformerBridge models for examples, tests and quick experiments.

Example:
    >>> model = tiny_model("rms_gated_rotary", seed=1)
    >>> model.cfg.gated_mlp, model.cfg.d_mlp
    (True, 48)
"""

from __future__ import annotations

from typing import Any, Literal

from neuronscope.models import boot_native, native_config
from neuronscope.types import Model

__all__ = ["KINDS", "tiny_model"]

KINDS = ("ln_gelu", "rms_gated_rotary")


def tiny_model(kind: Literal["ln_gelu", "rms_gated_rotary"] = "ln_gelu", *, d_vocab: int = 50, seed: int = 0,
               n_layers: int = 2, tokenizer: Any = None) -> Model:
    """A tiny random bridge in eval mode (d_model 32, 4 heads, d_mlp 48, context 24).

    ``"ln_gelu"``: LayerNorm, GELU MLP, learned positions (GPT-2-like); ``"rms_gated_rotary"``:
    RMSNorm, gated SiLU MLP, rotary positions (Llama-like). Same ``seed``, same weights.
    ``tokenizer``: attached to the model (as ``model.tokenizer``), and ``d_vocab`` set to its
    size, so the model reads facts tokenized by it (untrained: its answers are random).

    Example:
        >>> tiny_model(n_layers=1).cfg.n_layers
        1
        >>> from neuronscope import FactWorld
        >>> world = FactWorld.synthetic(n_people=10)
        >>> tiny_model(tokenizer=world.tokenizer).cfg.d_vocab == len(world.tokenizer)
        True
    """
    if tokenizer is not None:
        d_vocab = len(tokenizer)
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    if n_layers < 1 or d_vocab < 2:
        raise ValueError(f"need n_layers >= 1 and d_vocab >= 2, got {n_layers} and {d_vocab}")
    common = dict(d_model=32, d_head=8, n_heads=4, n_layers=n_layers, n_ctx=24, d_vocab=d_vocab,
                  d_mlp=48, seed=seed)
    if kind == "ln_gelu":
        config = native_config(**common, act_fn="gelu", normalization_type="LN")
    else:
        config = native_config(**common, act_fn="silu", normalization_type="RMS", gated_mlp=True,
                               positional_embedding_type="rotary", final_rms=True)
    model = boot_native(config)
    if tokenizer is not None:
        model.tokenizer = tokenizer
    return model
