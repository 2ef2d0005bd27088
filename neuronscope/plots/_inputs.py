"""Input checks shared by the plot functions: turn results objects or arrays into numpy.

Plot functions accept either a neuronscope results object or plain tensors/arrays; these
helpers validate kinds and shapes up front and raise ``ValueError`` naming the problem.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["NeuronValues", "as_array", "check_choice", "neuron_values", "records"]


METHOD_LABELS = {"ig": "IG attribution", "grad_x_act": "act × grad attribution",
                 "param_x_grad": "param × grad attribution"}


def as_array(value: Any, name: str, ndim: int | tuple[int, ...]) -> np.ndarray:
    """``value`` (tensor, array or nested list) as a float numpy array of ``ndim`` dimensions."""
    if hasattr(value, "detach"):
        value = value.detach().cpu().float().numpy()
    try:
        array = np.asarray(value, dtype=float)
    except (TypeError, ValueError) as error:
        raise ValueError(
            f"{name} must be a tensor or array of numbers, got {type(value).__name__}") from error
    allowed = (ndim,) if isinstance(ndim, int) else ndim
    if array.ndim not in allowed:
        wanted = " or ".join(f"{d}-D" for d in allowed)
        raise ValueError(f"{name} must be {wanted}, got shape {tuple(array.shape)}")
    if array.size == 0:
        raise ValueError(f"{name} is empty (shape {tuple(array.shape)})")
    if np.isnan(array).any():
        raise ValueError(f"{name} contains NaN")
    return array


def check_choice(name: str, value: Any, choices: Sequence[Any]) -> None:
    if value not in choices:
        raise ValueError(f"{name} must be one of {list(choices)}, got {value!r}")


@dataclass
class NeuronValues:
    """A [layer, neuron] matrix with its layer labels and, optionally, per-fact scores."""

    matrix: np.ndarray  # [layer, neuron]
    layers: list[int]
    per_fact: np.ndarray | None = None  # [fact, layer, neuron]
    fact_ids: list[str] | None = None
    label: str = "attribution"
    unit_labels: list[str] | None = None  # "site/index" per neuron when several sites were attributed

    def units(self, index: np.ndarray) -> np.ndarray:
        """Labels of the neurons at ``index`` (their indices, or ``site/index`` with sites)."""
        if self.unit_labels is None:
            return index
        return np.asarray(self.unit_labels, dtype=object)[index]


def _is_attribution(value: Any) -> bool:
    return hasattr(value, "scores") and hasattr(value, "layers") and hasattr(value, "fact_ids")


def neuron_values(value: Any, name: str = "values", layers: Sequence[int] | None = None,
                  fact_ids: Sequence[str] | None = None) -> NeuronValues:
    """Accept a ``NeuronAttribution``, a [layer, neuron] or a [fact, layer, neuron] tensor."""
    label = "attribution"
    unit_labels = None
    if _is_attribution(value):
        sites = getattr(value, "sites", None)
        if sites:
            unit_labels = [f"{site}/{i}" for site, width in sites for i in range(int(width))]
        per_fact = as_array(value.scores, f"{name}.scores", 3)
        layers = list(value.layers) if layers is None else layers
        fact_ids = list(value.fact_ids) if fact_ids is None else fact_ids
        method = str(getattr(value, "method", ""))
        label = METHOD_LABELS.get(method, f"{method} attribution" if method else "attribution")
        if getattr(value, "target", None) == "logprob":
            label += " (log P)"
    elif isinstance(value, (Mapping, str)) or not (hasattr(value, "__len__") or hasattr(value, "shape")):
        raise ValueError(
            f"{name} must be a NeuronAttribution or a [layer, neuron] / [fact, layer, neuron] tensor, "
            f"got {type(value).__name__}")
    else:
        array = as_array(value, name, (2, 3))
        per_fact = array if array.ndim == 3 else None
        if array.ndim == 2:
            matrix = array
    if per_fact is not None:
        matrix = per_fact.mean(axis=0)
    n_layers = matrix.shape[0]
    layers = list(range(n_layers)) if layers is None else [int(x) for x in layers]
    if len(layers) != n_layers:
        raise ValueError(f"{name}: {len(layers)} layer labels for {n_layers} layers")
    if fact_ids is not None:
        fact_ids = [str(f) for f in fact_ids]
        if per_fact is None:
            raise ValueError(f"{name}: fact_ids given but the values have no fact dimension")
        if len(fact_ids) != per_fact.shape[0]:
            raise ValueError(f"{name}: {len(fact_ids)} fact ids for {per_fact.shape[0]} facts")
    elif per_fact is not None:
        fact_ids = [f"fact {i}" for i in range(per_fact.shape[0])]
    return NeuronValues(matrix, layers, per_fact, fact_ids, label, unit_labels)


def records(value: Any, name: str) -> list[dict]:
    """Rows as a list of dicts from a DataFrame, an object with ``to_pandas()``, or dicts."""
    if hasattr(value, "to_pandas") and not hasattr(value, "to_dict"):
        value = value.to_pandas()
    if hasattr(value, "to_dict") and hasattr(value, "columns"):
        return [dict(row) for row in value.to_dict(orient="records")]
    if isinstance(value, Sequence) and not isinstance(value, str) and all(
            isinstance(r, Mapping) for r in value):
        if not value:
            raise ValueError(f"{name} is empty")
        return [dict(r) for r in value]
    raise ValueError(f"{name} must be a pandas DataFrame, a results object with to_pandas(), "
                     f"or a list of dicts; got {type(value).__name__}")
