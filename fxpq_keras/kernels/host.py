"""ctypes bridge to the C kernels built for the host (``tflm_kernels/build/host/libfxpq_kernels.so``).

The op functions have the signatures of :mod:`fxpq_keras.integer_graph.ops` and return the same
int64 arrays, but compute with the C kernels. The C side needs two facts the numpy signatures do
not carry: the *format* (bits, signed) of integer inputs, which picks the storage type and the
accumulator width, and the weights' bit width, which picks the packing. Both can be given with
the extra keyword-only arguments (``x_fmt``, ``w_bits``, ``a_fmt``, ``b_fmt``, ``in_fmt``);
otherwise the narrowest format that holds the given integers is used (minimum 2 bits, signed
when any value is negative), which gives the same result since every path is exact.

The shared library is built with ``make -C tflm_kernels host`` on first use (make is a no-op
when it is up to date). ``FXPQ_KERNELS_LIB=/path/to/lib.so`` uses a prebuilt library instead.
"""

from __future__ import annotations

import ctypes
import threading
from pathlib import Path

import numpy as np

from ..flatbuffer.packing import depthwise_rows, pack_weights
from ..formats import MAX_BITS, MIN_BITS, Format
from ..integer_graph.ops import conv_output_size
from ._build import HOST_LOCK, KERNELS_DIR, make_or_raise, open_library

__all__ = [
    "KERNELS_DIR",
    "KernelError",
    "build_host_library",
    "load_library",
    "conv2d",
    "depthwise_conv2d",
    "fully_connected",
    "add",
    "max_pool2d",
    "average_pool2d",
    "global_average_pool2d",
    "quantize_input",
    "dequantize_output",
    "requantize_op",
    "zero_pad2d",
    "leaky_relu",
    "concatenate",
    "infer_format",
    "STATUS",
]

LIB_PATH = KERNELS_DIR / "build" / "host" / "libfxpq_kernels.so"

#: fxpq_status values (include/fxpq_kernels.h).
STATUS = {
    0: "FXPQ_OK",
    -1: "FXPQ_ERR_NULL_POINTER",
    -2: "FXPQ_ERR_BAD_FORMAT",
    -3: "FXPQ_ERR_BAD_DIMS",
    -4: "FXPQ_ERR_BAD_PARAM",
    -5: "FXPQ_ERR_BAD_PADDING",
    -6: "FXPQ_ERR_SCRATCH_TOO_SMALL",
    -7: "FXPQ_ERR_BAD_BIAS_FRAC",
    -8: "FXPQ_ERR_MISALIGNED",
    -9: "FXPQ_ERR_NOT_BUILT",
}
STATUS_CODES = {name: code for code, name in STATUS.items()}

ACTIVATIONS = {None: 0, "linear": 0, "none": 0, "relu": 1, "relu6": 2}
PADDINGS = {"valid": 0, "same": 1}


class KernelError(ValueError):
    """A C kernel returned an error status."""

    def __init__(self, op: str, status: int, detail: str = "") -> None:
        self.op = op
        self.status = int(status)
        self.status_name = STATUS.get(self.status, f"status {status}")
        text = f"{op}: C kernel returned {self.status_name}"
        if detail:
            text += f" ({detail})"
        super().__init__(text)


# ------------------------------------------------------------------ ctypes structures -------
c_i32 = ctypes.c_int32


class CFormat(ctypes.Structure):
    _fields_ = [("bits", c_i32), ("frac", c_i32), ("is_signed", c_i32)]


class CDims(ctypes.Structure):
    _fields_ = [("n", c_i32), ("h", c_i32), ("w", c_i32), ("c", c_i32)]


class CTile(ctypes.Structure):
    _fields_ = [("h", c_i32), ("w", c_i32)]


class CContext(ctypes.Structure):
    _fields_ = [("buf", ctypes.c_void_p), ("size", c_i32)]


