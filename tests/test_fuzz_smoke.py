"""A short libFuzzer run of the flatbuffer/model reader and the options reader (ASan + UBSan).

The long run (docs/tflm.md section 5): `bash scripts/fuzz.sh --long`.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

KERNELS = Path(__file__).resolve().parents[1] / "tflm_kernels"


@pytest.mark.skipif(shutil.which("clang") is None or shutil.which("make") is None, reason="needs clang + libFuzzer")
def test_fuzz_smoke():
    proc = subprocess.run(["make", "-C", str(KERNELS), "fuzz-smoke", "FUZZ_SECONDS=4", "BUILD=build"],
                          capture_output=True, text=True, timeout=600)
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-4000:]
    assert "AddressSanitizer" not in log and "runtime error" not in log, log[-4000:]
    # both targets ran to their time limit and executed many inputs
    runs = [int(line.split()[-1]) for line in log.splitlines() if line.startswith("stat::number_of_executed_units")]
    assert len(runs) == 2 and min(runs) > 1000, log[-2000:]


@pytest.mark.skipif(shutil.which("clang") is None or shutil.which("make") is None, reason="needs clang + libFuzzer")
def test_truncated_models_in_an_exact_size_buffer(tmp_path):
    """Issue 24 item 7: every truncation of a valid model (the last 64 bytes, one at a time) under
    ASan in an exact-size buffer. With `fxfb_fits` allowing one byte past the end, the model cut by
    4 bytes read past its end, which the old 16-byte-aligned placement in a larger buffer hid."""
    from test_export_graphs import cnn_graph

    from fxpq_keras.flatbuffer import export_tflite

    proc = subprocess.run(["make", "-s", "-C", str(KERNELS), "fuzz", "BUILD=build"], capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    data = export_tflite(cnn_graph(0)[0])
    inputs = []
    for cut in range(1, 65):
        path = tmp_path / f"cut{cut}"
        path.write_bytes(data[:-cut])
        inputs.append(str(path))
    proc = subprocess.run([str(KERNELS / "build/fuzz/fuzz_model"), *inputs], capture_output=True, text=True,
                          timeout=300)
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0 and "AddressSanitizer" not in log and "runtime error" not in log, log[-3000:]
    assert log.count("Executed ") == len(inputs), log[-2000:]
