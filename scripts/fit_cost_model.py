"""Fit fxpq_keras/cost_model.py: instructions of the optimized fxpq kernels on Cortex-M4, per op.

    .venv/bin/python scripts/fit_cost_model.py [--cases 60] [--seed 0]

Draws random kernel calls of every FXP_* op at layer-like sizes (kernels/cases.py: 8..32 channels,
1x1 / 3x3 / 5x5 kernels, 4..16-bit weights, 8- and 16-bit activations), runs them in the QEMU
mps2-an386 test harness (-icount shift=0: instructions = TIMER0 ticks x 40, resolution 40), fits per
op a non-negative linear model (least squares of the relative error) on the features of
fxpq_keras.cost_model.features, and prints the COEFFICIENTS dict to paste into cost_model.py with
each op's median and 90th-percentile relative error on the fitted cases. Needs qemu-system-arm and
arm-none-eabi-gcc.
"""

from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np
from scipy.optimize import nnls

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fxpq_keras.cost_model import features, op_key  # noqa: E402
from fxpq_keras.kernels import qemu  # noqa: E402
from fxpq_keras.kernels.cases import random_case  # noqa: E402

# case op -> the graph op it implements (cost_model keys are graph ops)
GRAPH_OP = {"conv2d": "conv2d", "depthwise_conv2d": "depthwise_conv2d", "fully_connected": "fully_connected",
            "add": "add", "max_pool2d": "max_pool2d", "average_pool2d": "average_pool2d",
            "global_average_pool2d": "global_average_pool2d", "requantize_op": "requantize", "zero_pad2d": "pad",
            "leaky_relu": "leaky_relu", "concatenate": "concat", "quantize_input": "quantize"}


def draw(op: str, rng: np.random.Generator):
    """One layer-like case of `op` (random_case constraints) and its cost features."""
    c: dict = {}
    if op in ("conv2d", "depthwise_conv2d", "fully_connected"):
        c = dict(w_bits=int(rng.choice([4, 6, 8, 8, 10, 12, 16])), x_bits=int(rng.choice([8, 8, 8, 12, 16])),
                 dilation=False)
        if op == "fully_connected":
            c.update(in_features=int(rng.choice([32, 64, 128, 256])), out_ch=int(rng.choice([8, 16, 32])))
        else:
            k = int(rng.choice([1, 3, 5])) if op == "conv2d" else int(rng.choice([3, 5]))
            c.update(kernel=(k, k), cin=int(rng.choice([8, 16, 32])))
            if op == "conv2d":
                c["out_ch"] = int(rng.choice([8, 16, 32]))
            else:
                c["depth_multiplier"] = 1
    case = random_case(op, rng, **c)
    return case


def case_features(case) -> tuple[str, list[float]]:
    """The cost model's key and features of one case (the same function inspect uses on a file)."""
    op = GRAPH_OP[case.op]
    out = case.reference()
    x = case.args[0]
    n = x.shape[0]
    out_elements = int(out.size) // n
    in_elements = int(sum(np.asarray(a).size for a in case.args[:2] if isinstance(a, np.ndarray)
                          and a.shape[:1] == (n,))) // n
    macs = w_bits = taps = weights = 0
    x_fmt = case.extra.get("x_fmt") or case.extra.get("in_fmt") or case.extra.get("a_fmt")
    x_bits = x_fmt.bits if x_fmt is not None else 32
    if op in ("conv2d", "depthwise_conv2d", "fully_connected"):
        w = case.args[1]
        taps = int(w.shape[1] * w.shape[2]) if op != "fully_connected" else 1
        per_out = int(np.prod(w.shape[1:])) if op == "conv2d" else taps if op == "depthwise_conv2d" else w.shape[1]
        macs = out_elements * per_out
        w_bits = case.extra["w_bits"]
        weights = int(w.size)
    key = op_key(op, taps)
    return key, features(op, macs=macs, out_elements=out_elements, in_elements=in_elements, weight_bits=w_bits,
                         x_bits=x_bits, weights=weights, taps=max(taps, 1)), n


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", type=int, default=60, help="cases per op")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    rng = np.random.default_rng(args.seed)
    cases = [draw(op, rng) for op in GRAPH_OP for _ in range(args.cases)]
    results = qemu.run_cases(cases, cpu="m4", timeout=1800)
    rows: dict[str, list[tuple[list[float], float]]] = defaultdict(list)
    for case, res in zip(cases, results):
        if res.status != 0:
            continue
        key, feats, n = case_features(case)
        rows[key].append((feats, res.instructions / n))  # per sample (a case may hold a batch of 2)
    print("COEFFICIENTS = {")
    for key in sorted(rows):
        a = np.array([f for f, _ in rows[key]], dtype=np.float64)
        y = np.array([v for _, v in rows[key]], dtype=np.float64)
        coef, _ = nnls(a / y[:, None], np.ones_like(y))  # least relative error: small layers count as much
        err = np.abs(a @ coef - y) / np.maximum(y, 1)
        print(f"    # {len(y)} cases: median error {np.median(err):.0%}, 90th percentile {np.quantile(err, 0.9):.0%}")
        print(f'    "{key}": ({", ".join(f"{c:.4g}" for c in coef)}),')
    print("}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
