"""The FxP-QNet precision search: budget, evaluator, gradual layer-wise adaptation, one-call API."""

from .adaptation import PrecisionSearch, SearchOptions, SearchState, Step
from .api import FxPQNet, QuantizationResult
from .budget import Budget, Estimate, Meter, Metrics
from .callback import FxPQNetCallback, SearchStoppedError
from .evaluator import Evaluator, OutputNotClassificationError

__all__ = ["Budget", "Estimate", "Evaluator", "FxPQNet", "FxPQNetCallback", "Meter", "Metrics",
           "OutputNotClassificationError",
           "PrecisionSearch", "QuantizationResult", "SearchOptions", "SearchState", "SearchStoppedError", "Step"]
