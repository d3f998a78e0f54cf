"""Microcontroller benchmark: the bench models on an emulated Cortex-M4 and Cortex-M7.

    .venv/bin/python bench/mcu.py [--models lenet5,resnet8] [--samples 20] [--tables tflm,runner]
    (default: every zoo model)

With a TFLM tree (TFLM_DIR, docs/tflm.md section 6) the first table puts side by side, for each
model, in real TensorFlow Lite Micro: the model as stock int8 (target int8-builtin: uniform 8-bit,
power-of-two scales, unsigned formats as int8 with zero point -128) under TFLM's reference kernels
and under TFLM + CMSIS-NN, and the FxP-QNet model (target fxp) under TFLM with the fxpq kernels.
Each file is linked into a TFLM firmware (tflm_kernels/tflm/tflm_main.cc; a resolver with exactly
the file's ops) and run on QEMU M4 and M7: instructions per inference, flash (.text + .data of the
firmware, which holds the model and the code; newlib's semihosting stdio is in every row), model
bytes and TFLM's arena_used_bytes on the M4, each as a ratio to TFLM + CMSIS-NN int8 of the same
model. Every run's outputs are compared bit for bit with the reference interpreter (column
"exact"). Every file takes integer input (its input format's integers, int8 for int8-builtin), as
bench/quality.py's files do, so no arena holds a float32 copy of the input.

The second table is the project's own runner (no TFLM):

For each benchmark model of bench/models.py (trained once and cached) two .tflite files are
exported with the fxp target (custom FXP_* ops, the project's own C kernels): the FxP-QNet
mixed-precision model (1 % budget; bench/quality.py's search and cached policy,
bench/search_setting.py) and a uniform 8-bit dynamic fixed-point model of the same network (the int8 comparison through
the project's own int8 path). Each file is linked into the model firmware
(tflm_kernels/firmware/model_main.c) and run on QEMU mps2-an386 (Cortex-M4) and mps2-an500
(Cortex-M7) under `-icount shift=0`, so instructions = TIMER0 ticks * 40 (the firmware checks
the method on a loop of known length every run). Printed per row: instructions per inference
(mean over the samples) on M4 and M7, instructions per MAC, the model file's bytes, the
firmware's .text/.data/.bss (arm-none-eabi-size; .text includes the model and newlib's
semihosting stdio), the runner + kernels' share of .text, and the peak arena bytes the runner
planned on the M4 (prepared ops + activations + kernel scratch). Every run's outputs are checked
bit for bit against the reference interpreter (column "exact").

Optimized kernels (ARMv7E-M DSP, src/kernels/fxpq_dsp.c, docs/kernels.md) against the portable
reference kernels of the same sources (-DFXPQ_REFERENCE_KERNELS), -O2, whole model and per
layer (each layer's kernel call on its actual inputs in the QEMU test harness). Instruction
counts are not cycle counts (QEMU does not model pipelines or memory wait states).

`--cmsis` adds the CMSIS-NN route (docs/kernels.md "CMSIS-NN route"; needs CMSIS_NN_DIR or
TFLM_DIR) to the runner tables: per model, the instructions on M4 and M7 of kernels="cmsis" (the
route where it measured faster: fully connected with 1-3 rows) and kernels="cmsis-all" (conv 2D
too) beside the optimized kernels', with the kernels' code (fxpq's kernels + the CMSIS-NN objects
linked); per layer, "cmsis-all" (every layer the route can take, on CMSIS-NN).
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import fxpq_keras  # noqa: E402,F401  (before TensorFlow)
from bench import search_setting as setting  # noqa: E402
from bench.models import MODELS, calibration_set, trained  # noqa: E402
from fxpq_keras.calibration import Calibration  # noqa: E402
from fxpq_keras.fakequant import quantize_model  # noqa: E402
from fxpq_keras.flatbuffer import ExportError, Interpreter, export_tflite  # noqa: E402
from fxpq_keras.kernels._build import cmsis_nn_dir  # noqa: E402
from fxpq_keras.kernels.engines import QemuEngine  # noqa: E402
from fxpq_keras.kernels.runner import HostRunner  # noqa: E402
from fxpq_keras.kernels.tflm import HOW_TO_ENABLE, tflm_available  # noqa: E402
from fxpq_keras.policy import Policy  # noqa: E402

OUT = ROOT / ".cache" / "bench" / "mcu"


def macs(graph) -> int:
    """Multiply-accumulates of one inference (conv, depthwise, fully connected)."""
    total = 0
    for node in graph.nodes:
        if node.weights is None:
            continue
        out = int(np.prod(graph.tensors[node.output].shape))
        if node.op == "conv2d":
            total += out * int(np.prod(node.weights.shape[1:]))
        elif node.op == "depthwise_conv2d":
            total += out * int(node.weights.shape[1] * node.weights.shape[2])
        elif node.op == "fully_connected":
            total += int(np.prod(node.weights.shape))
    return total


def elf_sizes(elf: Path) -> tuple[int, int, int]:
    out = subprocess.run(["arm-none-eabi-size", str(elf)], capture_output=True, text=True, check=True).stdout
    text, data, bss = out.splitlines()[1].split()[:3]
    return int(text), int(data), int(bss)


_MAP_ROW = re.compile(r"^\s*(\S+)?\s+0x[0-9a-f]+\s+0x([0-9a-f]+)\s+(\S+)$")


def link_map_rows(map_file: Path) -> Iterator[tuple[str, int, str]]:
    """(input section, bytes, origin object) of every placed input section of a GNU ld link map (a
    section name too long for its line stands alone on the line before)."""
    text = map_file.read_text(errors="replace")
    text = text[text.find("Linker script and memory map"):]
    section = None
    for line in text.splitlines():
        m = _MAP_ROW.match(line)
        if m is None:
            s = line.strip()
            section = s if s.startswith(".") and " " not in s else section
            continue
        yield m.group(1) or section or "", int(m.group(2), 16), m.group(3)
        section = None


def our_code_bytes(map_file: Path, libs: tuple[str, ...] = ("libfxpq_kernels.a(", "libfxpq_runner.a(")) -> int:
    """Bytes of .text/.rodata that the given libraries (default: runner and kernels; or members
    such as "libfxpq_kernels.a(fxpq_dsp.o)") contribute, from the link map."""
    return sum(size for name, size, origin in link_map_rows(map_file)
               if name.startswith((".text", ".rodata")) and any(lib in origin for lib in libs))


def node_macs(graph, node) -> int:
    """Multiply-accumulates of one node (0 for ops without weights)."""
    if node.weights is None:
        return 0
    out = int(np.prod(graph.tensors[node.output].shape))
    if node.op == "conv2d":
        return out * int(np.prod(node.weights.shape[1:]))
    if node.op == "depthwise_conv2d":
        return out * int(node.weights.shape[1] * node.weights.shape[2])
    return int(np.prod(node.weights.shape))


def measure(label: str, tflite: Path, x: np.ndarray, cmsis: bool = False) -> dict:
    """Whole-model figures: optimized kernels on M4 and M7, the reference kernels' count beside
    (and the CMSIS-NN route's with `cmsis`)."""
    ref_interp = Interpreter(tflite)
    graph = ref_interp.graph
    ref = ref_interp.predict(x, raw=True)
    host = HostRunner(tflite)
    row = {"label": label, "macs": macs(graph), "model_bytes": tflite.stat().st_size,
           "host_arena": host.stats["arena_bytes"], "exact": True}
    for cpu in ("m4", "m7"):
        for kernels in ("optimized", "reference", *(("selective",) if cpu == "m4" else ()),
                        *(("cmsis", "cmsis-all") if cmsis else ())):
            eng = QemuEngine(tflite, graph, None, cpu=cpu, link_model=True, kernels=kernels)
            got = eng.run(x)[0]
            row["exact"] &= bool(np.array_equal(got, ref if not isinstance(ref, list) else ref[0]))
            suffix = {"optimized": "", "reference": "_ref", "selective": "_sel", "cmsis": "_cmsis",
                      "cmsis-all": "_cmsis_all"}[kernels]
            row[f"{cpu}{suffix}_instr"] = float(eng.instructions.mean())
            if cpu == "m4" and kernels.startswith("cmsis"):
                row[f"{suffix[1:]}_code"] = our_code_bytes(eng.elf.with_suffix(".map"), ("libfxpq_kernels.a(",))
            if cpu == "m4" and kernels == "optimized":
                row["text"], row["data"], row["bss"] = elf_sizes(eng.elf)
                row["code"] = our_code_bytes(eng.elf.with_suffix(".map"))
                row["kernels_code"] = our_code_bytes(eng.elf.with_suffix(".map"), ("libfxpq_kernels.a(",))
                row["dsp_code"] = our_code_bytes(eng.elf.with_suffix(".map"), ("libfxpq_kernels.a(fxpq_dsp.o)",))
                row["arena"] = eng.last.arena_bytes
            if kernels == "selective":  # the firmware with only this file's kernel paths
                row["text_sel"] = elf_sizes(eng.elf)[0]
                row["kernels_code_sel"] = our_code_bytes(eng.elf.with_suffix(".map"), ("libfxpq_kernels.a(",))
    return row


def layer_cases(tflite: Path, x: np.ndarray) -> tuple:
    """(graph, nodes, cases, values): each node's kernel call on its actual inputs (one sample of
    `x`), for the QEMU test harness; values = every tensor's integers (the reference's)."""
    from fxpq_keras.integer_graph.graph import run_node
    from fxpq_keras.kernels.cases import node_case

    graph = Interpreter(tflite).graph
    in_fmt = graph.tensors[graph.input].fmt
    values = {graph.input: x[:1] if in_fmt is None else x[:1].astype(np.int64)}
    cases, nodes = [], []
    for node in graph.nodes:
        ins = [values[i] for i in node.inputs]
        values[node.output] = run_node(graph, node, ins)
        case = node_case(graph, node, ins)
        if case is not None:
            cases.append(case)
            nodes.append(node)
    return graph, nodes, cases, values


def measure_layers(label: str, tflite: Path, x: np.ndarray, cmsis: bool = False) -> list[dict]:
    """Per-layer instructions: each node's kernel call on its actual inputs (one sample) in the
    QEMU test harness, optimized (M4, M7) and reference (M4) kernels (and the CMSIS-NN route on M4
    and M7 with `cmsis`); outputs checked bit for bit."""
    from fxpq_keras.kernels import qemu

    graph, nodes, cases, values = layer_cases(tflite, x)
    builds = (("m4", "optimized"), ("m7", "optimized"), ("m4", "reference"),
              *((("m4", "cmsis-all"), ("m7", "cmsis-all")) if cmsis else ()))
    runs = {(cpu, k): qemu.run_cases(cases, cpu=cpu, kernels=k, timeout=600) for cpu, k in builds}
    rows = []
    for i, node in enumerate(nodes):
        want = values[node.output].reshape(-1)
        exact = all(r[i].status == 0 and np.array_equal(r[i].output.reshape(-1), want) for r in runs.values())
        w = f"w{node.weight_bits}" if node.weight_bits else ""
        fmt = graph.tensors[node.inputs[0]].fmt
        bits = f"x{fmt.bits}{'' if fmt.signed else 'u'}{w}"
        rows.append({"model": label, "layer": node.name, "op": node.op, "bits": bits,
                     "macs": node_macs(graph, node), "m4": runs["m4", "optimized"][i].instructions,
                     "m7": runs["m7", "optimized"][i].instructions, "m4_ref": runs["m4", "reference"][i].instructions,
                     "exact": exact})
        if cmsis:
            rows[-1].update(m4_cmsis=runs["m4", "cmsis-all"][i].instructions,
                            m7_cmsis=runs["m7", "cmsis-all"][i].instructions)
    return rows


def layer_table(rows: list[dict]) -> str:
    cmsis = bool(rows) and "m4_cmsis" in rows[0]
    head = (f"{'model':<28} {'layer':<18} {'op':<17} {'bits':<8} {'MACs':>8} {'M4 ref':>9} {'M4 opt':>9} "
            f"{'M7 opt':>9} {'ref i/MAC':>9} {'M4 i/MAC':>8} {'M7 i/MAC':>8} {'exact':>5}"
            + (f" {'M4 all':>9} {'x':>5} {'M7 all':>9} {'x':>5}" if cmsis else ""))
    lines = [head, "-" * len(head)]
    for r in rows:
        def per(v: int, m: int = r["macs"]) -> str:
            return f"{v / m:.2f}" if m else "-"
        lines.append(f"{r['model']:<28} {r['layer'][:18]:<18} {r['op']:<17} {r['bits']:<8} {r['macs']:>8,} "
                     f"{r['m4_ref']:>9,} {r['m4']:>9,} {r['m7']:>9,} {per(r['m4_ref']):>9} {per(r['m4']):>8} "
                     f"{per(r['m7']):>8} {'yes' if r['exact'] else 'NO':>5}"
                     + (f" {r['m4_cmsis']:>9,} {r['m4_cmsis'] / r['m4']:>5.2f} {r['m7_cmsis']:>9,} "
                        f"{r['m7_cmsis'] / r['m7']:>5.2f}" if cmsis else ""))
    return "\n".join(lines)


def cmsis_table(rows: list[dict]) -> str:
    """Optimized kernels vs the CMSIS-NN route per file (x = route / optimized): "cmsis" (the
    default rule) and "cmsis-all" (conv 2D too)."""
    head = (f"{'model':<34} {'M4 opt':>12} {'M4 cmsis':>12} {'x':>5} {'M4 all':>12} {'x':>5} {'M7 opt':>12} "
            f"{'M7 cmsis':>12} {'x':>5} {'M7 all':>12} {'x':>5} {'kern':>7} {'+cmsis':>7} {'+all':>7} {'exact':>5}")
    lines = [head, "-" * len(head)]
    for r in rows:
        cells = []
        for cpu in ("m4", "m7"):
            base = r[f"{cpu}_instr"]
            cells.append(f"{base:>12,.0f} {r[f'{cpu}_cmsis_instr']:>12,.0f} {r[f'{cpu}_cmsis_instr'] / base:>5.2f} "
                         f"{r[f'{cpu}_cmsis_all_instr']:>12,.0f} {r[f'{cpu}_cmsis_all_instr'] / base:>5.2f}")
        lines.append(f"{r['label']:<34} {' '.join(cells)} {r['kernels_code']:>7,} {r['cmsis_code']:>7,} "
                     f"{r['cmsis_all_code']:>7,} {'yes' if r['exact'] else 'NO':>5}")
    return "\n".join(lines)


# (row kind, TFLM variant on M4, on M7). The fxp file's firmware links the fxpq kernels built for
# its own paths (kernels="selective", docs/kernels.md "Selective build"), as `fxpq deploy` builds it.
TFLM_ROWS = (("int8 TFLM reference", "m4-ref", "m7-ref"), ("int8 TFLM + CMSIS-NN", "m4-cmsis", "m7-cmsis"),
             ("FxP-QNet TFLM + fxpq", "m4-cmsis", "m7-cmsis"))
BASELINE = "int8 TFLM + CMSIS-NN"


def measure_tflm(label: str, tflite: Path, x: np.ndarray, variants: tuple[str, str],
                 cpus: tuple[str, ...] = ("m4", "m7"), kernels: str = "optimized") -> dict:
    """One file in real TFLM on QEMU M4 and M7 (model linked in, exactly its ops registered).
    kernels="selective" (an fxp file): the fxpq kernels of the file's paths only; the flash of the
    firmware with every path ("flash_all", built, not run) is recorded beside."""
    from fxpq_keras.kernels.tflm_engines import TflmEngine

    ref_interp = Interpreter(tflite)
    ref = ref_interp.predict(x, raw=True)
    ref = ref[0] if isinstance(ref, list) else ref
    row = {"label": label, "macs": macs(ref_interp.graph), "model_bytes": tflite.stat().st_size, "exact": True}
    for cpu, variant in zip(("m4", "m7"), variants):
        if cpu not in cpus:
            row[f"{cpu}_instr"] = float("nan")
            continue
        eng = TflmEngine(tflite, ref_interp.graph, ref_interp.info, variant=variant, link_model=True,
                         kernels=kernels)
        got = eng.run(x)[0]
        row["exact"] &= bool(np.array_equal(got, ref))
        row[f"{cpu}_instr"] = float(eng.instructions.mean())
        if cpu == "m4":
            text, data, _ = elf_sizes(eng.program)
            row["flash"] = text + data
            row["arena"] = int(eng.arena_used_bytes)
            if kernels == "selective":
                full = TflmEngine(tflite, ref_interp.graph, ref_interp.info, variant=variant, link_model=True)
                text, data, _ = elf_sizes(full.program)
                row["flash_all"] = text + data
    if "m4" not in cpus:
        row["flash"] = row["arena"] = float("nan")
    return row


def tflm_table(rows: list[dict]) -> str:
    head = (f"{'model':<16} {'engine':<22} {'M4 instr/inf':>13} {'x':>5} {'M7 instr/inf':>13} {'x':>5} "
            f"{'flash B':>8} {'x':>5} {'all paths':>9} {'x':>5} {'model B':>8} {'x':>5} {'arena B':>8} {'x':>5} "
            f"{'exact':>5}")
    lines = [head, "-" * len(head)]
    base = {r["model"]: r for r in rows if r["kind"] == BASELINE}
    for r in rows:
        b = base[r["model"]]
        lines.append(f"{r['model']:<16} {r['kind']:<22} {r['m4_instr']:>13,.0f} {r['m4_instr'] / b['m4_instr']:>5.2f} "
                     f"{r['m7_instr']:>13,.0f} {r['m7_instr'] / b['m7_instr']:>5.2f} "
                     f"{r['flash']:>8,} {r['flash'] / b['flash']:>5.2f} "
                     + (f"{r['flash_all']:>9,} {r['flash_all'] / b['flash']:>5.2f} " if "flash_all" in r
                        else f"{'-':>9} {'-':>5} ")
                     + f"{r['model_bytes']:>8,} "
                     f"{r['model_bytes'] / b['model_bytes']:>5.2f} {r['arena']:>8,} {r['arena'] / b['arena']:>5.2f} "
                     f"{'yes' if r['exact'] else 'NO':>5}")
    return "\n".join(lines)


def table(rows: list[dict]) -> str:
    head = (f"{'model':<34} {'MACs':>9} {'M4 instr/inf':>13} {'M4 i/MAC':>8} {'M7 instr/inf':>13} {'M7 i/MAC':>8} "
            f"{'M4 ref i/MAC':>12} {'M7 ref i/MAC':>12} {'model B':>8} {'.text':>7} {'.data':>6} {'.bss':>6} "
            f"{'ours':>6} {'kern':>6} {'dsp':>6} {'sel .text':>9} {'sel kern':>8} {'arena B':>8} {'exact':>5}")
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(f"{r['label']:<34} {r['macs']:>9,} {r['m4_instr']:>13,.0f} {r['m4_instr'] / r['macs']:>8.2f} "
                     f"{r['m7_instr']:>13,.0f} {r['m7_instr'] / r['macs']:>8.2f} "
                     f"{r['m4_ref_instr'] / r['macs']:>12.2f} {r['m7_ref_instr'] / r['macs']:>12.2f} "
                     f"{r['model_bytes']:>8,} {r['text']:>7,} {r['data']:>6,} {r['bss']:>6,} {r['code']:>6,} "
                     f"{r['kernels_code']:>6,} {r['dsp_code']:>6,} {r['text_sel']:>9,} {r['kernels_code_sel']:>8,} "
                     f"{r['arena']:>8,} {'yes' if r['exact'] else 'NO':>5}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--samples", type=int, default=20, help="held-out samples run per file and CPU")
    ap.add_argument("--calibration", type=int, default=setting.SAMPLES,
                    help="calibration samples (bench/search_setting.py, as bench/quality.py's --samples)")
    ap.add_argument("--max-drop", type=float, default=setting.MAX_DROP, help="the FxP-QNet budget")
    ap.add_argument("--option", action="append", default=[], metavar="NAME=VALUE", help=setting.OPTION_HELP)
    ap.add_argument("--cpus", default="m4,m7", help="TFLM table: the emulated CPUs (m4: flash and arena too)")
    ap.add_argument("--tables", default="tflm,runner",
                    help="tflm: int8 (reference, CMSIS-NN) and fxpq inside real TFLM; runner: the project's runner")
    ap.add_argument("--cmsis", action="store_true",
                    help="runner tables: also the CMSIS-NN route (kernels 'cmsis' and 'cmsis-all'; needs CMSIS_NN_DIR "
                         "or TFLM_DIR)")
    args = ap.parse_args(argv)
    if args.cmsis and cmsis_nn_dir() is None:
        ap.error("--cmsis needs a CMSIS-NN tree: set CMSIS_NN_DIR or TFLM_DIR")
    options = setting.parse_options(args.option, ap.error)
    OUT.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    tables = set(args.tables.split(","))
    rows, tflm_rows, notes, layer_rows = [], [], [], []
    if "tflm" in tables and not tflm_available():
        print(f"TFLM table skipped: no TFLM tree; {HOW_TO_ENABLE}")
        tables.discard("tflm")
    for name in args.models.split(","):
        model, data = trained(name)
        x_cal, _ = calibration_set(data, args.calibration)  # the calibration of bench/quality.py
        calib = Calibration(model, x_cal)
        x = data["x_test"][: args.samples]
        # bench/quality.py's search and its cached policy; every file takes integer input, as there
        policy, how = setting.cached_policy(name, model, x_cal, args.max_drop, setting.model_options(name, options))
        notes.append(f"{name}: FxP-QNet policy ({how}): {policy.memory().total_bits / 8:,.0f} B total memory "
                     f"(paper's accounting)")
        if "tflm" in tables:
            int8_path = OUT / f"{name}_int8-builtin.tflite"
            fxp_path = OUT / f"{name}_FxP-QNet_mixed.tflite"
            setting.export_fxp(setting.searched_model(model, policy), policy, fxp_path)
            try:  # stock int8 at uniform 8 bits (unsigned formats as int8 with zero point -128, as TFLite)
                export_tflite(quantize_model(calib, Policy.uniform(calib, 8, None)), int8_path, target="int8-builtin",
                              float_input=setting.FLOAT_INPUT)
            except ExportError as exc:
                notes.append(f"{name}: no TFLM rows: int8-builtin export refused: {str(exc).splitlines()[-1]}")
                kinds = ()
            else:
                kinds = TFLM_ROWS
            for kind, m4, m7 in kinds:
                path = fxp_path if kind.startswith("FxP") else int8_path
                row = measure_tflm(kind, path, setting.input_integers(path, x), (m4, m7), tuple(args.cpus.split(",")),
                                   "selective" if kind.startswith("FxP") else "optimized")
                tflm_rows.append({**row, "model": name, "kind": kind})
                print(f"[{name} {kind}: M4 {row['m4_instr']:,.0f} M7 {row['m7_instr']:,.0f} instr/inf, flash "
                      f"{row['flash']:,} B, arena {row['arena']:,} B, exact {row['exact']}; "
                      f"{time.perf_counter() - t0:.0f} s]", file=sys.stderr, flush=True)
        if "runner" not in tables:
            continue
        uniform8 = Policy.uniform(calib, 8, None)
        for label, pol in ((f"{name} FxP-QNet mixed", policy), (f"{name} uniform 8-bit", uniform8)):
            path = OUT / (label.replace(" ", "_") + ".tflite")
            setting.export_fxp(quantize_model(model if pol is policy else calib, pol), pol, path)
            x_in = setting.input_integers(path, x)
            rows.append(measure(label, path, x_in, args.cmsis))
            layer_rows.extend(measure_layers(label, path, x_in, args.cmsis))
    if tflm_rows:
        print("In real TFLM (QEMU mps2-an386 M4 / mps2-an500 M7); x = ratio to int8 TFLM + CMSIS-NN of the same "
              "model")
        print(tflm_table(tflm_rows))
        print("flash = .text + .data of the TFLM firmware (model + TFLM + kernels + newlib semihosting stdio); the "
              "fxp firmware links the fxpq kernels built for the file's own paths (docs/kernels.md \"Selective "
              "build\"), all paths = the same firmware with every path of the kernels (built, not run); "
              "arena = TFLM arena_used_bytes on the M4; int8 = target int8-builtin at uniform 8 bits.\n")
    if not rows:
        for n in notes:
            print(n)
        print(f"{args.samples} samples per file and CPU; wall time {time.perf_counter() - t0:.0f} s.")
        return 0
    print("The project's own runner (no TFLM):")
    print(table(rows))
    print()
    if args.cmsis:
        print("Optimized kernels vs the CMSIS-NN route (x = route / optimized; cmsis = fully connected with 1-3 "
              "rows on CMSIS-NN, all = conv 2D too; kern = the kernels' .text/.rodata in the M4 model firmware, "
              "+cmsis / +all = the same in the route's builds, CMSIS-NN objects included):")
        print(cmsis_table(rows))
        print()
    print(layer_table(layer_rows))
    for n in notes:
        print(n)
    print("instr = instructions (QEMU -icount shift=0: TIMER0 ticks * 40, calibrated every run); "
          "i/MAC = instructions per multiply-accumulate; .text includes the model and newlib stdio; "
          "ours = runner + kernels' .text/.rodata, kern = kernels only, dsp = of which the optimized kernels "
          "(fxpq_dsp.c); sel = the firmware whose kernels hold only this file's paths (docs/kernels.md "
          "\"Selective build\", M4, run and checked too); ref = the portable reference kernels (built with "
          "-DFXPQ_REFERENCE_KERNELS); "
          "per layer: the kernel call alone in the QEMU harness, one sample (M4/M7 all: the CMSIS-NN route's "
          "cmsis-all build, x = / opt); arena = the runner's peak arena on the M4 "
          f"(prepared ops + activations + scratch). {args.samples} samples per file and CPU; "
          f"wall time {time.perf_counter() - t0:.0f} s.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
