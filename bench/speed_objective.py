"""Speed in the search's objective (--max-slowdown), measured: estimated and QEMU-counted instructions.

    FXPQ_BENCH_CACHE=/work/bench-cache FXPQ_TFLM_CACHE=/work/tflm-cache-release \\
        TFLM_DIR=/work/tflm-src/tflite-micro TFLM_DEPS_DIR=/work/tflm-src .venv/bin/python bench/speed_objective.py \\
        [--models lenet5,residual_ds_net,ds_cnn_seq,ds_cnn_kws] [--caps 1.0,none] [--samples 512] [--runs 10] \\
        [--reference int8|uniform8] [--layers]

For each zoo model (bench/models.py, cached), the default search at the 1 % budget on bench/quality.py's
calibration samples, with the speed cap (`--caps`, a factor of `--reference`'s estimate: TFLite int8 +
CMSIS-NN's by default) and without it (None), through bench/search_objective.py's loop. Each searched
policy's fxp file and the uniform 8-bit fxp file of the same model are run in the project's C runner on
QEMU mps2-an386 (Cortex-M4, -icount shift=0; `--runs` held-out samples, outputs checked bit for bit
against the reference interpreter): instructions per inference as estimated (fxpq_keras.instructions,
DeviceModel.instructions) and as counted, each as a ratio to uniform 8-bit's; device bytes (flash_bytes +
ram_bytes of the file, fxpq_keras.memory) as a ratio to the stock int8 file's (target int8-builtin, uniform
8-bit); the held-out loss against the float model; the steps the search refused for speed. With a TFLM
tree (TFLM_DIR), the stock int8 file also runs in real TFLM with CMSIS-NN on QEMU M4 (library variant
m4-cmsis): "i8 est" / "i8 QEMU" are the estimated / counted instructions as a ratio to that file's
estimated (the cap's reference, fxpq_keras.instructions.int8_model_instructions) / counted ones.
`--layers` adds, per searched policy, the layers whose estimate exceeds their int8 + CMSIS-NN share most.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from models import CACHE, calibration_set, trained  # noqa: E402
from search_objective import searched  # noqa: E402

from fxpq_keras.calibration import Calibration  # noqa: E402
from fxpq_keras.fakequant import quantize_model  # noqa: E402
from fxpq_keras.flatbuffer import Interpreter, export_tflite  # noqa: E402
from fxpq_keras.flatbuffer.memory import device_model_from_tflite, file_memory  # noqa: E402
from fxpq_keras.instructions import call_instructions, int8_call_instructions  # noqa: E402
from fxpq_keras.kernels.engines import QemuEngine  # noqa: E402
from fxpq_keras.policy import Policy  # noqa: E402

OUT = CACHE / "speed_objective"


def variants(text: str, reference: str = "int8") -> dict[str, dict]:
    """--caps "1.0,none,1.1" -> the search options of each row."""
    out: dict[str, dict] = {}
    for item in text.split(","):
        if item.strip().lower() in ("none", "0"):
            out["no cap"] = {"max_slowdown": None}
        else:
            out[f"cap {float(item):g}"] = {"max_slowdown": float(item), "speed_reference": reference}
    return out


def run_int8_tflm(path: Path, x: np.ndarray) -> float:
    """Counted instructions per inference of a stock int8 file in real TFLM + CMSIS-NN on QEMU M4 (nan
    without a TFLM tree)."""
    import os

    if not os.environ.get("TFLM_DIR"):
        return float("nan")
    from fxpq_keras.kernels.tflm_engines import TflmEngine

    interp = Interpreter(path)
    fmt = interp.graph.tensors[interp.graph.input].fmt  # None: a float input
    xi = x if fmt is None else np.clip(np.round(x * 2.0 ** fmt.frac), fmt.lo, fmt.hi).astype(np.int64)
    eng = TflmEngine(path, interp.graph, interp.info, variant="m4-cmsis", link_model=False)
    eng.run(xi)
    return float(eng.instructions.mean())


def layer_rows(res, limit: int = 6) -> list[str]:
    """The layers that cost the most estimated instructions beyond their int8 + CMSIS-NN share, with
    their formats (x = input, w = weights, out = output bits): where a cap's bytes go."""
    device = res.device_model
    rows = []
    for call, src in device.layout.calls:
        c = device._call_under(call, src, res.policy, {})
        ours, int8 = call_instructions(c) or 0.0, int8_call_instructions(c)
        name = src.get("w") or src.get("out", "?")
        rows.append((ours - int8, f"  {name} ({c.op}, x{c.x_bits}{'' if c.x_signed else 'u'} w{c.w_bits} "
                                  f"out{c.out_bits}): {ours:,.0f} est. against int8 + CMSIS-NN {int8:,.0f}"))
    return [r for _, r in sorted(rows, reverse=True)[:limit]]


