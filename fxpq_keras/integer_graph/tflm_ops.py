"""numpy models of TFLM's reference kernels for the stock ops of hybrid files, bit for bit.

Each op is a pure function on *stored* values (int64 arrays holding int8/int16 values, batch
first) with each tensor's TFLite quantization (`TensorQ`: float scale, zero point, storage type)
and the op's options; it returns the stored output. A `prepare_<op>` function does what TFLM's
Prepare does (QuantizeMultiplier and friends, from the tensors' float32 scales, in the float32 or
double arithmetic TFLM uses) and raises ValueError naming the problem where TFLM would refuse the
op (or abort, or compute something undefined); the op functions call it, so a refused parameter
set never yields numbers. Where TFLM ignores a parameter that gives its output its meaning (for
example LOGISTIC's output scale), prepare refuses values that would make the stored numbers mean
something else, and says so. The C kernels (tflm_kernels/src/kernels/fxpq_stock_ops.c) take the
same prepared parameters. docs/numerics.md section 11 lists the kernels followed.

    op (TFLite builtin)       numpy function             check (raises ValueError)
    QUANTIZE int -> int       requantize                 prepare_requantize
    MUL                       mul                        prepare_mul
    ADD / SUB                 add / sub                  prepare_add(..., subtract=)
    LOGISTIC / TANH           logistic / tanh            prepare_logistic / prepare_tanh
    HARD_SWISH                hard_swish                 prepare_hard_swish
    ELU                       elu                        elu_table
    MAXIMUM / MINIMUM         maximum / minimum          check_same_quant
    RESIZE_NEAREST_NEIGHBOR   resize_nearest_neighbor    check_same_quant
    TRANSPOSE                 transpose                  check_same_quant
    CONCATENATION             concatenation              check_same_quant
    MEAN                      mean                       prepare_mean
    CONV_2D                   conv2d                     prepare_weighted
    DEPTHWISE_CONV_2D         depthwise_conv2d           prepare_weighted
    FULLY_CONNECTED           fully_connected            prepare_weighted
    MAX_POOL_2D / AVG_POOL_2D max_pool2d / average_pool2d  check_same_quant

The weighted ops take int8 activations with int8 or packed int4 weights (kTfLiteInt4: the same
arithmetic once unpacked; pack_int4 / unpack_int4 are TFLM's nibble order) and int32 biases, or
int16 activations (zero point 0) with int8 weights and int64 biases (the int16x8 kernels).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from ..formats import Format, stored_zero_point
from .ops import _patches
from .tflm_math import (
    INT32_MAX,
    c_div,
    gemmlowp_logistic,
    gemmlowp_tanh,
    mbqm,
    mbqm64,
    mbqm_smaller_than_one,
    quantize_multiplier,
    rdbpot,
    srdhm16,
    tflite_round,
    wrap16,
    wrap32,
)

_RANGES = {"int8": (-128, 127), "int16": (-32768, 32767)}
ACTIVATIONS = (None, "relu", "relu_n1_to_1", "relu6")


class TensorQ(NamedTuple):
    """A tensor's TFLite type and per-tensor quantization (scale is stored as float32)."""

    scale: float
    zero_point: int = 0
    dtype: str = "int8"


def f32(v: float) -> float:
    """The float32 value TFLite holds for a float (tensor scales are float32 in the file)."""
    return float(np.float32(v))


def format_quant(fmt: Format) -> TensorQ:
    """The TFLite tensor a stock op sees for a fixed-point format (DESIGN.md, hybrid files): up to
    8 bits int8 with scale 2^-frac and zero point 0, unsigned 8-bit with zero point -128 (so
    LOGISTIC's output, scale 1/256 and zero point -128, is the format u8.8); 9..16 bits int16 with
    zero point 0. An unsigned 16-bit format does not fit int16 and needs a requantize first."""
    scale = fmt.step  # 2^-frac, or target builtin's float activation scale
    if fmt.bits <= 8:
        return TensorQ(scale, stored_zero_point(fmt), "int8")
    if fmt.bits > 16 or (not fmt.signed and fmt.bits == 16):
        raise ValueError(f"format {fmt} has no int8/int16 stock tensor (unsigned 16-bit or wider than 16 bits)")
    return TensorQ(scale, 0, "int16")


def to_stored(q: np.ndarray, fmt: Format) -> np.ndarray:
    """Format integers -> the stored values of format_quant(fmt)."""
    return np.asarray(q, dtype=np.int64) + format_quant(fmt).zero_point


def from_stored(v: np.ndarray, fmt: Format) -> np.ndarray:
    """Stored values of format_quant(fmt) -> format integers."""
    return np.asarray(v, dtype=np.int64) - format_quant(fmt).zero_point


def _check_q(q: TensorQ, what: str, dtypes: Sequence[str] = ("int8",)) -> None:
    if q.dtype not in dtypes:
        raise ValueError(f"{what}: type {q.dtype} not supported (TFLM takes {'/'.join(dtypes)})")
    lo, hi = _RANGES[q.dtype]
    if not lo <= q.zero_point <= hi:
        raise ValueError(f"{what}: zero point {q.zero_point} outside the {q.dtype} range")
    s = f32(q.scale)
    if not (math.isfinite(s) and s > 0):
        raise ValueError(f"{what}: scale {q.scale} must be finite and positive in float32")


def stored(x: np.ndarray, q: TensorQ, what: str) -> np.ndarray:
    """x as int64 stored values, refusing non-integers and values outside q's storage type."""
    a = np.asarray(x)
    if a.dtype.kind not in "iub":
        if a.dtype.kind == "f" and np.all(np.isfinite(a)) and np.all(a == np.round(a)):
            a = a.astype(np.int64)
        else:
            raise ValueError(f"{what}: stored values must be integers, got dtype {a.dtype}")
    a = a.astype(np.int64)
    if q.dtype not in _RANGES:
        raise ValueError(f"{what}: type {q.dtype} not supported (int8 or int16)")
    lo, hi = _RANGES[q.dtype]
    if a.size and (a.min() < lo or a.max() > hi):
        raise ValueError(f"{what}: stored values outside the {q.dtype} range [{lo}, {hi}]")
    return a


