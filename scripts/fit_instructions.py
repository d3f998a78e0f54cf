"""Fit fxpq_keras/instructions.json: the instruction estimate of the fxpq kernels on Cortex-M4 (and the int8 reference).

    FXPQ_BENCH_CACHE=/work/bench-cache FXPQ_TFLM_CACHE=/work/tflm-cache-release TFLM_DIR=/work/tflm-src/tflite-micro \\
        TFLM_DEPS_DIR=/work/tflm-src .venv/bin/python scripts/fit_instructions.py [--part all|fxpq|int8] \\
        [--models lenet5,residual_ds_net,ds_cnn_seq,ds_cnn_kws] [--random 40] [--mixed 2] [--seed 0] [--refit] \\
        [--int8-random 30] [--int8-models lenet5,...,mobilenet_v1_025]

After a change of our kernels, `--part fxpq` remeasures them only (the int8 reference is refitted from its
stored measurements); each part prints how long its measurements took. The data file as committed was
written with `--random 150 --mixed 3 --models
lenet5,residual_ds_net,ds_cnn_seq,ds_cnn_kws,resnet8,fc_autoencoder,mobilenet_v1_025` (fxpq part) and the int8
defaults (its "about" fields say so).

Measures, on QEMU mps2-an386 (Cortex-M4, -icount shift=0: instructions = TIMER0 ticks x 40):

- per kernel call, in the QEMU test harness (fxpq_keras.kernels.qemu): `--random` random layer-like
  calls of every weighted op per kernel path (widths 2..16, signed and unsigned, 1x1 / 3x3 / 5x5,
  depthwise multipliers 1-2, half of them on layer-sized maps of 6..48 pixels a side at stride 1-2,
  1x1 convs up to K = 256; a third as many again with 12/16-bit inputs and 9..13-bit weights, for the
  int64-accumulator paths) plus random calls of every other op, and every layer of each zoo model
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

The int8 reference (section "int8_cmsis": the speed cap's default reference, docs/algorithm.md "Speed
cap"): `--int8-random` random one- to three-op Keras models per kind of op (conv 1x1/KxK, depthwise,
dense, add, pooling, pad, concat, leaky relu; half with a float input, for QUANTIZE) and every
`--int8-models` zoo model, each exported at uniform 8 bits as a stock int8 file (target int8-builtin) and
run in real TFLM with CMSIS-NN (library variant m4-cmsis, FXPQ_TFLM_CACHE; needs TFLM_DIR) on QEMU M4.
TFLM counts whole inferences only, so one non-negative linear model is fitted over all files at once
(fxpq_keras.instructions.int8_features per CMSIS-NN kernel, plus the runner's per-op and per-model cost).
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
from typing import Any

import numpy as np
from scipy.optimize import nnls

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from fxpq_keras.instructions import (  # noqa: E402
    DATA_FILE,
    KernelCall,
    call_instructions,
    clipped_pixels,
    features,
    int8_features,
    int8_model_instructions,
    int8_path,
    kernel_path,
    row_l1,
)
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
        # 1x1 convs as deep as MobileNetV1's pointwise layers (K up to 256, the int16 row block's range)
        cins = [8, 16, 32, 64, 128, 256] if k == 1 else [1, 3, 8, 16, 32, 64]
        c.update(kernel=(k, k), cin=int(rng.choice(cins) if op == "conv2d" else rng.choice([2, 4, 8, 16, 32, 64])))
        if op == "conv2d":
            c["out_ch"] = int(rng.choice([8, 16, 32, 64]))
        else:
            c["depth_multiplier"] = int(rng.choice([1, 1, 1, 2]))
        if rng.random() < 0.5:  # a layer-sized map (the interior loops) at stride 1 or 2, else the small random ones
            side = int(rng.choice([6, 12, 24, 48]))
            c.update(size=(side, side), stride=(int(rng.choice([1, 1, 2])),) * 2, padding="same")
    return random_case(op, rng, **c)


def case_call(case) -> KernelCall:
    """The KernelCall of a random harness case over its whole batch: the call the C kernel makes (a
    fully connected over n rows runs n pixels, which decides its path; per sample it would look like one)."""
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
              in_elements=sum(int(a.size) for a in arrays), out_elements=int(out.size))
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
        if op != "fully_connected" and taps > 1:
            kw["clipped"] = n * clipped_pixels(case.args[0].shape[1:3], w.shape[1:3], case.kwargs["stride"],
                                               case.kwargs.get("dilation", (1, 1)), case.kwargs["padding"])
    elif op in ("max_pool2d", "average_pool2d"):
        kw.update(taps=int(np.prod(case.kwargs["pool"])), channels=int(out.shape[-1]))
    elif op == "global_average_pool2d":
        kw.update(taps=int(np.prod(case.args[0].shape[1:-1])), channels=int(case.args[0].shape[-1]))
    return KernelCall(**kw)


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
        rows.append({"source": "random", "call": case_call(case).to_dict(), "instructions": res.instructions})
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


# the stock int8 reference (TFLM + CMSIS-NN, library variant m4-cmsis): random one- and few-op Keras models
INT8_KINDS = ("conv2d", "depthwise_conv2d", "dense", "add", "max_pool2d", "average_pool2d", "global_average_pool2d",
              "pad", "concat", "leaky_relu")


def int8_keras_model(kind: str, rng: np.random.Generator):
    """A small random Keras model around one op of `kind` (layer sizes of the zoo's), for the int8 fit."""
    import keras

    layers = keras.layers
    side = int(rng.choice([6, 8, 12, 16, 24, 32]))
    cin = int(rng.choice([1, 3, 4, 8, 16, 32, 64] if kind == "conv2d" else [4, 8, 16, 32, 64]))
    if kind == "dense":
        inp = keras.Input((int(rng.choice([16, 64, 128, 256, 400, 1024])),))
        act = str(rng.choice(["relu", "linear"]))
        out = layers.Dense(int(rng.choice([4, 10, 16, 32, 64, 128])), activation=act)(inp)
        return keras.Model(inp, out)
    inp = keras.Input((side, side, cin))
    if kind == "conv2d":
        k = int(rng.choice([1, 1, 3, 3, 5]))
        out = layers.Conv2D(int(rng.choice([8, 16, 32, 64])), k, strides=int(rng.choice([1, 1, 2])),
                            padding=str(rng.choice(["same", "valid"])) if k > 1 else "valid", activation="relu")(inp)
    elif kind == "depthwise_conv2d":
        out = layers.DepthwiseConv2D(int(rng.choice([3, 3, 5])), strides=int(rng.choice([1, 1, 2])), padding="same",
                                     depth_multiplier=int(rng.choice([1, 1, 1, 2])), activation="relu")(inp)
    elif kind == "add":
        out = layers.Add()([layers.Conv2D(cin, 1, activation="relu")(inp), inp])
    elif kind == "concat":
        out = layers.Concatenate()([layers.Conv2D(int(rng.choice([4, 8, 16])), 1)(inp),
                                    layers.Conv2D(int(rng.choice([4, 8, 16])), 1)(inp)])
    elif kind == "max_pool2d":
        out = layers.MaxPooling2D(int(rng.choice([2, 3])))(inp)
    elif kind == "average_pool2d":
        out = layers.AveragePooling2D(int(rng.choice([2, 3])))(inp)
    elif kind == "global_average_pool2d":
        out = layers.GlobalAveragePooling2D()(inp)
    elif kind == "pad":
        out = layers.Conv2D(8, 3)(layers.ZeroPadding2D(int(rng.choice([1, 2])))(inp))
    else:
        out = layers.LeakyReLU(0.125)(layers.Conv2D(8, 1)(inp))
    return keras.Model(inp, out)


def int8_file(model, x_cal: np.ndarray, path: Path, float_input: bool) -> tuple[list[dict], Any]:
    """Export `model` at uniform 8 bits as a stock int8 file; returns the kernel calls of its fxp graph
    (what the search's DeviceModel sees; the float input's quantize only with a float input) and the
    reference interpreter of the int8 file."""
    from fxpq_keras.calibration import Calibration
    from fxpq_keras.fakequant import quantize_model
    from fxpq_keras.flatbuffer import Interpreter, export_tflite
    from fxpq_keras.instructions import graph_calls
    from fxpq_keras.integer_graph.lower import lower_model
    from fxpq_keras.policy import Policy

    calib = Calibration(model, x_cal)
    qmodel = quantize_model(calib, Policy.uniform(calib, 8, None))
    calls = [c.to_dict() for _, c, _ in graph_calls(lower_model(qmodel)) if float_input or c.op != "quantize"]
    export_tflite(qmodel, path, target="int8-builtin", float_input=float_input)
    return calls, Interpreter(path)


def run_int8(path: Path, interp, x: np.ndarray, float_input: bool) -> float:
    """Instructions per inference of an int8 file in real TFLM + CMSIS-NN on QEMU M4 (run-time model
    loading: one program for every file), on float samples `x` (as integers of the input format when
    the file takes integer input)."""
    from fxpq_keras.kernels.tflm_engines import TflmEngine

    if not float_input:
        fmt = interp.graph.tensors[interp.graph.input].fmt
        x = np.clip(np.round(x * 2.0 ** fmt.frac), fmt.lo, fmt.hi).astype(np.int64)
    eng = TflmEngine(path, interp.graph, interp.info, variant="m4-cmsis", link_model=False, timeout=900)
    eng.run(x)
    return float(eng.instructions.mean())


def measure_int8(count: int, models: list[str], rng: np.random.Generator) -> list[dict]:
    """Whole-inference TFLM + CMSIS-NN counts: `count` random models per kind of INT8_KINDS (half with a
    float input, for QUANTIZE) and each zoo model's int8 file (integer input, as bench/mcu.py)."""
    from mcu import OUT
    from models import calibration_set, trained

    OUT.mkdir(parents=True, exist_ok=True)
    files = []
    t = time.perf_counter()
    for kind in INT8_KINDS:
        for i in range(count):
            model = int8_keras_model(kind, rng)
            shape = tuple(int(d) for d in model.inputs[0].shape[1:])
            x_cal = rng.uniform(-1, 1, (64, *shape)).astype(np.float32)
            float_input = bool(i % 2)
            path = OUT / "int8_fit.tflite"
            calls, interp = int8_file(model, x_cal, path, float_input)
            try:
                ins = run_int8(path, interp, x_cal[:2], float_input)
            except Exception as exc:  # noqa: BLE001 (a file TFLM refuses is left out, and said)
                print(f"int8 {kind} #{i}: skipped: {exc}", flush=True)
                continue
            files.append({"source": f"random/{kind}", "calls": calls, "instructions": ins})
    print(f"{len(files)} random int8 files measured in {time.perf_counter() - t:.0f} s", flush=True)
    for name in models:
        model, data = trained(name)
        x_cal, _ = calibration_set(data, 512)
        path = OUT / f"{name}_int8-builtin_fit.tflite"
        calls, interp = int8_file(model, x_cal, path, False)
        files.append({"source": f"zoo/{name}", "model": name, "calls": calls,
                      "instructions": run_int8(path, interp, data["x_test"][:2], False)})
        print(f"int8 {name}: {files[-1]['instructions']:,.0f} instructions", flush=True)
    return files


def fit_int8(files: list[dict]) -> dict:
    """The int8 reference's coefficients: whole-inference counts only, so one non-negative linear model
    over every file, its columns each path's int8_features plus the runner's per-op and per-model cost."""
    calls = [[KernelCall.from_dict(c) for c in f["calls"]] for f in files]
    paths = sorted({p for cs in calls for p in map(int8_path, cs) if p is not None})
    width = {p: len(int8_features(p, KernelCall("add", 8, True, 8, True, 1, 1))) for p in paths}
    start, n = {}, 0
    for p in paths:
        start[p], n = n, n + width[p]
    a = np.zeros((len(files), n + 2))
    for row, cs in enumerate(calls):
        for c in cs:
            p = int8_path(c)
            if p is not None:
                a[row, start[p]:start[p] + width[p]] += int8_features(p, c)
        a[row, n:] = [len(cs), 1.0]
    y = np.array([f["instructions"] for f in files])
    coef = _nnls_relative(a, y)
    part = {"paths": {p: {"coefficients": [float(f"{c:.5g}") for c in coef[start[p]:start[p] + width[p]]],
                          "calls": sum(int8_path(c) == p for cs in calls for c in cs)} for p in paths},
            "runner": {"per_op": round(float(coef[n]), 1), "per_model": round(float(coef[n + 1]), 1)}}
    err = np.abs(a @ coef - y) / y
    part["files"] = len(files)
    part["median_error"], part["p90_error"] = round(float(np.median(err)), 4), round(float(np.quantile(err, 0.9)), 4)
    return part


def _nnls_relative(a: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Non-negative least squares on the relative error (small layers count as much as large ones)."""
    coef, _ = nnls(a / np.maximum(y, 1)[:, None], np.ones_like(y))
    return coef


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
        coef = _nnls_relative(a, y)
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
    ap.add_argument("--part", choices=("all", "fxpq", "int8"), default="all",
                    help="what to measure again: the fxpq kernels, the int8 + CMSIS-NN reference, or both (the "
                    "other part is refitted from its stored measurements)")
    ap.add_argument("--models", default="lenet5,residual_ds_net,ds_cnn_seq,ds_cnn_kws")
    ap.add_argument("--random", type=int, default=40, help="random calls per weighted op (a third for other ops)")
    ap.add_argument("--mixed", type=int, default=2, help="random mixed-width policies per zoo model")
    ap.add_argument("--int8-random", type=int, default=30, help="random int8 files per kind of op")
    ap.add_argument("--int8-models", default="lenet5,residual_ds_net,ds_cnn_seq,ds_cnn_kws,fc_autoencoder,resnet8,"
                    "mobilenet_v1_025", help="zoo models whose int8 files join the int8 fit (and its checks)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--refit", action="store_true", help="refit from the stored measurements (no QEMU)")
    args = ap.parse_args(argv)
    RAW.mkdir(parents=True, exist_ok=True)
    raw_file, int8_file_ = RAW / "measurements.json", RAW / "int8_measurements.json"
    argv_text = " ".join(a for a in (argv if argv is not None else sys.argv[1:]) if a != "--refit")
    if (args.refit or args.part == "int8") and raw_file.exists():
        raw = json.loads(raw_file.read_text())
    elif args.refit or args.part == "int8":  # no stored fxpq measurements here: keep the data file's fxpq part
        raw = None
    else:
        rng = np.random.default_rng(args.seed)
        t = time.perf_counter()
        rows = measure_random(args.random, rng)
        zoo_rows, wholes = measure_zoo([m for m in args.models.split(",") if m], args.mixed, rng)
        raw = {"rows": rows + zoo_rows, "wholes": wholes, "seconds": round(time.perf_counter() - t), "args": argv_text}
        raw_file.write_text(json.dumps(raw))
        print(f"fxpq kernels measured in {raw['seconds']} s", flush=True)
    old = json.loads(DATA_FILE.read_text()) if DATA_FILE.exists() else {}
    if (args.refit or args.part == "fxpq") and int8_file_.exists():
        int8_raw = json.loads(int8_file_.read_text())
        int8 = fit_int8(int8_raw["files"])
    elif args.refit or args.part == "fxpq":  # no stored int8 measurements here: keep the data file's int8 part
        int8 = {k: v for k, v in old["int8_cmsis"].items()}
        int8_raw = {"files": [{**c, "source": f"zoo/{c['model']}"} for c in old["int8_checks"]],
                    "args": int8["about"].split("fit_instructions.py", 1)[1].strip()}
    else:
        t = time.perf_counter()
        files = measure_int8(args.int8_random, [m for m in args.int8_models.split(",") if m],
                             np.random.default_rng(args.seed + 1))
        int8_raw = {"files": files, "seconds": round(time.perf_counter() - t),
                    "args": f"--int8-random {args.int8_random} --int8-models {args.int8_models} --seed {args.seed}"}
        int8_file_.write_text(json.dumps(int8_raw))
        print(f"int8 + CMSIS-NN measured in {int8_raw['seconds']} s", flush=True)
        int8 = fit_int8(files)
    if raw is not None:
        write_data(fit(raw["rows"], raw["wholes"]), raw, int8, int8_raw)
    else:
        args_text = old["about"].split("fit_instructions.py", 1)[1].split(" (QEMU")[0].strip()
        raw = {"wholes": old["checks"], "args": args_text}
        write_data({k: old[k] for k in ("paths", "runner")}, raw, int8, int8_raw, commit=old["kernels_commit"])
    return 0


def write_data(data: dict, raw: dict, int8: dict, int8_raw: dict, commit: str | None = None) -> None:
    """Print each whole-model check's error and write instructions.json (one line per check)."""
    from fxpq_keras.instructions import model_instructions

    data = {**data, "int8_cmsis": int8}
    commit = commit or subprocess.run(["git", "log", "-1", "--format=%h", "--", "tflm_kernels/src"], cwd=ROOT,
                                      capture_output=True, text=True).stdout.strip()
    checks = []
    print(f"{'model':<16} {'policy':<10} {'measured':>12} {'estimate':>12} {'error':>7}")
    for w in raw["wholes"]:
        est = model_instructions([KernelCall.from_dict(c) for c in w["calls"]], data)
        checks.append({**w, "estimate": round(est)})
        print(f"{w['model']:<16} {w['policy']:<10} {w['instructions']:>12,.0f} {est:>12,.0f} "
              f"{est / w['instructions'] - 1:>+7.1%}")
    int8_checks = [f for f in int8_raw["files"] if f["source"].startswith("zoo/")]
    print(f"{'model (int8 + CMSIS-NN)':<24} {'measured':>12} {'estimate':>12} {'error':>7}")
    for f in int8_checks:
        est = int8_model_instructions([KernelCall.from_dict(c) for c in f["calls"]], data)
        print(f"{f['model']:<24} {f['instructions']:>12,.0f} {est:>12,.0f} {est / f['instructions'] - 1:>+7.1%}")
    part = data["int8_cmsis"]
    print(f"int8 fit: {part['files']} files, median error {part['median_error']:.1%}, 90th percentile "
          f"{part['p90_error']:.1%}")
    for path, p in data["paths"].items():
        print(f"{path:<32} {p['cases']:>4} calls: median error {p['median_error']:.0%}, 90th percentile "
              f"{p['p90_error']:.0%}")
    data["int8_cmsis"]["about"] = ("stock int8 files (target int8-builtin) in TFLM (m4-cmsis library) on QEMU "
                                   f"mps2-an386, written by scripts/fit_instructions.py {int8_raw.get('args', '')}")
    out = {"about": "fxpq_keras/instructions.py's coefficients, written by scripts/fit_instructions.py "
                    f"{raw.get('args', '')}".strip() + " (QEMU mps2-an386, -icount shift=0)",
           "kernels_commit": commit, **data,
           "checks": [{"model": c["model"], "policy": c["policy"], "instructions": c["instructions"],
                       "calls": [_short(call) for call in c["calls"]]} for c in checks],
           # the int8 reference's checks: the zoo's int8 files (TFLM + CMSIS-NN), with the fxp graph's calls
           "int8_checks": [{"model": f["model"], "instructions": f["instructions"],
                            "calls": [_short(c) for c in f["calls"]]} for f in int8_checks]}
    lists = ("checks", "int8_checks")
    head = json.dumps({k: v for k, v in out.items() if k not in lists}, indent=1)
    blocks = [f' "{name}": [\n' + ",\n".join("  " + json.dumps(c, separators=(",", ":")) for c in out[name]) + "\n ]"
              for name in lists]
    DATA_FILE.write_text(head[:-2] + ",\n" + ",\n".join(blocks) + "\n}\n")  # one line per check
    print(f"wrote {DATA_FILE.relative_to(ROOT)}")


if __name__ == "__main__":
    sys.exit(main())
