"""Benchmarks: ``robustness`` (methods x retraining attacks x seeds).

Example:
    >>> import neuronscope as ns
    >>> result = ns.bench.robustness("fast")       # doctest: +SKIP
"""

from neuronscope.bench.presets import PRESETS, BenchConfig, MethodSpec, parse_methods
from neuronscope.bench.result import RobustnessResult, mean_std
from neuronscope.bench.robustness import attack_label, robustness

__all__ = ["PRESETS", "BenchConfig", "MethodSpec", "RobustnessResult", "attack_label", "mean_std",
           "parse_methods", "robustness"]
