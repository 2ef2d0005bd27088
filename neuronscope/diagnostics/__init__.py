"""Spurious-neuron diagnostics: erase (D+) or hide (D-), calibrated flags, causal verification.

Example:
    >>> import warnings
    >>> from neuronscope import FactWorld, unlearn
    >>> from neuronscope.tiny import tiny_model
    >>> world = FactWorld.synthetic(n_people=10)
    >>> forget, retain = world.facts.split(forget=0.5, seed=0)
    >>> before = tiny_model(tokenizer=world.tokenizer)               # stand-ins: untrained
    >>> after = unlearn(before, forget, retain, method="ga", max_steps=3, progress=False).bridge
    >>> with warnings.catch_warnings():                  # an untrained model warns of small P
    ...     warnings.simplefilter("ignore")
    ...     diag = diagnose(before, after, forget, control=retain, steps=4, progress=False)
    >>> "hide index" in diag.summary()
    True
    >>> diag.verify(neurons=[(0, 1)], n_random=2).neurons      # models and facts: from diagnose
    [(0, 1)]
"""

from neuronscope.diagnostics.api import check_compatible, check_tokenizable, diagnose
from neuronscope.diagnostics.deltas import d_minus, d_plus, hide_index, summarise
from neuronscope.diagnostics.diagnosis import Diagnosis, FlaggedNeuron
from neuronscope.diagnostics.null import NullTest, paired_max_t, two_sample_max_t
from neuronscope.diagnostics.patching import Score, Verification, matched_random_sets, verify_neurons

__all__ = ["Diagnosis", "FlaggedNeuron", "NullTest", "Score", "Verification", "check_compatible",
           "check_tokenizable", "d_minus", "d_plus", "diagnose", "hide_index", "matched_random_sets",
           "paired_max_t", "summarise", "two_sample_max_t", "verify_neurons"]
