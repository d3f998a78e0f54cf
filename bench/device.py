"""Device benchmark: what the chip holds, fxpq against TFLite int8, for every zoo model.

    .venv/bin/python bench/device.py [--models a,b] [--search] [--max-drop 0.01] [--samples 512]

Per zoo model (bench/models.py, trained and cached), one row per file, every figure from this run
and measured by one accounting (fxpq_keras.flatbuffer.memory: the C runner's arena planner and
the bytes as stored, applied alike to every file):

- TFLite int8: TFLiteConverter full-integer post-training quantization (int8 in and out);
- fxp uniform 8: the fxp target at 8 bits everywhere (biases 32);
- int8-builtin: the same policy through stock int8 ops, then run in the real TFLM interpreter
  (`tflite-micro`) and compared bit for bit with the reference model of TFLM's kernels on
  held-out inputs (`tflm bit-exact`);
- with --search: FxP-QNet at the budget (default 1 %, device objective), fxp target.

Every file takes integer input like the TFLite int8 file (int8 in and out): a float input tensor
would add 4 bytes per input element to the arena. Columns: `.tflite` bytes (= flash_bytes),
parameter bytes (weights + biases as stored), other
bytes (the rest of the file), peak RAM bytes (ram_bytes), each file's and RAM's ratio to TFLite
int8 of the same model.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import fxpq_keras  # noqa: E402,F401  (selects tf_keras before TensorFlow is imported)
from bench.models import MODELS, calibration_set, trained  # noqa: E402
from bench.quality import tflite_int8  # noqa: E402
from fxpq_keras.calibration import Calibration  # noqa: E402
from fxpq_keras.fakequant import quantize_model  # noqa: E402
from fxpq_keras.flatbuffer import Interpreter, export_tflite  # noqa: E402
from fxpq_keras.flatbuffer.memory import file_memory  # noqa: E402
from fxpq_keras.policy import Policy  # noqa: E402


def _row(model: str, what: str, blob: bytes, base: Any, extra: str = "") -> dict[str, Any]:
    m = file_memory(blob)
    return {"model": model, "file": what, "flash_bytes": m.flash_bytes, "parameter_bytes": m.parameter_bytes,
            "other_flash_bytes": m.other_flash_bytes, "ram_bytes": m.ram_bytes,
            "flash_ratio": m.flash_bytes / base.flash_bytes, "ram_ratio": m.ram_bytes / max(base.ram_bytes, 1),
            "note": extra}


def measure(name: str, samples: int, search: bool, max_drop: float, n_check: int = 64) -> list[dict[str, Any]]:
    model, data = trained(name)
    x_cal, _ = calibration_set(data, samples)
    x_te = data["x_test"][:n_check].astype(np.float32)
    _, int8_blob = tflite_int8(model, x_cal, x_te[:1])
    base = file_memory(int8_blob)
    rows = [_row(name, "TFLite int8", int8_blob, base)]
    calib = Calibration(model, x_cal)
    policy = Policy.uniform(calib, 8, None)
    qmodel = quantize_model(calib, policy)
    rows.append(_row(name, "fxp uniform 8", export_tflite(qmodel, float_input=False), base))
    path = Path("/tmp") / f"fxpq-device-{name}.tflite"
    try:
        export_tflite(qmodel, path, target="int8-builtin", float_input=False)
        x_int = fxpq_keras.formats.quantize(x_te, policy.input.fmt)
        ref = Interpreter(path).predict(x_int, raw=True)
        tflm = Interpreter(path, engine="tflm").predict(x_int, raw=True)
        same = all(np.array_equal(a, b) for a, b in zip(np.atleast_1d(ref), np.atleast_1d(tflm))) \
            if isinstance(ref, list) else np.array_equal(ref, tflm)
        rows.append(_row(name, "int8-builtin", path.read_bytes(), base,
                         f"tflm bit-exact on {len(x_te)} held-out inputs: {'yes' if same else 'NO'}"))
    except Exception as exc:  # noqa: BLE001 - a refusal is a row of the table, not a crash
        rows.append({"model": name, "file": "int8-builtin", "note": f"refused: {str(exc)[:200]}"})
    if search:
        from fxpq_keras.search import FxPQNet

        t0 = time.time()
        res = FxPQNet(max_drop, samples=samples, seed=0, verbose=0).quantize(model, x_cal)
        rows.append(_row(name, f"FxP-QNet {max_drop:.0%}", export_tflite(res.model, float_input=False), base,
                         f"search {time.time() - t0:.0f} s"))
    return rows


def table(rows: list[dict[str, Any]]) -> str:
    head = ("model", "file", ".tflite B", "params B", "other B", "RAM B", "file/int8", "RAM/int8", "note")
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        if "flash_bytes" not in r:
            lines.append(f"| {r['model']} | {r['file']} | | | | | | | {r['note']} |")
            continue
        lines.append(f"| {r['model']} | {r['file']} | {r['flash_bytes']:,} | {r['parameter_bytes']:,} | "
                     f"{r['other_flash_bytes']:,} | {r['ram_bytes']:,} | {r['flash_ratio']:.2f} | "
                     f"{r['ram_ratio']:.2f} | {r['note']} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", default=",".join(MODELS), help="comma-separated zoo models (default: all)")
    p.add_argument("--samples", type=int, default=512, help="unlabeled calibration samples (training split)")
    p.add_argument("--search", action="store_true", help="also FxP-QNet at the budget (slow)")
    p.add_argument("--max-drop", type=float, default=0.01, help="the search's budget")
    args = p.parse_args(argv)
    rows: list[dict[str, Any]] = []
    for name in args.models.split(","):
        new = measure(name, args.samples, args.search, args.max_drop)
        rows += new
        print(f"[{name} measured]\n{table(new)}", file=sys.stderr, flush=True)
    print(table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
