"""ctypes bridge to the C stock-op kernels (tflm_kernels/src/kernels/fxpq_stock_ops.c) on the host.

Each function has the signature of its numpy model in :mod:`fxpq_keras.integer_graph.tflm_ops`
(stored values in, stored values out, one `TensorQ` per tensor) and computes with the C prepare
and eval functions, so tests can hold C and numpy together bit for bit. A refused parameter set
raises KernelError (a ValueError) carrying the C status.
"""

from __future__ import annotations

import ctypes
from collections.abc import Sequence

import numpy as np

from ..integer_graph.tflm_ops import ACTIVATIONS, TensorQ, check_same_quant
from .host import KernelError, load_library, status_str

TFLITE_TYPES = {"int8": 9, "int16": 7}
_NP = {"int8": np.int8, "int16": np.int16}
MAX_RANK = 6
c_i32 = ctypes.c_int32


class CQuant(ctypes.Structure):
    _fields_ = [("scale", ctypes.c_float), ("zero_point", c_i32), ("type", c_i32)]


class CShape(ctypes.Structure):
    _fields_ = [("rank", c_i32), ("dims", c_i32 * MAX_RANK)]


def _params(*names: str) -> type[ctypes.Structure]:
    return type("CParams", (ctypes.Structure,), {"_fields_": [(n, c_i32) for n in names]})


CRequantizeParams = _params("multiplier", "shift", "input_zero_point", "output_zero_point", "output_min",
                            "output_max", "input_type", "output_type")
CMulParams = _params("input1_zero_point", "input2_zero_point", "output_zero_point", "multiplier", "shift",
                     "activation_min", "activation_max", "type")
CAddParams = _params("input1_zero_point", "input2_zero_point", "output_zero_point", "left_shift",
                     "input1_multiplier", "input1_shift", "input2_multiplier", "input2_shift",
                     "output_multiplier", "output_shift", "activation_min", "activation_max", "subtract",
                     "type")
CSigmoidParams = _params("input_zero_point", "input_multiplier", "input_left_shift", "input_range_radius")
class CEluParams(ctypes.Structure):
    _fields_ = [("table", ctypes.c_int8 * 256)]


CMeanParams = _params("multiplier", "shift", "input_zero_point", "output_zero_point", "count", "type")
CHardSwishParams = _params("input_zero_point", "output_zero_point", "output_multiplier", "output_exponent",
                           "reluish_multiplier", "reluish_exponent")

_P, _vp = ctypes.POINTER, ctypes.c_void_p
_SIGNATURES = {
    "fxpq_stock_requantize_prepare": [_P(CQuant), _P(CQuant), _P(CRequantizeParams)],
    "fxpq_stock_requantize": [_P(CRequantizeParams), c_i32, _vp, _vp],
    "fxpq_stock_mul_prepare": [_P(CQuant), _P(CQuant), _P(CQuant), c_i32, _P(CMulParams)],
    "fxpq_stock_mul": [_P(CMulParams), _P(CShape), _vp, _P(CShape), _vp, _vp],
    "fxpq_stock_add_prepare": [_P(CQuant), _P(CQuant), _P(CQuant), c_i32, c_i32, _P(CAddParams)],
    "fxpq_stock_add": [_P(CAddParams), _P(CShape), _vp, _P(CShape), _vp, _vp],
    "fxpq_stock_logistic_prepare": [_P(CQuant), _P(CQuant), _P(CSigmoidParams)],
    "fxpq_stock_logistic_s8": [_P(CSigmoidParams), c_i32, _vp, _vp],
    "fxpq_stock_tanh_prepare": [_P(CQuant), _P(CQuant), _P(CSigmoidParams)],
    "fxpq_stock_tanh_s8": [_P(CSigmoidParams), c_i32, _vp, _vp],
    "fxpq_stock_hard_swish_prepare": [_P(CQuant), _P(CQuant), _P(CHardSwishParams)],
    "fxpq_stock_hard_swish_s8": [_P(CHardSwishParams), c_i32, _vp, _vp],
    "fxpq_stock_max_min": [c_i32, c_i32, _P(CShape), _vp, _P(CShape), _vp, _vp],
    "fxpq_stock_elu_prepare": [_P(CQuant), _P(CQuant), _P(CEluParams)],
    "fxpq_stock_elu_s8": [_P(CEluParams), c_i32, _vp, _vp],
    "fxpq_stock_mean_prepare": [_P(CQuant), _P(CQuant), c_i32, _P(CMeanParams)],
    "fxpq_stock_mean": [_P(CMeanParams), _P(CShape), ctypes.c_uint32, _vp, _vp],
    "fxpq_stock_resize_nearest_neighbor": [_P(CShape), c_i32, c_i32, c_i32, c_i32, c_i32, _vp, _vp],
    "fxpq_stock_transpose": [_P(CShape), _P(c_i32), c_i32, _vp, _vp],
    "fxpq_stock_concatenation": [c_i32, _P(_vp), _P(c_i32), c_i32, c_i32, c_i32, _vp],
}