def run_m4(path: Path, x: np.ndarray) -> tuple[float, float, bool]:
    """(estimated, counted instructions per inference, bit-exact) of an fxp file in the runner on QEMU M4."""
    data = path.read_bytes()
    interp = Interpreter(path)
    ref = interp.predict(x, raw=True)
    eng = QemuEngine(path, interp.graph, None, cpu="m4", link_model=True, kernels="optimized")
    got = eng.run(x)[0]
    exact = bool(np.array_equal(got, ref if not isinstance(ref, list) else ref[0]))
    return float(device_model_from_tflite(data).instructions()), float(eng.instructions.mean()), exact


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", default="lenet5,residual_ds_net,ds_cnn_seq,ds_cnn_kws")
    p.add_argument("--samples", type=int, default=512, help="calibration samples (as bench/quality.py)")
    p.add_argument("--runs", type=int, default=10, help="held-out samples run on QEMU per file")
    p.add_argument("--max-drop", type=float, default=0.01)
    p.add_argument("--caps", default="1.0,none", help="max_slowdown of each search (none: no cap)")
    p.add_argument("--reference", choices=("int8", "uniform8"), default="int8", help="the caps' speed_reference")
    p.add_argument("--layers", action="store_true", help="print the costliest layers against int8 per search")
    args = p.parse_args(argv)
    OUT.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    print("| model | search | device B | x int8 | est. M4 instr | x u8 | i8 est | QEMU M4 instr | x u8 | i8 QEMU "
          "| held-out loss | refused | exact |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    base: dict[str, tuple] = {}
    layers: list[str] = []
    for name, label, res, _seconds, loss in searched(args.models, variants(args.caps, args.reference), args.samples,
                                                     args.max_drop, zoo_options=True):
        model, data = trained(name)
        x = data["x_test"][: args.runs]
        if name not in base:  # uniform 8-bit (fxp) and stock int8 files of the same model
            x_cal, _ = calibration_set(data, args.samples)
            calib = Calibration(model, x_cal)
            u8 = Policy.uniform(calib, 8, None)
            u8_path, int8_path = OUT / f"{name}_uniform8.tflite", OUT / f"{name}_int8-builtin.tflite"
            export_tflite(quantize_model(calib, u8), u8_path)
            export_tflite(quantize_model(calib, u8), int8_path, target="int8-builtin")
            est, counted, exact = run_m4(u8_path, x)
            int8 = file_memory(int8_path.read_bytes())
            dev = file_memory(u8_path.read_bytes())
            i8_est = res.device_model.int8_instructions()
            i8_counted = run_int8_tflm(int8_path, x)
            print(f"| {name} | TFLite int8 + CMSIS-NN | {int8.total_bytes:,} | 1.00 | {i8_est:,.0f} | | 1.00 | "
                  f"{i8_counted:,.0f} | | 1.00 | | | |", flush=True)
            print(f"| {name} | uniform 8-bit | {dev.total_bytes:,} | {dev.total_bytes / int8.total_bytes:.2f} | "
                  f"{est:,.0f} | 1.00 | {est / i8_est:.2f} | {counted:,.0f} | 1.00 | {counted / i8_counted:.2f} | | | "
                  f"{'yes' if exact else 'NO'} |", flush=True)
            base[name] = (est, counted, int8.total_bytes, i8_est, i8_counted)
        path = OUT / f"{name}_{label.replace(' ', '_')}.tflite"
        export_tflite(res.model, path)
        est, counted, exact = run_m4(path, x)
        dev = file_memory(path.read_bytes())
        u_est, u_counted, int8_bytes, i8_est, i8_counted = base[name]
        print(f"| {name} | {label} | {dev.total_bytes:,} | {dev.total_bytes / int8_bytes:.2f} | {est:,.0f} | "
              f"{est / u_est:.2f} | {est / i8_est:.2f} | {counted:,.0f} | {counted / u_counted:.2f} | "
              f"{counted / i8_counted:.2f} | {loss:.2%} | {res.refused_for_speed} | {'yes' if exact else 'NO'} |",
              flush=True)
        if args.layers:
            layers += [f"{name}, {label}: the layers furthest above their int8 + CMSIS-NN share", *layer_rows(res)]
    print(f"device B = flash_bytes + ram_bytes of the file (TFLM arena, fxpq_keras.memory); x int8 = ratio to the "
          f"stock int8 file's; x u8 = ratio to the uniform 8-bit fxp file's; refused = steps refused for speed; "
          f"i8 = ratio to the int8 file in TFLM + CMSIS-NN (est.: the cap's reference); "
          f"{args.runs} held-out samples per file on QEMU M4 (runner); wall time {time.perf_counter() - t0:.0f} s.")
    print("\n".join(layers))
    return 0


if __name__ == "__main__":
    sys.exit(main())
