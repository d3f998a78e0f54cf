"""The TFLM glue's runtime on any machine: ``tflm/fxpq_tflm_ops.cc`` driven through its
Init/Prepare/Eval on the functional stand-in of the few TFLM calls it makes
(``tflm_kernels/tflm/test_stubs/glue_harness.cc``, not TFLM code).

:func:`harness_blob` turns an exported fxp ``.tflite`` into the harness's flat graph description
(tensor types, shapes, constant data; each operator's custom code, options and tensor lists), so
the glue sees exactly what TFLM would hand it from that file. :class:`GlueHarness` runs it through
ctypes; its ``run`` has the engine shape of :class:`fxpq_keras.flatbuffer.Interpreter`'s engines.
Real TFLM runs the same glue in the ``tflm-*`` engines (:mod:`fxpq_keras.kernels.tflm_engines`).
"""

from __future__ import annotations

import ctypes
import struct
from pathlib import Path

import numpy as np

from ..flatbuffer.schema import schema as S
from ._build import HOST_LOCK, make_or_raise, open_library
from .runner import KERNELS_DIR

__all__ = ["GlueHarness", "GlueError", "harness_blob", "TFLITE_TO_TFLM_TYPE"]

MAGIC = 0x48475846  # "FXGH"
# schema TensorType -> TfLiteType (the enums differ: TfLiteType counts kTfLiteNoType as 0)
TFLITE_TO_TFLM_TYPE = {S.TensorType.FLOAT32: 1, S.TensorType.INT32: 2, S.TensorType.UINT8: 3,
                       S.TensorType.INT16: 7, S.TensorType.INT8: 9, S.TensorType.UINT16: 17}
_ITEMSIZE = {1: 4, 2: 4, 3: 1, 7: 2, 9: 1, 17: 2}
_BUILTIN_NAMES = {v: k for k, v in vars(S.BuiltinOperator).items() if not k.startswith("_")}


class GlueError(RuntimeError):
    """The glue (or the stand-in's checks of how it uses TFLM) reported an error."""


def _words(*values: int) -> bytes:
    return struct.pack(f"<{len(values)}i", *values)


def _padded(data: bytes) -> bytes:
    return data + b"\0" * (-len(data) % 4)


def harness_blob(model: bytes) -> tuple[bytes, int, list[int]]:
    """(blob, input bytes per sample, [bytes of each output]) of an fxp .tflite file."""
    m = S.ModelT.InitFromObj(S.Model.GetRootAs(model, 0))
    sub = m.subgraphs[0]
    tensors = sub.tensors
    parts = [_words(MAGIC, len(tensors), len(sub.operators), int(sub.inputs[0]), len(sub.outputs),
                    *(int(o) for o in sub.outputs))]
    sizes = []
    for t in tensors:
        if t.type not in TFLITE_TO_TFLM_TYPE:
            raise ValueError(f"tensor {t.name!r}: type {t.type} is not one the fxpq ops use")
        tt = TFLITE_TO_TFLM_TYPE[t.type]
        shape = [int(d) for d in (t.shape if t.shape is not None else [])]
        nbytes = int(np.prod(shape, dtype=np.int64)) * _ITEMSIZE[tt]
        data = m.buffers[t.buffer].data if t.buffer < len(m.buffers) else None
        const = data is not None and len(data) > 0
        raw = np.asarray(data, dtype=np.uint8).tobytes() if const else b""
        if const and len(raw) != nbytes:
            nbytes = len(raw)  # packed weights: the buffer's bytes, as TFLM sees them
        parts.append(_words(tt, len(shape), *shape, nbytes, int(const)) + (_padded(raw) if const else b""))
        sizes.append(nbytes)
    for op in sub.operators:
        code = m.operatorCodes[op.opcodeIndex]
        builtin = max(int(code.builtinCode), int(code.deprecatedBuiltinCode))
        name = (code.customCode or b"").decode() if builtin == S.BuiltinOperator.CUSTOM else _BUILTIN_NAMES[builtin]
        options = np.asarray(op.customOptions, dtype=np.uint8).tobytes() if op.customOptions is not None else b""
        ins = [int(i) for i in op.inputs]
        outs = [int(o) for o in op.outputs]
        if name == "RESHAPE":
            ins = ins[:1]  # the stand-in's RESHAPE copies input 0 (the shape tensor is TFLM's business)
        parts.append(_words(len(name.encode())) + _padded(name.encode()) + _words(len(options)) + _padded(options)
                     + _words(len(ins), *ins) + _words(len(outs), *outs))
    return b"".join(parts), sizes[int(sub.inputs[0])], [sizes[int(o)] for o in sub.outputs]