def _clamp(v: np.ndarray, lo: int, hi: int) -> np.ndarray:
    return np.clip(np.asarray(v, dtype=np.int64), lo, hi)


def _quantize_f32_raw(q: TensorQ, real: float) -> float:
    """kernel_util's Quantize before the zero point: TfLiteRound(float(real) / float(scale)) in float32."""
    return tflite_round(float(np.float32(np.float32(real) / np.float32(q.scale))))  # std::round: exact


def quantize_fits(q: TensorQ, real: float) -> bool:
    """Whether TFLM's Quantize of `real` at output `q` stays inside int32 (else TFLM refuses it)."""
    return abs(_quantize_f32_raw(q, real)) < 2147450880  # the zero point included here


def _quantize_f32(q: TensorQ, real: float) -> int:
    """kernel_util's Quantize: zero_point + TfLiteRound(float(real) / float(scale)) in float32."""
    if not quantize_fits(q, real):
        raise ValueError(f"activation bound {real} overflows int32 at output scale {q.scale}")
    return q.zero_point + int(_quantize_f32_raw(q, real))


def activation_range(q: TensorQ, activation: str | None) -> tuple[int, int]:
    """CalculateActivationRangeQuantized: the stored clamp of a fused activation on output `q`."""
    if activation not in ACTIVATIONS:
        raise ValueError(f"fused activation {activation!r} not supported; one of {ACTIVATIONS}")
    lo, hi = _RANGES[q.dtype]
    if activation in ("relu", "relu6"):
        lo = max(lo, _quantize_f32(q, 0.0))
    if activation == "relu6":
        hi = min(hi, _quantize_f32(q, 6.0))
    if activation == "relu_n1_to_1":
        lo, hi = max(lo, _quantize_f32(q, -1.0)), min(hi, _quantize_f32(q, 1.0))
    return lo, hi


def _mbqm_shift_ok(shift: int, what: str) -> None:
    if shift > 30:  # x * (1 << shift) in int32: undefined in C beyond 30
        raise ValueError(f"{what}: scale ratio >= 2^30 (TFLM's left shift by {shift} is undefined in C)")


# ------------------------------------------------------------------------------------------ QUANTIZE

@dataclass(frozen=True)
class RequantizeParams:
    multiplier: int
    shift: int
    input_zero_point: int
    output_zero_point: int
    output_min: int
    output_max: int


def prepare_requantize(q_in: TensorQ, q_out: TensorQ) -> RequantizeParams:
    """QUANTIZE between integer types (quantize_common.cc): effective scale s_in / s_out."""
    _check_q(q_in, "QUANTIZE input", ("int8", "int16"))
    _check_q(q_out, "QUANTIZE output", ("int8", "int16"))
    m, shift = quantize_multiplier(f32(q_in.scale) / f32(q_out.scale))
    _mbqm_shift_ok(shift, "QUANTIZE")
    lo, hi = _RANGES[q_out.dtype]
    return RequantizeParams(m, shift, q_in.zero_point, q_out.zero_point, lo, hi)


def requantize(x: np.ndarray, q_in: TensorQ, q_out: TensorQ) -> np.ndarray:
    """reference_ops::Requantize: clamp(MBQM(x - zp_in) + zp_out) to the output type."""
    p = prepare_requantize(q_in, q_out)
    v = stored(x, q_in, "QUANTIZE input") - p.input_zero_point
    return _clamp(mbqm(v, p.multiplier, p.shift) + p.output_zero_point, p.output_min, p.output_max)


# ------------------------------------------------------------------------------------------ MUL

@dataclass(frozen=True)
class MulParams:
    input1_zero_point: int
    input2_zero_point: int
    output_zero_point: int
    multiplier: int
    shift: int
    activation_min: int
    activation_max: int


def prepare_mul(q1: TensorQ, q2: TensorQ, q_out: TensorQ, activation: str | None = None) -> MulParams:
    """mul_common.cc CalculateOpDataMul: multiplier of s1 * s2 / s_out (double); int16 needs zero points 0."""
    for q, what in ((q1, "MUL input 1"), (q2, "MUL input 2"), (q_out, "MUL output")):
        _check_q(q, what, ("int8", "int16"))
    if not q1.dtype == q2.dtype == q_out.dtype:
        raise ValueError(f"MUL: inputs and output must share a type, got {q1.dtype}, {q2.dtype}, {q_out.dtype}")
    if q1.dtype == "int16" and (q1.zero_point or q2.zero_point or q_out.zero_point):
        raise ValueError("MUL int16: TFLM requires zero point 0 on both inputs and the output")
    m, shift = quantize_multiplier(f32(q1.scale) * f32(q2.scale) / f32(q_out.scale))
    _mbqm_shift_ok(shift, "MUL")
    lo, hi = activation_range(q_out, activation)
    return MulParams(q1.zero_point, q2.zero_point, q_out.zero_point, m, shift, lo, hi)


def broadcast_shape(*shapes: Sequence[int], max_rank: int = 4) -> tuple[int, ...]:
    """The broadcast output shape TFLM computes (numpy rules), refusing what TFLM cannot run."""
    if any(len(s) > max_rank for s in shapes):
        raise ValueError(f"broadcasting supports up to {max_rank} dimensions, got shapes {list(map(tuple, shapes))}")
    try:
        return tuple(int(d) for d in np.broadcast_shapes(*[tuple(s) for s in shapes]))
    except ValueError:
        raise ValueError(f"shapes {list(map(tuple, shapes))} do not broadcast") from None


