"""The README's main job (examples/end_to_end.py) on a reduced setting: its table's figures are
checked against the engines and the files it wrote."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

import fxpq_keras as fx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "examples"))
sys.path.insert(0, str(ROOT))

needs_qemu = pytest.mark.skipif(shutil.which("qemu-system-arm") is None or shutil.which("arm-none-eabi-gcc") is None,
                                reason="qemu-system-arm / arm-none-eabi-gcc missing (scripts/setup.sh installs them)")


@needs_qemu
def test_main_job_table_matches_the_engines(tmp_path, capsys):
    import end_to_end

    from bench.models import accuracy, trained

    args = end_to_end.parse_args(["--samples", "300", "--test-samples", "200", "--mcu-samples", "12",
                                  "--out", str(tmp_path)])
    figures = end_to_end.run(args)
    text = end_to_end.table(figures)
    assert "instructions per inference (Cortex-M4)" in text

    tflite = tmp_path / "model.tflite"
    for name in ("report.md", "report.png", "policy.json", "model_data.h"):
        assert (tmp_path / name).stat().st_size > 0, name
    assert figures["file_bytes"] == tflite.stat().st_size

    model, data = trained("lenet5")
    x, y = data["x_test"][:200], data["y_test"][:200]
    ref = fx.Interpreter(str(tflite)).predict(x)
    assert figures["reference_accuracy"] == pytest.approx(accuracy(ref, y))
    assert figures["float_accuracy"] == pytest.approx(accuracy(model.predict(x, verbose=0), y))
    assert figures["mcu_identical"] and figures["host_identical"]
    m4 = fx.Interpreter(str(tflite), engine="qemu-m4")
    np.testing.assert_array_equal(m4.predict(x[:12], raw=True), fx.Interpreter(str(tflite)).predict(x[:12], raw=True))
    assert figures["instructions"] == int(np.median(m4.engine.instructions))
    assert figures["arena_bytes"] == m4.engine.last.arena_bytes

    policy = fx.Policy.from_json(str(tmp_path / "policy.json"))
    assert figures["compression_total"] == pytest.approx(policy.memory().compression_total)
    # the search kept its budget on the calibration data; held-out agreement stays close to it
    assert figures["agreement"] >= 0.95
    assert figures["compression_total"] > 4
