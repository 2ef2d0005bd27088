"""Spurious-neuron diagnostics: erase (D+) or hide (D-), calibrated flags, causal verification.

The worked example (a tiny model unlearned, diagnosed and verified) is in
:func:`neuronscope.diagnostics.api.diagnose`.
"""

from neuronscope.diagnostics.api import DEFINITIONS, check_compatible, check_tokenizable, diagnose
from neuronscope.diagnostics.deltas import d_minus, d_plus, hide_index, summarise
from neuronscope.diagnostics.diagnosis import Diagnosis, FlaggedNeuron
from neuronscope.diagnostics.logit_lens import LogitLens, draw_distractors, logit_lens
from neuronscope.diagnostics.null import NullTest, paired_max_t, two_sample_max_t
from neuronscope.diagnostics.paper import cumulative_curve, module_layer_map, paper_fact_deltas, top_m_sum
from neuronscope.diagnostics.patching import Score, Verification, matched_random_sets, verify_neurons
from neuronscope.diagnostics.stability import AttributionStability, attribution_stability

__all__ = ["DEFINITIONS", "AttributionStability", "Diagnosis", "FlaggedNeuron", "LogitLens", "NullTest",
           "Score", "Verification", "attribution_stability", "check_compatible", "check_tokenizable",
           "cumulative_curve", "d_minus", "d_plus", "diagnose", "draw_distractors", "hide_index",
           "logit_lens", "matched_random_sets", "module_layer_map", "paired_max_t", "paper_fact_deltas",
           "summarise", "top_m_sum", "two_sample_max_t", "verify_neurons"]
