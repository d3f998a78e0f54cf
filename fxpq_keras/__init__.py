"""fxpq: FxP-QNet mixed low-precision dynamic fixed point for Keras models and TFLite Micro.

Importing fxpq_keras sets TF_USE_LEGACY_KERAS=1 (unless already set) before TensorFlow is
imported, because tfmot works only with tf_keras (Keras 2). Import fxpq_keras before tensorflow.
"""

from __future__ import annotations

from . import _tf  # noqa: F401  (sets TF_USE_LEGACY_KERAS before anything imports TensorFlow)
from .calibration import Calibration, CalibrationDataError
from .callbacks import Agreement, DistillationLoss, PrecisionAdaptation
from .fakequant import describe, quantize_model, quantize_scope, set_policy
from .flatbuffer import Interpreter, export_c_array, export_tflite
from .formats import Format, FormatError
from .integer_graph import IntegerGraph
from .integer_graph.lower import lower_model
from .keras_model import SUPPORTED_LAYERS, UnsupportedLayerError
from .policy import DataStructure, Memory, Policy, PolicyMismatchError
from .search import FxPQNet, QuantizationResult, SearchOptions

__version__ = "0.1.0"

__all__ = [
    "Calibration", "CalibrationDataError", "DataStructure", "Format", "FormatError", "IntegerGraph", "Interpreter",
    "Memory", "Policy", "PolicyMismatchError", "SUPPORTED_LAYERS", "UnsupportedLayerError", "describe",
    "export_c_array", "export_tflite", "lower_model", "quantize_model", "quantize_scope", "set_policy",
    "__version__",
    "FxPQNet", "QuantizationResult", "SearchOptions", "Agreement", "DistillationLoss", "PrecisionAdaptation",
]
