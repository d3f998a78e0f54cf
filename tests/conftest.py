"""Shared test set-up: fxpq_keras first (it selects tf_keras), a deterministic hypothesis profile."""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

import fxpq_keras  # noqa: F401  (must precede any TensorFlow import)

settings.register_profile(
    "fxpq",
    derandomize=True,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    print_blob=True,
)
# FXPQ_LONG=N (tests/long_mode.py): fresh random cases every run instead of the fixed CI sequence
settings.register_profile(
    "fxpq-long",
    parent=settings.get_profile("fxpq"),
    derandomize=False,
)
_default = "fxpq-long" if int(os.environ.get("FXPQ_LONG", "0") or 0) > 1 else "fxpq"
settings.load_profile(os.environ.get("FXPQ_HYPOTHESIS_PROFILE", _default))


def pytest_terminal_summary(terminalreporter) -> None:
    """One line when the real-TFLM tests could not run, saying how to enable them."""
    from fxpq_keras.kernels.tflm import HOW_TO_ENABLE, tflm_available

    if not tflm_available():
        terminalreporter.write_line(f"real-TFLM tests (tests/test_tflm_engines.py) skipped: {HOW_TO_ENABLE}")
