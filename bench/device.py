"""Device benchmark: what the chip holds, fxpq against TFLite int8, for every zoo model.

    .venv/bin/python bench/device.py [--models a,b] [--search] [--max-drop 0.01] [--samples 512]
    TFLM_DIR=... TFLM_DEPS_DIR=... .venv/bin/python bench/device.py      # + the real TFLM arena (QEMU M4)

Per zoo model (bench/models.py, trained and cached), one row per file, every figure from this run
and measured by one accounting (fxpq_keras.flatbuffer.memory, applied alike to every file):

- TFLite int8: TFLiteConverter full-integer post-training quantization (int8 in and out);
- fxp uniform 8: the fxp target at 8 bits everywhere (biases 32);
- int8-builtin: the same policy through stock int8 ops, then run in the real TFLM interpreter
  (`tflite-micro`) and compared bit for bit with the reference model of TFLM's kernels on
  held-out inputs (`tflm bit-exact`);
- with --search: FxP-QNet at the budget (default 1 %, device objective), fxp target.

Every file takes integer input like the TFLite int8 file (int8 in and out): a float input tensor
would add 4 bytes per input element to the arena. Columns: `.tflite` bytes (= flash_bytes) and
their ratio to TFLite int8; `RAM B` = ram_bytes, the modelled TFLM arena on Cortex-M with CMSIS-NN
for stock ops (fxpq_keras.tflm_arena), its ratio to TFLite int8 and its two parts (`planned B` =
tflm_planned_bytes: activations and scratch as TFLM's planner places them; `persistent B` =
tflm_persistent_bytes: TFLM's records, OpData, per-channel parameters); with TFLM_DIR set, the real
`arena_used_bytes` of TFLM on QEMU Cortex-M4 (engine tflm-m4: CMSIS-NN for stock ops, the fxpq
kernels for FXP_* ops; and tflm-m4-ref: TFLM's reference kernels), each with its ratio to TFLite
int8's and the model's error; `runner B` = runner_planned_bytes, the C runner's planned region.
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
from fxpq_keras.flatbuffer.memory import device_model_from_tflite  # noqa: E402
from fxpq_keras.kernels.tflm import HOW_TO_ENABLE, tflm_available  # noqa: E402
from fxpq_keras.policy import Policy  # noqa: E402


def _row(model: str, what: str, blob: bytes, extra: str = "", tflm: bool = False) -> dict[str, Any]:
    d = device_model_from_tflite(blob)
    m, ref = d.cost(), d.cost(kernels="reference")
    row = {"model": model, "file": what, "flash_bytes": m.flash_bytes, "ram_bytes": m.ram_bytes,
           "tflm_planned_bytes": m.tflm_planned_bytes, "tflm_persistent_bytes": m.tflm_persistent_bytes,
           "ram_ref_bytes": ref.ram_bytes, "runner_planned_bytes": m.runner_planned_bytes, "note": extra}
    if tflm:
        from fxpq_keras.kernels.tflm_engines import arena_used_bytes

        row["tflm_m4_bytes"] = arena_used_bytes(blob, "m4-cmsis")
        row["tflm_m4_ref_bytes"] = arena_used_bytes(blob, "m4-ref")
    return row


def measure(name: str, samples: int, search: bool, max_drop: float, n_check: int = 64,
            tflm: bool = False) -> list[dict[str, Any]]:
    model, data = trained(name)
    x_cal, _ = calibration_set(data, samples)
    x_te = data["x_test"][:n_check].astype(np.float32)
    _, int8_blob = tflite_int8(model, x_cal, x_te[:1])
    rows = [_row(name, "TFLite int8", int8_blob, tflm=tflm)]
    calib = Calibration(model, x_cal)
    policy = Policy.uniform(calib, 8, None)
    qmodel = quantize_model(calib, policy)
    rows.append(_row(name, "fxp uniform 8", export_tflite(qmodel, float_input=False), tflm=tflm))
    path = Path("/tmp") / f"fxpq-device-{name}.tflite"
    try:
        export_tflite(qmodel, path, target="int8-builtin", float_input=False)
        rows.append(_row(name, "int8-builtin", path.read_bytes(), _tflm_same(path, x_te), tflm))
    except Exception as exc:  # noqa: BLE001 - a refusal is a row of the table, not a crash
        rows.append({"model": name, "file": "int8-builtin", "note": f"refused: {str(exc)[:200]}"})
    if search:
        from bench import search_setting as setting

        t0 = time.time()
        res = setting.search(model, x_cal, max_drop, setting.model_options(name))  # bench/quality.py's setting
        seconds = time.time() - t0
        path = Path("/tmp") / f"fxpq-device-{name}-fxpqnet.tflite"
        setting.export_fxp(res.model, res.policy, path)
        note = f"search {seconds:.0f} s" + (f"; {_tflm_same(path, x_te, 'tflm-m4')}" if tflm else "")
        rows.append(_row(name, f"FxP-QNet {max_drop:.0%}", path.read_bytes(), note, tflm))
    return rows


def _tflm_same(path: Path, x: np.ndarray, engine: str = "tflm") -> str:
    """Run an integer-input file in real TFLM and in the numpy reference: bit-exact? engine "tflm" is the
    tflite-micro wheel (stock ops); "tflm-m4" is TFLM built from TFLM_DIR with the fxpq ops, on QEMU M4."""
    interp = Interpreter(path)
    x_int = fxpq_keras.formats.quantize(x, interp.graph.tensors[interp.graph.input].fmt)
    ref = interp.predict(x_int, raw=True)
    got = Interpreter(path, engine=engine).predict(x_int, raw=True)
    same = all(np.array_equal(a, b) for a, b in zip(np.atleast_1d(ref), np.atleast_1d(got))) \
        if isinstance(ref, list) else np.array_equal(ref, got)
    return f"{engine} bit-exact on {len(x)} held-out inputs: {'yes' if same else 'NO'}"


def _ratio(r: dict[str, Any], base: dict[str, Any], key: str) -> str:
    return f"{r[key] / base[key]:.2f}" if r.get(key) and base.get(key) else ""


def _err(r: dict[str, Any], model: str, real: str) -> str:
    return f"{r[model] / r[real] - 1:+.1%}" if r.get(real) else ""


def table(rows: list[dict[str, Any]]) -> str:
    """One row per file; ratios to the TFLite int8 row of the same model."""
    tflm = any("tflm_m4_bytes" in r for r in rows)
    head = ["model", "file", ".tflite B", "file/int8", "RAM B (model)", "RAM/int8", "planned B", "persistent B"]
    if tflm:
        head += ["TFLM M4 arena B", "arena/int8", "model err", "TFLM M4 ref arena B", "ref/int8", "ref model err"]
    head += ["runner B", "note"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    base: dict[str, Any] = {}
    for r in rows:
        if r["file"] == "TFLite int8":
            base = r
        if "flash_bytes" not in r:
            lines.append(f"| {r['model']} | {r['file']} |" + " |" * (len(head) - 3) + f" {r['note']} |")
            continue
        cells = [r["model"], r["file"], f"{r['flash_bytes']:,}", _ratio(r, base, "flash_bytes"), f"{r['ram_bytes']:,}",
                 _ratio(r, base, "ram_bytes"), f"{r['tflm_planned_bytes']:,}", f"{r['tflm_persistent_bytes']:,}"]
        if tflm:
            cells += [f"{r['tflm_m4_bytes']:,}", _ratio(r, base, "tflm_m4_bytes"),
                      _err(r, "ram_bytes", "tflm_m4_bytes"), f"{r['tflm_m4_ref_bytes']:,}",
                      _ratio(r, base, "tflm_m4_ref_bytes"), _err(r, "ram_ref_bytes", "tflm_m4_ref_bytes")]
        cells += [f"{r['runner_planned_bytes']:,}", r["note"]]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", default=",".join(MODELS), help="comma-separated zoo models (default: all)")
    p.add_argument("--samples", type=int, default=512, help="unlabeled calibration samples (training split)")
    p.add_argument("--search", action="store_true", help="also FxP-QNet at the budget (slow)")
    p.add_argument("--max-drop", type=float, default=0.01, help="the search's budget")
    args = p.parse_args(argv)
    rows: list[dict[str, Any]] = []
    tflm = tflm_available()
    if not tflm:
        print(f"[no real TFLM arena: {HOW_TO_ENABLE}]", file=sys.stderr)
    for name in args.models.split(","):
        new = measure(name, args.samples, args.search, args.max_drop, tflm=tflm)
        rows += new
        print(f"[{name} measured]\n{table(new)}", file=sys.stderr, flush=True)
    print(table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
