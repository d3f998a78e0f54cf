"""The one place that imports TensorFlow, tf_keras and tfmot.

tfmot 0.8 works only with Keras 2 (tf_keras); TensorFlow picks its Keras at import time from
TF_USE_LEGACY_KERAS. We set it here, before TensorFlow is imported, if the user has not set it.
If TensorFlow was already imported with Keras 3 we cannot switch back, so we fail loudly.
TF_CPP_MIN_LOG_LEVEL (default 2 here) is applied to the native log lines the import prints,
which TensorFlow 2.21 itself no longer filters (see _native_log.py).
"""

from __future__ import annotations

import os
import sys

from ._native_log import hide_native_logs, severities_for_level  # notes the user's TF_CPP_MIN_LOG_LEVEL

if "tensorflow" not in sys.modules:
    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

with hide_native_logs(severities_for_level(os.environ.get("TF_CPP_MIN_LOG_LEVEL"))):
    import tensorflow as tf  # noqa: E402
    import tensorflow_model_optimization as tfmot  # noqa: E402
    import tf_keras as keras  # noqa: E402

if not tf.keras.__name__.startswith("tf_keras") and os.environ.get("TF_USE_LEGACY_KERAS") != "1":
    raise ImportError(
        "fxpq needs tf_keras (Keras 2): import fxpq_keras before tensorflow, or set TF_USE_LEGACY_KERAS=1"
    )

__all__ = ["tf", "keras", "tfmot"]
