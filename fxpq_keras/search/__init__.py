"""The FxP-QNet precision search: budget, evaluator, gradual layer-wise adaptation, one-call API."""

from .adaptation import PrecisionSearch, SearchOptions, SearchState, Step
from .api import FxPQNet, QuantizationResult
from .budget import Budget, Estimate, Meter, Metrics
from .callback import FxPQNetCallback, SearchStoppedError
from .evaluator import Evaluator, OutputNotClassificationError
from .metric import AnomalyScore, FunctionMetric, TaskMetric, UnresolvedBudgetError

__all__ = ["AnomalyScore", "Budget", "Estimate", "Evaluator", "FunctionMetric", "FxPQNet", "FxPQNetCallback",
           "Meter", "Metrics", "OutputNotClassificationError", "TaskMetric", "UnresolvedBudgetError",
           "PrecisionSearch", "QuantizationResult", "SearchOptions", "SearchState", "SearchStoppedError", "Step"]
