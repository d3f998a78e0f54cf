"""Engines of ``fxpq_keras.Interpreter`` backed by the C model runner.

* ``engine="host"``: the runner and kernels built for this machine, through ctypes
  (:mod:`fxpq_keras.kernels.runner`).
* ``engine="qemu-m4"`` / ``engine="qemu-m7"``: the whole-model firmware
  (``tflm_kernels/firmware/model_main.c``) on QEMU ``mps2-an386`` (Cortex-M4) /
  ``mps2-an500`` (Cortex-M7) under ``-icount shift=0``. One QEMU process runs a whole batch;
  ``engine.instructions`` holds the instruction count of each inference of the last batch
  (TIMER0 ticks * 40, checked on every run against a calibration loop of known length).

The firmware is built with make (cached by make's timestamps). By default the model is loaded
at run time over semihosting (one firmware for every model); ``QemuEngine(..., link_model=True)``
links the model into flash as a C array instead (one cached firmware per model), which is what
``bench/mcu.py`` measures.

Importing this module registers the three engines with fxpq_keras.flatbuffer.interpreter.
"""

from __future__ import annotations

import hashlib
import shutil
import struct
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..flatbuffer.interpreter import register_engine
from ._build import ARM_LOCK, kernel_build, locked_make
from .runner import KERNELS_DIR, RUNNER_STATUS, HostRunner, RunnerError, runner_error

__all__ = ["WrongEngineError", "runner_runs", "HostEngine", "QemuEngine", "QemuRun", "build_model_firmware",
           "write_model_source", "INSTRUCTIONS_PER_TICK", "MACHINES"]

INSTRUCTIONS_PER_TICK = 40  # TIMER0 at 25 MHz, 1 instruction = 1 ns of virtual time at -icount shift=0
MACHINES = {"m4": "mps2-an386", "m7": "mps2-an500"}
HEADER_WORDS = 14
MESSAGE_BYTES = 160
MAGIC = 0x4F4D5846


class WrongEngineError(ValueError):
    """The file is of a kind this engine does not run; the message names the engines that do."""


def runner_runs(info, engine: str) -> None:
    """The C runner (engines host, qemu-m4, qemu-m7) runs fxp files; an int8-builtin file is all stock
    TFLite ops, which only TFLM runs: say which engines those are instead of the runner's
    'unsupported builtin op' on the first stock op."""
    target = getattr(info, "target", "fxp")
    if target in ("int8-builtin", "builtin"):
        raise WrongEngineError(f"--engine {engine} runs fxp files (the fxpq C kernels); this is an {target} "
                               "file (stock TFLite ops): run it with --engine tflm (the tflite-micro wheel) or "
                               "tflm-host / tflm-m4 / tflm-m7 (real TFLM from TFLM_DIR), or reference")


class HostEngine:
    """The C runner on the host (ctypes)."""

    def __init__(self, path: Path, graph, info) -> None:
        runner_runs(info, "host")
        self.graph = graph
        self.runner = HostRunner(Path(path))

    def run(self, x: np.ndarray) -> list[np.ndarray]:
        return self.runner.run(x)


def _make(args: list[str], timeout: float = 600.0) -> None:
    proc = locked_make(args, ARM_LOCK, timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"make {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}")


def _linked_key(cpu: str, model: bytes, arena_bytes: int | None, kernels: str = "optimized") -> str:
    """Cache key of a linked-model firmware: everything it is linked from, i.e. the model, the
    arena size, the runner and kernel libraries (brought up to date first) and the firmware
    sources, so that a change to the C code gives a new firmware."""
    build, make_vars = kernel_build(kernels, model, "runner")
    libs = [f"{build}/{cpu}/libfxpq_runner.a", f"{build}/{cpu}/libfxpq_kernels.a"]
    _make([*make_vars, *libs])
    digest = hashlib.sha256(model + str(arena_bytes).encode())
    for path in [*(KERNELS_DIR / lib for lib in libs), *sorted((KERNELS_DIR / "firmware").iterdir())]:
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def write_model_source(model_path: Path, out_dir: Path) -> Path:
    """C sources that link the model in: export_c_array's header + the symbols model_main.c uses."""
    from ..flatbuffer.c_array import export_c_array

    out_dir.mkdir(parents=True, exist_ok=True)
    export_c_array(model_path, out_dir / "fxpq_model_array.h", name="fxpq_model_array")
    src = out_dir / "model_data.c"
    src.write_text('#include <stdint.h>\n#include "fxpq_model_array.h"\n'
                   "/* The model as model_main.c's FXPQ_MODEL_LINKED mode expects it. */\n"
                   "extern const unsigned char *const fxpq_model_data;\n"
                   "extern const uint32_t fxpq_model_data_len;\n"
                   "const unsigned char *const fxpq_model_data = fxpq_model_array;\n"
                   "const uint32_t fxpq_model_data_len = (uint32_t)sizeof(fxpq_model_array);\n")
    return src


