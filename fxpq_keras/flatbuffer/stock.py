"""numpy model of TFLM's int8 reference kernels, for int8-builtin files (bit-exact with TFLM).

Stock kernels requantize with a fixed-point multiplier (QuantizeMultiplier +
MultiplyByQuantizedMultiplier), not with our shift rule. With power-of-two scales the multiplier
is always 2^30 and only the shift varies, but the rounding is TFLM's: this module reproduces it
op by op. SINGLE_ROUNDING selects which of TFLite's two MultiplyByQuantizedMultiplier variants
the tflite-micro build uses (measured in tests/test_export_tflm.py).

A ratio >= 1 (output frac >= accumulator frac) gives QuantizeMultiplier a positive shift, which
MultiplyByQuantizedMultiplier applies as a left shift of the int32 accumulator *before* the
doubling high multiply; with the multiplier 2^30 that is exact (`acc << (shift - 1)`), so only
int32 overflow of `acc << shift` could make TFLM differ from exact arithmetic. The exporter
refuses layers whose worst-case accumulator could overflow there (builtin.py), and this model
wraps to int32 like the C code would, so the two agree either way.

SOFTMAX is TFLM's int8 reference softmax (reference_ops::Softmax<int8_t, int8_t>): gemmlowp
fixed-point exp on Q5.26 input differences, a Q12.19 sum, a Newton-Raphson reciprocal, every step
modelled here on int64 arrays with int32 semantics (wrap, C truncating division, arithmetic shift).
"""

from __future__ import annotations

import math
from typing import Any

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


def srdhm(a: np.ndarray, b: np.ndarray | int) -> np.ndarray:
    """gemmlowp SaturatingRoundingDoublingHighMul on int32 values (b scalar or array)."""
    a = np.asarray(a, dtype=np.int64)
    b = np.asarray(b, dtype=np.int64)
    ab = a * b  # |ab| <= 2^62: exact in int64
    nudge = np.where(ab >= 0, 1 << 30, 1 - (1 << 30))
    res = _c_div(ab + nudge, 1 << 31)
    return np.where((a == INT32_MIN) & (b == INT32_MIN), INT32_MAX, res)


def rdbpot(x: np.ndarray, exponent: np.ndarray | int) -> np.ndarray:
    """gemmlowp RoundingDivideByPOT: round half away from zero (exponent scalar or array)."""
    x = np.asarray(x, dtype=np.int64)
    mask = np.left_shift(np.int64(1), np.asarray(exponent, dtype=np.int64)) - 1
    remainder = x & mask
    threshold = (mask >> 1) + (x < 0)
    return (x >> exponent) + (remainder > threshold)


def _sat_mul_pot(x: np.ndarray, exponent: int) -> np.ndarray:
    """gemmlowp SaturatingRoundingMultiplyByPOT<exponent> on int32 values."""
    if exponent == 0:
        return np.asarray(x, dtype=np.int64)
    if exponent < 0:
        return rdbpot(x, -exponent)
    x = np.asarray(x, dtype=np.int64)
    threshold = (1 << (31 - exponent)) - 1
    return np.where(x > threshold, INT32_MAX, np.where(x < -threshold, INT32_MIN, x << exponent))


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


def zero_point(fmt: Any) -> int:
    """Stored zero point of a stock tensor: -128 for an unsigned 8-bit format (int8 holds
    `q - 128`, as TFLite stores uint8 ranges), 0 otherwise (format.md section 7)."""
    return -128 if fmt is not None and not fmt.signed and fmt.bits == 8 else 0


def activation_range(frac: int, activation: str | None, zp: int = 0) -> tuple[int, int]:
    """CalculateActivationRangeQuantized for int8 with zero point `zp`, scale 2^-frac (stored values)."""
    lo, hi = -128, 127
    if activation in ("relu", "relu6"):
        lo = max(lo, zp)
    if activation == "relu6":
        v = math.ldexp(6.0, frac)
        hi = min(hi, zp + int(math.floor(v + 0.5)))  # TfLiteRound: half away from zero (v > 0)
    return lo, hi


def _per_channel_requant(acc: np.ndarray, x_frac: int, w_frac: np.ndarray, out_frac: int) -> np.ndarray:
    out = np.empty_like(acc)
    for o, wf in enumerate(np.asarray(w_frac).tolist()):
        m, s = quantize_multiplier(math.ldexp(1.0, out_frac - x_frac - wf))
        out[..., o] = mbqm(acc[..., o], m, s)
    return out


# Every op below takes and returns *stored* int8 values (format integer + zero point), as TFLM.

def _zp(graph: IntegerGraph, name: str) -> int:
    return zero_point(graph.tensors[name].fmt)