def _lib() -> ctypes.CDLL:
    lib = load_library()
    for name, argtypes in _SIGNATURES.items():
        fn = getattr(lib, name)
        fn.restype, fn.argtypes = ctypes.c_int, argtypes
    return lib


def _call(op: str, fn: str, *args) -> None:
    status = getattr(_lib(), fn)(*args)
    if status != 0:
        raise KernelError(op, status, status_str(status))


def _q(q: TensorQ) -> CQuant:
    if q.dtype not in TFLITE_TYPES:
        raise ValueError(f"stock C kernels take int8/int16 tensors, got {q.dtype}")
    return CQuant(float(q.scale), int(q.zero_point), TFLITE_TYPES[q.dtype])


def _store(x: np.ndarray, dtype: str) -> np.ndarray:
    x = np.asarray(x, dtype=np.int64)
    info = np.iinfo(_NP[dtype])
    if x.size and (x.min() < info.min or x.max() > info.max):
        raise ValueError(f"values outside the {dtype} range")
    return np.ascontiguousarray(x.astype(_NP[dtype]))


def _shape(shape: Sequence[int]) -> CShape:
    if len(shape) > MAX_RANK:
        raise ValueError(f"rank {len(shape)} above {MAX_RANK}")
    dims = (c_i32 * MAX_RANK)(*([int(d) for d in shape] + [0] * (MAX_RANK - len(shape))))
    return CShape(len(shape), dims)


def _ptr(a: np.ndarray) -> int:
    return a.ctypes.data


def _act(activation: str | None) -> int:
    if activation not in ACTIVATIONS:
        raise ValueError(f"fused activation {activation!r} not supported; one of {ACTIVATIONS}")
    return ACTIVATIONS.index(activation)  # TFLite's ActivationFunctionType order


def requantize(x: np.ndarray, q_in: TensorQ, q_out: TensorQ) -> np.ndarray:
    p = CRequantizeParams()
    _call("stock QUANTIZE", "fxpq_stock_requantize_prepare", _q(q_in), _q(q_out), p)
    xs = _store(x, q_in.dtype)
    out = np.empty(xs.shape, dtype=_NP[q_out.dtype])
    _call("stock QUANTIZE", "fxpq_stock_requantize", p, xs.size, _ptr(xs), _ptr(out))
    return out.astype(np.int64)


def _binary(op: str, fn: str, p, a, b, dtype: str) -> np.ndarray:
    a_s, b_s = _store(a, dtype), _store(b, dtype)
    try:
        shape = np.broadcast_shapes(a_s.shape, b_s.shape)
    except ValueError:  # the C kernel must refuse these shapes itself (FXPQ_ERR_BAD_DIMS) before writing
        shape = (max(a_s.size, b_s.size),)
    out = np.empty(shape, dtype=_NP[dtype])
    args = (_shape(a_s.shape), _ptr(a_s), _shape(b_s.shape), _ptr(b_s), _ptr(out))
    _call(op, fn, *((p,) + args if p is not None else args))
    return out.astype(np.int64)


