"""The FxP-QNet precision search: evaluator, gradual layer-wise adaptation, one-call API."""

from .adaptation import PrecisionSearch, SearchOptions, SearchState, Step
from .api import FxPQNet, QuantizationResult
from .evaluator import Evaluator, Metrics, OutputNotClassificationError

__all__ = ["Evaluator", "FxPQNet", "Metrics", "OutputNotClassificationError", "PrecisionSearch",
           "QuantizationResult", "SearchOptions", "SearchState", "Step"]
