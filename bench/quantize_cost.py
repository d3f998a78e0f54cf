"""Instructions per element of QUANTIZE (float32 -> integer) and DEQUANTIZE on QEMU M4/M7.

    .venv/bin/python bench/quantize_cost.py [--cpus m4,m7] [--n 27648] [--model mobilenet_v1_025]

One kernel call per output format on n float32 inputs (default: a 96x96x3 image, MobileNetV1's
float input) drawn like normalized pixels plus a few saturating values, run in the QEMU test
harness (`-icount shift=0`: instructions = TIMER0 ticks x 40); every output is checked bit for bit
against the numpy reference. With --model, also the whole inference (one held-out sample) of
that zoo model's uniform 8-bit fxp file exported with float input and with integer input (no
search: the trained model of FXPQ_BENCH_CACHE), on the same CPUs in the project's runner.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from fxpq_keras.formats import Format  # noqa: E402
from fxpq_keras.kernels import qemu  # noqa: E402
from fxpq_keras.kernels.cases import OpCase  # noqa: E402

FORMATS = (Format(8, 5, True), Format(8, 7, False), Format(12, 9, True), Format(16, 13, True), Format(16, 15, False))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cpus", default="m4,m7")
    ap.add_argument("--n", type=int, default=96 * 96 * 3)
    ap.add_argument("--model", default="", help="also a zoo model's whole inference, float vs integer input")
    args = ap.parse_args(argv)
    if args.model:
        whole_model(args.model, args.cpus.split(","))
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


def whole_model(name: str, cpus: list[str]) -> None:
    """Instructions per inference of the uniform 8-bit fxp file, float input against integer input."""
    import fxpq_keras  # noqa: F401  (before TensorFlow)
    from bench.models import calibration_set, trained
    from fxpq_keras.calibration import Calibration
    from fxpq_keras.fakequant import quantize_model
    from fxpq_keras.flatbuffer import Interpreter, export_tflite
    from fxpq_keras.kernels.engines import QemuEngine
    from fxpq_keras.policy import Policy

    model, data = trained(name)
    calib = Calibration(model, calibration_set(data)[0])
    qmodel = quantize_model(calib, Policy.uniform(calib, 8, None))
    x = data["x_test"][:1]
    out = ROOT / ".cache" / "bench" / "quantize_cost"
    out.mkdir(parents=True, exist_ok=True)
    for float_input in (True, False):
        path = out / f"{name}_uniform8_{'float' if float_input else 'int'}_input.tflite"
        export_tflite(qmodel, path, float_input=float_input)
        interp = Interpreter(path)
        xin = x if float_input else input_integers(x, interp)
        ref = interp.predict(xin, raw=True)
        figures = []
        for cpu in cpus:
            eng = QemuEngine(path, interp.graph, None, cpu=cpu, link_model=True)
            got = eng.run(xin)[0]
            exact = np.array_equal(got, ref if not isinstance(ref, list) else ref[0])
            figures.append(f"{cpu} {eng.instructions.mean():,.0f}{'' if exact else ' NOT EXACT'}")
        print(f"{name} uniform 8-bit, {'float' if float_input else 'integer'} input: "
              f"instructions per inference {', '.join(figures)}")


def input_integers(x: np.ndarray, interp) -> np.ndarray:
    """Held-out floats as the integers of the file's input format."""
    from fxpq_keras.formats import quantize

    return quantize(x, interp.graph.tensors[interp.graph.input].fmt)


if __name__ == "__main__":
    sys.exit(main())