def mul(a, b, q1: TensorQ, q2: TensorQ, q_out: TensorQ, activation: str | None = None) -> np.ndarray:
    p = CMulParams()
    _call("stock MUL", "fxpq_stock_mul_prepare", _q(q1), _q(q2), _q(q_out), _act(activation), p)
    return _binary("stock MUL", "fxpq_stock_mul", p, a, b, q1.dtype)


def add(a, b, q1: TensorQ, q2: TensorQ, q_out: TensorQ, activation: str | None = None,
        subtract: bool = False) -> np.ndarray:
    p = CAddParams()
    op = "stock SUB" if subtract else "stock ADD"
    _call(op, "fxpq_stock_add_prepare", _q(q1), _q(q2), _q(q_out), _act(activation), int(subtract), p)
    return _binary(op, "fxpq_stock_add", p, a, b, q1.dtype)


def _unary(op: str, prepare: str, run: str, params, x, q_in: TensorQ, q_out: TensorQ) -> np.ndarray:
    _call(op, prepare, _q(q_in), _q(q_out), params)
    xs = _store(x, "int8")
    out = np.empty(xs.shape, dtype=np.int8)
    _call(op, run, params, xs.size, _ptr(xs), _ptr(out))
    return out.astype(np.int64)


def logistic(x, q_in: TensorQ, q_out: TensorQ) -> np.ndarray:
    return _unary("stock LOGISTIC", "fxpq_stock_logistic_prepare", "fxpq_stock_logistic_s8", CSigmoidParams(),
                  x, q_in, q_out)


def tanh(x, q_in: TensorQ, q_out: TensorQ) -> np.ndarray:
    return _unary("stock TANH", "fxpq_stock_tanh_prepare", "fxpq_stock_tanh_s8", CSigmoidParams(), x, q_in, q_out)


def hard_swish(x, q_in: TensorQ, q_out: TensorQ) -> np.ndarray:
    return _unary("stock HARD_SWISH", "fxpq_stock_hard_swish_prepare", "fxpq_stock_hard_swish_s8",
                  CHardSwishParams(), x, q_in, q_out)


def elu(x, q_in: TensorQ, q_out: TensorQ) -> np.ndarray:
    return _unary("stock ELU", "fxpq_stock_elu_prepare", "fxpq_stock_elu_s8", CEluParams(), x, q_in, q_out)


def _max_min(is_max: bool, a, b, q1: TensorQ, q2: TensorQ, q_out: TensorQ) -> np.ndarray:
    """The C kernel compares stored values; the shared quantization is checked in Python."""
    op = "MAXIMUM" if is_max else "MINIMUM"
    check_same_quant((q1, q2, q_out), op, ("int8", "int16"))
    size = 2 if q1.dtype == "int16" else 1
    a_s, b_s = _store(a, q1.dtype), _store(b, q1.dtype)
    try:
        shape = np.broadcast_shapes(a_s.shape, b_s.shape)
    except ValueError:  # the C kernel must refuse these shapes itself (FXPQ_ERR_BAD_DIMS)
        shape = (max(a_s.size, b_s.size),)
    out = np.empty(shape, dtype=_NP[q1.dtype])
    _call(f"stock {op}", "fxpq_stock_max_min", int(is_max), size, _shape(a_s.shape), _ptr(a_s), _shape(b_s.shape),
          _ptr(b_s), _ptr(out))
    return out.astype(np.int64)


def maximum(a, b, q1: TensorQ, q2: TensorQ, q_out: TensorQ) -> np.ndarray:
    return _max_min(True, a, b, q1, q2, q_out)


def minimum(a, b, q1: TensorQ, q2: TensorQ, q_out: TensorQ) -> np.ndarray:
    return _max_min(False, a, b, q1, q2, q_out)


