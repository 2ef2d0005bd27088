"""Plotly figures for neuronscope results, in one theme (``neuronscope.plots.theme``).

Every function returns a ``plotly.graph_objects.Figure`` and only draws: the numbers come
from results objects (``NeuronAttribution``, ``Diagnosis``, attack tables) or tensors.

Example:
    >>> import torch, neuronscope as ns
    >>> fig = ns.plots.neuron_heatmap(torch.randn(4, 32))
    >>> fig.data[0].zmid
    0.0
"""

from neuronscope.plots.diagnosis import d_per_layer, d_scatter
from neuronscope.plots.heatmap import before_after, neuron_heatmap, select_neurons
from neuronscope.plots.paper import attribution_stability, cumulative_variation, logit_lens, module_layer_map
from neuronscope.plots.robustness import (
    attack_grid,
    benchmark_bars,
    benchmark_sweep,
    lambda_sweep,
    recovery_curves,
    save_benchmark_figures,
)
from neuronscope.plots.tables import table, top_table
from neuronscope.plots.theme import apply_theme

__all__ = [
    "apply_theme",
    "attack_grid",
    "attribution_stability",
    "before_after",
    "benchmark_bars",
    "benchmark_sweep",
    "cumulative_variation",
    "d_per_layer",
    "d_scatter",
    "lambda_sweep",
    "logit_lens",
    "module_layer_map",
    "neuron_heatmap",
    "recovery_curves",
    "save_benchmark_figures",
    "select_neurons",
    "table",
    "top_table",
]
