"""Model selection: search spaces, suggesters, metric directions and early stopping.

Everything imported here is pure Python (Optuna is imported only when a TPE suggester is
built), so ``from cerebro.tune import hp_choice`` starts neither TensorFlow nor Spark.
"""

from __future__ import annotations

from cerebro.tune.metrics import is_better, metric_direction, resolve_metric
from cerebro.tune.result import ModelSelectionResult, TrainedModel
from cerebro.tune.search import GridSearch, ModelSelection, RandomSearch, TPESearch
from cerebro.tune.space import (
    Distribution,
    hp_choice,
    hp_loguniform,
    hp_qloguniform,
    hp_quniform,
    hp_uniform,
    validate_search_space,
)
from cerebro.tune.stopping import BaseStopper, MedianStopping, NoStopping, PatienceStopping
from cerebro.tune.suggesters import (
    BaseSuggester,
    GridSuggester,
    RandomSuggester,
    Suggestion,
    TPESuggester,
)

__all__ = [
    # searches and their result
    "GridSearch",
    "RandomSearch",
    "TPESearch",
    "ModelSelection",
    "ModelSelectionResult",
    "TrainedModel",
    # search spaces
    "Distribution",
    "hp_choice",
    "hp_uniform",
    "hp_quniform",
    "hp_loguniform",
    "hp_qloguniform",
    "validate_search_space",
    # suggesters
    "BaseSuggester",
    "GridSuggester",
    "RandomSuggester",
    "TPESuggester",
    "Suggestion",
    # metrics
    "resolve_metric",
    "metric_direction",
    "is_better",
    # early stopping
    "BaseStopper",
    "NoStopping",
    "PatienceStopping",
    "MedianStopping",
]