def mul(a: np.ndarray, b: np.ndarray, q1: TensorQ, q2: TensorQ, q_out: TensorQ,
        activation: str | None = None) -> np.ndarray:
    """TFLM MUL int8/int16 (reference_integer_ops::Mul / BroadcastMul6DSlow)."""
    p = prepare_mul(q1, q2, q_out, activation)
    a, b = stored(a, q1, "MUL input 1"), stored(b, q2, "MUL input 2")
    broadcast_shape(a.shape, b.shape, max_rank=6)
    prod = (a - p.input1_zero_point) * (b - p.input2_zero_point)
    return _clamp(mbqm(prod, p.multiplier, p.shift) + p.output_zero_point, p.activation_min, p.activation_max)


# ------------------------------------------------------------------------------------------ ADD / SUB

@dataclass(frozen=True)
class AddParams:
    input1_zero_point: int
    input2_zero_point: int
    output_zero_point: int
    left_shift: int
    input1_multiplier: int
    input1_shift: int
    input2_multiplier: int
    input2_shift: int
    output_multiplier: int
    output_shift: int
    activation_min: int
    activation_max: int


def _smaller_than_one(real: float, what: str) -> tuple[int, int]:
    """QuantizeMultiplierSmallerThanOneExp: TFLM aborts unless 0 < real < 1."""
    if not 0.0 < real < 1.0:
        raise ValueError(f"{what}: rescale factor {real:g} must lie in (0, 1) (TFLM aborts); "
                         "the output scale is too small for the inputs' scales")
    return quantize_multiplier(real)


def prepare_add(q1: TensorQ, q2: TensorQ, q_out: TensorQ, activation: str | None = None,
                subtract: bool = False) -> AddParams:
    """add_common.cc / sub_common.cc: inputs rescaled to 2 * max(s1, s2) after a left shift of
    20 (int8) or 15 (int16). ADD computes the ratios in double, SUB in float32 (as the two
    kernels do); int16 takes the same general-scale path (AddGeneralParamScale / SubElementwise)."""
    op = "SUB" if subtract else "ADD"
    for q, what in ((q1, f"{op} input 1"), (q2, f"{op} input 2"), (q_out, f"{op} output")):
        _check_q(q, what, ("int8", "int16"))
    if not q1.dtype == q2.dtype == q_out.dtype:
        raise ValueError(f"{op}: inputs and output must share a type, got {q1.dtype}, {q2.dtype}, {q_out.dtype}")
    left_shift = 15 if q_out.dtype == "int16" else 20
    s1, s2, so = f32(q1.scale), f32(q2.scale), f32(q_out.scale)
    if subtract:
        twice = np.float32(2) * np.float32(max(s1, s2))
        r1 = float(np.float32(s1) / twice)
        r2 = float(np.float32(s2) / twice)
        ro = float(twice / (np.float32(1 << left_shift) * np.float32(so)))
    else:
        twice_d = 2 * max(s1, s2)
        r1, r2, ro = s1 / twice_d, s2 / twice_d, twice_d / ((1 << left_shift) * so)
    m1, sh1 = _smaller_than_one(r1, f"{op} input 1")
    m2, sh2 = _smaller_than_one(r2, f"{op} input 2")
    mo, sho = _smaller_than_one(ro, f"{op} output")
    lo, hi = activation_range(q_out, activation)
    return AddParams(q1.zero_point, q2.zero_point, q_out.zero_point, left_shift,
                     m1, sh1, m2, sh2, mo, sho, lo, hi)


def add(a: np.ndarray, b: np.ndarray, q1: TensorQ, q2: TensorQ, q_out: TensorQ,
        activation: str | None = None, subtract: bool = False) -> np.ndarray:
    """TFLM ADD (or SUB with subtract=True) int8/int16 with broadcasting (AddFunc / SubFunc)."""
    p = prepare_add(q1, q2, q_out, activation, subtract)
    op = "SUB" if subtract else "ADD"
    a, b = stored(a, q1, f"{op} input 1"), stored(b, q2, f"{op} input 2")
    broadcast_shape(a.shape, b.shape)
    x1 = mbqm_smaller_than_one(wrap32((a - p.input1_zero_point) << p.left_shift), p.input1_multiplier, p.input1_shift)
    x2 = mbqm_smaller_than_one(wrap32((b - p.input2_zero_point) << p.left_shift), p.input2_multiplier, p.input2_shift)
    raw = wrap32(x1 - x2 if subtract else x1 + x2)
    y = mbqm_smaller_than_one(raw, p.output_multiplier, p.output_shift) + p.output_zero_point
    return _clamp(y, p.activation_min, p.activation_max)


def sub(a: np.ndarray, b: np.ndarray, q1: TensorQ, q2: TensorQ, q_out: TensorQ,
        activation: str | None = None) -> np.ndarray:
    """TFLM SUB int8/int16 with broadcasting."""
    return add(a, b, q1, q2, q_out, activation, subtract=True)


# ------------------------------------------------------------------------------------------ LOGISTIC / TANH

@dataclass(frozen=True)
class SigmoidParams:
    """Prepare of int8 LOGISTIC and TANH: the input in Q4.27 via (multiplier, left_shift)."""

    input_zero_point: int
    input_multiplier: int
    input_left_shift: int
    input_range_radius: int


def _prepare_q4_input(q_in: TensorQ, op: str) -> SigmoidParams:
    """logistic_common.cc / tanh.cc: frexp of s_in * 2^27 without QuantizeMultiplier's guards."""
    q, left_shift = math.frexp(f32(q_in.scale) * float(1 << 27))
    multiplier = int(tflite_round(q * (1 << 31)))
    if multiplier > INT32_MAX:
        raise ValueError(f"{op}: input scale {q_in.scale} rounds TFLM's multiplier to 2^31 (int32 overflow)")
    if not 0 <= left_shift <= 62:
        raise ValueError(f"{op}: input scale {q_in.scale} outside 2^-28..2^35 (TFLM's shift by {left_shift} "
                         "is undefined in C)")
    # CalculateInputRadius(4, left_shift, 31) = floor(15 * 2^27 / 2^left_shift), in double
    radius = math.floor(15.0 * float(1 << 27) / float(2.0**left_shift))
    return SigmoidParams(q_in.zero_point, multiplier, left_shift, radius)


