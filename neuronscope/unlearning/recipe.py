"""Recipes: a base method plus penalties, written as one short text.

Grammar: ``method[+penalty[(args)]]...``, e.g. ``"gd"``, ``"gd+ssiuu"`` (SSIUU's defaults: the
paper's Algorithm 1, lambda 1e-3), ``"gd+ssiuu(0.01)"``, ``"npo+ssiuu(1e-3,level=neuron)"``.
Inside the parentheses, plain values fill the penalty's leading arguments in order and
``key=value`` pairs its options; numbers are read as numbers, anything else as text, and
``a/b/c`` as a tuple (``layers=0/1``). ``ssiuu:0.01`` is accepted for ``ssiuu(0.01)``.
A recipe's ``label`` is its canonical text and parses back to the same recipe.

Example:
    >>> r = parse_recipe("gd+ssiuu(0.01,level=neuron)")
    >>> r.method_name, r.label
    ('gd', 'gd+ssiuu(0.01,level=neuron)')
    >>> [x.label for x in parse_recipes("ga, gd+ssiuu")]
    ['ga', 'gd+ssiuu(0.001)']
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from neuronscope.unlearning.methods import get_method
from neuronscope.unlearning.penalties import as_penalties, get_penalty

__all__ = ["Recipe", "parse_recipe", "parse_recipes", "split_recipes"]

_ITEM = re.compile(r"^\s*([A-Za-z_][\w-]*)\s*(?:\((.*)\)|:(.*))?\s*$")


@dataclass(frozen=True)
class Recipe:
    """An unlearning method (a registered name or an object) and its penalties.

    Example:
        >>> Recipe("gd").label
        'gd'
    """

    method: Any = "gd"
    penalties: tuple[Any, ...] = ()

    def __post_init__(self) -> None:
        get_method(self.method)  # a known name or a complete method object
        object.__setattr__(self, "penalties", as_penalties(self.penalties))

    @property
    def method_name(self) -> str:
        return self.method if isinstance(self.method, str) else self.method.name

    @property
    def label(self) -> str:
        return "+".join([self.method_name, *(p.label for p in self.penalties)])

    @property
    def lam(self) -> float:
        """The weight of the first penalty that has one (0 without penalties)."""
        for penalty in self.penalties:
            if hasattr(penalty, "lam"):
                return float(penalty.lam)
        return 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"label": self.label, "method": self.method_name,
                "penalties": [p.to_dict() for p in self.penalties]}

    @classmethod
    def from_dict(cls, record: dict[str, Any]) -> Recipe:
        """Rebuild from :meth:`to_dict` (registered methods and penalties only)."""
        return parse_recipe(record["label"])

    def __str__(self) -> str:
        return self.label


def _value(text: str) -> Any:
    text = text.strip()
    if "/" in text:
        return tuple(_value(part) for part in text.split("/"))
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    if text in ("None", "none"):
        return None
    return text


def _penalty(item: str) -> Any:
    match = _ITEM.match(item)
    if not match:
        raise ValueError(f"cannot read penalty {item!r}: expected name, name(args) or name:lambda")
    name, inside, colon = match.groups()
    factory = get_penalty(name)
    args: list[Any] = []
    kwargs: dict[str, Any] = {}
    raw = inside if inside is not None else (colon.replace(":", ",") if colon else "")
    for piece in (p for p in raw.split(",") if p.strip()):
        key, eq, value = piece.partition("=")
        if eq:
            kwargs[key.strip()] = _value(value)
        elif kwargs:
            raise ValueError(f"penalty {item!r}: a plain value after key=value")
        else:
            args.append(_value(key))
    try:
        return factory(*args, **kwargs)
    except TypeError as error:
        raise ValueError(f"penalty {item!r}: {error}") from None


def parse_recipe(text: str) -> Recipe:
    """``"gd+ssiuu(1e-3)"`` -> :class:`Recipe` (see the module docstring for the grammar)."""
    if not isinstance(text, str) or not text.strip():
        raise ValueError(f"empty recipe {text!r}")
    items = _split(text, "+")
    method = items[0].strip()
    if not re.fullmatch(r"[A-Za-z_][\w-]*", method):
        raise ValueError(f"recipe {text!r}: {method!r} is not a method name")
    return Recipe(method, tuple(_penalty(item) for item in items[1:]))


def parse_recipes(text: str) -> tuple[Recipe, ...]:
    """Comma-separated recipes (commas inside parentheses belong to a penalty)."""
    return tuple(parse_recipe(item) for item in split_recipes(text))


def split_recipes(text: str) -> list[str]:
    """Comma-separated recipes as written, each stripped (commas inside parentheses stay).

    Example:
        >>> split_recipes("ga, gd+ssiuu(1e-3,level=neuron)")
        ['ga', 'gd+ssiuu(1e-3,level=neuron)']
    """
    items = [item.strip() for item in _split(text, ",") if item.strip()]
    if not items:
        raise ValueError(f"no recipes in {text!r}")
    return items


def _split(text: str, sep: str) -> list[str]:
    out, depth, current = [], 0, ""
    for char in text:
        depth += (char == "(") - (char == ")")
        if depth < 0:
            raise ValueError(f"unbalanced parentheses in {text!r}")
        if char == sep and depth == 0:
            out.append(current)
            current = ""
        else:
            current += char
    if depth:
        raise ValueError(f"unbalanced parentheses in {text!r}")
    return [*out, current]
