"""ctypes driver of the C model runner (``tflm_kernels/src/runner``) built for the host.

``HostRunner(model_bytes)`` loads ``tflm_kernels/build/host/libfxpq_runner.so`` (built with
``make -C tflm_kernels runner-host`` on first use; ``FXPQ_RUNNER_LIB=/path/to/lib.so`` uses a
prebuilt one), asks the runner how much arena the model needs, gives it exactly that, and runs
one sample per ``fxpq_runner_invoke``. Everything the runner refuses raises ``RunnerError`` with
the runner's status name and message; nothing on the C side can crash on a bad file (it is
fuzzed), so this is also how the tests feed it malformed files.
"""

from __future__ import annotations

import ctypes
import threading
from pathlib import Path

import numpy as np

from ..flatbuffer.options import OPTIONAL_KEYS
from ..formats import Format, check_integers
from ._build import HOST_LOCK, KERNELS_DIR, make_or_raise, open_library

__all__ = ["HostRunner", "RunnerError", "RunnerModelError", "runner_error", "RUNNER_STATUS", "RUNNER_LIB_PATH",
           "build_runner_library",
           "load_runner_library", "TFLITE_DTYPES"]

RUNNER_LIB_PATH = KERNELS_DIR / "build" / "host" / "libfxpq_runner.so"

#: fxpq_runner_status values (include/fxpq_kernels.h, model runner section).
RUNNER_STATUS = {
    0: "FXPQ_RUNNER_OK",
    -101: "FXPQ_RUNNER_ERR_NULL_POINTER",
    -102: "FXPQ_RUNNER_ERR_MALFORMED",
    -103: "FXPQ_RUNNER_ERR_UNSUPPORTED",
    -104: "FXPQ_RUNNER_ERR_BAD_OPTIONS",
    -105: "FXPQ_RUNNER_ERR_BAD_TENSOR",
    -106: "FXPQ_RUNNER_ERR_ARENA_TOO_SMALL",
    -107: "FXPQ_RUNNER_ERR_MISALIGNED",
    -108: "FXPQ_RUNNER_ERR_KERNEL",
    -109: "FXPQ_RUNNER_ERR_BAD_ARGUMENT",
    -110: "FXPQ_RUNNER_ERR_NOT_READY",
    -111: "FXPQ_RUNNER_ERR_STOCK_FILE",
}
ARENA_TOO_SMALL = -106

#: TFLite TensorType code -> numpy dtype, for the types the runner's inputs/outputs use.
TFLITE_DTYPES = {0: np.float32, 3: np.uint8, 7: np.int16, 9: np.int8, 16: np.uint16}

MAX_RANK = 6
MAX_OUTPUTS = 8


class RunnerError(RuntimeError):
    """The C runner returned an error status."""

    def __init__(self, status: int, message: str, op: int = -1) -> None:
        self.status = int(status)
        self.status_name = RUNNER_STATUS.get(self.status, f"status {status}")
        self.message = message
        self.op = op
        super().__init__(f"{self.status_name}: {message}")


class RunnerModelError(RunnerError, ValueError):
    """The runner refused the model file itself (malformed, unsupported, over its limits): bad
    input, not a failure of the work (the CLI's exit status 2)."""


#: statuses that judge the model file (not the runner, the arena or a kernel)
MODEL_STATUSES = (-102, -103, -104, -105)


def runner_error(status: int, message: str, op: int = -1) -> RunnerError:
    """The RunnerError for a status: a RunnerModelError when the file is what was refused."""
    cls = RunnerModelError if int(status) in MODEL_STATUSES else RunnerError
    return cls(status, message, op)


class CFormat(ctypes.Structure):
    _fields_ = [("bits", ctypes.c_int32), ("frac", ctypes.c_int32), ("is_signed", ctypes.c_int32)]


class CTensorInfo(ctypes.Structure):
    _fields_ = [("type", ctypes.c_int32), ("rank", ctypes.c_int32), ("dims", ctypes.c_int32 * MAX_RANK),
                ("elements", ctypes.c_int32), ("bytes", ctypes.c_int32), ("format", CFormat),
                ("data", ctypes.c_void_p)]


