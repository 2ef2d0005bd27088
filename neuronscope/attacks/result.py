"""``RelearnResult``: the accuracy curves of one retraining attack (and of its oracle control).

Example:
    >>> from neuronscope import FactWorld, relearn
    >>> from neuronscope.tiny import tiny_model
    >>> world = FactWorld.synthetic(n_people=10)
    >>> forget, retain = world.facts.split(forget=0.5, seed=0)
    >>> model = tiny_model(tokenizer=world.tokenizer)                # a stand-in for an unlearned model
    >>> result = relearn(model, attack="harmful", forget=forget, retain=retain, steps=2, progress=False)
    >>> RelearnResult.from_dict(result.to_dict()).attacked == result.attacked
    True
"""

from __future__ import annotations

import html
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from jaxtyping import Float, Int
from torch import Tensor

from neuronscope.attacks.metrics import AttackMetrics
from neuronscope.deprecation import DeprecatedAlias
from neuronscope.facts import atomic_write_text

__all__ = ["RelearnResult"]

_FORMAT = "neuronscope.RelearnResult/1"


def _fmt(value: float | None, signed: bool = False) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{value:+.3f}" if signed else f"{value:.3f}"


@dataclass
class RelearnResult:
    """Curves of one attack: accuracy on the evaluation facts and on the retain set per step.

    ``eval_accuracy`` is measured on part B of the forget set (harmful attack) or on the whole
    forget set (benign attack); entry 0 is before the attack (the unlearned model). ``oracle``
    holds the same attack on a model that never learned the forget facts, where one was given.
    ``bridge`` is the attacked model (a copy, or None once dropped; not saved by :meth:`save`);
    ``model`` is its deprecated old name (a bridge's own ``.model`` is the Hugging Face module).
    """

    attack: str
    steps: Int[Tensor, " point"]
    eval_accuracy: Float[Tensor, " point"]
    retain_accuracy: Float[Tensor, " point"]
    loss: Float[Tensor, " step"]
    train_ids: list[str]
    eval_ids: list[str]
    settings: dict = field(default_factory=dict)
    original_accuracy: float | None = None
    oracle: RelearnResult | None = None
    bridge: Any = field(default=None, repr=False, compare=False)
    grid: list[RelearnResult] | None = field(default=None, repr=False)

    model = DeprecatedAlias("bridge", "a bridge's own .model is the Hugging Face module")

    # --- headline numbers -----------------------------------------------------------------
    @property
    def unlearned(self) -> float:
        """Accuracy on the evaluation facts before the attack."""
        return float(self.eval_accuracy[0])

    @property
    def attacked(self) -> float:
        """The attack's score: accuracy after the attack, or with ``report="max"`` the maximum
        seen during retraining (after step 0; the paper's number)."""
        if self.settings.get("report") == "max" and len(self.eval_accuracy) > 1:
            return float(self.eval_accuracy[1:].max())
        return float(self.eval_accuracy[-1])

    @property
    def final(self) -> float:
        """Accuracy on the evaluation facts at the end of the attack."""
        return float(self.eval_accuracy[-1])

    @property
    def lr(self) -> float | None:
        """The learning rate of this run."""
        return (self.settings.get("train") or {}).get("lr")

    @property
    def retain_after(self) -> float:
        return float(self.retain_accuracy[-1])

    @property
    def metrics(self) -> AttackMetrics:
        """Accuracy after the attack, normalised and excess recovery (NaN where unknown)."""
        original = math.nan if self.original_accuracy is None else self.original_accuracy
        oracle = math.nan if self.oracle is None else self.oracle.attacked
        return AttackMetrics(original, self.unlearned, self.attacked, oracle)

    # --- export ---------------------------------------------------------------------------
    def to_dict(self, *, grid: bool = True) -> dict:
        """Plain JSON-ready dict (lossless for the stored values; the model is left out).

        The learning-rate grid's runs are stored once, each without a grid of its own."""
        return {
            "format": _FORMAT,
            "attack": self.attack,
            "steps": self.steps.tolist(),
            "eval_accuracy": self.eval_accuracy.tolist(),
            "retain_accuracy": self.retain_accuracy.tolist(),
            "loss": self.loss.tolist(),
            "train_ids": list(self.train_ids),
            "eval_ids": list(self.eval_ids),
            "settings": self.settings,
            "original_accuracy": self.original_accuracy,
            "oracle": None if self.oracle is None else self.oracle.to_dict(),
            "grid": None if self.grid is None or not grid else [run.to_dict(grid=False)
                                                                for run in self.grid],
        }

    @classmethod
    def from_dict(cls, record: dict) -> RelearnResult:
        if record.get("format") != _FORMAT:
            raise ValueError(f"not a saved RelearnResult (format {record.get('format')!r})")
        return cls(
            attack=record["attack"],
            steps=torch.tensor(record["steps"], dtype=torch.long),
            eval_accuracy=torch.tensor(record["eval_accuracy"], dtype=torch.float64),
            retain_accuracy=torch.tensor(record["retain_accuracy"], dtype=torch.float64),
            loss=torch.tensor(record["loss"], dtype=torch.float64),
            train_ids=list(record["train_ids"]),
            eval_ids=list(record["eval_ids"]),
            settings=dict(record["settings"]),
            original_accuracy=record["original_accuracy"],
            oracle=None if record["oracle"] is None else cls.from_dict(record["oracle"]),
            grid=None if record.get("grid") is None else [cls.from_dict(r) for r in record["grid"]],
        )

    def save(self, path: str | os.PathLike) -> Path:
        """Write JSON atomically; :meth:`load` reads it back exactly."""
        path = Path(path)
        atomic_write_text(path, json.dumps(self.to_dict(), indent=1))
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> RelearnResult:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"result file {str(path)!r} does not exist")
        return cls.from_dict(json.loads(path.read_text(encoding="utf-8")))

    def to_pandas(self) -> Any:
        """One row per evaluation point (and per model: ``attacked`` and, if run, ``oracle``)."""
        import pandas as pd

        frames = []
        for label, result in (("attacked", self), ("oracle", self.oracle)):
            if result is None:
                continue
            frames.append(pd.DataFrame({
                "model": label, "attack": result.attack, "step": result.steps.numpy(),
                "eval_accuracy": result.eval_accuracy.numpy(),
                "retain_accuracy": result.retain_accuracy.numpy(),
            }))
        return pd.concat(frames, ignore_index=True)

    # --- display --------------------------------------------------------------------------
    def _label(self) -> str:
        if self.attack == "harmful":
            return f"harmful p={self.settings.get('p')}"
        return "benign"

    def __repr__(self) -> str:
        part = "part B" if self.attack == "harmful" else "forget"
        text = (f"<RelearnResult {self._label()}, {int(self.steps[-1])} steps: {part} accuracy "
                f"{_fmt(self.unlearned)} -> {_fmt(self.attacked)}; retain "
                f"{_fmt(float(self.retain_accuracy[0]))} -> {_fmt(self.retain_after)}")
        if self.oracle is not None:
            text += (f"; oracle {_fmt(self.oracle.unlearned)} -> {_fmt(self.oracle.attacked)}, "
                     f"excess recovery {_fmt(self.metrics.excess_recovery, signed=True)}")
        return text + ">"

    def _repr_html_(self) -> str:
        m = self.metrics
        part = "part B" if self.attack == "harmful" else "forget"
        retain = f"{_fmt(float(self.retain_accuracy[0]))} / {_fmt(self.retain_after)}"
        rows = [("evaluation facts", f"{len(self.eval_ids)} ({part})"),
                ("trained on", f"{len(self.train_ids)} facts"),
                ("accuracy before / after", f"{_fmt(self.unlearned)} / {_fmt(self.attacked)}"),
                ("retain before / after", retain),
                ("normalised recovery", _fmt(m.normalised_recovery)),
                ("oracle after attack", _fmt(None if self.oracle is None else self.oracle.attacked)),
                ("excess recovery", _fmt(m.excess_recovery, signed=True))]
        body = "".join(f"<tr><th style='text-align:left'>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>"
                       for k, v in rows)
        return (f"<div><b>RelearnResult</b> {html.escape(self._label())}, {int(self.steps[-1])} steps"
                f"<table>{body}</table></div>")

