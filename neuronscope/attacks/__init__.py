"""Retraining attacks: does "forgotten" knowledge come back after a short fine-tune?

``relearn`` runs the harmful (part A of the forget set) or benign (unrelated data) attack on
the shared fine-tuning loop; ``metrics`` defines accuracy after the attack, normalised recovery
and excess recovery over the oracle. See ``docs/attacks.md``.
"""

from neuronscope.attacks.data import ATTACKS, AttackPlan, as_benign_facts, attack_plan, overlap
from neuronscope.attacks.metrics import AttackMetrics, excess_recovery, normalised_recovery
from neuronscope.attacks.result import RelearnResult
from neuronscope.attacks.runner import DEFAULTS, nll_loss, relearn

__all__ = [
    "ATTACKS",
    "DEFAULTS",
    "AttackMetrics",
    "AttackPlan",
    "RelearnResult",
    "as_benign_facts",
    "attack_plan",
    "excess_recovery",
    "nll_loss",
    "normalised_recovery",
    "overlap",
    "relearn",
]