class CRunner(ctypes.Structure):
    """Mirror of fxpq_runner (checked against fxpq_runner_struct_size() at load)."""

    _fields_ = [("num_ops", ctypes.c_int32), ("num_tensors", ctypes.c_int32), ("num_outputs", ctypes.c_int32),
                ("arena_needed", ctypes.c_size_t), ("arena_needed_exact", ctypes.c_int32),
                ("persistent_bytes", ctypes.c_size_t), ("planned_bytes", ctypes.c_size_t),
                ("scratch_bytes", ctypes.c_size_t), ("input", CTensorInfo), ("outputs", CTensorInfo * MAX_OUTPUTS),
                ("error_op", ctypes.c_int32), ("kernel_status", ctypes.c_int32), ("message", ctypes.c_char * 160),
                ("model_", ctypes.c_void_p), ("model_size_", ctypes.c_size_t), ("plan_base_", ctypes.c_void_p),
                ("ops_", ctypes.c_void_p), ("ready_", ctypes.c_int32)]


class CLimits(ctypes.Structure):
    """fxpq_runner_limits (format.md section 11)."""

    _fields_ = [("max_elements", ctypes.c_int64), ("max_window", ctypes.c_int64), ("max_work", ctypes.c_int64),
                ("max_taps", ctypes.c_int64)]


def c_limits() -> CLimits:
    """The reader's limits (defaults or FXPQ_MAX_* environment variables) for the C runner."""
    from ..flatbuffer.reader import ReaderLimits

    limits = ReaderLimits.from_env()
    return CLimits(limits.elements, limits.window, limits.work, limits.taps)


_P = ctypes.POINTER
_SIGNATURES = {
    "fxpq_runner_init_limited": (ctypes.c_int, [_P(CRunner), ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p,
                                                ctypes.c_size_t, _P(CLimits)]),
    "fxpq_runner_init": (ctypes.c_int, [_P(CRunner), ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p,
                                        ctypes.c_size_t]),
    "fxpq_runner_invoke": (ctypes.c_int, [_P(CRunner)]),
    "fxpq_runner_struct_size": (ctypes.c_size_t, []),
    "fxpq_options_parse": (ctypes.c_int, [ctypes.c_int32, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p]),
    "fxpq_custom_op_from_name": (ctypes.c_int32, [ctypes.c_char_p, ctypes.c_size_t]),
    "fxpq_options_key": (ctypes.c_char_p, [ctypes.c_int32, ctypes.c_int32]),
    "fxpq_options_key_count": (ctypes.c_int32, [ctypes.c_int32]),
}

_lib: ctypes.CDLL | None = None
_lock = threading.Lock()


def build_runner_library(timeout: float = 300.0) -> Path:
    """``make -C tflm_kernels runner-host``, serialized across processes with the host kernels' build
    (the same lock file as fxpq_keras.kernels.host: both build build/host/obj)."""
    make_or_raise(["runner-host"], HOST_LOCK, timeout, "the host runner")
    return RUNNER_LIB_PATH


def load_runner_library() -> ctypes.CDLL:
    global _lib
    with _lock:
        if _lib is None:
            lib = open_library("FXPQ_RUNNER_LIB", build_runner_library, _SIGNATURES)
            if lib.fxpq_runner_struct_size() != ctypes.sizeof(CRunner):
                raise RuntimeError("fxpq_runner layout differs from fxpq_keras.kernels.runner.CRunner")
            _lib = lib
    return _lib


def _aligned(nbytes: int, alignment: int = 16) -> tuple[np.ndarray, np.ndarray]:
    """(owner, view): a zeroed uint8 view of nbytes starting on an `alignment` boundary."""
    owner = np.zeros(max(nbytes, 1) + alignment, dtype=np.uint8)
    start = (-owner.ctypes.data) % alignment
    return owner, owner[start:start + nbytes]


#: fxpq_op_options field order (include/fxpq_kernels.h).
OPTION_FIELDS = ("acc_bits", "act_max", "act_min", "activation", "alpha_shift", "bias_bits", "bias_frac",
                 "depth_multiplier",
                 "dilation_h", "dilation_w", "filter_h", "filter_w", "in1_frac", "in2_frac", "in_bits", "in_frac",
                 "out_frac", "pad_bottom", "pad_left", "pad_right", "pad_top", "padding", "stride_h", "stride_w",
                 "weight_bits")


def parse_options(custom: str, blob: bytes) -> tuple[int, dict[str, int]]:
    """Run the C options reader on `blob` for custom op `custom`: (status, {key: value})."""
    lib = load_runner_library()
    op = lib.fxpq_custom_op_from_name(custom.encode(), len(custom.encode()))
    if op < 0:
        raise ValueError(f"unknown custom op {custom!r}")
    out = (ctypes.c_int32 * len(OPTION_FIELDS))()
    owner, buf = _aligned(len(blob), 1)
    buf[:] = np.frombuffer(bytes(blob), dtype=np.uint8)
    status = lib.fxpq_options_parse(op, buf.ctypes.data if len(blob) else None, len(blob), out)
    keys = {lib.fxpq_options_key(op, i).decode() for i in range(lib.fxpq_options_key_count(op))}
    # an absent optional key (in_bits of a version 2/3 file) reads as 0; decode_options omits it
    return status, {k: int(out[i]) for i, k in enumerate(OPTION_FIELDS)
                    if k in keys and not (k in OPTIONAL_KEYS and out[i] == 0)}


