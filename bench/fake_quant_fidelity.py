"""Does the search measure what the builtin file computes? The fake-quant model against the file's
numpy model of TFLM, model by model, with TFLM's roundings modelled and without, in one run.

    FXPQ_BENCH_CACHE=/work/bench-cache .venv/bin/python bench/fake_quant_fidelity.py [--models ...] [--samples 200]

Per top-1 zoo model: the uniform W8A8 builtin policy (bench/builtin.py builtin_uniform8), its
fake-quant model and its builtin file (integer input), run on the first `--samples` held-out
inputs. Columns: the share of the deepest 8-bit weighted layer's outputs where the two differ by a
step or more (the drift compounds with depth), the share of inputs whose top-1 differs between
them, and each one's held-out flip rate against the float model. "modelled" is the fake-quant as
the search runs it (fakequant/quantizers.py: RequantizedOutputQuantizer, AccumulatorBiasQuantizer,
AveragePoolOutputQuantizer); "plain" zeroes those quantizers' variables, which is the fake-quant
before them (one rounding half up, the bias at its power-of-two format, pools rounded half up).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import fxpq_keras  # noqa: E402,F401  (selects tf_keras before TensorFlow is imported)
from bench.builtin import builtin_uniform8  # noqa: E402
from bench.models import calibration_set, top1_models, trained  # noqa: E402
from fxpq_keras._tf import keras  # noqa: E402
from fxpq_keras.calibration import Calibration  # noqa: E402
from fxpq_keras.fakequant import quantize_model  # noqa: E402
from fxpq_keras.fakequant.model import quantizer_variables  # noqa: E402
from fxpq_keras.flatbuffer import Interpreter, export_tflite, stock  # noqa: E402
from fxpq_keras.formats import quantize  # noqa: E402
from fxpq_keras.keras_model import WEIGHTED  # noqa: E402

MODELLED = ("pre_round", "step", "stored_zero_point")  # the variables "plain" zeroes


def compare(name: str, samples: int, out: Path) -> list[str]:
    """One table row per mode: (mode, deepest layer's differing share, top-1 differences, flips)."""
    model, data = trained(name)
    x_cal, _ = calibration_set(data, 512)
    x = data["x_test"][:samples].astype(np.float32)
    teacher = np.argmax(model.predict(x, verbose=0), -1)
    calib = Calibration(model, x_cal)
    policy = builtin_uniform8(calib)
    qmodel = quantize_model(calib, policy)
    path = out / f"{name}-w8a8.tflite"
    export_tflite(qmodel, path, target="builtin", float_input=False)
    graph = Interpreter(path).graph
    xi = quantize(x, graph.tensors[graph.input].fmt)
    deepest = [n.name for n in calib.cnodes if n.kind in WEIGHTED and n.name in graph.tensors
               and graph.tensors[n.name].fmt.bits <= 8][-2]  # the last weighted layer before the logits
    graph.outputs = [deepest, graph.outputs[0]]
    layer_file, logits_file = stock.run_stock(graph, xi)
    step = graph.tensors[deepest].fmt.step
    probe = keras.Model(qmodel.input, [qmodel.get_layer(f"quant_{deepest}").output, qmodel.output])
    rows = []
    for mode in ("modelled", "plain"):
        if mode == "plain":
            for qvars in quantizer_variables(qmodel).values():
                for var in MODELLED:
                    if var in qvars:
                        qvars[var].assign(np.zeros(qvars[var].shape))
        layer_fq, out_fq = probe.predict(x, verbose=0)
        differ = float(np.mean(np.abs(layer_file * step - layer_fq) > step / 2))
        top_fq, top_file = np.argmax(out_fq, -1), np.argmax(logits_file, -1)
        rows.append(f"| {name} | {mode} | {deepest} | {differ:.2%} | {np.mean(top_fq != top_file):.2%} | "
                    f"{np.mean(top_fq != teacher):.2%} | {np.mean(top_file != teacher):.2%} |")
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", default="", help="comma-separated top-1 zoo models (default: all of them)")
    p.add_argument("--samples", type=int, default=200, help="held-out inputs")
    p.add_argument("--out", type=Path, default=Path("/tmp/fxpq-fidelity"), help="where the files go")
    args = p.parse_args(argv)
    names = top1_models(args.models)
    args.out.mkdir(parents=True, exist_ok=True)
    print("| model | fake-quant | deepest 8-bit weighted layer | its outputs a step or more off the file | "
          "top-1 differs from the file | fake-quant flips | file flips |")
    print("|---|---|---|---:|---:|---:|---:|")
    for name in names:
        for row in compare(name, args.samples, args.out):
            print(row, flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
