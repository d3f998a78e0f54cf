"""numpy model of TFLM's int8 reference kernels, for int8-builtin files (bit-exact with TFLM).

Stock kernels requantize with a fixed-point multiplier (QuantizeMultiplier +
MultiplyByQuantizedMultiplier), not with our shift rule. With power-of-two scales the multiplier
is always 2^30 and only the shift varies, but the rounding is TFLM's: this module reproduces it
op by op. SINGLE_ROUNDING selects which of TFLite's two MultiplyByQuantizedMultiplier variants
the tflite-micro build uses (measured in tests/test_export_tflm.py).
"""

from __future__ import annotations

import math

import numpy as np

from ..integer_graph import IntegerGraph, Node
from ..integer_graph.ops import _patches

SINGLE_ROUNDING = False
INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1


def quantize_multiplier(real: float) -> tuple[int, int]:
    """TFLite's QuantizeMultiplier: real = m * 2^(shift - 31), m in [2^30, 2^31)."""
    if real == 0.0:
        return 0, 0
    q, shift = math.frexp(real)
    q_fixed = round(q * (1 << 31))  # q is 0.5 for powers of two: exact
    if q_fixed == 1 << 31:
        q_fixed //= 2
        shift += 1
    if shift < -31:
        return 0, 0
    if SINGLE_ROUNDING and shift > 30:
        return (1 << 31) - 1, 30
    return q_fixed, shift


def _wrap32(v: np.ndarray) -> np.ndarray:
    return ((v.astype(np.int64) + 2**31) % 2**32) - 2**31


def _c_div(a: np.ndarray, b: int) -> np.ndarray:
    """C integer division (truncates toward zero)."""
    q = np.abs(a) // abs(b)
    return np.where((a < 0) != (b < 0), -q, q)


def srdhm(a: np.ndarray, b: int) -> np.ndarray:
    """gemmlowp SaturatingRoundingDoublingHighMul on int32 values."""
    a = np.asarray(a, dtype=np.int64)
    ab = a * np.int64(b)
    nudge = np.where(ab >= 0, 1 << 30, 1 - (1 << 30))
    res = _c_div(ab + nudge, 1 << 31)
    return np.where((a == INT32_MIN) & (b == INT32_MIN), INT32_MAX, res)


def rdbpot(x: np.ndarray, exponent: int) -> np.ndarray:
    """gemmlowp RoundingDivideByPOT: round half away from zero."""
    x = np.asarray(x, dtype=np.int64)
    mask = (1 << exponent) - 1
    remainder = x & mask
    threshold = (mask >> 1) + (x < 0)
    return (x >> exponent) + (remainder > threshold)


def mbqm(x: np.ndarray, m: int, shift: int) -> np.ndarray:
    """MultiplyByQuantizedMultiplier(int32 x, m, shift)."""
    x = np.asarray(x, dtype=np.int64)
    if SINGLE_ROUNDING:
        total = 31 - shift
        return (x * m + (1 << (total - 1))) >> total
    left, right = max(shift, 0), max(-shift, 0)
    return rdbpot(srdhm(_wrap32(x * (1 << left)), m), right)


def mbqm_smaller_than_one(x: np.ndarray, m: int, shift: int) -> np.ndarray:
    """MultiplyByQuantizedMultiplierSmallerThanOneExp (add's rescaling)."""
    if SINGLE_ROUNDING:
        return mbqm(x, m, shift)
    return rdbpot(srdhm(x, m), -shift)


def activation_range(frac: int, activation: str | None) -> tuple[int, int]:
    """CalculateActivationRangeQuantized for int8, zero point 0, scale 2^-frac."""
    lo, hi = -128, 127
    if activation in ("relu", "relu6"):
        lo = 0
    if activation == "relu6":
        v = math.ldexp(6.0, frac)
        hi = min(hi, int(math.floor(v + 0.5)))  # TfLiteRound: half away from zero (v > 0)
    return lo, hi


def _per_channel_requant(acc: np.ndarray, x_frac: int, w_frac: np.ndarray, out_frac: int) -> np.ndarray:
    out = np.empty_like(acc)
    for o, wf in enumerate(np.asarray(w_frac).tolist()):
        m, s = quantize_multiplier(math.ldexp(1.0, out_frac - x_frac - wf))
        out[..., o] = mbqm(acc[..., o], m, s)
    return out


