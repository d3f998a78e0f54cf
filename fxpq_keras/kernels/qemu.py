"""Run op cases through the C kernels on an emulated Cortex-M (QEMU MPS2 boards).

One firmware run executes a whole batch: :func:`run_cases` serializes :class:`OpCase` objects
into the harness's case file (format: ``tflm_kernels/firmware/fxpq_harness_protocol.h``), runs
``qemu-system-arm`` once with semihosting, and decodes the results file.

    cpu "m4": -M mps2-an386 (Cortex-M4, fpv4-sp-d16), firmware build/m4/fxpq_harness.elf
    cpu "m7": -M mps2-an500 (Cortex-M7, fpv5-d16),    firmware build/m7/fxpq_harness.elf

The firmware is built with ``make -C tflm_kernels m4`` / ``m7`` on first use. QEMU runs with
``-icount shift=0`` (virtual time counts instructions), so the per-case ``ticks`` of TIMER0
(25 MHz) are deterministic: one tick per 40 guest instructions.
"""

from __future__ import annotations

import json
import re
import shutil
import struct
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..flatbuffer.packing import depthwise_rows
from ..formats import Format
from ..integer_graph.ops import conv_output_size
from . import host
from ._build import ARM_LOCK, kernel_build, make_or_raise
from .cases import OpCase

__all__ = [
    "MACHINES",
    "PARAMS",
    "OP_IDS",
    "QemuResult",
    "QemuError",
    "missing_tools",
    "build_firmware",
    "encode_case",
    "encode_record",
    "run_case_file",
    "run_records",
    "run_cases",
    "path_coverage",
    "function_profile",
    "protocol_from_header",
]

KERNELS_DIR = host.KERNELS_DIR
PROTOCOL_HEADER = KERNELS_DIR / "firmware" / "fxpq_harness_protocol.h"

MAGIC_CASES = 0x31515846
MAGIC_RESULTS = 0x31525846
VERSION = 1
CASES_FILE = "fxpq_cases.bin"
RESULTS_FILE = "fxpq_results.bin"
INSTRUCTIONS_PER_TICK = 40  # TIMER0 at 25 MHz under -icount shift=0 (1 instruction = 1 ns)

#: cpu -> (QEMU machine, make target)
MACHINES = {"m4": ("mps2-an386", "m4"), "m7": ("mps2-an500", "m7")}

#: op name (ops.py) -> harness op id (enum fxpq_harness_op)
OP_IDS = {
    "conv2d": 1,
    "depthwise_conv2d": 2,
    "fully_connected": 3,
    "add": 4,
    "max_pool2d": 5,
    "average_pool2d": 6,
    "global_average_pool2d": 7,
    "quantize_input": 8,
    "dequantize_output": 9,
    "requantize_op": 10,
    "zero_pad2d": 11,
    "leaky_relu": 12,
    "concatenate": 13,
}

#: parameter names in index order (enum fxpq_harness_param, without the FXPQ_P_ prefix)
PARAMS = (
    "IN_N", "IN_H", "IN_W", "IN_C", "IN_BITS", "IN_FRAC", "IN_SIGNED", "IN2_BITS", "IN2_FRAC", "IN2_SIGNED",
    "FILTER_N", "FILTER_H", "FILTER_W", "FILTER_C", "W_BITS", "W_FRAC", "HAS_BIAS", "BIAS_FRAC",
    "STRIDE_H", "STRIDE_W", "DILATION_H", "DILATION_W", "PADDING", "ACTIVATION", "DEPTH_MULTIPLIER",
    "POOL_H", "POOL_W", "OUT_N", "OUT_H", "OUT_W", "OUT_C", "OUT_BITS", "OUT_FRAC", "OUT_SIGNED",
    "PAD_TOP", "PAD_BOTTOM", "PAD_LEFT", "PAD_RIGHT", "ALPHA_SHIFT", "IN2_C",
)
_PARAM_INDEX = {name: i for i, name in enumerate(PARAMS)}

#: harness-level per-case statuses
HARNESS_STATUS = {-100: "FXPQ_HARNESS_ERR_BAD_RECORD", -101: "FXPQ_HARNESS_ERR_TOO_LARGE",
                  -102: "FXPQ_HARNESS_ERR_BAD_OP"}
