"""Every optimized Cortex-M kernel path runs, bit-exact, in the randomized tests' draws (issue 22).

The optimized kernels (tflm_kernels/src/kernels/fxpq_dsp.c) hold one function per specialized
loop: matrix loops per input kind and weight width, row unpackers, 16-bit pass loops, depthwise
quads, pools. The randomized QEMU tests (tests/test_c_kernels_qemu.py) draw their cases from choice
tables; this test runs a fixed numpy sample of the same tables on a coverage build of the harness
(gcc --coverage, tflm_kernels/mk/coverage.mk) on the M4 and the M7, checks every output against
numpy, and fails naming each function of fxpq_dsp.c that no case reached: a new kernel path must
come with draws that reach it, and a path the draws stopped reaching is noticed.
"""

from __future__ import annotations

import numpy as np
import pytest
from test_c_kernels_host import (
    SCRATCH_PATH_CHOICES,
    WIDE_PATH_CHOICES,
    block_path_cases,
    draw_choices,
    one_pixel_cases,
    scratch_path_case,
    wide_path_case,
)
from test_c_kernels_qemu import POOL_CHOICES, _cases, _check, _width_cases, pool_case

from fxpq_keras.kernels import qemu

_missing = qemu.missing_tools() + ([] if qemu.shutil.which("arm-none-eabi-gcov") else ["arm-none-eabi-gcov"])
pytestmark = pytest.mark.skipif(bool(_missing), reason=f"needs {', '.join(_missing)} (installed by scripts/setup.sh)")


def _sample(salt: int) -> list:
    """A fixed sample of every draw the randomized QEMU tests make."""
    rng = np.random.default_rng([salt, 0xC0DE])

    def seed() -> int:
        return int(rng.integers(2**32))

    cases = _width_cases(salt)
    cases += [scratch_path_case(seed(), draw_choices(SCRATCH_PATH_CHOICES, rng)) for _ in range(150)]
    cases += [wide_path_case(seed(), draw_choices(WIDE_PATH_CHOICES, rng)) for _ in range(150)]
    cases += block_path_cases(seed(), 80)
    cases += one_pixel_cases(seed(), 120)
    cases += [pool_case(tuple(v[int(rng.integers(len(v)))] for v in POOL_CHOICES)) for _ in range(60)]
    return cases + _cases(20, salt)


@pytest.mark.parametrize("cpu", ["m4", "m7"])
def test_every_optimized_path_runs_bit_exact(cpu):
    cases = _sample(11 if cpu == "m4" else 12)
    results, counts = qemu.path_coverage(cases, cpu=cpu)
    _check(list(zip(cases, results)))
    never = sorted(name for name, n in counts.items() if n == 0)
    assert not never, (f"{len(never)} of {len(counts)} functions of fxpq_dsp.c never ran on the {cpu} "
                       f"in the randomized tests' draws: {' '.join(never)}")
    assert len(counts) > 50  # the specialized copies are there (a build without them reports few)
