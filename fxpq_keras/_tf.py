"""The one place that imports TensorFlow, tf_keras and tfmot.

tfmot 0.8 works only with Keras 2 (tf_keras); TensorFlow picks its Keras at import time from
TF_USE_LEGACY_KERAS. We set it here, before TensorFlow is imported, if the user has not set it.
If TensorFlow was already imported with Keras 3 we cannot switch back, so we fail loudly.
TF_CPP_MIN_LOG_LEVEL (default 2 here) is applied to the native log lines the import prints,
which TensorFlow 2.21 itself no longer filters (see _native_log.py). The devices are initialised
here too, so that the CPU-only "failed call to cuInit" ERROR line is dropped unless the user set
TF_CPP_MIN_LOG_LEVEL.
"""

from __future__ import annotations

import os
import sys

from ._native_log import NO_GPU_NOISE, USER_TF_LOG_LEVEL, hide_native_logs, severities_for_level

if "tensorflow" not in sys.modules:
    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

with hide_native_logs(severities_for_level(os.environ.get("TF_CPP_MIN_LOG_LEVEL")),
                      NO_GPU_NOISE if USER_TF_LOG_LEVEL is None else ()):
    import tensorflow as tf  # noqa: E402
    import tensorflow_model_optimization as tfmot  # noqa: E402
    import tf_keras as keras  # noqa: E402

    tf.config.list_logical_devices()  # the devices start here, inside the filter (cuInit's line on CPU hosts)

if not tf.keras.__name__.startswith("tf_keras") and os.environ.get("TF_USE_LEGACY_KERAS") != "1":
    raise ImportError(
        "fxpq needs tf_keras (Keras 2): import fxpq_keras before tensorflow, or set TF_USE_LEGACY_KERAS=1"
    )

__all__ = ["tf", "keras", "tfmot"]