def mean(x, axes: Sequence[int], q_in: TensorQ, q_out: TensorQ, keep_dims: bool = True) -> np.ndarray:
    xs = _store(x, q_in.dtype)
    axes_t = sorted({int(a) % xs.ndim for a in axes})
    count = int(np.prod([xs.shape[a] for a in axes_t])) if axes_t else 1
    p = CMeanParams()
    _call("stock MEAN", "fxpq_stock_mean_prepare", _q(q_in), _q(q_out), count, p)
    out_shape = tuple(1 if d in axes_t else n for d, n in enumerate(xs.shape)) if keep_dims else \
        tuple(n for d, n in enumerate(xs.shape) if d not in axes_t)
    out = np.empty(out_shape, dtype=_NP[q_out.dtype])
    mask = sum(1 << a for a in axes_t)
    _call("stock MEAN", "fxpq_stock_mean", p, _shape(xs.shape), mask, _ptr(xs), _ptr(out))
    return out.astype(np.int64)


def _element_size(q_in: TensorQ, q_out: TensorQ, op: str) -> int:
    check_same_quant((q_in, q_out), op, ("int8", "int16"))
    return 2 if q_in.dtype == "int16" else 1


def resize_nearest_neighbor(x, size: tuple[int, int], q_in: TensorQ, q_out: TensorQ,
                            align_corners: bool = False, half_pixel_centers: bool = False) -> np.ndarray:
    es = _element_size(q_in, q_out, "RESIZE_NEAREST_NEIGHBOR")
    xs = _store(x, q_in.dtype)
    oh, ow = (int(v) for v in size)
    out = np.empty((xs.shape[0], max(oh, 0), max(ow, 0), xs.shape[-1]) if xs.ndim == 4 else (0,),
                   dtype=_NP[q_in.dtype])
    _call("stock RESIZE_NEAREST_NEIGHBOR", "fxpq_stock_resize_nearest_neighbor", _shape(xs.shape), oh, ow,
          int(align_corners), int(half_pixel_centers), es, _ptr(xs), _ptr(out))
    return out.astype(np.int64)


def transpose(x, perm: Sequence[int], q_in: TensorQ, q_out: TensorQ) -> np.ndarray:
    es = _element_size(q_in, q_out, "TRANSPOSE")
    xs = _store(x, q_in.dtype)
    if len(perm) != xs.ndim:
        raise ValueError(f"TRANSPOSE: perm {list(perm)} does not match rank {xs.ndim}")
    c_perm = (c_i32 * len(perm))(*[int(p) for p in perm])
    out_shape = tuple(xs.shape[int(p)] if 0 <= int(p) < xs.ndim else 1 for p in perm)
    out = np.empty(out_shape, dtype=_NP[q_in.dtype])
    _call("stock TRANSPOSE", "fxpq_stock_transpose", _shape(xs.shape), c_perm, es, _ptr(xs), _ptr(out))
    return out.astype(np.int64)


def concatenation(xs: Sequence[np.ndarray], axis: int, qs_in: Sequence[TensorQ], q_out: TensorQ) -> np.ndarray:
    check_same_quant(list(qs_in) + [q_out], "CONCATENATION", ("int8", "int16"))
    arrays = [_store(v, q_out.dtype) for v in xs]
    rank = arrays[0].ndim
    ax = axis % rank
    outer = int(np.prod(arrays[0].shape[:ax]))
    inner = int(np.prod(arrays[0].shape[ax + 1:]))
    for a in arrays:
        if a.ndim != rank or a.shape[:ax] != arrays[0].shape[:ax] or a.shape[ax + 1:] != arrays[0].shape[ax + 1:]:
            raise ValueError("CONCATENATION: inputs differ outside the axis")
    sizes = (c_i32 * len(arrays))(*[a.shape[ax] for a in arrays])
    ptrs = (_vp * len(arrays))(*[_ptr(a) for a in arrays])
    shape = list(arrays[0].shape)
    shape[ax] = sum(a.shape[ax] for a in arrays)
    out = np.empty(shape, dtype=_NP[q_out.dtype])
    _call("stock CONCATENATION", "fxpq_stock_concatenation", len(arrays), ptrs, sizes, outer, inner,
          2 if q_out.dtype == "int16" else 1, _ptr(out))
    return out.astype(np.int64)