def build_model_firmware(cpu: str = "m4", model_path: Path | None = None, arena_bytes: int | None = None,
                         kernels: str = "optimized") -> Path:
    """The whole-model firmware ELF: run-time model loading, or with `model_path` linked in
    (cached under build/linked/<cpu>-<hash of model, arena size, libraries and firmware sources>/).
    ``kernels="reference"`` links the portable reference kernels instead of the optimized ones."""
    if cpu not in MACHINES:
        raise ValueError(f"cpu must be one of {sorted(MACHINES)}, got {cpu!r}")
    if model_path is None:
        build, make_vars = kernel_build(kernels)
        _make([*make_vars, f"model-{cpu}"])
        return KERNELS_DIR / build / cpu / "fxpq_model.elf"
    model = Path(model_path).read_bytes()
    build, make_vars = kernel_build(kernels, model, "runner")
    key = _linked_key(cpu, model, arena_bytes, kernels)
    tag = {"reference": "ref-", "cmsis": "cmsis-", "cmsis-all": "cmsis-all-", "selective": "sel-"}.get(kernels, "")
    out = KERNELS_DIR / "build" / "linked" / f"{cpu}-{tag}{key}"
    elf = out / "fxpq_model.elf"
    if not elf.exists():
        tmp = Path(tempfile.mkdtemp(prefix=f"{cpu}-", dir=out.parent if out.parent.exists() else None))
        src = write_model_source(Path(model_path), tmp)
        defs = f"-DFXPQ_FW_ARENA_BYTES={int(arena_bytes)}u" if arena_bytes else ""
        _make([*make_vars, "model-linked", f"CPU={cpu}", f"OUT={tmp}", f"MODEL_C={src}", f"MODEL_FW_DEFS={defs}"])
        out.parent.mkdir(parents=True, exist_ok=True)
        if out.exists():
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            tmp.rename(out)
    return elf


@dataclass
class QemuRun:
    """Decoded results of one firmware run."""

    status: int
    message: str
    arena_bytes: int
    persistent_bytes: int
    planned_bytes: int
    scratch_bytes: int
    instructions: np.ndarray          # per inference
    statuses: np.ndarray              # fxpq_runner_invoke status per inference
    outputs: list[bytes]              # per inference, all outputs' bytes
    calibration_error: float          # |ticks*40 / expected - 1| of the calibration loop


def run_firmware(elf: Path, cpu: str, inputs: bytes, model: bytes | None = None, timeout: float = 600.0) -> QemuRun:
    """Run the model firmware once on a batch of raw input bytes."""
    qemu = shutil.which("qemu-system-arm")
    if qemu is None:
        raise RuntimeError("qemu-system-arm is not installed")
    with tempfile.TemporaryDirectory(prefix="fxpq-qemu-") as d:
        d = Path(d)
        if model is not None:
            (d / "fxpq_model.tflite").write_bytes(model)
        (d / "fxpq_inputs.bin").write_bytes(inputs)
        cmd = [qemu, "-M", MACHINES[cpu], "-nographic", "-semihosting-config", "enable=on,target=native",
               "-icount", "shift=0", "-kernel", str(elf)]
        proc = subprocess.run(cmd, cwd=d, capture_output=True, timeout=timeout)
        out_file = d / "fxpq_outputs.bin"
        if not out_file.exists():
            raise RuntimeError(f"firmware wrote no results (exit {proc.returncode}): "
                               f"{proc.stdout.decode(errors='replace')} {proc.stderr.decode(errors='replace')}")
        blob = out_file.read_bytes()
    return decode_results(blob)


def decode_results(blob: bytes) -> QemuRun:
    """fxpq_outputs.bin of the model firmware (and of the TFLM programs, same layout) decoded."""
    head = struct.unpack_from(f"<{HEADER_WORDS}I", blob, 0)
    if head[0] != MAGIC or head[1] != 1:
        raise RuntimeError("firmware results have a bad header")
    status = struct.unpack("<i", struct.pack("<I", head[2]))[0]
    message = blob[HEADER_WORDS * 4:HEADER_WORDS * 4 + MESSAGE_BYTES].split(b"\0")[0].decode(errors="replace")
    expected = 2 * head[10]
    calib = abs(head[11] * INSTRUCTIONS_PER_TICK / expected - 1.0) if expected else float("nan")
    ticks, statuses, outputs = [], [], []
    off = HEADER_WORDS * 4 + MESSAGE_BYTES
    per = 8 + head[9]
    if status == 0:
        while off + per <= len(blob):
            t, s = struct.unpack_from("<Ii", blob, off)
            ticks.append(t)
            statuses.append(s)
            outputs.append(blob[off + 8:off + per])
            off += per
    return QemuRun(status, message, head[3], head[4], head[5], head[6],
                   np.asarray(ticks, dtype=np.int64) * INSTRUCTIONS_PER_TICK, np.asarray(statuses), outputs, calib)