def prepare_logistic(q_in: TensorQ, q_out: TensorQ) -> SigmoidParams:
    """TFLM's int8 LOGISTIC: output zero point -128 (TFLM checks it); output scale 1/256 (TFLM
    ignores the scale and always writes q/256, so any other scale would misstate the values)."""
    _check_q(q_in, "LOGISTIC input")
    _check_q(q_out, "LOGISTIC output")
    if q_out.zero_point != -128:
        raise ValueError(f"LOGISTIC int8: output zero point must be -128, got {q_out.zero_point}")
    if f32(q_out.scale) != 1 / 256:
        raise ValueError(f"LOGISTIC int8: output scale must be 1/256 (TFLM's fixed output), got {q_out.scale}")
    return _prepare_q4_input(q_in, "LOGISTIC")


def _q4_input(x: np.ndarray, p: SigmoidParams) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    v = np.asarray(x, dtype=np.int64) - p.input_zero_point
    low, high = v <= -p.input_range_radius, v >= p.input_range_radius
    inside = np.where(low | high, 0, v)  # outside the radius TFLM never multiplies
    q4 = mbqm(inside, p.input_multiplier, p.input_left_shift) if p.input_range_radius > 0 else inside
    return q4, low, high


def logistic(x: np.ndarray, q_in: TensorQ, q_out: TensorQ) -> np.ndarray:
    """reference_integer_ops::Logistic (int8): gemmlowp logistic on Q4.27, then Q0.8 - 128."""
    p = prepare_logistic(q_in, q_out)
    q4, low, high = _q4_input(stored(x, q_in, "LOGISTIC input"), p)
    y = _clamp(rdbpot(gemmlowp_logistic(q4, 4), 23) - 128, -128, 127)
    return np.where(low, -128, np.where(high, 127, y))


def prepare_tanh(q_in: TensorQ, q_out: TensorQ) -> SigmoidParams:
    """TFLM's int8 TANH: the output is always Q0.7 with zero point 0 (TFLM checks neither)."""
    _check_q(q_in, "TANH input")
    _check_q(q_out, "TANH output")
    if q_out.zero_point != 0 or f32(q_out.scale) != 1 / 128:
        raise ValueError(f"TANH int8: output must have scale 1/128 and zero point 0 (TFLM's fixed output), "
                         f"got scale {q_out.scale}, zero point {q_out.zero_point}")
    return _prepare_q4_input(q_in, "TANH")


def tanh(x: np.ndarray, q_in: TensorQ, q_out: TensorQ) -> np.ndarray:
    """reference_integer_ops::Tanh (int8): gemmlowp tanh on Q4.27, then Q0.7."""
    p = prepare_tanh(q_in, q_out)
    q4, low, high = _q4_input(stored(x, q_in, "TANH input"), p)
    y = _clamp(rdbpot(gemmlowp_tanh(q4, 4), 24), -128, 127)
    return np.where(low, -128, np.where(high, 127, y))


# ------------------------------------------------------------------------------------------ HARD_SWISH

@dataclass(frozen=True)
class HardSwishParams:
    input_zero_point: int
    output_zero_point: int
    output_multiplier: int  # int16
    output_exponent: int
    reluish_multiplier: int  # int16
    reluish_exponent: int


def _down_scale_16(m32: int) -> int:
    """DownScaleInt32ToInt16Multiplier: round a Q0.31 multiplier to Q0.15."""
    if m32 >= INT32_MAX - (1 << 15):
        return (1 << 15) - 1
    return (m32 + (1 << 15)) >> 16


def prepare_hard_swish(q_in: TensorQ, q_out: TensorQ) -> HardSwishParams:
    """hard_swish_common.cc: float32 ratios of the 'hires' input scale s_in/128 to the output
    scale and to the reluish scale 3/32768, each to an int16 multiplier and an exponent."""
    _check_q(q_in, "HARD_SWISH input")
    _check_q(q_out, "HARD_SWISH output")
    hires = np.float32(1.0 / 128.0) * np.float32(q_in.scale)
    m_out, e_out = quantize_multiplier(float(hires / np.float32(q_out.scale)))
    if e_out > 0:
        raise ValueError(f"HARD_SWISH: output scale {q_out.scale} must exceed input scale/128 "
                         f"(TFLM requires a non-positive output exponent, got {e_out})")
    m_rel, e_rel = quantize_multiplier(float(hires / np.float32(3.0 / 32768.0)))
    return HardSwishParams(q_in.zero_point, q_out.zero_point, _down_scale_16(m_out), e_out,
                           _down_scale_16(m_rel), e_rel)


def _sat_left_shift16(v: np.ndarray, amount: int) -> np.ndarray:
    return np.clip(np.asarray(v, dtype=np.int64) * (1 << amount), -32768, 32767)


def _rdbpot16(x: np.ndarray, exponent: int) -> np.ndarray:
    """gemmlowp RoundingDivideByPOT on int16 values (the mask is truncated to int16)."""
    x = np.asarray(x, dtype=np.int64)
    mask = int(wrap16(np.int64((1 << exponent) - 1)))
    remainder = wrap16(x & mask)
    threshold = wrap16((mask >> 1) + (x < 0))
    return wrap16((x >> exponent) + (remainder > threshold))


