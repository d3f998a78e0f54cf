"""Instructions per element of QUANTIZE (float32 -> integer) and DEQUANTIZE on QEMU M4/M7.

    .venv/bin/python bench/quantize_cost.py [--cpus m4,m7] [--n 27648]

One kernel call per output format on n float32 inputs (default: a 96x96x3 image, MobileNetV1's
float input) drawn like normalized pixels plus a few saturating values, run in the QEMU test
harness (`-icount shift=0`: instructions = TIMER0 ticks x 40); every output is checked bit for bit
against the numpy reference.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fxpq_keras.formats import Format  # noqa: E402
from fxpq_keras.kernels import qemu  # noqa: E402
from fxpq_keras.kernels.cases import OpCase  # noqa: E402

FORMATS = (Format(8, 5, True), Format(8, 7, False), Format(12, 9, True), Format(16, 13, True), Format(16, 15, False))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cpus", default="m4,m7")
    ap.add_argument("--n", type=int, default=96 * 96 * 3)
    args = ap.parse_args(argv)
    rng = np.random.default_rng(0)
    x = rng.uniform(-1.0, 1.0, size=(1, args.n)).astype(np.float32)
    x[0, ::97] *= 1000.0  # some saturating inputs
    cases = [OpCase("quantize_input", (x, f), {}, {}) for f in FORMATS]
    for f in FORMATS:
        q = rng.integers(f.lo, f.hi + 1, size=(1, args.n))
        cases.append(OpCase("dequantize_output", (q, f.frac), {}, dict(in_fmt=f)))
    runs = {cpu: qemu.run_cases(cases, cpu=cpu, timeout=1200) for cpu in args.cpus.split(",")}
    head = f"{'op':<11} {'format':<8} " + " ".join(f"{k:>8}" for k in runs) + " exact"
    print(head)
    print("-" * len(head))
    for i, c in enumerate(cases):
        ref = c.reference()
        exact = all(r[i].status == 0 and np.array_equal(r[i].output, ref) for r in runs.values())
        f = c.args[1] if c.op == "quantize_input" else c.extra["in_fmt"]
        name = f"{'s' if f.signed else 'u'}{f.bits}.{f.frac}"
        per = " ".join(f"{r[i].instructions / args.n:>8.2f}" for r in runs.values())
        print(f"{c.op.split('_')[0]:<11} {name:<8} {per} {'yes' if exact else 'NO'}")
    print(f"instructions per element, n = {args.n}; QEMU -icount shift=0, TIMER0 ticks x 40, one call each")
    return 0


if __name__ == "__main__":
    sys.exit(main())
