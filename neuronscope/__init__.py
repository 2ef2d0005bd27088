"""neuronscope: neuron-level analysis of machine unlearning in language models."""

from neuronscope import bench, plots
from neuronscope._version import __version__
from neuronscope.attacks import RelearnResult, relearn
from neuronscope.attribution import NeuronAttribution, attribute
from neuronscope.diagnostics import (
    AttributionStability,
    Diagnosis,
    LogitLens,
    attribution_stability,
    diagnose,
    logit_lens,
)
from neuronscope.facts import Fact, FactSet
from neuronscope.models import copy_model, load_model
from neuronscope.organism import Organism, organism
from neuronscope.report import report
from neuronscope.scoring import accuracy, answer_logprob
from neuronscope.tokenization import FactBatch, WordTokenizer, tokenize
from neuronscope.training import TrainHistory, TrainSettings, finetune
from neuronscope.unlearning import SSIUU, UnlearnResult, unlearn
from neuronscope.world import FactWorld

__all__ = [
    "SSIUU",
    "AttributionStability",
    "Diagnosis",
    "Fact",
    "FactBatch",
    "FactSet",
    "FactWorld",
    "LogitLens",
    "NeuronAttribution",
    "Organism",
    "RelearnResult",
    "TrainHistory",
    "TrainSettings",
    "UnlearnResult",
    "WordTokenizer",
    "__version__",
    "accuracy",
    "answer_logprob",
    "attribute",
    "attribution_stability",
    "bench",
    "copy_model",
    "diagnose",
    "finetune",
    "load_model",
    "logit_lens",
    "organism",
    "plots",
    "relearn",
    "report",
    "tokenize",
    "unlearn",
]