class CWeights(ctypes.Structure):
    _fields_ = [("data", ctypes.c_void_p), ("bits", c_i32), ("frac", c_i32),
                ("per_channel_frac", ctypes.c_void_p)]


class CBias(ctypes.Structure):
    _fields_ = [("data", ctypes.c_void_p), ("frac", c_i32)]


class CConvParams(ctypes.Structure):
    _fields_ = [("stride", CTile), ("dilation", CTile), ("padding", ctypes.c_int),
                ("activation", ctypes.c_int)]


class CDwConvParams(ctypes.Structure):
    _fields_ = [("stride", CTile), ("dilation", CTile), ("padding", ctypes.c_int),
                ("activation", ctypes.c_int), ("depth_multiplier", c_i32)]


class CFcParams(ctypes.Structure):
    _fields_ = [("activation", ctypes.c_int)]


class CPoolParams(ctypes.Structure):
    _fields_ = [("filter", CTile), ("stride", CTile), ("padding", ctypes.c_int),
                ("activation", ctypes.c_int)]


class CElementwiseParams(ctypes.Structure):
    _fields_ = [("activation", ctypes.c_int)]


class CLeakyReluParams(ctypes.Structure):
    _fields_ = [("alpha_shift", c_i32)]


class CPadParams(ctypes.Structure):
    _fields_ = [("top", c_i32), ("bottom", c_i32), ("left", c_i32), ("right", c_i32)]


_P = ctypes.POINTER
_vp = ctypes.c_void_p
_SIGNATURES = {
    "fxpq_status_str": (ctypes.c_char_p, [ctypes.c_int]),
    "fxpq_rescale": (ctypes.c_int64, [ctypes.c_int64, c_i32, c_i32]),
    "fxpq_floor_div": (ctypes.c_int64, [ctypes.c_int64, ctypes.c_int64]),
    "fxpq_acc_needs_64": (c_i32, [c_i32, c_i32, c_i32, c_i32]),
    "fxpq_packed_row_size": (c_i32, [c_i32, c_i32]),
    "fxpq_unpack_weights": (ctypes.c_int, [_vp, c_i32, c_i32, _vp]),
    "fxpq_conv2d_get_buffer_size": (c_i32, [_P(CDims)]),
    "fxpq_depthwise_conv2d_get_buffer_size": (c_i32, [_P(CDims)]),
    "fxpq_fully_connected_get_buffer_size": (c_i32, [c_i32]),
    "fxpq_conv2d": (ctypes.c_int, [_P(CContext), _P(CConvParams), _P(CDims), _vp, _P(CFormat),
                                   _P(CDims), _P(CWeights), _P(CBias), _P(CDims), _vp, _P(CFormat)]),
    "fxpq_depthwise_conv2d": (ctypes.c_int, [_P(CContext), _P(CDwConvParams), _P(CDims), _vp,
                                             _P(CFormat), _P(CDims), _P(CWeights), _P(CBias),
                                             _P(CDims), _vp, _P(CFormat)]),
    "fxpq_fully_connected": (ctypes.c_int, [_P(CContext), _P(CFcParams), c_i32, c_i32, c_i32, _vp,
                                            _P(CFormat), _P(CWeights), _P(CBias), _vp, _P(CFormat)]),
    "fxpq_add": (ctypes.c_int, [_P(CElementwiseParams), c_i32, _vp, _P(CFormat), _vp, _P(CFormat),
                                _vp, _P(CFormat)]),
    "fxpq_max_pool2d": (ctypes.c_int, [_P(CPoolParams), _P(CDims), _vp, _P(CFormat), _P(CDims), _vp,
                                       _P(CFormat)]),
    "fxpq_average_pool2d": (ctypes.c_int, [_P(CPoolParams), _P(CDims), _vp, _P(CFormat), _P(CDims),
                                           _vp, _P(CFormat)]),
    "fxpq_global_average_pool2d": (ctypes.c_int, [_P(CDims), _vp, _P(CFormat), _vp, _P(CFormat)]),
    "fxpq_quantize": (ctypes.c_int, [c_i32, _vp, _vp, _P(CFormat)]),
    "fxpq_dequantize": (ctypes.c_int, [c_i32, _vp, _P(CFormat), _vp]),
    "fxpq_requantize": (ctypes.c_int, [_P(CElementwiseParams), c_i32, _vp, _P(CFormat), _vp,
                                       _P(CFormat)]),
    "fxpq_concatenation": (ctypes.c_int, [c_i32, c_i32, _vp, _P(CFormat), c_i32, _vp, _P(CFormat), _vp,
                                          _P(CFormat)]),
    "fxpq_leaky_relu": (ctypes.c_int, [_P(CLeakyReluParams), c_i32, _vp, _P(CFormat), _vp, _P(CFormat)]),
    "fxpq_zero_pad2d": (ctypes.c_int, [_P(CPadParams), _P(CDims), _vp, _P(CFormat), _P(CDims), _vp,
                                       _P(CFormat)]),
}