class HostRunner:
    """One model in the host build of the C runner. ``arena_size`` None: exactly what it needs."""

    def __init__(self, model: bytes | str | Path, arena_size: int | None = None) -> None:
        self.lib = load_runner_library()
        data = Path(model).read_bytes() if isinstance(model, (str, Path)) else bytes(model)
        self._model_owner, self._model = _aligned(len(data))
        self._model[:] = np.frombuffer(data, dtype=np.uint8)
        self.c = CRunner()
        self._limits = c_limits()
        if arena_size is None:
            arena_size = self.query_arena_size()
        self.arena_size = int(arena_size)
        self._arena_owner, self._arena = _aligned(self.arena_size, 1)
        status = self.lib.fxpq_runner_init_limited(ctypes.byref(self.c), self._model.ctypes.data, len(data),
                                                   self._arena.ctypes.data if self.arena_size else None,
                                                   self.arena_size, ctypes.byref(self._limits))
        self._check(status)
        self.input = self._info(self.c.input)
        self.outputs = [self._info(self.c.outputs[i]) for i in range(self.c.num_outputs)]

    def query_arena_size(self) -> int:
        """Bytes of arena the model needs (the runner's exact answer); RunnerError if it is bad."""
        size = 0
        for _ in range(3):
            owner, buf = _aligned(size, 1)
            status = self.lib.fxpq_runner_init_limited(ctypes.byref(self.c), self._model.ctypes.data,
                                                       len(self._model), buf.ctypes.data if size else None, size,
                                                       ctypes.byref(self._limits))
            if status == 0:
                return size
            if status != ARENA_TOO_SMALL:
                self._check(status)
            size = int(self.c.arena_needed)
            if self.c.arena_needed_exact:
                return size
        raise RuntimeError("the runner did not settle on an arena size")

    @property
    def stats(self) -> dict[str, int]:
        return {"arena_bytes": int(self.c.arena_needed), "planned_bytes": int(self.c.planned_bytes),
                "persistent_bytes": int(self.c.persistent_bytes), "scratch_bytes": int(self.c.scratch_bytes),
                "ops": int(self.c.num_ops), "tensors": int(self.c.num_tensors)}

    def _check(self, status: int) -> None:
        if status != 0:
            raise runner_error(status, self.c.message.decode(errors="replace"), int(self.c.error_op))

    @staticmethod
    def _info(t: CTensorInfo) -> dict:
        return {"type": t.type, "dtype": np.dtype(TFLITE_DTYPES.get(t.type, np.uint8)),
                "shape": tuple(t.dims[i] for i in range(t.rank)), "elements": t.elements, "bytes": t.bytes,
                "format": (t.format.bits, t.format.frac, bool(t.format.is_signed)), "data": t.data}

    def invoke(self, sample: np.ndarray) -> list[np.ndarray]:
        """Run one sample (shape = the input's shape without or with the batch of 1)."""
        info = self.input
        if info["type"] != 0:  # integer input: refuse what int8/int16 storage would silently wrap
            sample = check_integers(sample, Format(*info["format"]))
        arr = np.ascontiguousarray(np.asarray(sample).astype(info["dtype"], copy=False)).reshape(-1)
        if arr.size != info["elements"]:
            raise ValueError(f"input needs {info['elements']} elements, got {arr.size}")
        ctypes.memmove(info["data"], arr.ctypes.data, info["bytes"])
        self._check(self.lib.fxpq_runner_invoke(ctypes.byref(self.c)))
        outs = []
        for o in self.outputs:
            buf = (ctypes.c_uint8 * o["bytes"]).from_address(o["data"])
            outs.append(np.frombuffer(bytes(buf), dtype=o["dtype"]).reshape(o["shape"]).copy())
        return outs

    def run(self, x: np.ndarray) -> list[np.ndarray]:
        """A batch: one invoke per sample; outputs as int64 arrays [N, ...]."""
        x = np.asarray(x)
        per = [self.invoke(sample) for sample in x]
        return [np.concatenate([p[i] for p in per]).astype(np.int64) for i in range(len(self.outputs))]