EXIT_CODES = {0: "ok", 2: "cannot open the case file", 3: "bad case-file header", 4: "semihosting I/O error",
              5: "fault (HardFault or unexpected exception)"}


class QemuError(RuntimeError):
    """QEMU or the firmware failed as a whole (not a per-case kernel status)."""


@dataclass
class QemuResult:
    """The answer to one case: status 0 and the output, or an error status."""

    case_id: int
    status: int
    ticks: int
    output: np.ndarray | None

    @property
    def status_name(self) -> str:
        return host.STATUS.get(self.status) or HARNESS_STATUS.get(self.status, f"status {self.status}")

    @property
    def instructions(self) -> int:
        """Guest instructions spent in the kernel call (resolution: 40)."""
        return self.ticks * INSTRUCTIONS_PER_TICK


# ------------------------------------------------------------------ tools and build ---------

def missing_tools() -> list[str]:
    """The tools this module needs that are not on PATH."""
    return [t for t in ("qemu-system-arm", "arm-none-eabi-gcc", "make") if shutil.which(t) is None]


def build_firmware(cpu: str = "m4", timeout: float = 300.0, kernels: str = "optimized",
                   paths: dict | None = None) -> Path:
    """``make -C tflm_kernels <cpu>`` (serialized by a file lock); the harness ELF path
    (``kernels="selective"``: the kernels of `paths` only, fxpq_keras.kernels.paths)."""
    if cpu not in MACHINES:
        raise ValueError(f"cpu must be one of {sorted(MACHINES)}, got {cpu!r}")
    build, make_vars = kernel_build(kernels, paths=paths)
    make_or_raise([*make_vars, MACHINES[cpu][1]], ARM_LOCK, timeout, f"the {cpu} firmware ({kernels})", QemuError)
    return KERNELS_DIR / build / MACHINES[cpu][1] / "fxpq_harness.elf"


def protocol_from_header(path: Path = PROTOCOL_HEADER) -> dict[str, int]:
    """``NAME = value`` enum entries of the C protocol header (to check the Python copy)."""
    text = path.read_text()
    return {m.group(1): int(m.group(2)) for m in re.finditer(r"\b(FXPQ_[A-Z0-9_]+)\s*=\s*(-?\d+)", text)}


# ------------------------------------------------------------------ encoding ----------------

def _pad4(b: bytes) -> bytes:
    return b + b"\0" * (-len(b) % 4)


def encode_record(case_id: int, op_id: int, params: dict[str, int], blobs: Sequence[bytes]) -> bytes:
    """One case record (with its leading length word). Unset parameters are 0."""
    p = [0] * len(PARAMS)
    for name, value in params.items():
        p[_PARAM_INDEX[name]] = int(value)
    body = struct.pack(f"<3I{len(p)}i", case_id, op_id, len(p), *p)
    body += struct.pack("<I", len(blobs))
    for blob in blobs:
        body += struct.pack("<I", len(blob)) + _pad4(bytes(blob))
    return struct.pack("<I", len(body)) + body


def _fmt_params(prefix: str, fmt: Format) -> dict[str, int]:
    return {f"{prefix}_BITS": fmt.bits, f"{prefix}_FRAC": fmt.frac, f"{prefix}_SIGNED": int(fmt.signed)}


def _dims_params(prefix: str, shape) -> dict[str, int]:
    return dict(zip((f"{prefix}_N", f"{prefix}_H", f"{prefix}_W", f"{prefix}_C"), (int(s) for s in shape)))


def _flat(shape) -> tuple[int, int, int, int]:
    return (1, 1, 1, int(np.prod(shape, dtype=np.int64)))


