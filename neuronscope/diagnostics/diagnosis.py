"""``Diagnosis``: erase-vs-hide deltas, calibrated spurious-neuron flags, and the causal test.

``diagnose`` returns one; its docstring (:func:`neuronscope.diagnostics.api.diagnose`) has a worked
example that reads the deltas and flags and runs :meth:`Diagnosis.verify`.
"""

from __future__ import annotations

import html
import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from jaxtyping import Float
from torch import Tensor

from neuronscope.atomic import atomic_torch_save
from neuronscope.diagnostics.compat import check_compatible
from neuronscope.diagnostics.deltas import hide_index
from neuronscope.diagnostics.paper import cumulative_curve, module_layer_map, top_m_sum
from neuronscope.diagnostics.patching import Verification, verify_neurons
from neuronscope.facts import Fact

__all__ = ["Diagnosis", "FlaggedNeuron"]

_FORMAT = "neuronscope.Diagnosis/1"
_TENSORS = ("d_plus", "d_minus", "fact_d_plus", "fact_d_minus", "control_d_minus", "null_d_minus",
            "statistic", "p_adjusted", "p_control", "p_finetune")


@dataclass(frozen=True)
class FlaggedNeuron:
    """One flagged neuron: its D- on the target facts against the null, and the test result."""

    layer: int
    neuron: int
    d_minus: float
    d_plus: float
    null_d_minus: float
    statistic: float
    p_adjusted: float

    def __iter__(self):
        return iter((self.layer, self.neuron))


