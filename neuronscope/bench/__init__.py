"""Benchmarks: ``robustness`` (methods x retraining attacks x seeds).

Example:
    >>> import neuronscope as ns
    >>> sorted(ns.bench.PRESETS), ns.bench.PRESETS["smoke"].seeds
    (['fast', 'full', 'smoke'], (0,))

Running one (minutes for ``"fast"``; the ``"full"`` preset is the documented run)::

    result = ns.bench.robustness("fast", out="bench-out")
"""

from neuronscope.bench.paper import PAPER_TABLE, beside_paper
from neuronscope.bench.presets import PRESETS, BenchConfig, Recipe, parse_methods
from neuronscope.bench.result import RobustnessResult, mean_std
from neuronscope.bench.robustness import attack_label, robustness

__all__ = ["PAPER_TABLE", "PRESETS", "BenchConfig", "Recipe", "RobustnessResult", "attack_label",
           "beside_paper", "mean_std", "parse_methods", "robustness"]