def _prepare(case: OpCase) -> tuple[dict[str, int], list[bytes], tuple, np.dtype]:
    """Parameters, blobs, output shape and output dtype of one case (as the host bridge does)."""
    op, a, kw, ex = case.op, case.args, case.kwargs, case.extra
    act = host._activation(kw.get("activation"))
    if op in ("conv2d", "depthwise_conv2d", "fully_connected"):
        x = host._int_array(a[0], op)
        w = host._int_array(a[1], op)
        fmt = host._resolve_format(x, kw["x_frac"], ex.get("x_fmt"), op)
        w_bits = host._weight_bits(w, ex.get("w_bits"))
        out_fmt = kw["out_fmt"]
        if op == "fully_connected":
            rows, out_ch = w, w.shape[0]
            in_shape = (x.shape[0], 1, 1, x.shape[1])
            f_shape = (out_ch, 1, 1, x.shape[1])
            out_shape = (x.shape[0], out_ch)
            p: dict[str, int] = {}
        else:
            stride, dil, pad = kw.get("stride", (1, 1)), kw.get("dilation", (1, 1)), kw.get("padding", "valid")
            if op == "conv2d":
                rows, out_ch = w, w.shape[0]
            else:
                rows, out_ch = depthwise_rows(w), w.shape[3]
            oh = conv_output_size(x.shape[1], w.shape[1], stride[0], dil[0], pad)[0]
            ow = conv_output_size(x.shape[2], w.shape[2], stride[1], dil[1], pad)[0]
            in_shape, f_shape, out_shape = x.shape, w.shape, (x.shape[0], oh, ow, out_ch)
            p = dict(STRIDE_H=stride[0], STRIDE_W=stride[1], DILATION_H=dil[0], DILATION_W=dil[1],
                     PADDING=host._padding(pad), DEPTH_MULTIPLIER=kw.get("depth_multiplier", 1))
        wa = host._WeightArgs(rows, w_bits, kw["w_frac"], a[2], kw.get("bias_frac"), out_ch)
        out4 = out_shape if len(out_shape) == 4 else (out_shape[0], 1, 1, out_shape[1])
        for part in (_dims_params("IN", in_shape), _fmt_params("IN", fmt), _dims_params("FILTER", f_shape),
                     _dims_params("OUT", out4), _fmt_params("OUT", out_fmt)):
            p.update(part)
        p.update(W_BITS=w_bits, W_FRAC=wa.cweights.frac, ACTIVATION=act, HAS_BIAS=int(wa.bias is not None),
                 BIAS_FRAC=wa.cbias.frac)
        blobs = [host._to_storage(x, fmt).tobytes(), wa.packed.tobytes(),
                 b"" if wa.per_channel is None else wa.per_channel.tobytes(),
                 b"" if wa.bias is None else wa.bias.astype("<i4").tobytes()]
        return p, blobs, out_shape, out_fmt.storage_dtype
    if op == "add":
        x, y = host._int_array(a[0], op), host._int_array(a[1], op)
        if x.shape != y.shape:
            raise ValueError(f"add: shapes {x.shape} and {y.shape} differ")
        fa = host._resolve_format(x, kw["a_frac"], ex.get("a_fmt"), op)
        fb = host._resolve_format(y, kw["b_frac"], ex.get("b_fmt"), op)
        p = dict(_dims_params("IN", _flat(x.shape)), **_fmt_params("IN", fa), **_fmt_params("IN2", fb),
                 **_fmt_params("OUT", kw["out_fmt"]), ACTIVATION=act)
        return p, [host._to_storage(x, fa).tobytes(), host._to_storage(y, fb).tobytes()], x.shape, \
            kw["out_fmt"].storage_dtype
    if op in ("max_pool2d", "average_pool2d", "global_average_pool2d"):
        x = host._int_array(a[0], op)
        fmt = host._resolve_format(x, kw["in_frac"], ex.get("in_fmt"), op)
        out_fmt = kw["out_fmt"]
        p = dict(_dims_params("IN", x.shape), **_fmt_params("IN", fmt), **_fmt_params("OUT", out_fmt),
                 ACTIVATION=act)
        if op == "global_average_pool2d":
            out4 = (x.shape[0], 1, 1, x.shape[3])
            out_shape = out4 if kw.get("keepdims") else (x.shape[0], x.shape[3])
        else:
            pool, stride, pad = kw.get("pool", (2, 2)), kw.get("stride", (2, 2)), kw.get("padding", "valid")
            oh = conv_output_size(x.shape[1], pool[0], stride[0], 1, pad)[0]
            ow = conv_output_size(x.shape[2], pool[1], stride[1], 1, pad)[0]
            out4 = out_shape = (x.shape[0], oh, ow, x.shape[3])
            p.update(POOL_H=pool[0], POOL_W=pool[1], STRIDE_H=stride[0], STRIDE_W=stride[1],
                     PADDING=host._padding(pad))
        p.update(_dims_params("OUT", out4))
        return p, [host._to_storage(x, fmt).tobytes()], out_shape, out_fmt.storage_dtype
    if op == "quantize_input":
        xf = np.asarray(a[0], dtype=np.float32)
        if np.isnan(xf).any():
            raise ValueError("cannot quantize NaN")
        out_fmt = a[1]
        p = dict(_dims_params("IN", _flat(xf.shape)), **_fmt_params("OUT", out_fmt))
        return p, [xf.astype("<f4").tobytes()], xf.shape, out_fmt.storage_dtype
    if op == "dequantize_output":
        q = host._int_array(a[0], op)
        fmt = host._resolve_format(q, a[1], ex.get("in_fmt"), op)
        p = dict(_dims_params("IN", _flat(q.shape)), **_fmt_params("IN", fmt))
        return p, [host._to_storage(q, fmt).tobytes()], q.shape, np.dtype(np.float32)
    if op == "requantize_op":
        x = host._int_array(a[0], op)
        fmt = host._resolve_format(x, kw["in_frac"], ex.get("in_fmt"), op)
        p = dict(_dims_params("IN", _flat(x.shape)), **_fmt_params("IN", fmt), **_fmt_params("OUT", kw["out_fmt"]),
                 ACTIVATION=act)
        return p, [host._to_storage(x, fmt).tobytes()], x.shape, kw["out_fmt"].storage_dtype
    if op == "concatenate":
        x, y = host._int_array(a[0], op), host._int_array(a[1], op)
        if x.shape[:-1] != y.shape[:-1]:
            raise ValueError(f"concatenate: shapes {x.shape} and {y.shape} differ before the last axis")
        fa = host._resolve_format(x, kw["a_frac"], ex.get("a_fmt"), op)
        fb = host._resolve_format(y, kw["b_frac"], ex.get("b_fmt"), op)
        outer = int(np.prod(x.shape[:-1], dtype=np.int64))
        p = dict(_dims_params("IN", (outer, 1, 1, x.shape[-1])), **_fmt_params("IN", fa), **_fmt_params("IN2", fb),
                 **_fmt_params("OUT", kw["out_fmt"]), IN2_C=y.shape[-1])
        out_shape = x.shape[:-1] + (x.shape[-1] + y.shape[-1],)
        return p, [host._to_storage(x, fa).tobytes(), host._to_storage(y, fb).tobytes()], out_shape, \
            kw["out_fmt"].storage_dtype
    if op == "leaky_relu":
        x = host._int_array(a[0], op)
        fmt = host._resolve_format(x, kw["in_frac"], ex.get("in_fmt"), op)
        p = dict(_dims_params("IN", _flat(x.shape)), **_fmt_params("IN", fmt), **_fmt_params("OUT", kw["out_fmt"]),
                 ALPHA_SHIFT=kw["alpha_shift"])
        return p, [host._to_storage(x, fmt).tobytes()], x.shape, kw["out_fmt"].storage_dtype
    if op == "zero_pad2d":
        x = host._int_array(a[0], op)
        fmt = host._resolve_format(x, kw["in_frac"], ex.get("in_fmt"), op)
        (top, bottom), (left, right) = kw["pads"]
        out_shape = (x.shape[0], x.shape[1] + top + bottom, x.shape[2] + left + right, x.shape[3])
        p = dict(_dims_params("IN", x.shape), **_fmt_params("IN", fmt), **_dims_params("OUT", out_shape),
                 **_fmt_params("OUT", kw["out_fmt"]), PAD_TOP=top, PAD_BOTTOM=bottom, PAD_LEFT=left, PAD_RIGHT=right)
        return p, [host._to_storage(x, fmt).tobytes()], out_shape, kw["out_fmt"].storage_dtype
    raise ValueError(f"unknown op {op!r}")


