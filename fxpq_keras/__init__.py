"""fxpq: FxP-QNet mixed low-precision dynamic fixed point for Keras models and TFLite Micro.

Importing fxpq_keras sets TF_USE_LEGACY_KERAS=1 (unless already set, and only if TensorFlow is
not imported yet), because tfmot works only with tf_keras (Keras 2): import fxpq_keras before
tensorflow. Every public name is imported on first use (PEP 562), so `import fxpq_keras` and
`fxpq --help` stay fast; TensorFlow is imported by the first name that needs it.

Start here: `FxPQNet(max_accuracy_drop).quantize(model, calibration_data)` searches a policy,
`FxPQNetCallback` does the same at the end of your own `model.fit`, `quantize_model(model, policy)`
gives the fake-quant model (also for quantization-aware fine-tuning), `export_tflite` writes the
file, `Interpreter` runs it. Constants: `SUPPORTED_LAYERS`, the Keras layers fxpq quantizes (anything
else raises `UnsupportedLayerError`); `__version__`, this package's version.

Example::

    import fxpq_keras as fx   # before tensorflow
    result = fx.FxPQNet(max_accuracy_drop=0.01).quantize(model, x_calib)
    fx.export_tflite(result.model, "model.tflite")
    probabilities = fx.Interpreter("model.tflite").predict(x_test)

Adding a public name: add it to `_EXPORTS` (name -> the submodule that defines it), with a
docstring that has an example (tests/test_api_docs.py checks; `scripts/api_docs.py` builds the
reference).
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from typing import Any

from . import _native_log  # noqa: F401  (notes the user's TF_CPP_MIN_LOG_LEVEL before we set a default)

if "tensorflow" not in sys.modules:
    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

__version__ = "0.1.0"

_EXPORTS = {
    "Calibration": ".calibration", "CalibrationDataError": ".calibration", "CalibrationRangeWarning": ".calibration",
    "Agreement": ".callbacks", "DistillationLoss": ".callbacks", "PrecisionAdaptation": ".callbacks",
    "describe": ".fakequant", "quantize_model": ".fakequant", "quantize_scope": ".fakequant",
    "set_policy": ".fakequant", "NotFakeQuantModelError": ".fakequant",
    "Interpreter": ".flatbuffer", "export_c_array": ".flatbuffer", "export_tflite": ".flatbuffer",
    "Format": ".formats", "FormatError": ".formats",
    "IntegerGraph": ".integer_graph", "lower_model": ".integer_graph.lower",
    "SUPPORTED_LAYERS": ".keras_model", "UnsupportedLayerError": ".keras_model",
    "DataStructure": ".policy", "Memory": ".policy", "Policy": ".policy", "PolicyMismatchError": ".policy",
    "FxPQNet": ".search", "PrecisionSearch": ".search", "QuantizationResult": ".search", "SearchOptions": ".search",
    "FxPQNetCallback": ".search.callback", "SearchStoppedError": ".callbacks",
    "TaskMetric": ".search.metric", "AnomalyScore": ".search.metric", "UnresolvedBudgetError": ".search.metric",
}

__all__ = sorted(_EXPORTS) + ["__version__"]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:  # a submodule not imported yet (fxpq_keras.search, ...)
        if name.startswith("_") or importlib.util.find_spec(f"{__name__}.{name}") is None:
            raise AttributeError(f"module 'fxpq_keras' has no attribute '{name}'")
        return importlib.import_module(f".{name}", __name__)
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value  # next access is a plain attribute
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
