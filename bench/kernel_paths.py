"""Instructions per MAC of every kernel path, by format, on zoo-sized layers (no model, no search).

    .venv/bin/python bench/kernel_paths.py [--cpus m4,m7] [--ops conv3x3,depthwise,...] [--reference]

Each row is one kernel call on a layer shape the zoo uses (a 3x3 conv, a 1x1 conv, a stem conv
with one input channel, a 3x3 depthwise at stride 1 and 2, fully connected, global and 2x2 average
pooling, max pooling, add, requantize) with one (input, weight, output) format combination the
search can pick, run in the QEMU test harness (`-icount shift=0`: instructions = TIMER0 ticks x 40)
on the optimized build (and the reference build with --reference). Printed: instructions per MAC
(per output element for the ops without weights); every output is checked bit for bit against the
numpy reference. This is the table that says which format combinations still take a slow path:
bench/mcu.py's per-layer table gives the same figures for the layers of a searched policy.
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

# (name, op, input shape NHWC, kernel (kh, kw), out channels / depth multiplier, stride)
SHAPES = {
    "conv3x3": ("conv2d", (1, 10, 10, 16), (3, 3), 16, (1, 1)),
    "pointwise": ("conv2d", (1, 12, 12, 32), (1, 1), 32, (1, 1)),
    "stem": ("conv2d", (1, 24, 24, 1), (3, 3), 16, (1, 1)),
    "depthwise": ("depthwise_conv2d", (1, 12, 12, 32), (3, 3), 1, (1, 1)),
    "depthwise_s2": ("depthwise_conv2d", (1, 16, 16, 32), (3, 3), 1, (2, 2)),
    "fc": ("fully_connected", (1, 256), None, 32, None),
    "gap": ("global_average_pool2d", (1, 12, 12, 32), None, None, None),
    "avgpool": ("average_pool2d", (1, 12, 12, 32), (2, 2), None, (2, 2)),
    "maxpool": ("max_pool2d", (1, 12, 12, 32), (2, 2), None, (2, 2)),
    "add": ("add", (1, 12, 12, 32), None, None, None),
    "requantize": ("requantize_op", (1, 12, 12, 32), None, None, None),
}

# activation formats the search picks (bits, signed): 8-bit signed / unsigned (after ReLU),
# 12-bit, 16-bit signed, and unsigned 16-bit (which does not fit an int16 lane)
X_FORMATS = ((8, True), (8, False), (12, True), (16, True), (16, False))
W_BITS = (8, 4, 6, 16)
OUT_FORMATS = ((8, True), (16, True))


def _fmt(bits: int, signed: bool, frac: int) -> Format:
    return Format(bits, frac, signed)


def case(name: str, x: tuple[int, bool], w_bits: int, out: tuple[int, bool], rng) -> OpCase:
    """One kernel call of layer `name` with these formats; outputs kept in range by the fracs."""
    op, shape, kernel, n_out, stride = SHAPES[name]
    x_fmt = _fmt(*x, frac=x[0] - 4)
    xs = rng.integers(x_fmt.lo, x_fmt.hi + 1, size=shape, dtype=np.int64)
    out_bits = out[0]
    if op in ("conv2d", "depthwise_conv2d", "fully_connected"):
        k = (kernel[0] * kernel[1] * (shape[3] if op == "conv2d" else 1)) if kernel else shape[1]
        wlo, whi = -(1 << (w_bits - 1)), (1 << (w_bits - 1)) - 1
        c_out = n_out if op != "depthwise_conv2d" else shape[3] * n_out
        if op == "conv2d":
            w = rng.integers(wlo, whi + 1, size=(c_out, *kernel, shape[3]))
        elif op == "depthwise_conv2d":
            w = rng.integers(wlo, whi + 1, size=(1, *kernel, c_out))
        else:
            w = rng.integers(wlo, whi + 1, size=(c_out, shape[1]))
        w_frac = w_bits - 1
        bias = rng.integers(-1000, 1000, size=c_out)
        acc_frac = x_fmt.frac + w_frac
        magnitude = (x[0] - 1) + (w_bits - 1) + 0.5 * np.log2(k)  # a random-walk sum's bits
        out_fmt = _fmt(*out, frac=int(acc_frac - round(magnitude) + out_bits - 1))
        kwargs = dict(x_frac=x_fmt.frac, w_frac=w_frac, bias_frac=acc_frac, out_fmt=out_fmt, activation="relu")
        if op != "fully_connected":
            kwargs.update(stride=stride, padding="same", dilation=(1, 1))
        if op == "depthwise_conv2d":
            kwargs["depth_multiplier"] = n_out
        return OpCase(op, (xs, w, bias), kwargs, dict(x_fmt=x_fmt, w_bits=w_bits))
    out_fmt = _fmt(*out, frac=x_fmt.frac - (x[0] - out_bits))
    if op == "global_average_pool2d":
        return OpCase(op, (xs,), dict(in_frac=x_fmt.frac, out_fmt=out_fmt, keepdims=False), dict(in_fmt=x_fmt))
    if op in ("average_pool2d", "max_pool2d"):
        return OpCase(op, (xs,), dict(pool=kernel, stride=stride, padding="valid", in_frac=x_fmt.frac,
                                      out_fmt=out_fmt, activation=None), dict(in_fmt=x_fmt))
    if op == "add":
        b = rng.integers(x_fmt.lo, x_fmt.hi + 1, size=shape, dtype=np.int64)
        return OpCase("add", (xs, b), dict(a_frac=x_fmt.frac, b_frac=x_fmt.frac - 1, out_fmt=out_fmt, activation=None),
                      dict(a_fmt=x_fmt, b_fmt=_fmt(x[0], x[1], x_fmt.frac - 1)))
    return OpCase(op, (xs,), dict(in_frac=x_fmt.frac, out_fmt=out_fmt, activation=None), dict(in_fmt=x_fmt))


def work(c: OpCase) -> int:
    """MACs of a weighted op, else output elements."""
    out = c.reference()
    if c.op == "depthwise_conv2d":
        return out.size * c.args[1].shape[1] * c.args[1].shape[2]
    if c.op == "conv2d":
        return out.size * int(np.prod(c.args[1].shape[1:]))
    if c.op == "fully_connected":
        return int(np.prod(c.args[1].shape))
    return out.size


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cpus", default="m4,m7")
    ap.add_argument("--ops", default=",".join(SHAPES))
    ap.add_argument("--reference", action="store_true", help="also the reference build (M4)")
    args = ap.parse_args(argv)
    rng = np.random.default_rng(0)
    rows = []
    for name in args.ops.split(","):
        weighted = SHAPES[name][0] in ("conv2d", "depthwise_conv2d", "fully_connected")
        for x in X_FORMATS:
            for w_bits in (W_BITS if weighted else (0,)):
                for out in OUT_FORMATS:
                    rows.append((name, x, w_bits, out, case(name, x, w_bits, out, rng)))
    cases = [r[-1] for r in rows]
    runs = {cpu: qemu.run_cases(cases, cpu=cpu, timeout=1200) for cpu in args.cpus.split(",")}
    if args.reference:
        runs["m4 ref"] = qemu.run_cases(cases, cpu="m4", kernels="reference", timeout=1200)
    head = f"{'layer':<13} {'x':<4} {'w':>3} {'out':<4} {'work':>7} " + " ".join(f"{k:>8}" for k in runs) + " exact"
    print(head)
    print("-" * len(head))
    for i, (name, x, w_bits, out, c) in enumerate(rows):
        ref = c.reference()
        exact = all(r[i].status == 0 and np.array_equal(r[i].output, ref) for r in runs.values())
        n = work(c)
        per = " ".join(f"{r[i].instructions / n:>8.2f}" for r in runs.values())
        print(f"{name:<13} {('s' if x[1] else 'u') + str(x[0]):<4} {w_bits or '-':>3} "
              f"{('s' if out[1] else 'u') + str(out[0]):<4} {n:>7} {per} {'yes' if exact else 'NO'}")
    print("instructions per MAC (conv, depthwise, fully connected) or per output element (the others); "
          "QEMU -icount shift=0, TIMER0 ticks x 40, one call each")
    return 0


if __name__ == "__main__":
    sys.exit(main())