def encode_case(case: OpCase, case_id: int) -> tuple[bytes, tuple, np.dtype]:
    """The record of one case, and the shape and dtype its output will have."""
    params, blobs, out_shape, out_dtype = _prepare(case)
    return encode_record(case_id, OP_IDS[case.op], params, blobs), tuple(out_shape), np.dtype(out_dtype)


# ------------------------------------------------------------------ running -----------------

def run_case_file(data: bytes, cpu: str = "m4", timeout: float = 120.0, firmware: Path | None = None,
                  trace: Path | None = None) -> bytes:
    """Run the harness on a raw case file in one QEMU session; the raw results file. `trace`: QEMU's
    log of every translated block and every block executed goes there (:func:`function_profile`).

    Raises QemuError when QEMU fails, times out, or the firmware exits with a non-zero status
    (the message names the exit code, see fxpq_harness_protocol.h)."""
    missing = missing_tools()
    if missing:
        raise QemuError(f"missing tools: {', '.join(missing)} (scripts/setup.sh installs them)")
    if cpu not in MACHINES:
        raise ValueError(f"cpu must be one of {sorted(MACHINES)}, got {cpu!r}")
    elf = firmware or build_firmware(cpu)
    machine = MACHINES[cpu][0]
    with tempfile.TemporaryDirectory(prefix="fxpq-qemu-") as tmp:
        tmpdir = Path(tmp)
        (tmpdir / CASES_FILE).write_bytes(data)
        cmd = ["qemu-system-arm", "-M", machine, "-nographic", "-semihosting-config", "enable=on,target=native",
               "-icount", "shift=0", "-kernel", str(elf)]
        if trace is not None:
            cmd += ["-d", "in_asm,exec,nochain", "-D", str(trace)]
        try:
            proc = subprocess.run(cmd, cwd=tmpdir, capture_output=True, timeout=timeout, stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired as e:
            raise QemuError(f"QEMU ({machine}) did not finish within {timeout} s") from e
        if proc.returncode != 0:
            raise QemuError(f"firmware on {machine} exited with {proc.returncode} "
                            f"({EXIT_CODES.get(proc.returncode, 'unknown')}): "
                            f"{proc.stdout.decode(errors='replace')}{proc.stderr.decode(errors='replace')}")
        return (tmpdir / RESULTS_FILE).read_bytes()


def _case_file(records: Sequence[bytes]) -> bytes:
    """The harness's case file: header, then the encoded records."""
    return struct.pack("<3I", MAGIC_CASES, VERSION, len(records)) + b"".join(records)


def run_records(records: Sequence[bytes], cpu: str = "m4", timeout: float = 120.0,
                firmware: Path | None = None) -> list[tuple[int, int, int, bytes]]:
    """Run encoded records in one QEMU session: [(case_id, status, ticks, output bytes)]."""
    data = run_case_file(_case_file(records), cpu=cpu, timeout=timeout, firmware=firmware)
    magic, version, count = struct.unpack_from("<3I", data, 0)
    if magic != MAGIC_RESULTS or version != VERSION or count != len(records):
        raise QemuError(f"bad results header: magic {magic:#x}, version {version}, {count} results")
    pos, out = 12, []
    for _ in range(count):
        case_id, status, ticks, nbytes = struct.unpack_from("<IiII", data, pos)
        pos += 16
        out.append((case_id, status, ticks, data[pos:pos + nbytes]))
        pos += nbytes + (-nbytes % 4)
    if pos != len(data):
        raise QemuError(f"results file has {len(data) - pos} trailing bytes")
    return out


def run_cases(cases: Sequence[OpCase], cpu: str = "m4", timeout: float = 120.0,
              kernels: str = "optimized", paths: dict | None = None) -> list[QemuResult]:
    """Run cases in one QEMU session; outputs come back as ops.py does (int64, or float32).
    ``kernels="reference"`` runs a harness built with the portable reference loops only,
    ``"selective"`` one whose kernels hold only `paths` (fxpq_keras.kernels.paths)."""
    encoded = [encode_case(c, i) for i, c in enumerate(cases)]
    firmware = None if kernels == "optimized" else build_firmware(cpu, kernels=kernels, paths=paths)
    raw = run_records([e[0] for e in encoded], cpu=cpu, timeout=timeout, firmware=firmware)
    results = []
    for (_record, shape, dtype), (case_id, status, ticks, payload) in zip(encoded, raw):
        output = None
        if status == 0:
            arr = np.frombuffer(payload, dtype=dtype.newbyteorder("<")).reshape(shape)
            output = arr.astype(np.float32 if dtype.kind == "f" else np.int64)
        results.append(QemuResult(case_id, status, ticks, output))
    return results


def function_profile(cases: Sequence[OpCase], cpu: str = "m4", timeout: float = 600.0) -> dict[str, int]:
    """Instructions executed per firmware function while the optimized harness runs `cases` (one QEMU
    session): each translated block's instruction count times its executions (QEMU's in_asm and
    exec,nochain logs), attributed by the ELF's symbols. Inlined code counts in its caller; the
    harness's own start (bss clearing: `memset`) and case decoding are included."""
    data = _case_file([encode_case(c, i)[0] for i, c in enumerate(cases)])
    elf = build_firmware(cpu)
    with tempfile.TemporaryDirectory(prefix="fxpq-profile-") as tmp:
        trace = Path(tmp) / "trace.log"
        run_case_file(data, cpu=cpu, timeout=timeout, trace=trace)
        sizes: dict[int, int] = {}
        runs: dict[int, int] = {}
        start = None
        with trace.open(errors="replace") as f:
            for line in f:
                if line.startswith("0x"):
                    if start is None:
                        start = int(line.split(":", 1)[0], 16)
                        sizes[start] = 0
                    sizes[start] += 1
                    continue
                start = None
                m = _EXEC.match(line)
                if m:
                    pc = int(m.group(1), 16)
                    runs[pc] = runs.get(pc, 0) + 1
    nm = subprocess.run(["arm-none-eabi-nm", "-n", "-S", "--defined-only", str(elf)], capture_output=True, text=True,
                        check=True).stdout
    symbols = sorted((int(p[0], 16), int(p[1], 16), p[3]) for p in (ln.split() for ln in nm.splitlines())
                     if len(p) == 4 and p[2] in "tTwW")
    starts = [a for a, _, _ in symbols]
    out: dict[str, int] = {}
    for pc, n in runs.items():
        i = int(np.searchsorted(starts, pc & ~1, side="right")) - 1
        name = symbols[i][2] if i >= 0 and (pc & ~1) < symbols[i][0] + max(symbols[i][1], 2) else "?"
        out[name] = out.get(name, 0) + n * sizes.get(pc, 0)
    return out


_EXEC = re.compile(r"Trace \d+: 0x[0-9a-f]+ \[[0-9a-f]+/([0-9a-f]+)/")


def path_coverage(cases: Sequence[OpCase], cpu: str = "m4", source: str = "fxpq_dsp.c",
                  timeout: float = 600.0) -> tuple[list[QemuResult], dict[str, int]]:
    """Run cases on the coverage build of the optimized kernels (``kernels="coverage"``,
    tflm_kernels/mk/coverage.mk) in one QEMU session; their results, and how many times each
    function of the kernel source `source` ran (arm-none-eabi-gcov): which optimized paths
    the cases reach. One caller per cpu at a time (the .gcda files are per build)."""
    objdir = build_firmware(cpu, kernels="coverage").parent / "obj" / "src" / "kernels"
    gcda = objdir / (Path(source).stem + ".gcda")
    for old in objdir.glob("*.gcda"):
        old.unlink()
    results = run_cases(cases, cpu=cpu, timeout=timeout, kernels="coverage")
    if not gcda.is_file():
        raise QemuError(f"the coverage firmware wrote no {gcda.name} (did any case reach {source}?)")
    proc = subprocess.run(["arm-none-eabi-gcov", "--json-format", "--stdout", "-o", str(objdir), str(gcda)],
                          capture_output=True, text=True, cwd=KERNELS_DIR, timeout=120)
    if proc.returncode != 0:
        raise QemuError(f"arm-none-eabi-gcov failed on {gcda}: {proc.stderr.strip()[-400:]}")
    counts: dict[str, int] = {}
    for line in proc.stdout.splitlines():
        for entry in json.loads(line).get("files", []):
            if Path(entry["file"]).name == source:
                for fn in entry["functions"]:
                    counts[fn["name"]] = counts.get(fn["name"], 0) + int(fn["execution_count"])
    if not counts:
        raise QemuError(f"arm-none-eabi-gcov reported no function of {source}")
    return results, counts
