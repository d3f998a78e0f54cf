"""Instructions per MAC of TFLM's CMSIS-NN kernels on Cortex-M4 for each format of target builtin:
the table the builtin search's speed estimate reads (fxpq_keras/search/builtin_space.py, M4_PER_MAC).

    TFLM_DIR=... FXPQ_TFLM_CACHE=/work/tflm-cache-release .venv/bin/python bench/builtin_speed.py

One-layer Keras models (a 3x3 conv, a depthwise 3x3, a 1x1 pointwise conv, a fully connected layer,
sizes of the zoo's layers), each exported with target builtin and integer input under three
uniform policies: W8A8 (int8 kernels), W4A8 (packed int4 weights: arm_*_s4), W8A16 (int16x8:
arm_*_s16), run in real TFLM + CMSIS-NN on QEMU Cortex-M4 (`TflmEngine` variant m4-cmsis, -icount
shift=0). Printed per layer and format: instructions per inference and per MAC, and the ratio to
W8A8. The per-MAC figure is the whole file's (its QUANTIZE-free one-op graph) over the layer's MACs.
Last, the QUANTIZE seam the builtin file puts before an int16 op with an int8 input: the dense
layer at W8A16 with its input at 8 bits, minus W8A16, per input element.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import fxpq_keras  # noqa: E402,F401  (selects tf_keras before TensorFlow is imported)
from fxpq_keras._tf import keras  # noqa: E402

# (name, graph op, input shape, layer): sizes like the zoo's layers
LAYERS = (
    ("conv3x3 16->32 @16x16", "conv2d", (16, 16, 16), lambda: keras.layers.Conv2D(32, 3, padding="same")),
    ("depthwise3x3 32 @16x16", "depthwise_conv2d", (16, 16, 32),
     lambda: keras.layers.DepthwiseConv2D(3, padding="same")),
    ("pointwise 32->32 @16x16", "conv2d", (16, 16, 32), lambda: keras.layers.Conv2D(32, 1)),
    ("dense 256->128", "fully_connected", (256,), lambda: keras.layers.Dense(128)),
)
FORMATS = ("W8A8", "W4A8", "W8A16")


def _policy(calib, fmt: str):
    """The builtin start (W8A16) brought to `fmt` with range-derived fracs."""
    from fxpq_keras.search import SearchOptions, space

    opts = SearchOptions(target="builtin")
    policy = space.start_policy(calib, opts)
    ranges = space.data_ranges(calib, opts, policy)
    for layer, ds in space.changeable_keys(policy, opts):
        d = policy.get(layer, ds)
        bits = {"weights": 4 if fmt == "W4A8" else 8}.get(ds, 16 if fmt.startswith("W8A16") else 8)
        if fmt == "W8A16, int8 input" and layer == "input":
            bits = 8
        if ds != "weights" and bits == 16:
            continue
        if bits != d.bits:
            policy.set(layer, ds, bits=bits, frac=space.range_frac(ranges[(layer, ds)], bits, d.signed))
    policy.constrain_biases()
    return policy


def measure(samples: int = 2) -> list[dict]:
    from bench.search_setting import input_integers
    from fxpq_keras.calibration import Calibration
    from fxpq_keras.fakequant import quantize_model
    from fxpq_keras.flatbuffer import Interpreter, export_tflite
    from fxpq_keras.kernels.tflm_engines import TflmEngine

    rows = []
    out_dir = Path("/tmp/fxpq-bench-builtin-speed")
    out_dir.mkdir(exist_ok=True)
    for name, op, shape, make in LAYERS:
        keras.utils.set_random_seed(0)
        inp = keras.Input(shape)
        model = keras.Model(inp, make()(inp))
        x = np.random.default_rng(0).normal(size=(64, *shape)).astype(np.float32)
        calib = Calibration(model, x)
        layer = model.layers[-1]
        w = layer.get_weights()[0]
        out_elems = int(np.prod(model.output_shape[1:]))
        macs = out_elems * (int(np.prod(w.shape[:-1])) if op != "depthwise_conv2d" else int(np.prod(w.shape[:2])))
        for fmt in FORMATS + (("W8A16, int8 input",) if op == "fully_connected" else ()):
            path = out_dir / f"{name.split()[0]}-{fmt}.tflite"
            export_tflite(quantize_model(calib, _policy(calib, fmt)), path, target="builtin", float_input=False)
            interp = Interpreter(path)
            eng = TflmEngine(path, interp.graph, interp.info, variant="m4-cmsis")
            eng.run(input_integers(path, x[:samples]))
            rows.append({"layer": name, "op": op, "format": fmt, "macs": macs, "in_elements": int(np.prod(shape)),
                         "instructions": float(eng.instructions.mean())})
    return rows


def table(rows: list[dict]) -> str:
    base = {r["layer"]: r["instructions"] for r in rows if r["format"] == "W8A8"}
    lines = ["| layer | format | MACs | M4 instructions | per MAC | / W8A8 |", "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['layer']} | {r['format']} | {r['macs']:,} | {r['instructions']:,.0f} | "
                     f"{r['instructions'] / r['macs']:.2f} | {r['instructions'] / base[r['layer']]:.2f} |")
    for r in rows:
        if r["format"] == "W8A16, int8 input":
            w8a16 = next(q for q in rows if q["layer"] == r["layer"] and q["format"] == "W8A16")
            seam = (r["instructions"] - w8a16["instructions"]) / r["in_elements"]
            lines.append(f"\nQUANTIZE int8 -> int16 seam ({r['layer']}): {seam:.1f} instructions per element")
    return "\n".join(lines)


if __name__ == "__main__":
    print(table(measure()))
