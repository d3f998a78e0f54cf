"""CMSIS-NN's requantization reproduces fxpq's power-of-two rescale bit for bit (docs/kernels.md,
"CMSIS-NN route"): tflm_kernels/checks/cmsis_requantize_check.c, compiled on the host against the
CMSIS-NN tree named by CMSIS_NN_DIR (or TFLM_DIR's downloads/cmsis_nn), under both of CMSIS-NN's
roundings (TFLM's default double rounding and CMSIS_NN_USE_SINGLE_ROUNDING).

Exhaustive over every v with |v| <= 2^20 and the 2^16 values at each end of the range the proof
claims (|v| < 2^30), for every shift from a left shift of 29 to a right shift of 40, plus a sweep of
the whole int32 range with a stride of 65,537; the full int32 sweep of every shift is the command in
docs/kernels.md (minutes). TFLite's own normalized pair (2^30, 1 - s) is checked to differ under
double rounding (the reason for the pair fxpq uses). Skipped without a CMSIS-NN tree.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
KERNELS = ROOT / "tflm_kernels"


def cmsis_nn_dir() -> Path | None:
    """CMSIS_NN_DIR, else TFLM_DIR's downloaded cmsis_nn, else None."""
    env = os.environ.get("CMSIS_NN_DIR")
    candidates = [Path(env)] if env else []
    if os.environ.get("TFLM_DIR"):
        candidates.append(Path(os.environ["TFLM_DIR"]) / "tensorflow/lite/micro/tools/make/downloads/cmsis_nn")
    for c in candidates:
        if (c / "Include" / "arm_nnsupportfunctions.h").is_file():
            return c
    return None


CMSIS_NN = cmsis_nn_dir()
pytestmark = pytest.mark.skipif(CMSIS_NN is None or shutil.which("gcc") is None,
                                reason="needs a CMSIS-NN tree: set CMSIS_NN_DIR or TFLM_DIR (docs/tflm.md section 6)")


def _checker(tmp_path_factory, *defines: str) -> Path:
    lib = KERNELS / "build" / "host" / "libfxpq_kernels.a"
    subprocess.run(["make", "-s", "-C", str(KERNELS), "host"], check=True, capture_output=True)
    exe = tmp_path_factory.mktemp("rq") / "check"
    subprocess.run(["gcc", "-std=c99", "-O2", "-Wall", "-Wextra", "-Werror", *defines,
                    f"-I{CMSIS_NN / 'Include'}", f"-I{KERNELS / 'include'}", f"-I{KERNELS / 'src' / 'kernels'}",
                    str(KERNELS / "checks" / "cmsis_requantize_check.c"), str(lib), "-o", str(exe)],
                   check=True, capture_output=True, text=True)
    return exe


def _run(exe: Path, *args: int) -> tuple[int, str]:
    out = subprocess.run([str(exe), *map(str, args)], capture_output=True, text=True, timeout=300)
    return out.returncode, out.stdout


@pytest.mark.parametrize("rounding", [(), ("-DCMSIS_NN_USE_SINGLE_ROUNDING",)], ids=["double", "single"])
def test_cmsis_pair_equals_fxpq_rescale(tmp_path_factory, rounding):
    exe = _checker(tmp_path_factory, *rounding)
    lim = 1 << 30
    for v_range in ((-(1 << 20), 1 << 20, 1), (-lim, -lim + (1 << 16), 1), (lim - (1 << 16), lim - 1, 1),
                    (-(1 << 31), (1 << 31) - 1, 65537)):
        code, out = _run(exe, -29, 40, *v_range)
        assert code == 0 and "mismatches 0" in out, (v_range, out)
        assert int(out.split()[1]) > 0


def test_tflite_normalized_pair_differs_under_double_rounding(tmp_path_factory):
    """(2^30, 1 - s) rounds the tie twice (half up, then half away from zero): v = -34, s = 2 gives
    -9 where fxpq's round half up gives -8; single rounding agrees."""
    code, out = _run(_checker(tmp_path_factory, "-DFXPQ_NATURAL_PAIR"), 2, 2, -34, -34)
    assert code == 1 and "cmsis=-9 fxpq=-8" in out, out
    code, out = _run(_checker(tmp_path_factory, "-DFXPQ_NATURAL_PAIR", "-DCMSIS_NN_USE_SINGLE_ROUNDING"), 0, 20,
                     -(1 << 12), 1 << 12)
    assert code == 0, out
