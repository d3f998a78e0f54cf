"""The numpy integer reference: one function per op, exactly as docs/numerics.md says.

This is the source of truth that the C kernels are tested against and that both the Keras side
(IntegerGraph) and the reference interpreter of exported files execute. Inputs and outputs are
int64 arrays holding the integers of their formats.
"""

from __future__ import annotations

import math

import numpy as np

from ..formats import Format, apply_activation, dequantize, quantize, requantize, saturate

__all__ = [
    "conv_output_size",
    "full_windows",
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
    "floor_div",
]


def conv_output_size(size: int, kernel: int, stride: int, dilation: int, padding: str) -> tuple[int, int, int]:
    """(output size, padding before, padding after), TensorFlow's 'same'/'valid' rules."""
    eff = (kernel - 1) * dilation + 1
    if padding == "same":
        out = -(-size // stride)
        total = max((out - 1) * stride + eff - size, 0)
        return out, total // 2, total - total // 2
    if padding == "valid":
        out = (size - eff) // stride + 1
        if out <= 0:
            raise ValueError(f"window of {eff} does not fit input size {size} with 'valid' padding")
        return out, 0, 0
    raise ValueError(f"padding must be 'same' or 'valid', got {padding!r}")


def full_windows(size: int, kernel: int, stride: int, dilation: int, padding: str) -> int:
    """Output positions on one axis whose window lies wholly inside the input (no padded tap): the
    kernels' interior loops take those, and clip the window of the others (fxpq_dsp.c fxpq_dw_interior)."""
    out, before, _ = conv_output_size(size, kernel, stride, dilation, padding)
    eff = (kernel - 1) * dilation + 1
    return sum(1 for o in range(out) if 0 <= o * stride - before <= size - eff)


def _patches(x: np.ndarray, kh: int, kw: int, stride, dilation, padding: str, fill: int):
    """[N, OH, OW, kh, kw, C] windows of x, padded with `fill`."""
    n, h, w, c = x.shape
    oh, pt, pb = conv_output_size(h, kh, stride[0], dilation[0], padding)
    ow, pl, pr = conv_output_size(w, kw, stride[1], dilation[1], padding)
    if kh == kw == 1 and oh == h and ow == w and tuple(stride) == (1, 1):
        return x[:, :, :, None, None, :]  # a 1x1 window at every position: x itself, no copy
    xp = np.pad(x, ((0, 0), (pt, pb), (pl, pr), (0, 0)), constant_values=fill)
    rows = (np.arange(oh) * stride[0])[:, None] + np.arange(kh)[None, :] * dilation[0]  # [oh, kh]
    cols = (np.arange(ow) * stride[1])[:, None] + np.arange(kw)[None, :] * dilation[1]  # [ow, kw]
    return xp[:, rows[:, None, :, None], cols[None, :, None, :], :]


def _taps(x: np.ndarray, kh: int, kw: int, stride, dilation, padding: str):
    """(i, j, [N, OH, OW, C] view of the zero-padded x that filter tap (i, j) reads), tap by tap: the
    windows of `_patches` without copying them."""
    n, h, w, c = x.shape
    oh, pt, pb = conv_output_size(h, kh, stride[0], dilation[0], padding)
    ow, pl, pr = conv_output_size(w, kw, stride[1], dilation[1], padding)
    xp = np.pad(x, ((0, 0), (pt, pb), (pl, pr), (0, 0))) if pt or pb or pl or pr else x
    for i in range(kh):
        rows = slice(i * dilation[0], i * dilation[0] + (oh - 1) * stride[0] + 1, stride[0])
        for j in range(kw):
            cols = slice(j * dilation[1], j * dilation[1] + (ow - 1) * stride[1] + 1, stride[1])
            yield i, j, xp[:, rows, cols, :]


def _dot(a: np.ndarray, b: np.ndarray, bound_bits: int, subscripts: str) -> np.ndarray:
    """Exact integer contraction; float64 BLAS when every partial sum stays below 2^53."""
    if bound_bits <= 52:
        return np.einsum(subscripts, a.astype(np.float64, copy=False), b.astype(np.float64, copy=False),
                         optimize=True).astype(np.int64)
    return np.einsum(subscripts, a.astype(np.int64), b.astype(np.int64), optimize=True)


def _bound_bits(x: np.ndarray, w: np.ndarray, terms: int) -> int:
    mx = int(np.abs(x).max(initial=0))
    mw = int(np.abs(w).max(initial=0))
    return mx.bit_length() + mw.bit_length() + math.ceil(math.log2(max(terms, 1))) + 1


def _finish(acc: np.ndarray, acc_frac, bias, bias_frac, out_fmt: Format, activation) -> np.ndarray:
    """Bias alignment, rescale, saturate and fused activation: shared by conv, depthwise, FC."""
    acc_frac = np.asarray(acc_frac, dtype=np.int64)
    if bias is not None:
        shift = acc_frac - int(bias_frac)
        if np.any(shift < 0) or np.any(shift > 30):
            raise ValueError(f"bias frac {bias_frac} must satisfy 0 <= frac_acc - frac_b <= 30 (frac_acc {acc_frac})")
        acc = acc + (np.asarray(bias, dtype=np.int64) << shift)
    return apply_activation(requantize(acc, acc_frac, out_fmt), out_fmt, activation)


def conv2d(x, w, bias, *, x_frac: int, w_frac, bias_frac: int | None, out_fmt: Format,
           stride=(1, 1), padding: str = "valid", dilation=(1, 1), activation: str | None = None) -> np.ndarray:
    """x [N,H,W,C], w [O,kh,kw,C] (OHWI), bias [O]; w_frac scalar or [O] (per channel)."""
    x = np.asarray(x, dtype=np.int64)
    w = np.asarray(w, dtype=np.int64)
    o, kh, kw, c = w.shape
    if x.shape[-1] != c:
        raise ValueError(f"conv2d: input has {x.shape[-1]} channels, filter expects {c}")
    bound = _bound_bits(x, w, kh * kw * c)
    if bound <= 52:  # exact in float64 BLAS (any order of the sums): one matrix product on float64 windows
        windows = _patches(x.astype(np.float64), kh, kw, stride, dilation, padding, 0)  # (1x1, stride 1: a view)
        acc = windows.reshape(-1, kh * kw * c) @ w.reshape(o, -1).T.astype(np.float64)
        acc = acc.astype(np.int64).reshape(windows.shape[:3] + (o,))
    else:
        acc = _dot(_patches(x, kh, kw, stride, dilation, padding, 0), w, bound, "nyxijc,oijc->nyxo")
    return _finish(acc, np.asarray(x_frac) + np.asarray(w_frac), bias, bias_frac, out_fmt, activation)


def depthwise_conv2d(x, w, bias, *, x_frac: int, w_frac, bias_frac: int | None, out_fmt: Format,
                     stride=(1, 1), padding: str = "valid", dilation=(1, 1), depth_multiplier: int = 1,
                     activation: str | None = None) -> np.ndarray:
    """x [N,H,W,C], w [1,kh,kw,C*M]; output channel c*M+m reads input channel c."""
    x = np.asarray(x, dtype=np.int64)
    w = np.asarray(w, dtype=np.int64)
    _, kh, kw, cm = w.shape
    c = x.shape[-1]
    if cm != c * depth_multiplier:
        raise ValueError(f"depthwise: filter has {cm} channels, expected {c} * {depth_multiplier}")
    bound = _bound_bits(x, w, kh * kw)
    wr = w.reshape(kh, kw, c, depth_multiplier)
    if bound <= 52:  # exact in float64 (any order of the sums): a multiply-add per filter tap, no im2col
        wf = wr.astype(np.float64)
        acc = None
        for i, j, win in _taps(x.astype(np.float64), kh, kw, stride, dilation, padding):
            term = win[..., None] * wf[i, j]
            if acc is None:
                acc = term
            else:
                acc += term
        acc = acc.astype(np.int64)
    else:
        acc = _dot(_patches(x, kh, kw, stride, dilation, padding, 0), wr, bound, "nyxijc,ijcm->nyxcm")
    acc = acc.reshape(acc.shape[:3] + (cm,))
    return _finish(acc, np.asarray(x_frac) + np.asarray(w_frac), bias, bias_frac, out_fmt, activation)


def fully_connected(x, w, bias, *, x_frac: int, w_frac, bias_frac: int | None, out_fmt: Format,
                    activation: str | None = None) -> np.ndarray:
    """x [N, in], w [out, in] (TFLite layout)."""
    x = np.asarray(x, dtype=np.int64)
    w = np.asarray(w, dtype=np.int64)
    if x.shape[-1] != w.shape[1]:
        raise ValueError(f"fully_connected: input has {x.shape[-1]} features, weights expect {w.shape[1]}")
    acc = _dot(x, w, _bound_bits(x, w, w.shape[1]), "ni,oi->no")
    return _finish(acc, np.asarray(x_frac) + np.asarray(w_frac), bias, bias_frac, out_fmt, activation)


def add(a, b, *, a_frac: int, b_frac: int, out_fmt: Format, activation: str | None = None) -> np.ndarray:
    """Align both to the larger frac by left shifts, add, rescale, saturate (section 5)."""
    if abs(a_frac - b_frac) > 32:
        raise ValueError(f"add: |frac_a - frac_b| = {abs(a_frac - b_frac)} exceeds 32")
    f = max(a_frac, b_frac)
    s = (np.asarray(a, dtype=np.int64) << (f - a_frac)) + (np.asarray(b, dtype=np.int64) << (f - b_frac))
    return apply_activation(requantize(s, f, out_fmt), out_fmt, activation)


def max_pool2d(x, *, pool=(2, 2), stride=(2, 2), padding: str = "valid", in_frac: int, out_fmt: Format,
               activation: str | None = None) -> np.ndarray:
    x = np.asarray(x, dtype=np.int64)
    sentinel = np.iinfo(np.int64).min
    p = _patches(x, pool[0], pool[1], stride, (1, 1), padding, sentinel)
    y = p.max(axis=(3, 4))
    return apply_activation(requantize(y, in_frac, out_fmt), out_fmt, activation)


def floor_div(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Division rounding toward minus infinity (numpy's //), spelled out for the C side."""
    return np.floor_divide(a, b)


def _average(total: np.ndarray, count: np.ndarray, in_frac: int, out_fmt: Format, activation) -> np.ndarray:
    d = out_fmt.frac - in_frac
    if abs(d) > 24:
        raise ValueError(f"average pool: |frac_out - frac_in| = {abs(d)} exceeds 24")
    total = np.asarray(total, dtype=np.int64)
    count = np.asarray(count, dtype=np.int64)
    if d >= 0:  # split off the whole part: total << d alone can exceed int64 (numerics.md 7)
        whole = floor_div(total, count)
        rest = total - whole * count
        y = (whole << d) + floor_div((rest << (d + 1)) + count, 2 * count)
    else:
        den = count << (-d)
        y = floor_div(2 * total + den, 2 * den)
    return apply_activation(saturate(y, out_fmt), out_fmt, activation)


def average_pool2d(x, *, pool=(2, 2), stride=(2, 2), padding: str = "valid", in_frac: int, out_fmt: Format,
                   activation: str | None = None) -> np.ndarray:
    """Mean over the valid (non-padded) inputs of each window, numerics.md section 7."""
    x = np.asarray(x, dtype=np.int64)
    p = _patches(x, pool[0], pool[1], stride, (1, 1), padding, 0)
    ones = np.ones((1,) + x.shape[1:3] + (1,), dtype=np.int64)
    n = _patches(ones, pool[0], pool[1], stride, (1, 1), padding, 0).sum(axis=(3, 4))
    return _average(p.sum(axis=(3, 4)), n, in_frac, out_fmt, activation)


def global_average_pool2d(x, *, in_frac: int, out_fmt: Format, keepdims: bool = False) -> np.ndarray:
    x = np.asarray(x, dtype=np.int64)
    n = x.shape[1] * x.shape[2]
    y = _average(x.sum(axis=(1, 2), keepdims=keepdims), np.int64(n), in_frac, out_fmt, None)
    return y


def quantize_input(x, out_fmt: Format) -> np.ndarray:
    """Float -> integer (QUANTIZE)."""
    return quantize(np.asarray(x, dtype=np.float32), out_fmt)


def dequantize_output(q, frac: int) -> np.ndarray:
    return dequantize(q, frac)


def requantize_op(x, *, in_frac: int, out_fmt: Format, activation: str | None = None) -> np.ndarray:
    """Integer -> integer format change (QUANTIZE between formats, standalone ReLU/ReLU6)."""
    return apply_activation(requantize(x, in_frac, out_fmt), out_fmt, activation)


def zero_pad2d(x, *, pads, in_frac: int, out_fmt: Format) -> np.ndarray:
    """Zero padding of [N,H,W,C] by pads ((top, bottom), (left, right)), numerics.md section 8.

    The input is rescaled to the output format first (a copy when the formats are equal, as the
    converter writes them); the padded positions are 0, which every format holds.
    """
    (top, bottom), (left, right) = pads
    if min(top, bottom, left, right) < 0:
        raise ValueError(f"zero padding must be >= 0, got {pads}")
    y = requantize(np.asarray(x, dtype=np.int64), in_frac, out_fmt)
    return np.pad(y, ((0, 0), (top, bottom), (left, right), (0, 0)))


def leaky_relu(x, *, alpha_shift: int, in_frac: int, out_fmt: Format) -> np.ndarray:
    """LeakyReLU with slope 2^-alpha_shift, numerics.md section 8: a negative x is read at frac
    in_frac + alpha_shift (x * 2^-alpha_shift exactly), then the one rescale rule to the output."""
    if not 1 <= alpha_shift <= 31:
        raise ValueError(f"leaky_relu: alpha_shift must be in 1..31, got {alpha_shift}")
    x = np.asarray(x, dtype=np.int64)
    return np.where(x >= 0, requantize(x, in_frac, out_fmt), requantize(x, in_frac + alpha_shift, out_fmt))


def concatenate(a, b, *, a_frac: int, b_frac: int, out_fmt: Format) -> np.ndarray:
    """a and b joined on the last axis, each brought to the output format by the one rescale
    rule (numerics.md section 8); all axes but the last must match."""
    a, b = np.asarray(a, dtype=np.int64), np.asarray(b, dtype=np.int64)
    if a.shape[:-1] != b.shape[:-1]:
        raise ValueError(f"concatenate: shapes {a.shape} and {b.shape} differ before the last axis")
    return np.concatenate([requantize(a, a_frac, out_fmt), requantize(b, b_frac, out_fmt)], axis=-1)