def hard_swish(x: np.ndarray, q_in: TensorQ, q_out: TensorQ) -> np.ndarray:
    """reference_ops::HardSwish (int8), every step in int16 as the kernel does."""
    p = prepare_hard_swish(q_in, q_out)
    v = wrap16(stored(x, q_in, "HARD_SWISH input") - p.input_zero_point)
    hires = wrap16(v * 128)
    pre_out = srdhm16(hires, p.output_multiplier)
    rel = hires
    if p.reluish_exponent > 0:
        rel = _sat_left_shift16(rel, p.reluish_exponent - 1)
    rel = srdhm16(rel, p.reluish_multiplier)
    if p.reluish_exponent > 0:
        rel = _sat_left_shift16(rel, 1)
    if p.reluish_exponent < 0:
        rel = _rdbpot16(rel, -p.reluish_exponent)
    rel = wrap16((rel + (1 << 15)) >> 1)
    # SaturatingDoublingHighMul (no rounding): C division of the product by 2^15
    prod = rel * pre_out
    q = np.abs(prod) >> 15
    pre_shift = wrap16(np.where(prod < 0, -q, q))
    pre_shift = np.where((rel == -32768) & (pre_out == -32768), 32767, pre_shift)
    y = wrap16(_rdbpot16(pre_shift, -p.output_exponent) + p.output_zero_point)
    return _clamp(y, -128, 127)


# ------------------------------------------------------------------------------------------ MAXIMUM / MINIMUM

def check_same_quant(qs: Sequence[TensorQ], op: str, dtypes: Sequence[str] = ("int8",)) -> None:
    for i, q in enumerate(qs):
        _check_q(q, f"{op} tensor {i}", dtypes)
    first = qs[0]
    for q in qs[1:]:
        if q.dtype != first.dtype or f32(q.scale) != f32(first.scale) or q.zero_point != first.zero_point:
            raise ValueError(f"{op}: all tensors need the same type, scale and zero point "
                             f"(TFLM copies stored values), got {list(qs)}")


def maximum(a: np.ndarray, b: np.ndarray, q1: TensorQ, q2: TensorQ, q_out: TensorQ) -> np.ndarray:
    """TFLM MAXIMUM: elementwise max of stored values with broadcasting (no rescale: TFLM does
    not look at scales, so prepare insists all three share one quantization)."""
    check_same_quant((q1, q2, q_out), "MAXIMUM", ("int8", "int16"))
    a, b = stored(a, q1, "MAXIMUM input 1"), stored(b, q2, "MAXIMUM input 2")
    broadcast_shape(a.shape, b.shape, max_rank=5)
    return np.maximum(a, b)


def minimum(a: np.ndarray, b: np.ndarray, q1: TensorQ, q2: TensorQ, q_out: TensorQ) -> np.ndarray:
    """TFLM MINIMUM (see maximum)."""
    check_same_quant((q1, q2, q_out), "MINIMUM", ("int8", "int16"))
    a, b = stored(a, q1, "MINIMUM input 1"), stored(b, q2, "MINIMUM input 2")
    broadcast_shape(a.shape, b.shape, max_rank=5)
    return np.minimum(a, b)


# ------------------------------------------------------------------------------------------ data movement

def nearest_neighbor_index(out_index: np.ndarray, in_size: int, out_size: int, align_corners: bool,
                           half_pixel_centers: bool) -> np.ndarray:
    """reference_ops GetNearestNeighbor, in float32 as TFLM computes it."""
    if align_corners and out_size > 1:
        scale = np.float32(in_size - 1) / np.float32(out_size - 1)
    else:
        scale = np.float32(in_size) / np.float32(out_size)
    offset = np.float32(0.5 if half_pixel_centers else 0.0)
    pos = (np.asarray(out_index).astype(np.float32) + offset) * scale
    if align_corners:
        idx = (np.sign(pos) * np.floor(np.abs(pos) + np.float32(0.5))).astype(np.int64)  # TfLiteRound
    else:
        idx = np.floor(pos).astype(np.int64)
    idx = np.minimum(idx, in_size - 1)
    return np.maximum(idx, 0) if half_pixel_centers else idx


def resize_nearest_neighbor(x: np.ndarray, size: tuple[int, int], q_in: TensorQ, q_out: TensorQ,
                            align_corners: bool = False, half_pixel_centers: bool = False) -> np.ndarray:
    """TFLM RESIZE_NEAREST_NEIGHBOR on NHWC: a gather of stored values."""
    check_same_quant((q_in, q_out), "RESIZE_NEAREST_NEIGHBOR", ("int8", "int16"))
    x = stored(x, q_in, "RESIZE_NEAREST_NEIGHBOR input")
    if x.ndim != 4:
        raise ValueError(f"RESIZE_NEAREST_NEIGHBOR needs a 4-D NHWC input, got shape {x.shape}")
    oh, ow = (int(s) for s in size)
    if oh < 1 or ow < 1:
        raise ValueError(f"RESIZE_NEAREST_NEIGHBOR: output size {size} must be positive")
    ys = nearest_neighbor_index(np.arange(oh), x.shape[1], oh, align_corners, half_pixel_centers)
    xs = nearest_neighbor_index(np.arange(ow), x.shape[2], ow, align_corners, half_pixel_centers)
    return x[:, ys][:, :, xs]


def transpose(x: np.ndarray, perm: Sequence[int], q_in: TensorQ, q_out: TensorQ) -> np.ndarray:
    """TFLM TRANSPOSE (up to 5-D, perm over every axis including the batch)."""
    check_same_quant((q_in, q_out), "TRANSPOSE", ("int8", "int16"))
    x = stored(x, q_in, "TRANSPOSE input")
    if x.ndim > 5:
        raise ValueError(f"TRANSPOSE supports up to 5 dimensions, got {x.ndim}")
    if sorted(int(p) for p in perm) != list(range(x.ndim)):
        raise ValueError(f"TRANSPOSE: perm {list(perm)} is not a permutation of 0..{x.ndim - 1}")
    return np.transpose(x, [int(p) for p in perm])


def concatenation(xs: Sequence[np.ndarray], axis: int, qs_in: Sequence[TensorQ], q_out: TensorQ) -> np.ndarray:
    """TFLM CONCATENATION int8/int16: every input must carry the output's scale and zero point
    (TFLM's Prepare checks it), so the op copies stored values."""
    check_same_quant(list(qs_in) + [q_out], "CONCATENATION", ("int8", "int16"))
    arrays = [stored(v, q_out, f"CONCATENATION input {i}") for i, v in enumerate(xs)]
    if not arrays:
        raise ValueError("CONCATENATION needs at least one input")
    if not -arrays[0].ndim <= axis < arrays[0].ndim:
        raise ValueError(f"CONCATENATION: axis {axis} outside rank {arrays[0].ndim}")
    return np.concatenate(arrays, axis=axis)