def _weighted(graph: IntegerGraph, node: Node, x: np.ndarray) -> np.ndarray:
    t = graph.tensors
    a = node.attrs
    xf, of = t[node.inputs[0]].fmt.frac, t[node.output].fmt.frac
    w = np.asarray(node.weights, dtype=np.int64)
    if node.op == "fully_connected":
        acc = x.reshape(x.shape[0], -1) @ w.T
    else:
        kh, kw = w.shape[1:3]
        p = _patches(x, kh, kw, tuple(a["stride"]), tuple(a.get("dilation", (1, 1))), a["padding"], 0)
        if node.op == "conv2d":
            acc = np.einsum("nyxijc,oijc->nyxo", p, w)
        else:
            c, mult = x.shape[-1], a["depth_multiplier"]
            acc = np.einsum("nyxijc,ijcm->nyxcm", p, w.reshape(kh, kw, c, mult))
            acc = acc.reshape(acc.shape[:3] + (c * mult,))
    acc = _wrap32(acc + np.asarray(node.bias, dtype=np.int64))
    y = _per_channel_requant(acc, xf, node.weight_frac, of)
    lo, hi = activation_range(of, a.get("activation"))
    return np.clip(y, lo, hi)


def _add(graph: IntegerGraph, node: Node, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    t = graph.tensors
    fa, fb, fo = t[node.inputs[0]].fmt.frac, t[node.inputs[1]].fmt.frac, t[node.output].fmt.frac
    left_shift = 20
    sa, sb, so = math.ldexp(1.0, -fa), math.ldexp(1.0, -fb), math.ldexp(1.0, -fo)
    twice_max = 2 * max(sa, sb)
    ma, sha = quantize_multiplier(sa / twice_max)
    mb, shb = quantize_multiplier(sb / twice_max)
    mo, sho = quantize_multiplier(twice_max / ((1 << left_shift) * so))
    xa = mbqm_smaller_than_one(a * (1 << left_shift), ma, sha)
    xb = mbqm_smaller_than_one(b * (1 << left_shift), mb, shb)
    y = mbqm_smaller_than_one(_wrap32(xa + xb), mo, sho)
    lo, hi = activation_range(fo, node.attrs.get("activation"))
    return np.clip(y, lo, hi)


def _pool(graph: IntegerGraph, node: Node, x: np.ndarray) -> np.ndarray:
    a = node.attrs
    of = graph.tensors[node.output].fmt.frac
    lo, hi = activation_range(of, a.get("activation"))
    if node.op == "max_pool2d":
        p = _patches(x, a["pool"][0], a["pool"][1], tuple(a["stride"]), (1, 1), a["padding"], np.iinfo(np.int64).min)
        return np.clip(p.max(axis=(3, 4)), lo, hi)
    p = _patches(x, a["pool"][0], a["pool"][1], tuple(a["stride"]), (1, 1), a["padding"], 0)
    ones = np.ones((1,) + x.shape[1:3] + (1,), dtype=np.int64)
    n = _patches(ones, a["pool"][0], a["pool"][1], tuple(a["stride"]), (1, 1), a["padding"], 0).sum(axis=(3, 4))
    acc = p.sum(axis=(3, 4))
    half = n // 2
    y = np.where(acc > 0, _c_div_arr(acc + half, n), _c_div_arr(acc - half, n))
    return np.clip(y, lo, hi)


def _c_div_arr(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    q = np.abs(a) // np.abs(b)
    return np.where((a < 0) != (b < 0), -q, q)


def _quantize(graph: IntegerGraph, node: Node, x: np.ndarray) -> np.ndarray:
    of = graph.tensors[node.output].fmt.frac
    if graph.tensors[node.inputs[0]].fmt is None:
        v = (np.asarray(x, dtype=np.float32) / np.float32(math.ldexp(1.0, -of))).astype(np.float64)
        r = np.sign(v) * np.floor(np.abs(v) + 0.5)  # TfLiteRound: half away from zero
        return np.clip(r, -128, 127).astype(np.int64)
    inf = graph.tensors[node.inputs[0]].fmt.frac
    m, s = quantize_multiplier(math.ldexp(1.0, of - inf))
    if m == 1 << 30 and s == 1:
        return np.clip(x, -128, 127)
    return np.clip(mbqm(x, m, s), -128, 127)


def run_stock(graph: IntegerGraph, x: np.ndarray) -> list[np.ndarray]:
    """Raw int8 outputs (as int64) of a stock graph for a batch."""
    values = {graph.input: np.asarray(x)}
    for node in graph.nodes:
        ins = [np.asarray(values[i]) if graph.tensors[i].fmt is None else np.asarray(values[i], dtype=np.int64)
               for i in node.inputs]
        if node.op in ("conv2d", "depthwise_conv2d", "fully_connected"):
            y = _weighted(graph, node, ins[0])
        elif node.op == "add":
            y = _add(graph, node, ins[0], ins[1])
        elif node.op in ("max_pool2d", "average_pool2d"):
            y = _pool(graph, node, ins[0])
        elif node.op in ("quantize", "requantize"):
            y = _quantize(graph, node, ins[0])
        elif node.op == "reshape":
            y = ins[0].reshape((ins[0].shape[0],) + tuple(graph.tensors[node.output].shape))
        else:
            raise ValueError(f"stock int8 has no op {node.op!r} (node {node.name!r})")
        values[node.output] = y
    return [values[o] for o in graph.outputs]
