"""The learners: one file per algorithm behind one interface (``algorithms.base``)."""

from algorithms.base import (
    OfflineMetaLearner,
    OnlineConfig,
    OnlineFinetuner,
    Policy,
    PolicyBatch,
    StackedAdaptLearner,
    inner_sampling,
    known_learners,
    learner_class,
    make_config,
    outer_segment,
)
from algorithms.batch import MetaBatch, Transitions

__all__ = [
    "MetaBatch",
    "OfflineMetaLearner",
    "OnlineConfig",
    "OnlineFinetuner",
    "Policy",
    "PolicyBatch",
    "StackedAdaptLearner",
    "Transitions",
    "inner_sampling",
    "known_learners",
    "learner_class",
    "make_config",
    "outer_segment",
]