class QemuEngine:
    """The model firmware on an emulated Cortex-M4 / M7; see the module docstring."""

    def __init__(self, path: Path, graph, info, *, cpu: str = "m4", link_model: bool = False,
                 timeout: float = 600.0, kernels: str = "optimized") -> None:
        runner_runs(info, f"qemu-{cpu}")
        self.path, self.graph, self.cpu, self.timeout = Path(path), graph, cpu, timeout
        self.model = self.path.read_bytes()
        self.link_model = link_model
        arena = None
        if link_model:
            # The host's answer is an upper bound of the Cortex-M's (host pointers are wider).
            arena = HostRunner(self.model).stats["arena_bytes"]
        self.elf = build_model_firmware(cpu, self.path if link_model else None, arena, kernels)
        self.last: QemuRun | None = None

    @property
    def instructions(self) -> np.ndarray | None:
        """Instructions of each inference of the last batch (QEMU -icount), None before a run."""
        return None if self.last is None else self.last.instructions

    @property
    def arena_bytes(self) -> int | None:
        """The arena the runner needed on the emulated Cortex-M in the last run, None before a run."""
        return None if self.last is None else int(self.last.arena_bytes)

    def measurements(self) -> dict[str, int | float]:
        """What `fxpq run --engine qemu-m4|qemu-m7` prints: instructions per inference of the last
        batch (mean, min, max), runner_arena_bytes (the arena the C runner needed on the Cortex-M)
        and its runner_planned_bytes (tensors + scratch; the rest are per-op records), names as
        docs/format.md section 9 defines them; {} before a run."""
        if self.last is None or not len(self.last.instructions):
            return {}
        ins = self.last.instructions
        return {"inferences": int(len(ins)), "instructions_mean": float(ins.mean()),
                "instructions_min": int(ins.min()), "instructions_max": int(ins.max()),
                "runner_arena_bytes": int(self.last.arena_bytes), "runner_planned_bytes": int(self.last.planned_bytes)}

    def _io(self):
        ins = self.graph.tensors[self.graph.input]
        in_dtype = np.dtype(np.float32) if ins.fmt is None else ins.fmt.storage_dtype
        outs = [(self.graph.tensors[o].fmt.storage_dtype, tuple(self.graph.tensors[o].shape))
                for o in self.graph.outputs]
        return in_dtype, outs

    def run(self, x: np.ndarray) -> list[np.ndarray]:
        in_dtype, outs = self._io()
        x = np.ascontiguousarray(np.asarray(x).astype(in_dtype.newbyteorder("<"), copy=False))
        res = run_firmware(self.elf, self.cpu, x.tobytes(), None if self.link_model else self.model, self.timeout)
        self.last = res
        if res.status != 0:
            raise runner_error(res.status, res.message)
        if len(res.outputs) != len(x):
            raise RuntimeError(f"firmware ran {len(res.outputs)} of {len(x)} inferences")
        bad = np.flatnonzero(res.statuses != 0)
        if bad.size:
            raise RunnerError(int(res.statuses[bad[0]]), f"invoke failed on sample {bad[0]} "
                              f"({RUNNER_STATUS.get(int(res.statuses[bad[0]]), '?')})")
        if not res.calibration_error < 1e-3:
            raise RuntimeError(f"instruction-count calibration off by {res.calibration_error:.2%}")
        result: list[list[np.ndarray]] = [[] for _ in outs]
        for blob in res.outputs:
            off = 0
            for i, (dtype, shape) in enumerate(outs):
                n = int(np.prod(shape)) * dtype.itemsize
                result[i].append(np.frombuffer(blob[off:off + n], dtype=dtype.newbyteorder("<")).reshape((1,) + shape))
                off += n
        return [np.concatenate(r).astype(np.int64) for r in result]


def _qemu_factory(cpu: str):
    def factory(path, graph, info):
        return QemuEngine(path, graph, info, cpu=cpu)
    return factory


register_engine("host", HostEngine)
register_engine("qemu-m4", _qemu_factory("m4"))
register_engine("qemu-m7", _qemu_factory("m7"))


from . import tflm_engines as _tflm_engines  # noqa: E402,F401  (registers tflm-host, tflm-m4, tflm-m7, ...)
