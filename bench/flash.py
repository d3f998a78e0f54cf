"""Where the firmware's flash goes: the fxp firmware with every kernel path and with only the
paths its model runs (docs/kernels.md "Selective build"), beside TFLite int8 + CMSIS-NN's.

    .venv/bin/python bench/flash.py [--models lenet5,resnet8] [--cpu m4]

For each zoo model (bench/models.py; the FxP-QNet file is bench/quality.py's 1 % policy from the
shared cache, bench/search_setting.py, exported with integer input as bench/mcu.py does) this links
(it does not run: bench/mcu.py runs the same firmware and checks every output) and measures with
arm-none-eabi-size and the link map:

- the project's runner firmware (tflm_kernels/firmware/model_main.c, model linked in), with the
  kernels of every path and with the selective kernels (the runner's paths);
- with a TFLM tree (TFLM_DIR, docs/tflm.md section 6), the TFLM firmware (tflm/tflm_main.cc, a
  resolver with exactly the file's ops) of the fxp file with every path and with the selective
  kernels (TFLM's paths: what `fxpq deploy --package` builds), and of the int8-builtin file at
  uniform 8 bits under TFLM + CMSIS-NN.

Columns: flash = .text + .data of the ELF; then the link map's .text/.rodata/.data by origin:
array (the model), fxpq (kernels, options reader, runner or glue), of which dsp (the optimized
kernels, fxpq_dsp.o), TFLM (its library without CMSIS-NN), CMSIS-NN (TFLM's arm_* objects) and
libc (newlib, libgcc, semihosting stdio and the start-up code: the same in every row).
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import fxpq_keras  # noqa: E402,F401  (before TensorFlow)
from bench import search_setting as setting  # noqa: E402
from bench.mcu import OUT, elf_sizes, link_map_rows  # noqa: E402
from bench.models import MODELS, calibration_set, trained  # noqa: E402
from fxpq_keras.calibration import Calibration  # noqa: E402
from fxpq_keras.fakequant import quantize_model  # noqa: E402
from fxpq_keras.flatbuffer import ExportError, export_tflite  # noqa: E402
from fxpq_keras.kernels.engines import build_model_firmware  # noqa: E402
from fxpq_keras.kernels.runner import HostRunner  # noqa: E402
from fxpq_keras.kernels.tflm import tflm_available  # noqa: E402
from fxpq_keras.policy import Policy  # noqa: E402

GROUPS = ("array", "fxpq", "dsp", "TFLM", "CMSIS-NN", "libc")
def map_bytes(map_file: Path) -> Counter:
    """Bytes of .text/.rodata/.data in the link map by origin (GROUPS; dsp is also counted in fxpq)."""
    out: Counter = Counter()
    for name, size, origin in link_map_rows(map_file):
        if not name.startswith((".text", ".rodata", ".data")) or size == 0:
            continue
        member = origin.rsplit("/", 1)[-1]
        if "model_data" in member:
            out["array"] += size
        elif "libfxpq_" in origin or "fxpq_tflm_ops" in member or "model_main" in member or "tflm_main" in member:
            out["fxpq"] += size
            out["dsp"] += size if "fxpq_dsp.o" in member else 0
        elif "microlite" in origin:
            out["CMSIS-NN" if re.search(r"\(arm_\w+\.o\)", member) else "TFLM"] += size
        else:
            out["libc"] += size
    return out


def measure(label: str, elf: Path) -> dict:
    text, data, _ = elf_sizes(elf)
    return {"label": label, "flash": text + data, **map_bytes(elf.with_suffix(".map"))}


def table(rows: list[dict]) -> str:
    head = f"{'model':<17} {'firmware':<34} {'flash B':>8} {'x int8':>6} " + " ".join(f"{g:>8}" for g in GROUPS)
    lines = [head, "-" * len(head)]
    for r in rows:
        base = r.get("int8_flash")
        ratio = f"{r['flash'] / base:>6.2f}" if base else f"{'-':>6}"
        lines.append(f"{r['model']:<17} {r['label']:<34} {r['flash']:>8,} {ratio} "
                     + " ".join(f"{r.get(g, 0):>8,}" for g in GROUPS))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", default=",".join(m for m in MODELS if m != "mobilenet_v3_tiny"))
    ap.add_argument("--cpu", default="m4", choices=("m4", "m7"))
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    OUT.mkdir(parents=True, exist_ok=True)
    tflm = tflm_available()
    if tflm:
        from fxpq_keras.kernels.tflm_engines import build_tflm_program
    rows: list[dict] = []
    for name in args.models.split(","):
        model, data = trained(name)
        x_cal, _ = calibration_set(data, setting.SAMPLES)
        policy, _how = setting.cached_policy(name, model, x_cal, setting.MAX_DROP, setting.model_options(name, {}))
        fxp = OUT / f"{name}_FxP-QNet_mixed.tflite"
        setting.export_fxp(setting.searched_model(model, policy), policy, fxp)
        arena = HostRunner(fxp).stats["arena_bytes"]
        group: list[dict] = []
        for kernels, label in (("optimized", "runner, every path"), ("selective", "runner, the model's paths")):
            group.append(measure(label, build_model_firmware(args.cpu, fxp, arena, kernels)))
        if tflm:
            variant = f"{args.cpu}-cmsis"
            int8 = OUT / f"{name}_int8-builtin.tflite"
            try:
                calib = Calibration(model, x_cal)
                export_tflite(quantize_model(calib, Policy.uniform(calib, 8, None)), int8, target="int8-builtin",
                              float_input=setting.FLOAT_INPUT)
            except ExportError:
                int8 = None
            if int8 is not None:
                group.append(measure("int8, TFLM + CMSIS-NN", build_tflm_program(variant, int8)))
            for kernels, label in (("optimized", "fxp, TFLM + fxpq, every path"),
                                   ("selective", "fxp, TFLM + fxpq, model's paths")):
                group.append(measure(label, build_tflm_program(variant, fxp, kernels=kernels)))
        base = next((r["flash"] for r in group if r["label"].startswith("int8")), None)
        rows += [{**r, "model": name, "int8_flash": base} for r in group]
        print(f"[{name}: {time.perf_counter() - t0:.0f} s]", file=sys.stderr, flush=True)
    print(f"Flash of the {args.cpu.upper()} firmware (.text + .data, arm-none-eabi-size), by origin (link map):")
    print(table(rows))
    print("x int8 = / the int8-builtin file's TFLM + CMSIS-NN firmware; fxpq = kernels + options reader + runner "
          "or TFLM glue + driver, dsp = of which fxpq_dsp.o; libc = newlib, libgcc, semihosting stdio, start-up."
          + ("" if tflm else " No TFLM tree (TFLM_DIR): runner rows only."))
    print(f"wall time {time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