@dataclass(frozen=True)
class MeanParams:
    multiplier: int
    shift: int
    input_zero_point: int
    output_zero_point: int
    count: int


def prepare_mean(q_in: TensorQ, q_out: TensorQ, count: int) -> MeanParams:
    """reduce_common.cc: QuantizeMultiplier(s_in / s_out), then QuantizedMeanOrSum folds 1/count
    into the multiplier: shift = min(floor(log2 count), 32, 31 + shift), m = (m << shift) // count."""
    _check_q(q_in, "MEAN input", ("int8", "int16"))
    _check_q(q_out, "MEAN output", ("int8", "int16"))
    if q_in.dtype != q_out.dtype:
        raise ValueError(f"MEAN: input and output types differ ({q_in.dtype}, {q_out.dtype})")
    if count < 1:
        raise ValueError("MEAN over an empty axis")
    m, shift = quantize_multiplier(f32(q_in.scale) / f32(q_out.scale))
    _mbqm_shift_ok(shift, "MEAN")
    s = min(count.bit_length() - 1, 32, 31 + shift)
    m = (m << s) // count
    shift -= s
    if shift < -31:
        raise ValueError(f"MEAN: scale ratio {q_in.scale}/{q_out.scale} over {count} elements needs a right "
                         "shift beyond 31 (undefined in TFLM's RoundingDivideByPOT)")
    return MeanParams(m, shift, q_in.zero_point, q_out.zero_point, count)


def mean(x: np.ndarray, axes: Sequence[int], q_in: TensorQ, q_out: TensorQ, keep_dims: bool = True) -> np.ndarray:
    """TFLM MEAN int8/int16 (QuantizedMeanOrSum): int32 sum, minus zp_in * count, one MBQM."""
    _check_q(q_in, "MEAN input", ("int8", "int16"))
    x = stored(x, q_in, "MEAN input")
    axes_t = tuple(sorted({int(a) % x.ndim for a in axes}))
    count = int(np.prod([x.shape[a] for a in axes_t])) if axes_t else 1
    p = prepare_mean(q_in, q_out, count)
    total = wrap32(wrap32(x.sum(axis=axes_t, keepdims=keep_dims)) - p.input_zero_point * count)
    lo, hi = _RANGES[q_out.dtype]
    return _clamp(mbqm(total, p.multiplier, p.shift) + p.output_zero_point, lo, hi)


# ------------------------------------------------------------------------------------------ ELU

def elu_table(q_in: TensorQ, q_out: TensorQ) -> np.ndarray:
    """elu.cc PopulateLookupTable: for every int8 input, in float32: dequantize, exp(x) - 1 for
    x < 0, multiply by 1/s_out, TfLiteRound, add the zero point, truncate to int32, clamp. Index
    = stored input + 128. exp is the double exp rounded to float32 (correctly rounded but for
    rare double-rounding cases); TFLM's expf agreed on every table tests/test_tflm_ops.py draws,
    and a 1-ulp difference could only matter where the product straddles a rounding tie."""
    _check_q(q_in, "ELU input")
    _check_q(q_out, "ELU output")
    vals = np.arange(-128, 128, dtype=np.int64)
    inverse_scale = np.float32(1) / np.float32(q_out.scale)
    deq = np.float32(q_in.scale) * (vals - q_in.zero_point).astype(np.float32)
    expm1 = (np.exp(np.minimum(deq, 0).astype(np.float64)).astype(np.float32) - np.float32(1)).astype(np.float32)
    transformed = np.where(deq < 0, expm1, deq).astype(np.float32)
    prod = (transformed * inverse_scale).astype(np.float32)
    if not np.all(np.abs(prod.astype(np.float64)) < 2.0**31):
        raise ValueError(f"ELU: output scale {q_out.scale} overflows int32 for input scale {q_in.scale}")
    rescaled = (np.sign(prod) * np.floor(np.abs(prod).astype(np.float64) + 0.5)).astype(np.float32)
    quantized = (rescaled + np.float32(q_out.zero_point)).astype(np.float32)
    if not np.all(np.abs(quantized.astype(np.float64)) < 2.0**31):
        raise ValueError(f"ELU: output scale {q_out.scale} overflows int32 for input scale {q_in.scale}")
    return np.clip(np.trunc(quantized).astype(np.int64), -128, 127)


def elu(x: np.ndarray, q_in: TensorQ, q_out: TensorQ) -> np.ndarray:
    """TFLM ELU int8: a 256-entry lookup table built at Prepare (elu_table)."""
    table = elu_table(q_in, q_out)
    return table[stored(x, q_in, "ELU input") + 128]


# ------------------------------------------------------------------------------------------ int4 packing

def pack_int4(values: np.ndarray) -> bytes:
    """Dense kTfLiteInt4 bytes of int4 values in row-major order: element 2i in the low nibble of
    byte i, element 2i+1 in its high nibble, an odd last element alone in a low nibble
    (tensor_utils::UnpackDenseInt4IntoInt8 reads them back)."""
    v = np.asarray(values, dtype=np.int64).ravel()
    if v.size and (v.min() < -8 or v.max() > 7):
        raise ValueError(f"int4 weights must lie in [-8, 7], got [{int(v.min())}, {int(v.max())}]")
    nib = (v & 0xF).astype(np.uint8)
    if nib.size % 2:
        nib = np.append(nib, np.uint8(0))
    return (nib[0::2] | (nib[1::2] << 4)).astype(np.uint8).tobytes()


