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
