"""Fit fxpq_keras/instructions.json: the instruction estimate of the fxpq kernels on Cortex-M4.

    FXPQ_BENCH_CACHE=/work/bench-cache .venv/bin/python scripts/fit_instructions.py \\
        [--models lenet5,residual_ds_net,ds_cnn_seq,ds_cnn_kws] [--random 40] [--mixed 2] [--seed 0] [--refit]

Measures, on QEMU mps2-an386 (Cortex-M4, -icount shift=0: instructions = TIMER0 ticks x 40):

- per kernel call, in the QEMU test harness (fxpq_keras.kernels.qemu): `--random` random layer-like
  calls of every weighted op per kernel path (widths 2..16, signed and unsigned, 1x1 / 3x3 / 5x5,
  depthwise multipliers 1-2; a third as many again with 12/16-bit inputs and 9..13-bit weights, for
  the int64-accumulator paths) plus random calls of every other op, and every layer of each zoo model
  (bench/models.py, trained once and cached) under uniform 8-bit, uniform 16-bit and `--mixed`
  random per-data-structure widths (bench/mcu.py's layer_cases: each node on its actual inputs);
- per whole model, in the C runner linked into the model firmware (QemuEngine, 2 samples), the
  zoo files of the same policies.

Then fits, per kernel path of fxpq_keras.instructions.kernel_path, a non-negative linear model on
instructions.features (least relative error, so small layers count as much as large ones), and the
runner's cost per op and per model on the whole-model residuals; writes the coefficients, each
path's error, and the whole-model measurements (with their kernel calls, for tests/test_instructions.py)
to fxpq_keras/instructions.json, and prints each check's error. Raw measurements are kept under
.cache/bench/instructions/; `--refit` refits from them without QEMU (after a change of features).
Refit after any change of tflm_kernels/src/kernels/: the data file names the kernels' commit.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from collections import defaultdict
from dataclasses import MISSING, fields
from pathlib import Path

import numpy as np
from scipy.optimize import nnls

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from fxpq_keras.instructions import DATA_FILE, KernelCall, call_instructions, features, kernel_path, row_l1  # noqa: E402
from fxpq_keras.kernels import qemu  # noqa: E402
from fxpq_keras.kernels.cases import random_case  # noqa: E402

RAW = ROOT / ".cache" / "bench" / "instructions"
# case op -> graph op
GRAPH_OP = {"conv2d": "conv2d", "depthwise_conv2d": "depthwise_conv2d", "fully_connected": "fully_connected",
            "add": "add", "max_pool2d": "max_pool2d", "average_pool2d": "average_pool2d",
            "global_average_pool2d": "global_average_pool2d", "requantize_op": "requantize", "zero_pad2d": "pad",
            "leaky_relu": "leaky_relu", "concatenate": "concat", "quantize_input": "quantize"}
# activation widths drawn for weighted random calls: every container and signedness, and the 16-bit
# unsigned input that takes the reference loop
X_FORMATS = ((8, True), (8, False), (6, False), (4, True), (12, True), (16, True), (15, False), (16, False))


# the int64-accumulator paths (int32 by the rows' bound, chunked partial sums): wide inputs, 9..13-bit weights
WIDE_X_FORMATS = ((16, True), (16, False), (12, True))
WIDE_W_BITS = (9, 10, 11, 12, 13)


def draw_weighted(op: str, rng: np.random.Generator, wide: bool = False):
    """A layer-like random call of a weighted op (sizes of the zoo's layers); `wide`: one whose
    accumulator the width rule often puts in int64."""
    formats = WIDE_X_FORMATS if wide else X_FORMATS
    x_bits, x_signed = formats[int(rng.integers(len(formats)))]
    w_choices = WIDE_W_BITS if wide else (2, 3, 4, 5, 6, 7, 8, 8, 8, 10, 12, 16)
    c = dict(w_bits=int(rng.choice(w_choices)), x_bits=x_bits, x_signed=x_signed, dilation=False)
    if op == "fully_connected":
        c.update(in_features=int(rng.choice([16, 64, 128, 256, 400])), out_ch=int(rng.choice([4, 10, 16, 32, 64])))
    else:
        k = int(rng.choice([1, 3, 5])) if op == "conv2d" else int(rng.choice([3, 3, 5]))
        c.update(kernel=(k, k), cin=int(rng.choice([1, 3, 8, 16, 32, 64]) if op == "conv2d"
                                        else rng.choice([2, 4, 8, 16, 32, 64])))
        if op == "conv2d":
            c["out_ch"] = int(rng.choice([8, 16, 32, 64]))
        else:
            c["depth_multiplier"] = int(rng.choice([1, 1, 1, 2]))
    return random_case(op, rng, **c)


def case_call(case) -> KernelCall:
    """The KernelCall of a random harness case (per sample)."""
    op = GRAPH_OP[case.op]
    out = case.reference()
    n = case.args[0].shape[0]
    out_fmt = case.kwargs.get("out_fmt") or (case.args[1] if op == "quantize" else None)
    x_fmt = case.extra.get("x_fmt") or case.extra.get("in_fmt") or case.extra.get("a_fmt")
    x2 = case.extra.get("b_fmt")
    arrays = [a for a in case.args[:2] if isinstance(a, np.ndarray) and a.shape[:1] == (n,)]
    if op in ("conv2d", "depthwise_conv2d", "fully_connected"):
        arrays = arrays[:1]
    kw = dict(op=op, x_bits=32 if x_fmt is None else x_fmt.bits, x_signed=True if x_fmt is None else x_fmt.signed,
              out_bits=out_fmt.bits, out_signed=out_fmt.signed,
              in_elements=sum(int(a.size) for a in arrays) // n, out_elements=int(out.size) // n)
    if x2 is not None:
        kw.update(x2_bits=x2.bits, x2_signed=x2.signed)
    if op in ("conv2d", "depthwise_conv2d", "fully_connected"):
        w = case.args[1]
        if op == "conv2d":
            taps, k, channels = int(w.shape[1] * w.shape[2]), int(np.prod(w.shape[1:])), int(w.shape[0])
        elif op == "depthwise_conv2d":
            taps = k = int(w.shape[1] * w.shape[2])
            channels = int(w.shape[3])
        else:
            taps, k, channels = 1, int(w.shape[1]), int(w.shape[0])
        kw.update(w_bits=case.extra["w_bits"], macs=kw["out_elements"] * k, k=k, taps=taps, channels=channels,
                  depth_multiplier=int(case.kwargs.get("depth_multiplier", 1)), weights=int(w.size),
                  w_l1=row_l1(op, w, case.extra["w_bits"]))
    elif op in ("max_pool2d", "average_pool2d"):
        kw.update(taps=int(np.prod(case.kwargs["pool"])), channels=int(out.shape[-1]))
    elif op == "global_average_pool2d":
        kw.update(taps=int(np.prod(case.args[0].shape[1:-1])), channels=int(case.args[0].shape[-1]))
    return KernelCall(**kw), n


def measure_random(count: int, rng: np.random.Generator) -> list[dict]:
    cases = []
    for op in GRAPH_OP:
        for _ in range(count if op in ("conv2d", "depthwise_conv2d", "fully_connected") else max(count // 3, 8)):
            cases.append(draw_weighted(op, rng) if op in ("conv2d", "depthwise_conv2d", "fully_connected")
                         else random_case(op, rng))
    for op in ("conv2d", "depthwise_conv2d", "fully_connected"):
        cases.extend(draw_weighted(op, rng, wide=True) for _ in range(count // 3))
    t = time.perf_counter()
    results = qemu.run_cases(cases, cpu="m4", timeout=3600)
    print(f"{len(cases)} random calls measured in {time.perf_counter() - t:.0f} s", flush=True)
    rows = []
    for case, res in zip(cases, results):
        if res.status != 0:
            continue
        call, n = case_call(case)
        rows.append({"source": "random", "call": call.to_dict(), "instructions": res.instructions / n})
    return rows


def zoo_policies(calib, mixed: int, rng: np.random.Generator) -> dict:
    """uniform 8 and 16 bits, and `mixed` policies with random widths per data structure (each at the
    range-derived frac of its width), from the model's calibration."""
    from fxpq_keras.policy import Policy

    uniform = {b: Policy.uniform(calib, b, None) for b in (4, 6, 8, 12, 16)}
    out = {"uniform8": uniform[8], "uniform16": uniform[16]}
    for i in range(mixed):
        p = uniform[8].copy()
        for layer, ds, _ in list(p.data_structures()):
            if ds == "bias":
                continue
            bits = int(rng.choice([4, 6, 8, 8, 12, 16]))
            p.set(layer, ds, bits=bits, frac=uniform[bits].get(layer, ds).frac)
        p.constrain_biases()
        out[f"mixed{i}"] = p
    return out


def measure_zoo(models: list[str], mixed: int, rng: np.random.Generator) -> tuple[list[dict], list[dict]]:
    from mcu import OUT, layer_cases
    from models import calibration_set, trained

    from fxpq_keras.calibration import Calibration
    from fxpq_keras.fakequant import quantize_model
    from fxpq_keras.flatbuffer import export_tflite
    from fxpq_keras.instructions import graph_calls
    from fxpq_keras.kernels.engines import QemuEngine

    rows, wholes = [], []
    for name in models:
        model, data = trained(name)
        x_cal, _ = calibration_set(data, 512)
        calib = Calibration(model, x_cal)
        x = data["x_test"][:2]
        for label, policy in zoo_policies(calib, mixed, rng).items():
            t = time.perf_counter()
            path = OUT / f"{name}_{label}_instructions.tflite"
            path.parent.mkdir(parents=True, exist_ok=True)
            export_tflite(quantize_model(calib, policy), path)
            graph, nodes, cases, _ = layer_cases(path, x)
            calls = {id(node): call for node, call, _ in graph_calls(graph)}
            results = qemu.run_cases(cases, cpu="m4", timeout=3600)
            for node, res in zip(nodes, results):
                if res.status == 0:
                    rows.append({"source": f"{name}/{label}/{node.name}", "call": calls[id(node)].to_dict(),
                                 "instructions": float(res.instructions)})
            eng = QemuEngine(path, graph, None, cpu="m4", link_model=True, kernels="optimized")
            eng.run(x)
            wholes.append({"model": name, "policy": label, "instructions": float(eng.instructions.mean()),
                           "calls": [c.to_dict() for _, c, _ in graph_calls(graph)]})
            print(f"{name} {label}: {len(cases)} layers, whole model {wholes[-1]['instructions']:,.0f} "
                  f"instructions ({time.perf_counter() - t:.0f} s)", flush=True)
    return rows, wholes


def _short(call: dict) -> dict:
    """A call's fields without those at their default (the data file stays small)."""
    defaults = {f.name: f.default for f in fields(KernelCall) if f.default is not MISSING}
    return {k: v for k, v in call.items() if k not in defaults or v != defaults[k]}


def fit(rows: list[dict], wholes: list[dict]) -> dict:
    """Coefficients per kernel path, then the runner's per-op and per-model cost."""
    by_path: dict[str, list[tuple[list[float], float]]] = defaultdict(list)
    for r in rows:
        call = KernelCall.from_dict(r["call"])
        path = kernel_path(call)
        by_path[path].append((features(path, call), r["instructions"]))
    paths = {}
    for path in sorted(by_path):
        a = np.array([f for f, _ in by_path[path]], dtype=np.float64)
        y = np.array([v for _, v in by_path[path]], dtype=np.float64)
        coef, _ = nnls(a / np.maximum(y, 1)[:, None], np.ones_like(y))
        err = np.abs(a @ coef - y) / np.maximum(y, 1)
        paths[path] = {"coefficients": [float(f"{c:.5g}") for c in coef], "cases": len(y),
                       "median_error": round(float(np.median(err)), 4),
                       "p90_error": round(float(np.quantile(err, 0.9)), 4)}
    data = {"paths": paths, "runner": {"per_op": 0.0, "per_model": 0.0}}
    if wholes:  # what the runner adds per op and per inference, on the whole-model residuals
        a = np.array([[len(w["calls"]), 1.0] for w in wholes])
        resid = np.array([w["instructions"] - sum(call_instructions(KernelCall.from_dict(c), data) or 0.0
                                                  for c in w["calls"]) for w in wholes])
        scale = np.array([w["instructions"] for w in wholes])
        coef, _ = nnls(a / scale[:, None], resid / scale)
        data["runner"] = {"per_op": round(float(coef[0]), 1), "per_model": round(float(coef[1]), 1)}
    return data


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="lenet5,residual_ds_net,ds_cnn_seq,ds_cnn_kws")
    ap.add_argument("--random", type=int, default=40, help="random calls per weighted op (a third for other ops)")
    ap.add_argument("--mixed", type=int, default=2, help="random mixed-width policies per zoo model")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--refit", action="store_true", help="refit from the stored measurements (no QEMU)")
    args = ap.parse_args(argv)
    from fxpq_keras.instructions import model_instructions

    RAW.mkdir(parents=True, exist_ok=True)
    raw_file = RAW / "measurements.json"
    if args.refit:
        raw = json.loads(raw_file.read_text())
    else:
        rng = np.random.default_rng(args.seed)
        t = time.perf_counter()
        rows = measure_random(args.random, rng)
        zoo_rows, wholes = measure_zoo([m for m in args.models.split(",") if m], args.mixed, rng)
        raw = {"rows": rows + zoo_rows, "wholes": wholes, "seconds": round(time.perf_counter() - t),
               "args": " ".join(a for a in (argv if argv is not None else sys.argv[1:]) if a != "--refit")}
        raw_file.write_text(json.dumps(raw))
    data = fit(raw["rows"], raw["wholes"])
    commit = subprocess.run(["git", "log", "-1", "--format=%h", "--", "tflm_kernels/src"], cwd=ROOT,
                            capture_output=True, text=True).stdout.strip()
    checks = []
    print(f"{'model':<16} {'policy':<10} {'measured':>12} {'estimate':>12} {'error':>7}")
    for w in raw["wholes"]:
        est = model_instructions([KernelCall.from_dict(c) for c in w["calls"]], data)
        checks.append({**w, "estimate": round(est)})
        print(f"{w['model']:<16} {w['policy']:<10} {w['instructions']:>12,.0f} {est:>12,.0f} "
              f"{est / w['instructions'] - 1:>+7.1%}")
    for path, p in data["paths"].items():
        print(f"{path:<32} {p['cases']:>4} calls: median error {p['median_error']:.0%}, 90th percentile "
              f"{p['p90_error']:.0%}")
    out = {"about": "fxpq_keras/instructions.py's coefficients, written by scripts/fit_instructions.py "
                    f"{raw.get('args', '')}".strip() + " (QEMU mps2-an386, -icount shift=0)",
           "kernels_commit": commit, **data,
           "checks": [{"model": c["model"], "policy": c["policy"], "instructions": c["instructions"],
                       "calls": [_short(call) for call in c["calls"]]} for c in checks]}
    head = json.dumps({k: v for k, v in out.items() if k != "checks"}, indent=1)
    rows = ",\n".join("  " + json.dumps(c, separators=(",", ":")) for c in out["checks"])
    DATA_FILE.write_text(f'{head[:-2]},\n "checks": [\n{rows}\n ]\n}}\n')  # one line per check
    print(f"wrote {DATA_FILE.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