def unpack_int4(data: bytes, count: int) -> np.ndarray:
    """The `count` int4 values of dense kTfLiteInt4 bytes, sign-extended (int64)."""
    raw = np.frombuffer(bytes(data), dtype=np.uint8).astype(np.int64)
    if raw.size != (count + 1) // 2:
        raise ValueError(f"{count} int4 values take {(count + 1) // 2} bytes, got {raw.size}")
    out = np.empty(raw.size * 2, dtype=np.int64)
    out[0::2], out[1::2] = raw & 0xF, raw >> 4
    out = np.where(out >= 8, out - 16, out)
    return out[:count]


# ------------------------------------------------------------------------------------------ CONV_2D / DEPTHWISE / FC

WEIGHT_RANGES = {"int8": (-127, 127), "int4": (-8, 7)}


@dataclass(frozen=True)
class WeightedParams:
    """Prepare of CONV_2D, DEPTHWISE_CONV_2D and FULLY_CONNECTED (PopulateConvolutionQuantizationParams)."""

    multipliers: tuple[int, ...]  # per output channel
    shifts: tuple[int, ...]
    input_zero_point: int
    output_zero_point: int
    activation_min: int
    activation_max: int
    wide: bool  # int16 activations: int64 accumulator and bias, MultiplyByQuantizedMultiplier(int64)


def prepare_weighted(op: str, q_in: TensorQ, weight_scales: Sequence[float], q_out: TensorQ, channels: int,
                     activation: str | None = None, weight_dtype: str = "int8") -> WeightedParams:
    """Per output channel, QuantizeMultiplier(double(s_in) * double(s_w) / double(s_out)) from the
    float32 scales; refuses what TFLM refuses (hybrid types, int16 with int4 weights, per-channel
    int4 FULLY_CONNECTED, int16 zero points) or computes with undefined C shifts."""
    dtypes = ("int8", "int16")
    _check_q(q_in, f"{op} input", dtypes)
    _check_q(q_out, f"{op} output", dtypes)
    if q_in.dtype != q_out.dtype:
        raise ValueError(f"{op}: input and output types differ ({q_in.dtype}, {q_out.dtype})")
    if weight_dtype not in WEIGHT_RANGES:
        raise ValueError(f"{op}: weight type {weight_dtype} not supported (int8 or int4)")
    wide = q_in.dtype == "int16"
    if wide and weight_dtype != "int8":
        raise ValueError(f"{op}: int16 activations take int8 weights only (TFLM has no int16x4 kernel)")
    if wide and (q_in.zero_point or q_out.zero_point):
        raise ValueError(f"{op} int16: zero points must be 0 (symmetric int16x8), got {q_in.zero_point}, "
                         f"{q_out.zero_point}")
    scales = [f32(s) for s in weight_scales]
    if len(scales) not in (1, channels):
        raise ValueError(f"{op}: weights need 1 or {channels} scales, got {len(scales)}")
    if op == "FULLY_CONNECTED" and weight_dtype == "int4" and len(scales) > 1:
        raise ValueError("FULLY_CONNECTED: int4 weights must be per-tensor (TFLM refuses per-channel int4 FC)")
    if not all(math.isfinite(s) and s > 0 for s in scales):
        raise ValueError(f"{op}: weight scales must be finite and positive in float32")
    mults, shifts = [], []
    for o in range(channels):
        m, shift = quantize_multiplier(f32(q_in.scale) * scales[o if len(scales) > 1 else 0] / f32(q_out.scale))
        if wide and not -48 <= shift <= 14:  # the int64 variant shifts right by 15 - shift: 1..63 in C
            raise ValueError(f"{op} int16: scale ratio of channel {o} needs a shift of {shift} (outside -48..14)")
        _mbqm_shift_ok(shift, f"{op} channel {o}")
        mults.append(m)
        shifts.append(shift)
    lo, hi = activation_range(q_out, activation)
    return WeightedParams(tuple(mults), tuple(shifts), q_in.zero_point, q_out.zero_point, lo, hi, wide)


def _weights(w: np.ndarray, weight_dtype: str, op: str) -> np.ndarray:
    a = np.asarray(w)
    if a.dtype.kind not in "iu":
        raise ValueError(f"{op}: weights must be integers, got dtype {a.dtype}")
    a = a.astype(np.int64)
    lo, hi = WEIGHT_RANGES[weight_dtype]
    lo = -128 if weight_dtype == "int8" else lo  # int8 -128 is legal storage (symmetric files avoid it)
    if a.size and (a.min() < lo or a.max() > hi):
        raise ValueError(f"{op}: {weight_dtype} weights outside [{lo}, {hi}]")
    return a


def _bias(bias: np.ndarray | None, channels: int, wide: bool, op: str) -> np.ndarray:
    if bias is None:
        return np.zeros(channels, dtype=np.int64)
    b = np.asarray(bias)
    if b.dtype.kind not in "iu" or b.shape != (channels,):
        raise ValueError(f"{op}: bias must be {channels} integers, got {b.dtype} {b.shape}")
    b = b.astype(np.int64)
    if not wide and b.size and (b.min() < -(2**31) or b.max() > INT32_MAX):
        raise ValueError(f"{op}: int8 kernels take an int32 bias; values exceed int32")
    return b


def _requantize_acc(acc: np.ndarray, p: WeightedParams) -> np.ndarray:
    """Per output channel (last axis): MBQM of the accumulator, output offset, activation clamp."""
    out = np.empty_like(acc)
    for o, (m, s) in enumerate(zip(p.multipliers, p.shifts)):
        out[..., o] = mbqm64(acc[..., o], m, s) if p.wide else mbqm(acc[..., o], m, s)
    return _clamp(out + p.output_zero_point, p.activation_min, p.activation_max)


def _accumulate(acc: np.ndarray, bias: np.ndarray, wide: bool) -> np.ndarray:
    """acc + bias in the kernel's accumulator: int64 (int16x8, exact here) or int32 (wraps as C would)."""
    return acc + bias if wide else wrap32(acc + bias)