_lib: ctypes.CDLL | None = None
_lib_lock = threading.Lock()


def build_host_library(timeout: float = 300.0) -> Path:
    """Run ``make -C tflm_kernels host`` (serialized across processes by a file lock)."""
    make_or_raise(["host"], HOST_LOCK, timeout, "the host kernels")
    return LIB_PATH


def _built_host_library() -> Path:
    try:
        return build_host_library()
    except FileNotFoundError:  # no make: use an existing build
        if not LIB_PATH.exists():
            raise
        return LIB_PATH


def load_library() -> ctypes.CDLL:
    """The loaded kernel library (built on first use), with argument types declared."""
    global _lib
    with _lib_lock:
        if _lib is None:
            _lib = open_library("FXPQ_KERNELS_LIB", _built_host_library, _SIGNATURES)
    return _lib


def status_str(status: int) -> str:
    return load_library().fxpq_status_str(int(status)).decode()


def _check(op: str, status: int) -> None:
    if status != 0:
        raise KernelError(op, status, status_str(status))


# ------------------------------------------------------------------ conversions -------------

def _int_array(x, what: str) -> np.ndarray:
    a = np.asarray(x)
    if a.dtype.kind not in "iub":
        if a.dtype.kind == "f" and np.all(np.isfinite(a)) and np.all(a == np.round(a)):
            return a.astype(np.int64)
        raise ValueError(f"{what} must hold integers, got dtype {a.dtype}")
    return a.astype(np.int64)


def _signed_bits(lo: int, hi: int) -> int:
    """Smallest two's-complement width (>= 2) holding [lo, hi]."""
    return max(MIN_BITS, (-lo - 1).bit_length() + 1 if lo < 0 else 0, hi.bit_length() + 1)


def infer_format(q: np.ndarray, frac: int) -> Format:
    """The narrowest format (bits >= 2) holding every integer of ``q``, with ``frac``;
    signed when any value is negative."""
    q = np.asarray(q)
    lo = int(q.min(initial=0))
    hi = int(q.max(initial=0))
    signed = lo < 0
    bits = _signed_bits(lo, hi) if signed else max(MIN_BITS, hi.bit_length())
    if bits > MAX_BITS:
        raise ValueError(f"integers in [{lo}, {hi}] need {bits} bits; at most {MAX_BITS} are supported")
    return Format(bits, int(frac), signed)


def _resolve_format(q: np.ndarray, frac: int, fmt: Format | None, what: str) -> Format:
    if fmt is None:
        return infer_format(q, frac)
    if fmt.frac != int(frac):
        raise ValueError(f"{what}: format {fmt} disagrees with frac {frac}")
    if q.size and (q.min() < fmt.lo or q.max() > fmt.hi):
        raise ValueError(f"{what}: integers in [{q.min()}, {q.max()}] are outside format {fmt}")
    return fmt


