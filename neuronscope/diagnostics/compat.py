"""``check_compatible``: are two models the same network before and after unlearning?

Example:
    >>> from neuronscope.tiny import tiny_model
    >>> check_compatible(tiny_model(seed=0), tiny_model(seed=1), tokenizer="shared")
    >>> try:
    ...     check_compatible(tiny_model(), tiny_model(n_layers=1), tokenizer="shared")
    ... except ValueError as error:
    ...     print(str(error)[:43])
    before and after differ in n_layers: 2 vs 1
"""

from __future__ import annotations

from typing import Any

__all__ = ["check_compatible"]

_CFG_FIELDS = ("architecture", "original_architecture", "n_layers", "d_mlp", "d_model", "n_heads",
               "d_vocab", "gated_mlp", "act_fn", "normalization_type", "positional_embedding_type")


def _vocab(tokenizer: Any) -> Any:
    if hasattr(tokenizer, "get_vocab"):
        return tokenizer.get_vocab()
    if hasattr(tokenizer, "vocab"):
        return list(tokenizer.vocab)
    return None


def check_compatible(before: Any, after: Any, *, names: tuple[str, str] = ("before", "after"),
                     tokenizer: Any = None) -> None:
    """``ValueError`` naming the first difference in architecture, layer count, widths or
    tokenizer between two models that should be the same network before and after unlearning."""
    for name, model in zip(names, (before, after), strict=True):
        if getattr(model, "cfg", None) is None or not hasattr(model, "hook_dict"):
            raise ValueError(f"{name} is not a hooked TransformerLens model or a NeuronAttribution "
                             f"(got {type(model).__name__})")
    for key in _CFG_FIELDS:
        a, b = getattr(before.cfg, key, None), getattr(after.cfg, key, None)
        if a != b:
            raise ValueError(f"{names[0]} and {names[1]} differ in {key}: {a!r} vs {b!r}; "
                             "diagnosis compares one network before and after unlearning")
    native = (type(getattr(before, "original_model", before)).__name__,
              type(getattr(after, "original_model", after)).__name__)
    if native[0] != native[1]:
        raise ValueError(f"{names[0]} and {names[1]} are different architectures: {native[0]} vs {native[1]}")
    if tokenizer is not None:
        return
    tok_a, tok_b = getattr(before, "tokenizer", None), getattr(after, "tokenizer", None)
    if tok_a is None or tok_b is None:
        raise ValueError(f"{names[0 if tok_a is None else 1]} carries no tokenizer; pass tokenizer=...")
    if tok_a is tok_b:
        return
    vocab_a, vocab_b = _vocab(tok_a), _vocab(tok_b)
    if vocab_a is None or vocab_b is None:
        if len(tok_a) != len(tok_b):
            raise ValueError(f"tokenizers differ in size: {len(tok_a)} vs {len(tok_b)}")
        return
    if vocab_a != vocab_b:
        size = (len(vocab_a), len(vocab_b))
        raise ValueError(f"{names[0]} and {names[1]} have different tokenizers (vocabularies of "
                         f"{size[0]} and {size[1]} tokens that do not map the same); use one tokenizer")
