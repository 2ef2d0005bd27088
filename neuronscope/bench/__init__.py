"""Benchmarks: ``robustness`` (methods x retraining attacks x seeds) over the one ``Pipeline``.

Example:
    >>> import neuronscope as ns
    >>> sorted(ns.bench.PRESETS), ns.bench.PRESETS["smoke"].seeds
    (['fast', 'full', 'smoke'], (0,))

Running one (minutes for ``"fast"``; the ``"full"`` preset is the documented run)::

    result = ns.bench.robustness("fast", out="bench-out")
"""

from neuronscope.bench.paper import PAPER_TABLE, beside_paper
from neuronscope.bench.pipeline import Pipeline, SeedRun, attack_label
from neuronscope.bench.presets import DEMO_PRESETS, PRESETS, BenchConfig, Recipe, parse_methods
from neuronscope.bench.result import RobustnessResult, mean_std
from neuronscope.bench.robustness import robustness

__all__ = ["DEMO_PRESETS", "PAPER_TABLE", "PRESETS", "BenchConfig", "Pipeline", "Recipe", "RobustnessResult",
           "SeedRun", "attack_label", "beside_paper", "mean_std", "parse_methods", "robustness"]