def _to_storage(q: np.ndarray, fmt: Format) -> np.ndarray:
    return np.ascontiguousarray(q.astype(fmt.storage_dtype))


def _cfmt(fmt: Format) -> CFormat:
    return CFormat(int(fmt.bits), int(fmt.frac), 1 if fmt.signed else 0)


def _ptr(a: np.ndarray | None):
    return None if a is None else a.ctypes.data_as(ctypes.c_void_p)


def _dims(shape) -> CDims:
    return CDims(*(int(s) for s in shape))


def _activation(activation) -> int:
    if activation not in ACTIVATIONS:
        raise ValueError(f"unsupported fused activation {activation!r}; supported: relu, relu6, linear")
    return ACTIVATIONS[activation]


def _padding(padding: str) -> int:
    if padding not in PADDINGS:
        raise ValueError(f"padding must be 'same' or 'valid', got {padding!r}")
    return PADDINGS[padding]


def _weight_bits(w: np.ndarray, w_bits: int | None) -> int:
    if w_bits is None:
        return _signed_bits(int(w.min(initial=0)), int(w.max(initial=0)))
    return int(w_bits)


class _WeightArgs:
    """Packed weights, per-channel fracs and bias kept alive for one C call."""

    def __init__(self, rows: np.ndarray, w_bits: int, w_frac, bias, bias_frac, out_channels: int):
        self.packed = np.frombuffer(pack_weights(rows, w_bits), dtype=np.uint8).copy()
        wf = np.asarray(w_frac)
        if wf.ndim == 0:
            self.per_channel = None
            frac = int(wf)
        else:
            wf = wf.reshape(-1)
            if wf.size != out_channels:
                raise ValueError(f"w_frac has {wf.size} entries, expected {out_channels} (one per output channel)")
            if np.any(wf < -128) or np.any(wf > 127):
                raise ValueError("per-channel w_frac outside int8")
            self.per_channel = np.ascontiguousarray(wf.astype(np.int8))
            frac = 0
        if bias is not None:
            b = _int_array(bias, "bias").reshape(-1)
            if b.size != out_channels:
                raise ValueError(f"bias has {b.size} entries, expected {out_channels}")
            if b.size and (b.min() < -(2**31) or b.max() > 2**31 - 1):
                raise ValueError("bias outside int32")
            self.bias = np.ascontiguousarray(b.astype(np.int32))
            if bias_frac is None:
                raise ValueError("bias_frac is required with a bias")
            self.cbias = CBias(_ptr(self.bias), int(bias_frac))
        else:
            self.bias = None
            self.cbias = CBias(None, 0)
        self.cweights = CWeights(_ptr(self.packed), int(w_bits), frac, _ptr(self.per_channel))


