"""TFLM's integer arithmetic primitives on int64 numpy arrays with int32 semantics.

These are the building blocks of TFLM's reference kernels (QuantizeMultiplier,
MultiplyByQuantizedMultiplier and gemmlowp's fixed-point helpers), kept in one place so every
stock-op model (flatbuffer/stock.py for int8-builtin files, integer_graph/tflm_ops.py for the
stock ops of hybrid files) rounds exactly as TFLM does. Values are int64 arrays holding int32
quantities; where C would wrap, `wrap32` wraps; where C truncates a division, `c_div` truncates.

SINGLE_ROUNDING selects which of TFLite's two MultiplyByQuantizedMultiplier variants the
tflite-micro build uses: the wheel and TFLM 90b983c use double rounding (measured in
tests/test_export_tflm.py and tests/test_tflm_ops.py).
"""

from __future__ import annotations

import math

import numpy as np

SINGLE_ROUNDING = False
INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1


def tflite_round(v: float) -> float:
    """TfLiteRound / std::round: half away from zero (Python's round() is half to even)."""
    return math.copysign(math.floor(abs(v) + 0.5), v)


def quantize_multiplier(real: float) -> tuple[int, int]:
    """TFLite's QuantizeMultiplier: real = m * 2^(shift - 31), m in [2^30, 2^31)."""
    if real == 0.0:
        return 0, 0
    q, shift = math.frexp(real)
    q_fixed = int(tflite_round(q * (1 << 31)))
    if q_fixed == 1 << 31:
        q_fixed //= 2
        shift += 1
    if shift < -31:
        return 0, 0
    if SINGLE_ROUNDING and shift > 30:
        return (1 << 31) - 1, 30
    return q_fixed, shift


def wrap32(v: np.ndarray) -> np.ndarray:
    """Two's-complement wrap of int64 values to int32, as C's int32 arithmetic does on our targets."""
    return ((np.asarray(v).astype(np.int64) + 2**31) % 2**32) - 2**31


def wrap16(v: np.ndarray) -> np.ndarray:
    """Two's-complement wrap to int16 (C's conversion of an int to int16_t)."""
    return ((np.asarray(v).astype(np.int64) + 2**15) % 2**16) - 2**15


def c_div(a: np.ndarray, b: int | np.ndarray) -> np.ndarray:
    """C integer division (truncates toward zero); b scalar or elementwise."""
    a = np.asarray(a, dtype=np.int64)
    b = np.asarray(b, dtype=np.int64)
    q = np.abs(a) // np.abs(b)
    return np.where((a < 0) != (b < 0), -q, q)


def srdhm(a: np.ndarray, b: np.ndarray | int) -> np.ndarray:
    """gemmlowp SaturatingRoundingDoublingHighMul on int32 values (b scalar or array)."""
    a = np.asarray(a, dtype=np.int64)
    b = np.asarray(b, dtype=np.int64)
    ab = a * b  # |ab| <= 2^62: exact in int64
    nudge = np.where(ab >= 0, 1 << 30, 1 - (1 << 30))
    res = c_div(ab + nudge, 1 << 31)
    return np.where((a == INT32_MIN) & (b == INT32_MIN), INT32_MAX, res)


def srdhm16(a: np.ndarray, b: np.ndarray | int) -> np.ndarray:
    """gemmlowp SaturatingRoundingDoublingHighMul on int16 values."""
    a = np.asarray(a, dtype=np.int64)
    b = np.asarray(b, dtype=np.int64)
    ab = a * b
    nudge = np.where(ab >= 0, 1 << 14, 1 - (1 << 14))
    res = wrap16(c_div(ab + nudge, 1 << 15))
    return np.where((a == -(1 << 15)) & (b == -(1 << 15)), (1 << 15) - 1, res)


def rdbpot(x: np.ndarray, exponent: np.ndarray | int) -> np.ndarray:
    """gemmlowp RoundingDivideByPOT: round half away from zero (exponent scalar or array)."""
    x = np.asarray(x, dtype=np.int64)
    mask = np.left_shift(np.int64(1), np.asarray(exponent, dtype=np.int64)) - 1
    remainder = x & mask
    threshold = (mask >> 1) + (x < 0)
    return (x >> exponent) + (remainder > threshold)


def sat_mul_pot(x: np.ndarray, exponent: int) -> np.ndarray:
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
    return rdbpot(srdhm(wrap32(x * (1 << left)), m), right)


def mbqm64(x: np.ndarray, m: int, shift: int) -> np.ndarray:
    """MultiplyByQuantizedMultiplier(int64 x, m, shift), the int16x8 kernels' requantization (one
    variant for both rounding modes): the multiplier rounded to Q0.15, one rounding right shift by
    15 - shift, the result truncated to int32. The caller keeps 15 - shift in 1..63 (C's shift)."""
    x = np.asarray(x, dtype=np.int64)
    reduced = (m + (1 << 15)) >> 16 if m < 0x7FFF0000 else 0x7FFF
    total = 15 - shift
    return wrap32((x * reduced + (1 << (total - 1))) >> total)


def mbqm_smaller_than_one(x: np.ndarray, m: int, shift: int) -> np.ndarray:
    """MultiplyByQuantizedMultiplierSmallerThanOneExp (add's rescaling)."""
    if SINGLE_ROUNDING:
        return mbqm(x, m, shift)
    return rdbpot(srdhm(x, m), -shift)