def conv2d(x: np.ndarray, weights: np.ndarray, bias: np.ndarray | None, q_in: TensorQ, weight_scales: Sequence[float],
           q_out: TensorQ, stride: tuple[int, int] = (1, 1), padding: str = "valid",
           dilation: tuple[int, int] = (1, 1), activation: str | None = None,
           weight_dtype: str = "int8") -> np.ndarray:
    """reference_integer_ops::ConvPerChannel: x [N,H,W,C] stored, weights [O,KH,KW,C] (values, int4
    already unpacked), padded taps skipped (the input offset applies only inside the image)."""
    w = _weights(weights, weight_dtype, "CONV_2D")
    p = prepare_weighted("CONV_2D", q_in, weight_scales, q_out, w.shape[0], activation, weight_dtype)
    x = stored(x, q_in, "CONV_2D input") - p.input_zero_point
    if x.ndim != 4 or w.ndim != 4 or w.shape[3] != x.shape[3]:
        raise ValueError(f"CONV_2D: input {x.shape} and weights {w.shape} do not fit ([N,H,W,C], [O,KH,KW,C])")
    pt = _patches(x, w.shape[1], w.shape[2], tuple(stride), tuple(dilation), padding, 0)
    acc = np.einsum("nyxijc,oijc->nyxo", pt, w)
    return _requantize_acc(_accumulate(acc, _bias(bias, w.shape[0], p.wide, "CONV_2D"), p.wide), p)


def depthwise_conv2d(x: np.ndarray, weights: np.ndarray, bias: np.ndarray | None, q_in: TensorQ,
                     weight_scales: Sequence[float], q_out: TensorQ, stride: tuple[int, int] = (1, 1),
                     padding: str = "valid", dilation: tuple[int, int] = (1, 1), depth_multiplier: int = 1,
                     activation: str | None = None, weight_dtype: str = "int8") -> np.ndarray:
    """reference_integer_ops::DepthwiseConvPerChannel: weights [1,KH,KW,C*M], output channel c*M + m."""
    w = _weights(weights, weight_dtype, "DEPTHWISE_CONV_2D")
    p = prepare_weighted("DEPTHWISE_CONV_2D", q_in, weight_scales, q_out, w.shape[-1], activation, weight_dtype)
    x = stored(x, q_in, "DEPTHWISE_CONV_2D input") - p.input_zero_point
    c, mult = x.shape[-1], int(depth_multiplier)
    if x.ndim != 4 or w.ndim != 4 or w.shape[0] != 1 or w.shape[3] != c * mult:
        raise ValueError(f"DEPTHWISE_CONV_2D: input {x.shape}, weights {w.shape} and multiplier {mult} do not fit")
    kh, kw = w.shape[1:3]
    pt = _patches(x, kh, kw, tuple(stride), tuple(dilation), padding, 0)
    acc = np.einsum("nyxijc,ijcm->nyxcm", pt, w.reshape(kh, kw, c, mult))
    acc = acc.reshape(acc.shape[:3] + (c * mult,))
    return _requantize_acc(_accumulate(acc, _bias(bias, c * mult, p.wide, "DEPTHWISE_CONV_2D"), p.wide), p)


def fully_connected(x: np.ndarray, weights: np.ndarray, bias: np.ndarray | None, q_in: TensorQ,
                    weight_scales: Sequence[float], q_out: TensorQ, activation: str | None = None,
                    weight_dtype: str = "int8") -> np.ndarray:
    """reference_integer_ops::FullyConnected(PerChannel): x [N, ...] flattened per batch row, weights [O, K]."""
    w = _weights(weights, weight_dtype, "FULLY_CONNECTED")
    p = prepare_weighted("FULLY_CONNECTED", q_in, weight_scales, q_out, w.shape[0], activation, weight_dtype)
    x = stored(x, q_in, "FULLY_CONNECTED input") - p.input_zero_point
    x = x.reshape(x.shape[0], -1)
    if w.ndim != 2 or w.shape[1] != x.shape[1]:
        raise ValueError(f"FULLY_CONNECTED: input of {x.shape[1]} features and weights {w.shape} do not fit")
    acc = x @ w.T
    return _requantize_acc(_accumulate(acc, _bias(bias, w.shape[0], p.wide, "FULLY_CONNECTED"), p.wide), p)


# ------------------------------------------------------------------------------------------ pools

def max_pool2d(x: np.ndarray, pool: tuple[int, int], stride: tuple[int, int], padding: str, q_in: TensorQ,
               q_out: TensorQ, activation: str | None = None) -> np.ndarray:
    """reference_integer_ops::MaxPool (int8/int16): max of the taps inside the image, clamped."""
    check_same_quant((q_in, q_out), "MAX_POOL_2D", ("int8", "int16"))
    x = stored(x, q_in, "MAX_POOL_2D input")
    lo, hi = activation_range(q_out, activation)
    pt = _patches(x, pool[0], pool[1], tuple(stride), (1, 1), padding, np.iinfo(np.int64).min)
    return _clamp(pt.max(axis=(3, 4)), lo, hi)


def average_pool2d(x: np.ndarray, pool: tuple[int, int], stride: tuple[int, int], padding: str, q_in: TensorQ,
                   q_out: TensorQ, activation: str | None = None) -> np.ndarray:
    """reference_integer_ops::AveragePool (int8/int16): int32 sum of the stored taps inside the
    image, divided by their count rounding half away from zero (C division), clamped."""
    check_same_quant((q_in, q_out), "AVERAGE_POOL_2D", ("int8", "int16"))
    x = stored(x, q_in, "AVERAGE_POOL_2D input")
    lo, hi = activation_range(q_out, activation)
    pt = _patches(x, pool[0], pool[1], tuple(stride), (1, 1), padding, 0)
    ones = np.ones((1,) + x.shape[1:3] + (1,), dtype=np.int64)
    n = _patches(ones, pool[0], pool[1], tuple(stride), (1, 1), padding, 0).sum(axis=(3, 4))
    acc = wrap32(pt.sum(axis=(3, 4)))
    half = n // 2
    y = np.where(acc > 0, c_div(acc + half, n), c_div(acc - half, n))
    return _clamp(y, lo, hi)