def _scratch(size: int):
    if size < 0:
        raise ValueError("invalid scratch size")
    buf = np.zeros(max(size // 2 + 1, 1), dtype=np.int16)
    return buf, CContext(_ptr(buf), int(size))


# ------------------------------------------------------------------ ops ---------------------

def conv2d(x, w, bias, *, x_frac: int, w_frac, bias_frac: int | None, out_fmt: Format,
           stride=(1, 1), padding: str = "valid", dilation=(1, 1), activation: str | None = None,
           x_fmt: Format | None = None, w_bits: int | None = None) -> np.ndarray:
    """C ``fxpq_conv2d``; x [N,H,W,C], w [O,kh,kw,C] (OHWI), bias [O] or None."""
    lib = load_library()
    x = _int_array(x, "conv2d input")
    w = _int_array(w, "conv2d weights")
    if x.ndim != 4 or w.ndim != 4:
        raise ValueError(f"conv2d: x must be [N,H,W,C] and w [O,kh,kw,C], got {x.shape} and {w.shape}")
    o, kh, kw, c = w.shape
    if x.shape[-1] != c:
        raise ValueError(f"conv2d: input has {x.shape[-1]} channels, filter expects {c}")
    fmt = _resolve_format(x, x_frac, x_fmt, "conv2d input")
    wa = _WeightArgs(w, _weight_bits(w, w_bits), w_frac, bias, bias_frac, o)
    oh = conv_output_size(x.shape[1], kh, stride[0], dilation[0], padding)[0]
    ow = conv_output_size(x.shape[2], kw, stride[1], dilation[1], padding)[0]
    xin = _to_storage(x, fmt)
    out = np.zeros((x.shape[0], oh, ow, o), dtype=out_fmt.storage_dtype)
    fdims = _dims(w.shape)
    buf, ctx = _scratch(lib.fxpq_conv2d_get_buffer_size(ctypes.byref(fdims)))
    params = CConvParams(CTile(*stride), CTile(*dilation), _padding(padding), _activation(activation))
    st = lib.fxpq_conv2d(ctypes.byref(ctx), ctypes.byref(params), ctypes.byref(_dims(x.shape)), _ptr(xin),
                         ctypes.byref(_cfmt(fmt)), ctypes.byref(fdims), ctypes.byref(wa.cweights),
                         ctypes.byref(wa.cbias), ctypes.byref(_dims(out.shape)), _ptr(out),
                         ctypes.byref(_cfmt(out_fmt)))
    _check("conv2d", st)
    return out.astype(np.int64)


def depthwise_conv2d(x, w, bias, *, x_frac: int, w_frac, bias_frac: int | None, out_fmt: Format,
                     stride=(1, 1), padding: str = "valid", dilation=(1, 1), depth_multiplier: int = 1,
                     activation: str | None = None, x_fmt: Format | None = None,
                     w_bits: int | None = None) -> np.ndarray:
    """C ``fxpq_depthwise_conv2d``; x [N,H,W,C], w [1,kh,kw,C*M]."""
    lib = load_library()
    x = _int_array(x, "depthwise input")
    w = _int_array(w, "depthwise weights")
    if x.ndim != 4 or w.ndim != 4:
        raise ValueError(f"depthwise: x must be [N,H,W,C] and w [1,kh,kw,C*M], got {x.shape} and {w.shape}")
    _, kh, kw, cm = w.shape
    if cm != x.shape[-1] * depth_multiplier:
        raise ValueError(f"depthwise: filter has {cm} channels, expected {x.shape[-1]} * {depth_multiplier}")
    fmt = _resolve_format(x, x_frac, x_fmt, "depthwise input")
    wa = _WeightArgs(depthwise_rows(w), _weight_bits(w, w_bits), w_frac, bias, bias_frac, cm)
    oh = conv_output_size(x.shape[1], kh, stride[0], dilation[0], padding)[0]
    ow = conv_output_size(x.shape[2], kw, stride[1], dilation[1], padding)[0]
    xin = _to_storage(x, fmt)
    out = np.zeros((x.shape[0], oh, ow, cm), dtype=out_fmt.storage_dtype)
    fdims = _dims(w.shape)
    buf, ctx = _scratch(lib.fxpq_depthwise_conv2d_get_buffer_size(ctypes.byref(fdims)))
    params = CDwConvParams(CTile(*stride), CTile(*dilation), _padding(padding), _activation(activation),
                           int(depth_multiplier))
    st = lib.fxpq_depthwise_conv2d(ctypes.byref(ctx), ctypes.byref(params), ctypes.byref(_dims(x.shape)),
                                   _ptr(xin), ctypes.byref(_cfmt(fmt)), ctypes.byref(fdims),
                                   ctypes.byref(wa.cweights), ctypes.byref(wa.cbias),
                                   ctypes.byref(_dims(out.shape)), _ptr(out), ctypes.byref(_cfmt(out_fmt)))
    _check("depthwise_conv2d", st)
    return out.astype(np.int64)


def fully_connected(x, w, bias, *, x_frac: int, w_frac, bias_frac: int | None, out_fmt: Format,
                    activation: str | None = None, x_fmt: Format | None = None,
                    w_bits: int | None = None) -> np.ndarray:
    """C ``fxpq_fully_connected``; x [N, in], w [out, in]."""
    lib = load_library()
    x = _int_array(x, "fully_connected input")
    w = _int_array(w, "fully_connected weights")
    if x.ndim != 2 or w.ndim != 2:
        raise ValueError(f"fully_connected: x must be [N, in] and w [out, in], got {x.shape} and {w.shape}")
    if x.shape[-1] != w.shape[1]:
        raise ValueError(f"fully_connected: input has {x.shape[-1]} features, weights expect {w.shape[1]}")
    fmt = _resolve_format(x, x_frac, x_fmt, "fully_connected input")
    n, k = x.shape
    o = w.shape[0]
    wa = _WeightArgs(w, _weight_bits(w, w_bits), w_frac, bias, bias_frac, o)
    xin = _to_storage(x, fmt)
    out = np.zeros((n, o), dtype=out_fmt.storage_dtype)
    buf, ctx = _scratch(lib.fxpq_fully_connected_get_buffer_size(k))
    params = CFcParams(_activation(activation))
    st = lib.fxpq_fully_connected(ctypes.byref(ctx), ctypes.byref(params), n, k, o, _ptr(xin),
                                  ctypes.byref(_cfmt(fmt)), ctypes.byref(wa.cweights), ctypes.byref(wa.cbias),
                                  _ptr(out), ctypes.byref(_cfmt(out_fmt)))
    _check("fully_connected", st)
    return out.astype(np.int64)


def add(a, b, *, a_frac: int, b_frac: int, out_fmt: Format, activation: str | None = None,
        a_fmt: Format | None = None, b_fmt: Format | None = None) -> np.ndarray:
    """C ``fxpq_add``; a and b of the same shape."""
    lib = load_library()
    a = _int_array(a, "add input a")
    b = _int_array(b, "add input b")
    if a.shape != b.shape:
        raise ValueError(f"add: shapes {a.shape} and {b.shape} differ")
    fa = _resolve_format(a, a_frac, a_fmt, "add input a")
    fb = _resolve_format(b, b_frac, b_fmt, "add input b")
    ain, bin_ = _to_storage(a, fa), _to_storage(b, fb)
    out = np.zeros(a.shape, dtype=out_fmt.storage_dtype)
    params = CElementwiseParams(_activation(activation))
    st = lib.fxpq_add(ctypes.byref(params), a.size, _ptr(ain), ctypes.byref(_cfmt(fa)), _ptr(bin_),
                      ctypes.byref(_cfmt(fb)), _ptr(out), ctypes.byref(_cfmt(out_fmt)))
    _check("add", st)
    return out.astype(np.int64)


def _pool(fn_name: str, x, pool, stride, padding, in_frac, out_fmt, activation, in_fmt):
    lib = load_library()
    x = _int_array(x, fn_name)
    if x.ndim != 4:
        raise ValueError(f"{fn_name}: x must be [N,H,W,C], got {x.shape}")
    fmt = _resolve_format(x, in_frac, in_fmt, fn_name)
    oh = conv_output_size(x.shape[1], pool[0], stride[0], 1, padding)[0]
    ow = conv_output_size(x.shape[2], pool[1], stride[1], 1, padding)[0]
    xin = _to_storage(x, fmt)
    out = np.zeros((x.shape[0], oh, ow, x.shape[3]), dtype=out_fmt.storage_dtype)
    params = CPoolParams(CTile(*pool), CTile(*stride), _padding(padding), _activation(activation))
    st = getattr(lib, "fxpq_" + fn_name)(ctypes.byref(params), ctypes.byref(_dims(x.shape)), _ptr(xin),
                                         ctypes.byref(_cfmt(fmt)), ctypes.byref(_dims(out.shape)), _ptr(out),
                                         ctypes.byref(_cfmt(out_fmt)))
    _check(fn_name, st)
    return out.astype(np.int64)


def max_pool2d(x, *, pool=(2, 2), stride=(2, 2), padding: str = "valid", in_frac: int, out_fmt: Format,
               activation: str | None = None, in_fmt: Format | None = None) -> np.ndarray:
    """C ``fxpq_max_pool2d``."""
    return _pool("max_pool2d", x, pool, stride, padding, in_frac, out_fmt, activation, in_fmt)


def average_pool2d(x, *, pool=(2, 2), stride=(2, 2), padding: str = "valid", in_frac: int, out_fmt: Format,
                   activation: str | None = None, in_fmt: Format | None = None) -> np.ndarray:
    """C ``fxpq_average_pool2d``."""
    return _pool("average_pool2d", x, pool, stride, padding, in_frac, out_fmt, activation, in_fmt)


def global_average_pool2d(x, *, in_frac: int, out_fmt: Format, keepdims: bool = False,
                          in_fmt: Format | None = None) -> np.ndarray:
    """C ``fxpq_global_average_pool2d``; [N,H,W,C] -> [N,C] (or [N,1,1,C] with keepdims)."""
    lib = load_library()
    x = _int_array(x, "global_average_pool2d")
    if x.ndim != 4:
        raise ValueError(f"global_average_pool2d: x must be [N,H,W,C], got {x.shape}")
    fmt = _resolve_format(x, in_frac, in_fmt, "global_average_pool2d")
    xin = _to_storage(x, fmt)
    out = np.zeros((x.shape[0], x.shape[3]), dtype=out_fmt.storage_dtype)
    st = lib.fxpq_global_average_pool2d(ctypes.byref(_dims(x.shape)), _ptr(xin), ctypes.byref(_cfmt(fmt)),
                                        _ptr(out), ctypes.byref(_cfmt(out_fmt)))
    _check("global_average_pool2d", st)
    out = out.astype(np.int64)
    return out.reshape(x.shape[0], 1, 1, x.shape[3]) if keepdims else out


def quantize_input(x, out_fmt: Format, *, nan_ok: bool = False) -> np.ndarray:
    """C ``fxpq_quantize`` (float32 -> integer). NaN raises like the numpy reference unless
    ``nan_ok``, in which case the C rule applies (NaN -> 0)."""
    lib = load_library()
    xf = np.ascontiguousarray(np.asarray(x, dtype=np.float32))
    if not nan_ok and np.isnan(xf).any():
        raise ValueError("cannot quantize NaN")
    out = np.zeros(xf.shape, dtype=out_fmt.storage_dtype)
    st = lib.fxpq_quantize(xf.size, _ptr(xf), _ptr(out), ctypes.byref(_cfmt(out_fmt)))
    _check("quantize", st)
    return out.astype(np.int64)


def dequantize_output(q, frac: int, *, in_fmt: Format | None = None) -> np.ndarray:
    """C ``fxpq_dequantize`` (integer -> float32)."""
    lib = load_library()
    q = _int_array(q, "dequantize input")
    fmt = _resolve_format(q, frac, in_fmt, "dequantize input")
    qin = _to_storage(q, fmt)
    out = np.zeros(q.shape, dtype=np.float32)
    st = lib.fxpq_dequantize(q.size, _ptr(qin), ctypes.byref(_cfmt(fmt)), _ptr(out))
    _check("dequantize", st)
    return out


def requantize_op(x, *, in_frac: int, out_fmt: Format, activation: str | None = None,
                  in_fmt: Format | None = None) -> np.ndarray:
    """C ``fxpq_requantize`` (integer format change, standalone ReLU / ReLU6)."""
    lib = load_library()
    x = _int_array(x, "requantize input")
    fmt = _resolve_format(x, in_frac, in_fmt, "requantize input")
    xin = _to_storage(x, fmt)
    out = np.zeros(x.shape, dtype=out_fmt.storage_dtype)
    params = CElementwiseParams(_activation(activation))
    st = lib.fxpq_requantize(ctypes.byref(params), x.size, _ptr(xin), ctypes.byref(_cfmt(fmt)), _ptr(out),
                             ctypes.byref(_cfmt(out_fmt)))
    _check("requantize", st)
    return out.astype(np.int64)


def zero_pad2d(x, *, pads, in_frac: int, out_fmt: Format, in_fmt: Format | None = None) -> np.ndarray:
    """C ``fxpq_zero_pad2d``; pads ((top, bottom), (left, right)) of [N,H,W,C]."""
    lib = load_library()
    x = _int_array(x, "zero_pad2d")
    if x.ndim != 4:
        raise ValueError(f"zero_pad2d: x must be [N,H,W,C], got {x.shape}")
    fmt = _resolve_format(x, in_frac, in_fmt, "zero_pad2d")
    (top, bottom), (left, right) = pads
    xin = _to_storage(x, fmt)
    out = np.zeros((x.shape[0], x.shape[1] + top + bottom, x.shape[2] + left + right, x.shape[3]),
                   dtype=out_fmt.storage_dtype)
    params = CPadParams(top, bottom, left, right)
    st = lib.fxpq_zero_pad2d(ctypes.byref(params), ctypes.byref(_dims(x.shape)), _ptr(xin), ctypes.byref(_cfmt(fmt)),
                             ctypes.byref(_dims(out.shape)), _ptr(out), ctypes.byref(_cfmt(out_fmt)))
    _check("zero_pad2d", st)
    return out.astype(np.int64)


def leaky_relu(x, *, alpha_shift: int, in_frac: int, out_fmt: Format, in_fmt: Format | None = None) -> np.ndarray:
    """C ``fxpq_leaky_relu`` (slope 2^-alpha_shift)."""
    lib = load_library()
    x = _int_array(x, "leaky_relu input")
    fmt = _resolve_format(x, in_frac, in_fmt, "leaky_relu input")
    xin = _to_storage(x, fmt)
    out = np.zeros(x.shape, dtype=out_fmt.storage_dtype)
    st = lib.fxpq_leaky_relu(ctypes.byref(CLeakyReluParams(alpha_shift)), x.size, _ptr(xin), ctypes.byref(_cfmt(fmt)),
                             _ptr(out), ctypes.byref(_cfmt(out_fmt)))
    _check("leaky_relu", st)
    return out.astype(np.int64)


def concatenate(a, b, *, a_frac: int, b_frac: int, out_fmt: Format, a_fmt: Format | None = None,
                b_fmt: Format | None = None) -> np.ndarray:
    """C ``fxpq_concatenation``: a and b joined on the last axis."""
    lib = load_library()
    a = _int_array(a, "concatenate input a")
    b = _int_array(b, "concatenate input b")
    if a.shape[:-1] != b.shape[:-1]:
        raise ValueError(f"concatenate: shapes {a.shape} and {b.shape} differ before the last axis")
    fa = _resolve_format(a, a_frac, a_fmt, "concatenate input a")
    fb = _resolve_format(b, b_frac, b_fmt, "concatenate input b")
    ain, bin_ = _to_storage(a, fa), _to_storage(b, fb)
    out = np.zeros(a.shape[:-1] + (a.shape[-1] + b.shape[-1],), dtype=out_fmt.storage_dtype)
    outer = int(np.prod(a.shape[:-1], dtype=np.int64))
    st = lib.fxpq_concatenation(outer, a.shape[-1], _ptr(ain), ctypes.byref(_cfmt(fa)), b.shape[-1], _ptr(bin_),
                                ctypes.byref(_cfmt(fb)), _ptr(out), ctypes.byref(_cfmt(out_fmt)))
    _check("concatenate", st)
    return out.astype(np.int64)