def build_glue_harness(timeout: float = 300.0) -> Path:
    make_or_raise(["glue-harness"], HOST_LOCK, timeout, "the TFLM glue harness")
    return KERNELS_DIR / "build" / "host" / "libfxpq_glue_harness.so"


_LIB: ctypes.CDLL | None = None
_U8P = ctypes.POINTER(ctypes.c_uint8)
SIGNATURES = {"fxpq_glue_run": (ctypes.c_int, [_U8P, ctypes.c_size_t, _U8P, ctypes.c_int32, _U8P, ctypes.c_size_t,
                                               ctypes.c_char_p, ctypes.c_size_t])}


def load_glue_harness() -> ctypes.CDLL:
    global _LIB
    if _LIB is None:
        _LIB = open_library("FXPQ_GLUE_HARNESS_LIB", build_glue_harness, SIGNATURES)
    return _LIB


class GlueHarness:
    """The glue on the stand-in, for one file; ``run(x)`` returns the output integers (int64)."""

    def __init__(self, path: Path | str, graph=None, info=None) -> None:
        self.model = Path(path).read_bytes()
        self.blob, self.in_bytes, self.out_bytes = harness_blob(self.model)
        self.graph = graph
        self._lib = load_glue_harness()

    def run_raw(self, inputs: bytes, samples: int) -> list[bytes]:
        """Per sample, the outputs' bytes back to back."""
        if len(inputs) != samples * self.in_bytes:
            raise ValueError(f"{samples} samples need {samples * self.in_bytes} input bytes, got {len(inputs)}")
        u8p = ctypes.POINTER(ctypes.c_uint8)
        blob = (ctypes.c_uint8 * len(self.blob)).from_buffer_copy(self.blob)
        ins = (ctypes.c_uint8 * max(1, len(inputs))).from_buffer_copy(inputs or b"\0")
        per = sum(self.out_bytes)
        outs = (ctypes.c_uint8 * max(1, per * samples))()
        msg = ctypes.create_string_buffer(256)
        rc = self._lib.fxpq_glue_run(ctypes.cast(blob, u8p), len(self.blob), ctypes.cast(ins, u8p), samples,
                                     ctypes.cast(outs, u8p), per * samples, msg, len(msg))
        if rc != 0:
            raise GlueError(msg.value.decode(errors="replace"))
        raw = bytes(outs)
        return [raw[i * per:(i + 1) * per] for i in range(samples)]

    def run(self, x: np.ndarray) -> list[np.ndarray]:
        g = self.graph
        ins = g.tensors[g.input]
        in_dtype = np.dtype(np.float32) if ins.fmt is None else ins.fmt.storage_dtype
        x = np.ascontiguousarray(np.asarray(x).astype(in_dtype.newbyteorder("<"), copy=False))
        per_sample = self.run_raw(x.tobytes(), len(x))
        return split_outputs(g, per_sample)


def split_outputs(graph, per_sample: list[bytes]) -> list[np.ndarray]:
    """Per-sample output bytes -> one int64 array per graph output (batch first)."""
    outs = [(graph.tensors[o].fmt.storage_dtype, tuple(graph.tensors[o].shape)) for o in graph.outputs]
    result: list[list[np.ndarray]] = [[] for _ in outs]
    for blob in per_sample:
        off = 0
        for i, (dtype, shape) in enumerate(outs):
            n = int(np.prod(shape)) * dtype.itemsize
            result[i].append(np.frombuffer(blob[off:off + n], dtype=dtype.newbyteorder("<")).reshape((1,) + shape))
            off += n
    return [np.concatenate(r).astype(np.int64) for r in result]
