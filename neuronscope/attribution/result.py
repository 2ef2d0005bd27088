"""``NeuronAttribution``: per-fact, per-neuron attribution scores plus how they were made.

Example:
    >>> import torch
    >>> attr = NeuronAttribution(scores=torch.tensor([[[1.0, -2.0]], [[3.0, 0.0]]]), layers=[0],
    ...                          fact_ids=["a", "b"], method="ig", steps=20, target="prob")
    >>> attr.mean().tolist()
    [[2.0, -1.0]]
    >>> attr.top(1)
    [(0, 0, 2.0)]
"""

from __future__ import annotations

import html
import os
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

from neuronscope.atomic import atomic_torch_save
from neuronscope.attribution.quadrature import canonical_quadrature

__all__ = ["NeuronAttribution"]

_FORMAT = "neuronscope.NeuronAttribution/1"
_TENSORS = ("scores", "convergence_delta", "target_input", "target_baseline", "position_scores",
            "position_mask", "token_max", "token_min", "steps_used")
DEFAULT_SITE = "mlp_post"


@dataclass
class NeuronAttribution:
    """Attribution of each fact's target to each MLP neuron of each attributed layer.

    ``scores[f, i, n]`` is the attribution of neuron ``n`` of model layer ``layers[i]`` on
    fact ``fact_ids[f]`` (summed over the attributed token positions). ``sites`` lists
    ``(site, width)`` pairs when other sites than the MLP neurons were attributed
    (``neuronscope.attribution.sites``): the neuron axis then holds each site's units in
    turn (see :meth:`locate`, :meth:`site_slice`, ``select(site=...)``); None means the MLP
    neurons alone. ``token_max`` / ``token_min`` keep, per fact and neuron, the largest and
    smallest per-token score (the paper's reductions), when requested. For integrated
    gradients, ``convergence_delta[f, i] = scores[f, i].sum() - (target_input[f] -
    target_baseline[f, i])`` measures how far the quadrature is from completeness;
    ``steps_used[f, i]`` counts the gradient evaluations spent on it, and ``tolerance`` is the
    relative completeness tolerance the run aimed at (see ``neuronscope.attribution.adaptive``).
    """

    scores: Float[Tensor, "fact layer neuron"]
    layers: list[int]
    fact_ids: list[str]
    method: str = "ig"
    steps: int = 20
    target: str = "prob"
    quadrature: str = "gauss_legendre"
    baseline: str = "zero"
    positions: str = "prompt"
    model_name: str = ""
    convergence_delta: Float[Tensor, "fact layer"] | None = None
    target_input: Float[Tensor, " fact"] | None = None
    target_baseline: Float[Tensor, "fact layer"] | None = None
    position_scores: Float[Tensor, "fact layer pos neuron"] | None = None
    position_mask: Bool[Tensor, "fact pos"] | None = None
    meta: dict = field(default_factory=dict)
    sites: list | None = None
    token_max: Float[Tensor, "fact layer neuron"] | None = None
    token_min: Float[Tensor, "fact layer neuron"] | None = None
    steps_used: Int[Tensor, "fact layer"] | None = None
    tolerance: float | None = None

    def __post_init__(self) -> None:
        self.layers = [int(layer) for layer in self.layers]
        self.fact_ids = [str(i) for i in self.fact_ids]
        self.quadrature = canonical_quadrature(self.quadrature)  # results saved as "gauss-legendre"
        if self.scores.ndim != 3:
            raise ValueError(f"scores must be [fact, layer, neuron], got shape {tuple(self.scores.shape)}")
        n_fact, n_layer, width = self.scores.shape
        if n_fact != len(self.fact_ids) or n_layer != len(self.layers):
            raise ValueError(
                f"scores shape {tuple(self.scores.shape)} does not match {len(self.fact_ids)} fact ids "
                f"and {len(self.layers)} layers"
            )
        if self.sites is not None:
            self.sites = [(str(name), int(w)) for name, w in self.sites]
            if sum(w for _, w in self.sites) != width:
                raise ValueError(f"sites {self.sites} add up to {sum(w for _, w in self.sites)} units, "
                                 f"but scores have {width}")
        for name in ("token_max", "token_min"):
            value = getattr(self, name)
            if value is not None and value.shape != self.scores.shape:
                raise ValueError(f"{name} has shape {tuple(value.shape)}, "
                                 f"expected {tuple(self.scores.shape)}")

    # --- sites ------------------------------------------------------------------------
    @property
    def site_widths(self) -> list[tuple[str, int]]:
        """``(site, width)`` pairs in the order of the neuron axis."""
        return list(self.sites) if self.sites is not None else [(DEFAULT_SITE, self.n_neurons)]

    def site_slice(self, site: str) -> slice:
        """Where ``site``'s units sit on the neuron axis."""
        start = 0
        for name, width in self.site_widths:
            if name == site:
                return slice(start, start + width)
            start += width
        raise ValueError(f"site {site!r} was not attributed; sites are {[n for n, _ in self.site_widths]}")

    def locate(self, unit: int) -> tuple[str, int]:
        """``(site, index within the site)`` of position ``unit`` on the neuron axis."""
        start = 0
        for name, width in self.site_widths:
            if start <= unit < start + width:
                return name, unit - start
            start += width
        raise ValueError(f"unit {unit} out of range for {self.n_neurons} units")

    # --- shape ------------------------------------------------------------------------
    @property
    def n_facts(self) -> int:
        return self.scores.shape[0]

    @property
    def n_neurons(self) -> int:
        return self.scores.shape[2]

    def __len__(self) -> int:
        return self.n_facts

    @property
    def nbytes(self) -> int:
        """Bytes held by the result's tensors."""
        return sum(t.numel() * t.element_size() for t in (getattr(self, name) for name in _TENSORS)
                   if t is not None)

    @staticmethod
    def estimate_bytes(n_facts: int, n_layers: int, n_neurons: int, *, per_position_width: int | None = None,
                       ig: bool = True) -> int:
        """Bytes of an attribution result before computing it (float32 scores, per-token
        scores over ``per_position_width`` positions when asked, int64 step counts).

        Example:
            >>> round(NeuronAttribution.estimate_bytes(200, 30, 1536) / 2**20, 1)  # SmolLM2, 200 facts, MiB
            35.2
        """
        fl = n_facts * n_layers
        total = 4 * fl * n_neurons + 4 * n_facts  # scores, target_input
        if ig:
            total += (4 + 4 + 8) * fl  # convergence_delta, target_baseline, steps_used
        if per_position_width is not None:
            total += 4 * fl * per_position_width * n_neurons + n_facts * per_position_width
        return total

    def _layer_index(self, layer: int) -> int:
        if layer not in self.layers:
            raise ValueError(f"layer {layer} was not attributed; layers are {self.layers}")
        return self.layers.index(layer)

    # --- reductions -------------------------------------------------------------------
    def mean(self) -> Float[Tensor, "layer neuron"]:
        """Mean over facts."""
        return self.scores.mean(0)

    def sum(self) -> Float[Tensor, "layer neuron"]:
        """Sum over facts."""
        return self.scores.sum(0)

    def per_layer(self) -> Float[Tensor, "fact layer"]:
        """Total attribution of each layer per fact (sum over its neurons); for integrated
        gradients this is ``f(h) - f(baseline)`` up to the convergence delta."""
        return self.scores.sum(-1)

    def layer(self, layer: int) -> Float[Tensor, "fact neuron"]:
        """Scores of one model layer (by its index in the model)."""
        return self.scores[:, self._layer_index(layer)]

    def top(self, k: int = 10, *, largest: bool = True, absolute: bool = False,
            reduce: str = "mean") -> list[tuple[int, int, float]]:
        """The ``k`` neurons with the largest (or smallest) fact-reduced score, as
        ``(layer, neuron, value)`` with the model's layer index."""
        if reduce not in ("mean", "sum"):
            raise ValueError(f"reduce must be 'mean' or 'sum', got {reduce!r}")
        table = self.mean() if reduce == "mean" else self.sum()
        key = table.abs() if absolute else table
        flat = key.flatten()
        k = max(0, min(int(k), flat.numel()))
        order = torch.topk(flat, k, largest=largest).indices.tolist()
        width = table.shape[1]
        return [(self.layers[i // width], i % width, float(table.flatten()[i])) for i in order]

    def select(self, fact_indices: Sequence[int] | slice | Tensor | None = None, *,
               site: str | None = None) -> NeuronAttribution:
        """The same attribution restricted to some facts (indices, a slice or a bool mask)
        and/or to one ``site``'s units (then ``sites`` names that site alone)."""
        if site is not None:
            part = self.site_slice(site)
            values = {f.name: getattr(self, f.name) for f in fields(self)}
            for name in ("scores", "token_max", "token_min", "position_scores"):
                if values[name] is not None:
                    values[name] = values[name][..., part]
            values["sites"] = [(site, part.stop - part.start)]
            values["meta"] = dict(self.meta)
            if len(self.site_widths) > 1:  # the completeness check was over every site
                values["convergence_delta"] = values["target_baseline"] = None
            chosen = NeuronAttribution(**values)
            return chosen if fact_indices is None else chosen.select(fact_indices)
        if fact_indices is None:
            fact_indices = slice(None)
        if isinstance(fact_indices, slice):
            index = torch.arange(self.n_facts)[fact_indices]
        else:
            index = torch.as_tensor(fact_indices)
            if index.dtype == torch.bool:
                if index.numel() != self.n_facts:
                    raise ValueError(f"bool mask has {index.numel()} entries, expected {self.n_facts}")
                index = index.nonzero().flatten()
            index = index.long().flatten()
        if index.numel() and (int(index.min()) < -self.n_facts or int(index.max()) >= self.n_facts):
            raise ValueError(f"fact index out of range for {self.n_facts} facts")
        values: dict[str, Any] = {f.name: getattr(self, f.name) for f in fields(self)}
        for name in _TENSORS:
            tensor = values[name]
            if tensor is not None:
                values[name] = tensor[index]
        values["fact_ids"] = [self.fact_ids[i] for i in index.tolist()]
        values["meta"] = dict(self.meta)
        return NeuronAttribution(**values)

    # --- persistence ------------------------------------------------------------------
    def to_dict(self) -> dict:
        """Plain tensors and metadata (what :meth:`save` writes)."""
        record = {f.name: getattr(self, f.name) for f in fields(self)}
        record["format"] = _FORMAT
        return record

    def save(self, path: str | os.PathLike) -> Path:
        """Write losslessly (``torch.save``), atomically."""
        return atomic_torch_save(path, self.to_dict())

    @classmethod
    def load(cls, path: str | os.PathLike) -> NeuronAttribution:
        """Read what :meth:`save` wrote."""
        record = torch.load(Path(path), map_location="cpu", weights_only=True)
        if not isinstance(record, dict) or record.get("format") != _FORMAT:
            raise ValueError(f"{path} is not a saved NeuronAttribution")
        record.pop("format")
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in record.items() if k in known})

    def to_pandas(self, *, reduce: str | None = None) -> Any:
        """Long table: one row per (fact, layer, neuron) with ``score``; with ``reduce='mean'``
        or ``'sum'``, one row per (layer, neuron). With ``sites``, a ``site`` column, and
        ``neuron`` counts within the site."""
        import pandas as pd

        n_fact, n_layer, n_neuron = self.scores.shape
        layer_col = torch.tensor(self.layers).repeat_interleave(n_neuron)
        site_names = [name for name, width in self.site_widths for _ in range(width)]
        within = torch.cat([torch.arange(width) for _, width in self.site_widths])
        neuron_col = within.repeat(n_layer)
        site_col = pd.Categorical(site_names * n_layer, categories=[n for n, _ in self.site_widths])
        if reduce is not None:
            if reduce not in ("mean", "sum"):
                raise ValueError(f"reduce must be None, 'mean' or 'sum', got {reduce!r}")
            table = self.mean() if reduce == "mean" else self.sum()
            frame = pd.DataFrame({"layer": layer_col.numpy(), "neuron": neuron_col.numpy(),
                                  "score": table.flatten().numpy()})
            if self.sites is not None:
                frame.insert(0, "site", site_col)
            return frame
        frame = pd.DataFrame({
            "fact_id": pd.Categorical.from_codes(
                torch.arange(n_fact).repeat_interleave(n_layer * n_neuron).numpy(),
                categories=pd.Index(self.fact_ids) if len(set(self.fact_ids)) == n_fact
                else [f"{i}:{f}" for i, f in enumerate(self.fact_ids)]),
            "layer": layer_col.repeat(n_fact).numpy(),
            "neuron": neuron_col.repeat(n_fact).numpy(),
            "score": self.scores.flatten().numpy(),
        })
        if self.sites is not None:
            frame.insert(1, "site", pd.Categorical(site_names * n_layer * n_fact,
                                                   categories=[n for n, _ in self.site_widths]))
        return frame

    # --- display ----------------------------------------------------------------------
    def _summary(self) -> list[tuple[str, str]]:
        method = self.method
        if self.method == "ig" and self.meta.get("adaptive"):
            method = (f"ig (adaptive {self.quadrature} panels, tolerance {self.tolerance:g}, "
                      f"<= {self.steps} steps)")
        elif self.method == "ig":
            method = f"ig ({self.steps} steps, {self.quadrature})"
        rows = [("method", method), ("target", self.target), ("positions", self.positions),
                ("sites", ", ".join(f"{n} ({w})" for n, w in self.site_widths)),
                ("shape", f"{self.n_facts} facts x {len(self.layers)} layers x {self.n_neurons} neurons"),
                ("model", self.model_name or "?")]
        if self.convergence_delta is not None and self.convergence_delta.numel():
            rows.append(("max |delta|", f"{float(self.convergence_delta.abs().max()):.2e}"))
        return rows

    def __repr__(self) -> str:
        inner = ", ".join(f"{k}={v}" for k, v in self._summary())
        return f"NeuronAttribution({inner})"

    def _repr_html_(self) -> str:
        body = "".join(f"<tr><th style='text-align:left'>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>"
                       for k, v in self._summary())
        return f"<table><caption>NeuronAttribution</caption>{body}</table>"