@dataclass
class Diagnosis:
    """D+ / D- of every neuron of ``layers`` on the target facts, and the flagged neurons.

    Tensors are ``[layer, neuron]`` (index ``i`` is model layer ``layers[i]``) unless named
    ``fact_*`` (one value per target fact). ``d_plus`` / ``d_minus`` are means over target
    facts of the per-fact deltas, not clipped; totals and the hide index clip them at 0.
    ``control_d_minus`` is the mean D- over control facts; ``null_d_minus`` the mean D- of the
    control fine-tune on the target facts. ``p_adjusted`` is the family-wise adjusted p-value
    (the larger of the two tests' when both nulls were used); a neuron is flagged when it is
    ``<= alpha`` and its D- exceeds the null's. ``sites`` lists ``(site, width)`` pairs
    when other sites than the MLP neurons were attributed (the neuron axis holds each
    site's units in turn); ``meta["definition"]`` says which D+ / D- (``"neuronscope"`` or
    the paper's eqs. 4-5, ``"paper"``).
    """

    d_plus: Float[Tensor, "layer neuron"]
    d_minus: Float[Tensor, "layer neuron"]
    layers: list[int]
    fact_ids: list[str]
    fact_d_plus: Float[Tensor, " fact"]
    fact_d_minus: Float[Tensor, " fact"]
    statistic: Float[Tensor, "layer neuron"]
    p_adjusted: Float[Tensor, "layer neuron"]
    alpha: float
    control_d_minus: Float[Tensor, "layer neuron"] | None = None
    null_d_minus: Float[Tensor, "layer neuron"] | None = None
    p_control: Float[Tensor, "layer neuron"] | None = None
    p_finetune: Float[Tensor, "layer neuron"] | None = None
    meta: dict = field(default_factory=dict)
    verification: Verification | None = None
    # What diagnose was given (models, facts, control, tokenizer), so verify() needs no repeat;
    # kept in memory only (not saved, not compared).
    inputs: dict = field(default_factory=dict, repr=False, compare=False)
    sites: list | None = None

    def __post_init__(self) -> None:
        self.layers = [int(layer) for layer in self.layers]
        self.fact_ids = [str(i) for i in self.fact_ids]
        shape = tuple(self.d_plus.shape)
        if len(shape) != 2 or shape[0] != len(self.layers):
            raise ValueError(f"d_plus must be [layer, neuron] over {len(self.layers)} layers, got {shape}")
        for name in ("d_minus", "statistic", "p_adjusted", "control_d_minus", "null_d_minus",
                     "p_control", "p_finetune"):
            value = getattr(self, name)
            if value is not None and tuple(value.shape) != shape:
                raise ValueError(f"{name} has shape {tuple(value.shape)}, expected {shape}")
        if len(self.fact_d_plus) != len(self.fact_ids) or len(self.fact_d_minus) != len(self.fact_ids):
            raise ValueError("fact_d_plus / fact_d_minus need one value per fact id")
        if self.sites is not None:
            self.sites = [(str(n), int(w)) for n, w in self.sites]
            if sum(w for _, w in self.sites) != shape[1]:
                raise ValueError(f"sites {self.sites} do not add up to {shape[1]} units")

    # --- the paper's summaries -------------------------------------------------------------
    @property
    def site_widths(self) -> list[tuple[str, int]]:
        """``(site, width)`` pairs along the neuron axis (the MLP neurons when ``sites`` is None)."""
        return list(self.sites) if self.sites is not None else [("mlp_post", self.n_neurons)]

    def unit_label(self, unit: int) -> str:
        """``"17"`` for an MLP neuron, ``"k/5"`` for unit 5 of site k on a several-site axis."""
        if self.sites is None:
            return str(unit)
        start = 0
        for name, width in self.sites:
            if start <= unit < start + width:
                return f"{name}/{unit - start}"
            start += width
        raise ValueError(f"unit {unit} out of range for {self.n_neurons} units")

    def top_m(self, m: int = 100) -> dict[str, float]:
        """Sums of the ``m`` largest D+ and of the ``m`` largest D- (each clipped at 0),
        sorted separately: the paper's bar chart (m = 100)."""
        return {"d_plus": top_m_sum(self.d_plus, m), "d_minus": top_m_sum(self.d_minus, m)}

    def cumulative(self) -> dict[str, Tensor]:
        """Cumulative sums of D+ and of D- over neurons sorted from the largest (clipped at
        0): entry j is the sum over the top j + 1 neurons (the paper's fig. 3b)."""
        return {"d_plus": cumulative_curve(self.d_plus), "d_minus": cumulative_curve(self.d_minus)}

    def module_layer_map(self, m: int = 100) -> dict[str, Tensor]:
        """``[site, layer]`` means of the ``m`` largest clipped D+ and D- of each module in
        each layer (the paper's fig. 5; rows in ``site_widths`` order)."""
        return {"d_plus": module_layer_map(self.d_plus, self.site_widths, m),
                "d_minus": module_layer_map(self.d_minus, self.site_widths, m)}

    # --- totals --------------------------------------------------------------------------
    @property
    def n_neurons(self) -> int:
        return self.d_plus.shape[1]

    @property
    def d_plus_total(self) -> float:
        """Sum over neurons of D+ clipped at 0."""
        return float(self.d_plus.clamp(min=0).double().sum())

    @property
    def d_minus_total(self) -> float:
        """Sum over neurons of D- clipped at 0."""
        return float(self.d_minus.clamp(min=0).double().sum())

    @property
    def hide_index(self) -> float:
        """sum D- / (sum D+ + sum D-): near 1 hides, near 0 erases."""
        return hide_index(self.d_plus, self.d_minus)

    def per_layer(self) -> dict[int, dict[str, float]]:
        """Per model layer: clipped sums of D+ and D-, hide index, number flagged."""
        flagged = self.flag_mask
        return {layer: {"d_plus": float(self.d_plus[i].clamp(min=0).double().sum()),
                        "d_minus": float(self.d_minus[i].clamp(min=0).double().sum()),
                        "hide_index": hide_index(self.d_plus[i], self.d_minus[i]),
                        "flagged": int(flagged[i].sum())}
                for i, layer in enumerate(self.layers)}

    def per_fact(self) -> dict[str, dict[str, float]]:
        """Per target fact: sums over neurons of the clipped per-fact D+ and D-, hide index."""
        out = {}
        for fid, plus, minus in zip(self.fact_ids, self.fact_d_plus.tolist(), self.fact_d_minus.tolist(),
                                    strict=True):
            total = plus + minus
            out[fid] = {"d_plus": plus, "d_minus": minus,
                        "hide_index": minus / total if total > 0 else float("nan")}
        return out

    # --- flags ---------------------------------------------------------------------------
    @property
    def flag_mask(self) -> torch.Tensor:
        """Boolean [layer, neuron]: adjusted p <= alpha and D- above the null's mean."""
        null = self.control_d_minus if self.control_d_minus is not None else self.null_d_minus
        above = self.d_minus > (null if null is not None else 0)
        if self.control_d_minus is not None and self.null_d_minus is not None:
            above &= self.d_minus > self.null_d_minus
        return (self.p_adjusted <= self.alpha) & above

    @property
    def flagged(self) -> list[FlaggedNeuron]:
        """Flagged neurons ranked by the test statistic (strongest first)."""
        index = torch.nonzero(self.flag_mask)
        null = self.control_d_minus if self.control_d_minus is not None else self.null_d_minus
        rows = []
        for i, n in index.tolist():
            rows.append(FlaggedNeuron(
                layer=self.layers[i], neuron=n, d_minus=float(self.d_minus[i, n]),
                d_plus=float(self.d_plus[i, n]),
                null_d_minus=float(null[i, n]) if null is not None else 0.0,
                statistic=float(self.statistic[i, n]), p_adjusted=float(self.p_adjusted[i, n])))
        return sorted(rows, key=lambda r: (-r.statistic, r.layer, r.neuron))

    def top(self, k: int = 10, by: str = "d_minus") -> list[tuple[int, int, float]]:
        """The ``k`` neurons with the largest ``by`` (``d_minus``, ``d_plus`` or ``statistic``),
        flagged or not, as (layer, neuron, value)."""
        if by not in ("d_minus", "d_plus", "statistic"):
            raise ValueError(f"by must be 'd_minus', 'd_plus' or 'statistic', got {by!r}")
        values = getattr(self, by).flatten()
        order = values.argsort(descending=True)[:k]
        width = self.n_neurons
        return [(self.layers[int(j) // width], int(j) % width, float(values[j])) for j in order]

    # --- the causal test -----------------------------------------------------------------
    def verify(
        self,
        before_model: Any = None,
        after_model: Any = None,
        facts: Iterable[Fact] | None = None,
        *,
        n_random: int = 20,
        seed: int = 0,
        restore: str = "original",
        control: Iterable[Fact] | None = None,
        neurons: Sequence[tuple[int, int]] | None = None,
        tokenizer: Any = None,
    ) -> Verification:
        """Restore the flagged neurons (or ``neurons``) in the unlearned model and measure the
        rebound of forget accuracy and probability against ``n_random`` random neuron sets of
        the same size per layer; also patch them into the original model (suppression).

        ``restore="original"``: set the neurons, at the attributed positions, to the original
        model's activations; ``"control_mean"``: to their mean over ``control`` facts in the
        unlearned model. The result is also kept in ``self.verification``. On a diagnosis over
        several sites, neurons are ``(layer, unit)`` pairs on its concatenated site axis and the
        random sets are matched per site and layer.

        Models, facts, ``control`` and ``tokenizer`` default to what :func:`diagnose` was given
        (when it was given models, not saved attributions), so ``diag.verify()`` is enough.
        """
        chosen = [tuple(n) for n in neurons] if neurons is not None else [(f.layer, f.neuron)
                                                                         for f in self.flagged]
        if not chosen:
            raise ValueError("no neurons were flagged; pass neurons=[(layer, neuron), ...] to test others")
        given = self.inputs
        before_model = before_model if before_model is not None else given.get("before")
        after_model = after_model if after_model is not None else given.get("after")
        facts = facts if facts is not None else given.get("facts")
        control = control if control is not None else given.get("control")
        tokenizer = tokenizer if tokenizer is not None else given.get("tokenizer")
        missing = [name for name, value in (("before_model", before_model), ("after_model", after_model),
                                            ("facts", facts)) if value is None]
        if missing:
            raise ValueError(f"verify needs {', '.join(missing)}: this Diagnosis was loaded or built from "
                             "saved attributions, so pass them")
        check_compatible(before_model, after_model, tokenizer=tokenizer)
        positions = self.meta.get("positions", "prompt")
        result = verify_neurons(before_model, after_model, facts, chosen, n_random=n_random, seed=seed,
                                restore=restore, control=control, positions=positions,
                                tokenizer=tokenizer, sites=self.sites)
        self.verification = result
        return result

    # --- export --------------------------------------------------------------------------
    def to_pandas(self, kind: str = "neurons") -> Any:
        """A DataFrame: ``"neurons"`` (one row per neuron), ``"layers"`` or ``"facts"``."""
        import pandas as pd

        if kind == "layers":
            return pd.DataFrame([{"layer": k, **v} for k, v in self.per_layer().items()])
        if kind == "facts":
            return pd.DataFrame([{"fact_id": k, **v} for k, v in self.per_fact().items()])
        if kind != "neurons":
            raise ValueError(f"kind must be 'neurons', 'layers' or 'facts', got {kind!r}")
        n_layers, width = self.d_plus.shape
        frame = {
            "layer": torch.tensor(self.layers).repeat_interleave(width).numpy(),
            "neuron": torch.arange(width).repeat(n_layers).numpy(),
            "d_plus": self.d_plus.flatten().numpy(),
            "d_minus": self.d_minus.flatten().numpy(),
        }
        for name in ("control_d_minus", "null_d_minus", "statistic", "p_adjusted", "p_control",
                     "p_finetune"):
            value = getattr(self, name)
            if value is not None:
                frame[name] = value.flatten().numpy()
        frame["flagged"] = self.flag_mask.flatten().numpy()
        return pd.DataFrame(frame)

    def summary(self, k: int = 10) -> str:
        """A plain-text report: totals, per layer, the criterion, the top flagged neurons."""
        meta = self.meta
        lines = [
            f"Diagnosis of {len(self.fact_ids)} target facts vs {meta.get('null', 'a null')} "
            f"(attribution {meta.get('method', '?')}, {meta.get('steps', '?')} steps, "
            f"target {meta.get('target', '?')}, definition {meta.get('definition', 'neuronscope')}"
            + (f", sites {', '.join(n for n, _ in self.sites)})" if self.sites is not None else ")"),
            f"  sum D+ {self.d_plus_total:.4g}   sum D- {self.d_minus_total:.4g}   "
            f"hide index {self.hide_index:.3f}  ({_verdict(self.hide_index)})",
            f"  {'layer':>5} {'sum D+':>10} {'sum D-':>10} {'hide':>6} {'flagged':>8}",
        ]
        for layer, row in self.per_layer().items():
            lines.append(f"  {layer:>5} {row['d_plus']:>10.4g} {row['d_minus']:>10.4g} "
                         f"{row['hide_index']:>6.3f} {row['flagged']:>8}")
        flagged = self.flagged
        lines.append(f"  criterion: {meta.get('criterion', 'max-T permutation test')}; "
                     f"family-wise error rate alpha = {self.alpha:g}")
        lines.append(f"  flagged spurious neurons: {len(flagged)} of {self.d_plus.numel()}")
        if flagged:
            lines.append(f"  {'layer':>5} {'neuron':>7} {'D-':>10} {'null D-':>10} {'t':>8} {'p_adj':>7}")
            for row in flagged[:k]:
                lines.append(f"  {row.layer:>5} {self.unit_label(row.neuron):>7} {row.d_minus:>10.4g} "
                             f"{row.null_d_minus:>10.4g} {row.statistic:>8.2f} {row.p_adjusted:>7.4f}")
            if len(flagged) > k:
                lines.append(f"  ... and {len(flagged) - k} more")
        for note in meta.get("notes", []):
            lines.append(f"  note: {note}")
        if self.verification is not None:
            lines.append(self.verification.summary())
        return "\n".join(lines)

    def __repr__(self) -> str:
        return (f"Diagnosis({len(self.fact_ids)} facts, layers {self.layers}, "
                f"{self.n_neurons} neurons/layer, sum D+ {self.d_plus_total:.4g}, "
                f"sum D- {self.d_minus_total:.4g}, hide index {self.hide_index:.3f}, "
                f"{int(self.flag_mask.sum())} flagged at alpha={self.alpha:g})")

    def _repr_html_(self) -> str:
        rows = "".join(
            f"<tr><td>{r.layer}</td><td>{r.neuron}</td><td>{r.d_minus:.4g}</td><td>{r.null_d_minus:.4g}</td>"
            f"<td>{r.statistic:.2f}</td><td>{r.p_adjusted:.4f}</td></tr>" for r in self.flagged[:10])
        table = (f"<table><tr><th>layer</th><th>neuron</th><th>D-</th><th>null D-</th><th>t</th>"
                 f"<th>p adj</th></tr>{rows}</table>" if rows else "<p>no neuron flagged</p>")
        return (f"<div><b>Diagnosis</b> &mdash; {len(self.fact_ids)} facts, "
                f"sum D+ {self.d_plus_total:.4g}, sum D- {self.d_minus_total:.4g}, "
                f"hide index <b>{self.hide_index:.3f}</b> ({html.escape(_verdict(self.hide_index))}); "
                f"{int(self.flag_mask.sum())} flagged at FWER {self.alpha:g}{table}</div>")

    def save(self, path: str | os.PathLike) -> Path:
        """Write everything (tensors, metadata, verification) to one file, atomically."""
        path = Path(path)
        payload = {
            "format": _FORMAT,
            "tensors": {name: getattr(self, name) for name in _TENSORS if getattr(self, name) is not None},
            "json": json.dumps({
                "layers": self.layers, "fact_ids": self.fact_ids, "alpha": self.alpha, "meta": self.meta,
                "sites": self.sites,
                "verification": self.verification.to_dict() if self.verification is not None else None,
            }),
        }
        return atomic_torch_save(path, payload)

    @classmethod
    def load(cls, path: str | os.PathLike) -> Diagnosis:
        """Read a file written by :meth:`save`."""
        payload = torch.load(Path(path), map_location="cpu", weights_only=True)
        if not isinstance(payload, dict) or payload.get("format") != _FORMAT:
            raise ValueError(f"{path} is not a saved neuronscope Diagnosis")
        record = json.loads(payload["json"])
        verification = record.pop("verification")
        return cls(**payload["tensors"], **record,
                   verification=Verification.from_dict(verification) if verification else None)

    def to_dict(self) -> dict:
        """JSON-ready summary: totals, per layer, flagged neurons, metadata."""
        return {"hide_index": self.hide_index, "d_plus_total": self.d_plus_total,
                "d_minus_total": self.d_minus_total, "alpha": self.alpha,
                "per_layer": {str(k): v for k, v in self.per_layer().items()},
                "flagged": [asdict(f) for f in self.flagged], "meta": self.meta,
                "verification": self.verification.to_dict() if self.verification is not None else None}


def _verdict(index: float) -> str:
    if index != index:  # NaN
        return "no change"
    if index >= 0.6:
        return "mostly hidden"
    if index <= 0.4:
        return "mostly erased"
    return "mixed"
