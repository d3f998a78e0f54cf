"""Run stock-op cases through the C kernels (fxpq_stock_ops.c) on an emulated Cortex-M.

A case is (op, args, kwargs) with the arguments of the op's numpy model in
:mod:`fxpq_keras.integer_graph.tflm_ops`; :func:`run_stock_cases` encodes a batch as
FXPQ_HOP_STOCK records of the QEMU harness (tflm_kernels/firmware/fxpq_harness_protocol.h: the
inputs as blobs 0 and 1, a descriptor of FXPQ_SW_COUNT words as blob 2), runs one QEMU session
(:func:`fxpq_keras.kernels.qemu.run_records`) and decodes each output as int64 stored values.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..integer_graph.tflm_ops import ACTIVATIONS, TensorQ, check_same_quant
from . import qemu
from .qemu import QemuResult

HOP_STOCK = 14
#: stock op -> FXPQ_SOP_* (enum fxpq_harness_stock_op)
STOCK_OPS = {"requantize": 1, "mul": 2, "add": 3, "sub": 4, "logistic": 5, "tanh": 6, "hard_swish": 7,
             "maximum": 8, "minimum": 9, "mean": 10, "resize_nearest_neighbor": 11, "transpose": 12,
             "concatenation": 13, "elu": 14}
#: descriptor word indices (enum fxpq_harness_stock_word, without the FXPQ_SW_ prefix)
WORDS = {"OP": 0, "TYPE1": 1, "TYPE2": 4, "TYPE_OUT": 7, "ACTIVATION": 10, "RANK1": 11, "RANK2": 18,
         "OUT_COUNT": 25, "EXTRA0": 26, "EXTRA1": 27, "EXTRA2": 28, "EXTRA3": 29, "EXTRA4": 30, "COUNT": 31}
_TYPES = {"int8": 9, "int16": 7}
_NP = {"int8": np.int8, "int16": np.int16}


def _store(x: Any, dtype: str) -> np.ndarray:
    return np.ascontiguousarray(np.asarray(x, dtype=np.int64).astype(_NP[dtype]))


class _Descriptor:
    def __init__(self, op: str) -> None:
        self.w = [0] * WORDS["COUNT"]
        self.w[WORDS["OP"]] = STOCK_OPS[op]
        self.shape("RANK2", (0,))  # no second input unless set: an empty blob 1

    def quant(self, slot: str, q: TensorQ) -> None:
        i = WORDS[slot]
        self.w[i] = _TYPES[q.dtype]
        self.w[i + 1] = struct.unpack("<i", struct.pack("<f", q.scale))[0]
        self.w[i + 2] = int(q.zero_point)

    def shape(self, slot: str, shape: Sequence[int]) -> None:
        i = WORDS[slot]
        self.w[i] = len(shape)
        self.w[i + 1:i + 1 + len(shape)] = [int(d) for d in shape]

    def bytes(self) -> bytes:
        return struct.pack(f"<{len(self.w)}i", *self.w)


def encode_stock_case(case_id: int, op: str, args: Sequence[Any], kwargs: dict | None = None
                      ) -> tuple[bytes, tuple[int, ...], str]:
    """(record, output shape, output dtype) of one case; arguments as the numpy op takes them."""
    kw = dict(kwargs or {})
    d = _Descriptor(op)
    blob2 = b""
    if op in ("mul", "add", "sub", "maximum", "minimum"):
        a, b, q1, q2, qo = args[:5]
        if op in ("maximum", "minimum"):
            check_same_quant((q1, q2, qo), op.upper(), ("int8", "int16"))
        activation = kw.get("activation", args[5] if len(args) > 5 else None)
        a_s, b_s = _store(a, q1.dtype), _store(b, q2.dtype)
        d.quant("TYPE1", q1)
        d.quant("TYPE2", q2)
        d.quant("TYPE_OUT", qo)
        d.w[WORDS["ACTIVATION"]] = ACTIVATIONS.index(activation)
        d.shape("RANK1", a_s.shape)
        d.shape("RANK2", b_s.shape)
        out_shape = np.broadcast_shapes(a_s.shape, b_s.shape)
        blob1, blob2, out_dtype = a_s.tobytes(), b_s.tobytes(), qo.dtype
    elif op in ("requantize", "logistic", "tanh", "hard_swish", "elu"):
        x, qi, qo = args[:3]
        xs = _store(x, qi.dtype)
        d.quant("TYPE1", qi)
        d.quant("TYPE2", qi)
        d.quant("TYPE_OUT", qo)
        d.shape("RANK1", xs.shape)
        out_shape, blob1, out_dtype = xs.shape, xs.tobytes(), qo.dtype
    elif op == "mean":
        x, axes, qi, qo = args[:4]
        keep_dims = kw.get("keep_dims", args[4] if len(args) > 4 else True)
        xs = _store(x, qi.dtype)
        axes_t = sorted({int(a) % xs.ndim for a in axes})
        d.quant("TYPE1", qi)
        d.quant("TYPE2", qi)
        d.quant("TYPE_OUT", qo)
        d.shape("RANK1", xs.shape)
        d.w[WORDS["EXTRA0"]] = sum(1 << a for a in axes_t)
        d.w[WORDS["EXTRA1"]] = int(np.prod([xs.shape[a] for a in axes_t]))
        out_shape = tuple(1 if i in axes_t else n for i, n in enumerate(xs.shape)) if keep_dims else \
            tuple(n for i, n in enumerate(xs.shape) if i not in axes_t)
        blob1, out_dtype = xs.tobytes(), qo.dtype
    elif op == "resize_nearest_neighbor":
        x, size, qi, qo = args[:4]
        check_same_quant((qi, qo), "RESIZE_NEAREST_NEIGHBOR", ("int8", "int16"))
        xs = _store(x, qi.dtype)
        d.quant("TYPE1", qi)
        d.quant("TYPE2", qi)
        d.quant("TYPE_OUT", qo)
        d.shape("RANK1", xs.shape)
        d.w[WORDS["EXTRA0"]], d.w[WORDS["EXTRA1"]] = int(size[0]), int(size[1])
        d.w[WORDS["EXTRA2"]] = int(kw.get("align_corners", False))
        d.w[WORDS["EXTRA3"]] = int(kw.get("half_pixel_centers", False))
        out_shape = (xs.shape[0], int(size[0]), int(size[1]), xs.shape[3])
        blob1, out_dtype = xs.tobytes(), qo.dtype
    elif op == "transpose":
        x, perm, qi, qo = args[:4]
        check_same_quant((qi, qo), "TRANSPOSE", ("int8", "int16"))
        xs = _store(x, qi.dtype)
        d.quant("TYPE1", qi)
        d.quant("TYPE2", qi)
        d.quant("TYPE_OUT", qo)
        d.shape("RANK1", xs.shape)
        d.w[WORDS["EXTRA0"]:WORDS["EXTRA0"] + len(perm)] = [int(p) for p in perm]
        out_shape = tuple(xs.shape[int(p)] for p in perm)
        blob1, out_dtype = xs.tobytes(), qo.dtype
    elif op == "concatenation":
        (a, b), axis, (q1, q2), qo = args[:4]
        check_same_quant((q1, q2, qo), "CONCATENATION", ("int8", "int16"))
        a_s, b_s = _store(a, q1.dtype), _store(b, q2.dtype)
        ax = axis % a_s.ndim
        d.quant("TYPE1", q1)
        d.quant("TYPE2", q2)
        d.quant("TYPE_OUT", qo)
        d.shape("RANK1", a_s.shape)
        d.shape("RANK2", b_s.shape)
        d.w[WORDS["EXTRA0"]] = int(np.prod(a_s.shape[:ax]))
        d.w[WORDS["EXTRA1"]] = int(np.prod(a_s.shape[ax + 1:]))
        d.w[WORDS["EXTRA2"]], d.w[WORDS["EXTRA3"]] = a_s.shape[ax], b_s.shape[ax]
        shape = list(a_s.shape)
        shape[ax] += b_s.shape[ax]
        out_shape, blob1, blob2, out_dtype = tuple(shape), a_s.tobytes(), b_s.tobytes(), qo.dtype
    else:
        raise ValueError(f"no stock op {op!r} in the harness; one of {sorted(STOCK_OPS)}")
    d.w[WORDS["OUT_COUNT"]] = int(np.prod(out_shape))
    record = qemu.encode_record(case_id, HOP_STOCK, {}, [blob1, blob2, d.bytes()])
    return record, tuple(int(s) for s in out_shape), out_dtype


def run_stock_cases(cases: Sequence[tuple[str, Sequence[Any], dict]], cpu: str = "m4",
                    timeout: float = 120.0) -> list[QemuResult]:
    """Run (op, args, kwargs) cases in one QEMU session; outputs as int64 stored values."""
    encoded = [encode_stock_case(i, op, args, kwargs) for i, (op, args, kwargs) in enumerate(cases)]
    raw = qemu.run_records([e[0] for e in encoded], cpu=cpu, timeout=timeout)
    results = []
    for (_record, shape, dtype), (case_id, status, ticks, payload) in zip(encoded, raw):
        output = None
        if status == 0:
            output = np.frombuffer(payload, dtype=np.dtype(_NP[dtype]).newbyteorder("<")).reshape(shape)
            output = output.astype(np.int64)
        results.append(QemuResult(case_id, status, ticks, output))
    return results