def _weighted(graph: IntegerGraph, node: Node, x: np.ndarray) -> np.ndarray:
    t = graph.tensors
    a = node.attrs
    xf, of = t[node.inputs[0]].fmt.frac, t[node.output].fmt.frac
    zo = _zp(graph, node.output)
    x = x - _zp(graph, node.inputs[0])  # input + input_offset; padded taps are skipped (0)
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
    y = _per_channel_requant(acc, xf, node.weight_frac, of) + zo
    lo, hi = activation_range(of, a.get("activation"), zo)
    return np.clip(y, lo, hi)


def _add(graph: IntegerGraph, node: Node, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    t = graph.tensors
    fa, fb, fo = t[node.inputs[0]].fmt.frac, t[node.inputs[1]].fmt.frac, t[node.output].fmt.frac
    zo = _zp(graph, node.output)
    a, b = a - _zp(graph, node.inputs[0]), b - _zp(graph, node.inputs[1])
    left_shift = 20
    sa, sb, so = math.ldexp(1.0, -fa), math.ldexp(1.0, -fb), math.ldexp(1.0, -fo)
    twice_max = 2 * max(sa, sb)
    ma, sha = quantize_multiplier(sa / twice_max)
    mb, shb = quantize_multiplier(sb / twice_max)
    mo, sho = quantize_multiplier(twice_max / ((1 << left_shift) * so))
    xa = mbqm_smaller_than_one(a * (1 << left_shift), ma, sha)
    xb = mbqm_smaller_than_one(b * (1 << left_shift), mb, shb)
    y = mbqm_smaller_than_one(_wrap32(xa + xb), mo, sho) + zo
    lo, hi = activation_range(fo, node.attrs.get("activation"), zo)
    return np.clip(y, lo, hi)


def _pool(graph: IntegerGraph, node: Node, x: np.ndarray) -> np.ndarray:
    """Stock pools never rescale: input and output share scale and zero point (builtin.py)."""
    a = node.attrs
    of = graph.tensors[node.output].fmt.frac
    lo, hi = activation_range(of, a.get("activation"), _zp(graph, node.output))
    if node.op == "max_pool2d":
        p = _patches(x, a["pool"][0], a["pool"][1], tuple(a["stride"]), (1, 1), a["padding"], np.iinfo(np.int64).min)
        return np.clip(p.max(axis=(3, 4)), lo, hi)
    p = _patches(x, a["pool"][0], a["pool"][1], tuple(a["stride"]), (1, 1), a["padding"], 0)
    ones = np.ones((1,) + x.shape[1:3] + (1,), dtype=np.int64)
    n = _patches(ones, a["pool"][0], a["pool"][1], tuple(a["stride"]), (1, 1), a["padding"], 0).sum(axis=(3, 4))
    acc = p.sum(axis=(3, 4))  # of stored values: TFLM averages int8 as stored
    half = n // 2
    y = np.where(acc > 0, _c_div_arr(acc + half, n), _c_div_arr(acc - half, n))
    return np.clip(y, lo, hi)


def _leaky_relu(graph: IntegerGraph, node: Node, x: np.ndarray) -> np.ndarray:
    """TFLM's int8 LEAKY_RELU: identity and alpha multipliers from QuantizeMultiplier of the
    scale ratios (float32 products of powers of two: exact), MultiplyByQuantizedMultiplier."""
    fi, fo = graph.tensors[node.inputs[0]].fmt.frac, graph.tensors[node.output].fmt.frac
    m_id, s_id = quantize_multiplier(math.ldexp(1.0, fo - fi))
    m_a, s_a = quantize_multiplier(math.ldexp(1.0, fo - fi - node.attrs["alpha_shift"]))
    v = x - _zp(graph, node.inputs[0])  # input_value = stored - input zero point
    y = np.where(v >= 0, mbqm(v, m_id, s_id), mbqm(v, m_a, s_a)) + _zp(graph, node.output)
    return np.clip(y, -128, 127)


def _c_div_arr(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """C integer division (truncates toward zero), elementwise divisors."""
    q = np.abs(a) // np.abs(b)
    return np.where((a < 0) != (b < 0), -q, q)


def _quantize(graph: IntegerGraph, node: Node, x: np.ndarray) -> np.ndarray:
    of = graph.tensors[node.output].fmt.frac
    zo = _zp(graph, node.output)
    if graph.tensors[node.inputs[0]].fmt is None:
        v = (np.asarray(x, dtype=np.float32) / np.float32(math.ldexp(1.0, -of))).astype(np.float64)
        r = np.sign(v) * np.floor(np.abs(v) + 0.5)  # TfLiteRound: half away from zero
        return np.clip(r + zo, -128, 127).astype(np.int64)
    inf = graph.tensors[node.inputs[0]].fmt.frac
    m, s = quantize_multiplier(math.ldexp(1.0, of - inf))  # Requantize: (x - zp_in) * ratio + zp_out
    return np.clip(mbqm(x - _zp(graph, node.inputs[0]), m, s) + zo, -128, 127)


# ----------------------------------------------------------------------------------------------
# SOFTMAX (int8 in, int8 out with scale 1/256 and zero point -128)

SOFTMAX_OUT_FRAC = 8  # output scale 1/256
SOFTMAX_ZERO_POINT = -128
SOFTMAX_FRAC_RANGE = (-3, 25)  # logit fracs whose TFLM Prepare is defined (softmax_params)
_SCALED_DIFF_INTEGER_BITS = 5  # Q5.26 input differences
_ACCUM_INTEGER_BITS = 12  # Q12.19 sum of exps


def softmax_params(in_frac: int, beta: float = 1.0) -> tuple[int, int, int]:
    """(input_multiplier, input_left_shift, diff_min) as TFLM's SoftmaxPrepare computes them.

    PreprocessSoftmaxScaling: real = min(beta * scale * 2^(31 - 5), 2^31 - 1), then
    QuantizeMultiplierGreaterThanOne (a TFLITE_CHECK that real > 1, so in_frac <= 25);
    diff_min = -CalculateInputRadius(5, left_shift) = -floor(31 * 2^26 / 2^left_shift).
    Outside SOFTMAX_FRAC_RANGE TFLM aborts (in_frac >= 26) or shifts by 31 (in_frac <= -4,
    undefined in C), so the exporter refuses those fracs.
    """
    lo, hi = SOFTMAX_FRAC_RANGE
    if not lo <= in_frac <= hi:
        raise ValueError(f"stock SOFTMAX needs an input frac in {lo}..{hi}, got {in_frac}")
    real = min(beta * math.ldexp(1.0, -in_frac) * float(1 << (31 - _SCALED_DIFF_INTEGER_BITS)), (1 << 31) - 1.0)
    multiplier, left_shift = quantize_multiplier(real)
    radius = math.floor(((1 << _SCALED_DIFF_INTEGER_BITS) - 1) * float(1 << (31 - _SCALED_DIFF_INTEGER_BITS))
                        / float(1 << left_shift))
    return multiplier, left_shift, -radius


def _exp_on_interval_between_negative_one_quarter_and_0_excl(a: np.ndarray) -> np.ndarray:
    """gemmlowp: exp(a) for a in [-1/4, 0), Q0.31 in and out (Taylor series around -1/8)."""
    constant_term, one_third = 1895147668, 715827883  # exp(-1/8), 1/3 in Q0.31
    x = _wrap32(a + (1 << 28))
    x2 = srdhm(x, x)
    x3 = srdhm(x2, x)
    x4 = srdhm(x2, x2)
    x4_over_4 = _sat_mul_pot(x4, -2)
    poly = _sat_mul_pot(_wrap32(srdhm(_wrap32(x4_over_4 + x3), one_third) + x2), -1)
    return _wrap32(constant_term + srdhm(constant_term, _wrap32(x + poly)))


def _exp_on_negative_values(a: np.ndarray) -> np.ndarray:
    """gemmlowp exp_on_negative_values for Q5.26 input, Q0.31 result (barrel shifter on the
    multiples of 1/4, polynomial on the remainder)."""
    frac_bits = 31 - _SCALED_DIFF_INTEGER_BITS
    one_quarter = 1 << (frac_bits - 2)
    a_mod = _wrap32((a & (one_quarter - 1)) - one_quarter)
    result = _exp_on_interval_between_negative_one_quarter_and_0_excl(_sat_mul_pot(a_mod, _SCALED_DIFF_INTEGER_BITS))
    remainder = _wrap32(a_mod - a)
    barrel = ((-2, 1672461947), (-1, 1302514674), (0, 790015084), (1, 290630308), (2, 39332535),
              (3, 720401), (4, 242))  # exp(-2^e) in Q0.31
    for exponent, multiplier in barrel:
        if _SCALED_DIFF_INTEGER_BITS > exponent:
            bit = 1 << (frac_bits + exponent)
            result = np.where((remainder & bit) != 0, srdhm(result, multiplier), result)
    return np.where(a == 0, INT32_MAX, result)


def _one_over_one_plus_x_for_x_in_0_1(a: np.ndarray) -> np.ndarray:
    """gemmlowp: 1 / (1 + a) for a in [0, 1), Q0.31 in and out (Newton-Raphson, 3 steps)."""
    s = a + np.int64(INT32_MAX)  # RoundingHalfSum(a, One): (sum + sign) / 2 in C
    half_denominator = _c_div(s + np.where(s >= 0, 1, -1), 2)
    x = _wrap32(1515870810 + srdhm(half_denominator, -1010580540))  # 48/17 - 32/17 * d, Q2.29
    for _ in range(3):
        one_minus = _wrap32((1 << 29) - srdhm(half_denominator, x))  # F2::One() = 2^29
        x = _wrap32(x + _sat_mul_pot(srdhm(x, one_minus), 2))
    return _sat_mul_pot(x, 1)


def _clz32(x: np.ndarray) -> np.ndarray:
    """Count leading zeros of the uint32 bit pattern (32 for 0)."""
    u = np.asarray(x, dtype=np.int64) & 0xFFFFFFFF
    n = np.zeros(u.shape, dtype=np.int64)
    for shift in (16, 8, 4, 2, 1):
        small = u < (1 << (32 - shift))
        n = np.where(small, n + shift, n)
        u = np.where(small, u << shift, u)
    return np.where(np.asarray(x, dtype=np.int64) & 0xFFFFFFFF == 0, 32, n)


def _reciprocal(x: np.ndarray, integer_digits: int) -> tuple[np.ndarray, np.ndarray]:
    """TFLite GetReciprocal: (Q0.31 scale, num_bits_over_unit)."""
    headroom_plus_one = _clz32(x)
    num_bits_over_unit = integer_digits - headroom_plus_one
    shifted = ((np.asarray(x, dtype=np.int64) << headroom_plus_one) - (1 << 31)) & 0xFFFFFFFF
    return _one_over_one_plus_x_for_x_in_0_1(_wrap32(shifted)), num_bits_over_unit


def softmax_int8(x: np.ndarray, in_frac: int, beta: float = 1.0) -> np.ndarray:
    """TFLM's int8 softmax over the last axis; returns the stored int8 values (zero point -128)."""
    multiplier, left_shift, diff_min = softmax_params(in_frac, beta)
    x = np.asarray(x, dtype=np.int64)
    diff = x - x.max(axis=-1, keepdims=True)
    valid = diff >= diff_min
    # MultiplyByQuantizedMultiplierGreaterThanOne: SRDHM(diff * 2^left_shift, multiplier)
    scaled = srdhm(_wrap32(np.where(valid, diff, 0) << left_shift), multiplier)
    exps = _exp_on_negative_values(scaled)
    rescaled = _sat_mul_pot(exps, -_ACCUM_INTEGER_BITS)  # Rescale<12> of a Q0.31 value
    sum_of_exps = _wrap32(np.where(valid, rescaled, 0).sum(axis=-1, keepdims=True))
    scale, bits_over_unit = _reciprocal(sum_of_exps, _ACCUM_INTEGER_BITS)
    exponent = bits_over_unit + 31 - 8
    if (exponent < 0).any() or (exponent > 31).any():  # TFLITE_CHECK in the kernel
        raise ValueError("softmax: reciprocal exponent outside 0..31")
    unsat = rdbpot(srdhm(scale, exps), exponent)
    out = np.clip(unsat - 128, -128, 127)
    return np.where(valid, out, -128)


def run_stock(graph: IntegerGraph, x: np.ndarray) -> list[np.ndarray]:
    """Raw outputs (as int64, in each output tensor's format) of a stock graph for a batch.

    An integer input is given, and outputs are returned, as format integers (zero point 0);
    inside, values are stored int8 (format integer + zero point), as TFLM holds them.
    """
    zin = _zp(graph, graph.input)
    values = {graph.input: np.asarray(x) if graph.tensors[graph.input].fmt is None
              else np.asarray(x, dtype=np.int64) + zin}
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
        elif node.op == "softmax":  # differences from the row max: the input zero point cancels
            y = softmax_int8(ins[0], graph.tensors[node.inputs[0]].fmt.frac)
        elif node.op == "reshape":
            y = ins[0].reshape((ins[0].shape[0],) + tuple(graph.tensors[node.output].shape))
        elif node.op == "leaky_relu":
            y = _leaky_relu(graph, node, ins[0])
        elif node.op == "concat":  # inputs already in the output's scale and zero point: a copy
            y = np.concatenate(ins, axis=-1)
        elif node.op == "pad":  # TFLM's int8 PAD fills with the output zero point
            (top, bottom), (left, right) = node.attrs["pads"]
            y = np.pad(ins[0], ((0, 0), (top, bottom), (left, right), (0, 0)),
                       constant_values=_zp(graph, node.output))
        else:
            raise ValueError(f"stock int8 has no op {node.op!r} (node {node.name!r})")
        values[node.output] = y
    return [values[o] - _zp(graph, o) for o in graph.outputs]