def exp_on_interval_between_negative_one_quarter_and_0_excl(a: np.ndarray) -> np.ndarray:
    """gemmlowp: exp(a) for a in [-1/4, 0), Q0.31 in and out (Taylor series around -1/8)."""
    constant_term, one_third = 1895147668, 715827883  # exp(-1/8), 1/3 in Q0.31
    x = wrap32(a + (1 << 28))
    x2 = srdhm(x, x)
    x3 = srdhm(x2, x)
    x4 = srdhm(x2, x2)
    x4_over_4 = sat_mul_pot(x4, -2)
    poly = sat_mul_pot(wrap32(srdhm(wrap32(x4_over_4 + x3), one_third) + x2), -1)
    return wrap32(constant_term + srdhm(constant_term, wrap32(x + poly)))


def exp_on_negative_values(a: np.ndarray, integer_bits: int = 5) -> np.ndarray:
    """gemmlowp exp_on_negative_values for a Q(integer_bits).(31 - integer_bits) input, Q0.31
    result (barrel shifter on the multiples of 1/4, polynomial on the remainder)."""
    frac_bits = 31 - integer_bits
    one_quarter = 1 << (frac_bits - 2)
    a = np.asarray(a, dtype=np.int64)
    a_mod = wrap32((a & (one_quarter - 1)) - one_quarter)
    result = exp_on_interval_between_negative_one_quarter_and_0_excl(sat_mul_pot(a_mod, integer_bits))
    remainder = wrap32(a_mod - a)
    barrel = ((-2, 1672461947), (-1, 1302514674), (0, 790015084), (1, 290630308), (2, 39332535),
              (3, 720401), (4, 242))  # exp(-2^e) in Q0.31
    for exponent, multiplier in barrel:
        if integer_bits > exponent:
            bit = 1 << (frac_bits + exponent)
            result = np.where((remainder & bit) != 0, srdhm(result, multiplier), result)
    if integer_bits > 5:  # inputs below -32 give 0
        result = np.where(a < -(1 << (36 - integer_bits)), 0, result)
    return np.where(a == 0, INT32_MAX, result)


def _newton_reciprocal_q2(a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The shared Newton-Raphson step of gemmlowp's 1/(1+a): (x ~ 1/half_denominator in Q2.29,
    half_denominator in Q0.31) for a in [0, 1) in Q0.31."""
    s = np.asarray(a, dtype=np.int64) + np.int64(INT32_MAX)  # RoundingHalfSum(a, One): (sum + sign) / 2
    half_denominator = c_div(s + np.where(s >= 0, 1, -1), 2)
    x = wrap32(1515870810 + srdhm(half_denominator, -1010580540))  # 48/17 - 32/17 * d, Q2.29
    for _ in range(3):
        one_minus = wrap32((1 << 29) - srdhm(half_denominator, x))  # F2::One() = 2^29
        x = wrap32(x + sat_mul_pot(srdhm(x, one_minus), 2))
    return x, half_denominator


def one_over_one_plus_x_for_x_in_0_1(a: np.ndarray) -> np.ndarray:
    """gemmlowp: 1 / (1 + a) for a in [0, 1), Q0.31 in and out (Newton-Raphson, 3 steps)."""
    x, _ = _newton_reciprocal_q2(a)
    return sat_mul_pot(x, 1)


def one_minus_x_over_one_plus_x_for_x_in_0_1(a: np.ndarray) -> np.ndarray:
    """gemmlowp: (1 - a) / (1 + a) for a in [0, 1), Q0.31 in and out (tanh's division)."""
    x, _ = _newton_reciprocal_q2(a)
    return sat_mul_pot(wrap32(x - (1 << 29)), 2)


def gemmlowp_logistic(a: np.ndarray, integer_bits: int) -> np.ndarray:
    """gemmlowp::logistic of a Q(integer_bits) int32 input; Q0.31 result."""
    a = np.asarray(a, dtype=np.int64)
    abs_input = np.where(a > 0, a, wrap32(-a))
    positive = one_over_one_plus_x_for_x_in_0_1(exp_on_negative_values(wrap32(-abs_input), integer_bits))
    negative = wrap32(INT32_MAX - positive)
    return np.where(a == 0, 1 << 30, np.where(a > 0, positive, negative))


def gemmlowp_tanh(a: np.ndarray, integer_bits: int) -> np.ndarray:
    """gemmlowp::tanh of a Q(integer_bits) int32 input; Q0.31 result."""
    a = np.asarray(a, dtype=np.int64)
    n = np.where(a < 0, a, wrap32(-a))
    # ExactMulByPot<1> reinterprets n as Q(integer_bits + 1)
    t = one_minus_x_over_one_plus_x_for_x_in_0_1(exp_on_negative_values(n, integer_bits + 1))
    return np.where(a == 0, 0, np.where(a < 0, wrap32(-t), t))


def clz32(x: np.ndarray) -> np.ndarray:
    """Count leading zeros of the uint32 bit pattern (32 for 0)."""
    u = np.asarray(x, dtype=np.int64) & 0xFFFFFFFF
    n = np.zeros(u.shape, dtype=np.int64)
    for shift in (16, 8, 4, 2, 1):
        small = u < (1 << (32 - shift))
        n = np.where(small, n + shift, n)
        u = np.where(small, u << shift, u)
    return np.where(np.asarray(x, dtype=np.int64) & 0xFFFFFFFF == 0, 32, n)


def reciprocal(x: np.ndarray, integer_digits: int) -> tuple[np.ndarray, np.ndarray]:
    """TFLite GetReciprocal: (Q0.31 scale, num_bits_over_unit)."""
    headroom_plus_one = clz32(x)
    num_bits_over_unit = integer_digits - headroom_plus_one
    shifted = ((np.asarray(x, dtype=np.int64) << headroom_plus_one) - (1 << 31)) & 0xFFFFFFFF
    return one_over_one_plus_x_for_x_in_0_1(wrap32(shifted)), num_bits_over_unit
