"""Benchmarks: ``robustness`` (methods x retraining attacks x seeds).

Example:
    >>> import neuronscope as ns
    >>> result = ns.bench.robustness("fast")       # doctest: +SKIP
"""

from neuronscope.bench.paper import PAPER_TABLE, beside_paper
from neuronscope.bench.presets import PRESETS, BenchConfig, Recipe, parse_methods
from neuronscope.bench.result import RobustnessResult, mean_std
from neuronscope.bench.robustness import attack_label, robustness

__all__ = ["PAPER_TABLE", "PRESETS", "BenchConfig", "Recipe", "RobustnessResult", "attack_label",
           "beside_paper", "mean_std", "parse_methods", "robustness"]
