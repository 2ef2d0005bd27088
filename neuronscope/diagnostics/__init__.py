"""Spurious-neuron diagnostics: erase (D+) or hide (D-), calibrated flags, causal verification.

Example:
    >>> diag = diagnose(before, after, forget, control=retain)    # doctest: +SKIP
    >>> print(diag.summary())                                      # doctest: +SKIP
    >>> diag.verify(before, after, forget)                          # doctest: +SKIP
"""

from neuronscope.diagnostics.api import check_compatible, check_tokenizable, diagnose
from neuronscope.diagnostics.deltas import d_minus, d_plus, hide_index, summarise
from neuronscope.diagnostics.diagnosis import Diagnosis, FlaggedNeuron
from neuronscope.diagnostics.null import NullTest, paired_max_t, two_sample_max_t
from neuronscope.diagnostics.patching import Score, Verification, matched_random_sets, verify_neurons

__all__ = ["Diagnosis", "FlaggedNeuron", "NullTest", "Score", "Verification", "check_compatible",
           "check_tokenizable", "d_minus", "d_plus", "diagnose", "hide_index", "matched_random_sets",
           "paired_max_t", "summarise", "two_sample_max_t", "verify_neurons"]
