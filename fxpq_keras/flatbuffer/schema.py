"""TensorFlow's TFLite schema bindings, loaded without importing TensorFlow.

`tensorflow.lite.python.schema_py_generated` only needs `flatbuffers`, but importing it through
the package runs TensorFlow's __init__ (seconds). Reading a .tflite file must stay cheap (the
CLI's `run`/`inspect`, the C engineer's tests), so we load the one file directly.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from types import ModuleType

_MODULE_NAME = "tensorflow.lite.python.schema_py_generated"


def _load() -> ModuleType:
    if _MODULE_NAME in sys.modules:
        return sys.modules[_MODULE_NAME]
    spec = importlib.util.find_spec("tensorflow")  # finds the package without importing it
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("tensorflow is not installed; its TFLite schema bindings are needed")
    path = os.path.join(list(spec.submodule_search_locations)[0], "lite", "python", "schema_py_generated.py")
    file_spec = importlib.util.spec_from_file_location("_fxpq_tflite_schema", path)
    module = importlib.util.module_from_spec(file_spec)
    file_spec.loader.exec_module(module)
    return module


schema = _load()
