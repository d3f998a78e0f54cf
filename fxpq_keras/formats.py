"""Fixed-point formats and the scalar rules of the numerics contract (docs/numerics.md).

Everything here is numpy-only so that the integer reference, the exporter and the tests share
one implementation of each rule.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

MIN_BITS = 2
MAX_BITS = 16
MAX_BIAS_BITS = 32
MIN_FRAC = -32
MAX_FRAC = 32
# target builtin's activation scale rules (SearchOptions.activation_scales, `fxpq quantize --activation-scales`):
# TFLite-style float scales with asymmetric int8 where signed (the default), all symmetric, or 2^-frac
ACTIVATION_SCALES = ("asymmetric", "float", "pow2")


class FormatError(ValueError):
    """A format outside the ranges of the numerics contract."""


@dataclass(frozen=True)
class Format:
    """A dynamic fixed-point format: the integer q means q * 2^-frac.

    Example::

        f = Format(bits=8, frac=5, signed=True)   # values -4.0 .. 3.96875 in steps of 1/32
        f.lo, f.hi                                # (-128, 127)
    """

    bits: int
    frac: int
    signed: bool = True
    # target builtin's float activation scale (float32 value; `scaled_format`): q means q * scale, and
    # frac is then the canonical one, 2^-(frac+1) < scale < 2^-frac. None: the scale is 2^-frac
    scale: float | None = None
    # asymmetric int8 (target builtin, signed 8-bit activations: formats.asymmetric_format): the file
    # stores q + zero_point in int8, so q runs over [-128 - zero_point, 127 - zero_point]; 0 elsewhere
    zero_point: int = 0

    def __post_init__(self) -> None:
        if not isinstance(self.bits, (int, np.integer)) or not MIN_BITS <= self.bits <= MAX_BIAS_BITS:
            raise FormatError(f"bits must be an integer in {MIN_BITS}..{MAX_BIAS_BITS}, got {self.bits!r}")
        if not isinstance(self.frac, (int, np.integer)) or not MIN_FRAC <= self.frac <= MAX_FRAC:
            raise FormatError(f"frac must be an integer in {MIN_FRAC}..{MAX_FRAC}, got {self.frac!r}")
        object.__setattr__(self, "bits", int(self.bits))
        object.__setattr__(self, "frac", int(self.frac))
        object.__setattr__(self, "signed", bool(self.signed))
        if self.scale is not None:
            scale = float(np.float32(self.scale))
            if not (np.isfinite(scale) and scale > 0 and math.frexp(scale)[0] != 0.5
                    and canonical_frac(scale) == self.frac):
                raise FormatError(f"scale {self.scale!r} is not a positive float32 scale strictly between "
                                  f"2^-{self.frac + 1} and 2^-{self.frac} (a power of two is a frac)")
            object.__setattr__(self, "scale", scale)
        if self.zero_point:
            if not (isinstance(self.zero_point, (int, np.integer)) and self.bits == 8 and self.signed
                    and -128 <= self.zero_point <= 127):
                raise FormatError(f"zero point {self.zero_point!r}: only a signed 8-bit format takes one, in "
                                  "-128..127")
            object.__setattr__(self, "zero_point", int(self.zero_point))

    @property
    def lo(self) -> int:
        return (-(1 << (self.bits - 1)) if self.signed else 0) - self.zero_point

    @property
    def hi(self) -> int:
        return ((1 << (self.bits - 1)) - 1 if self.signed else (1 << self.bits) - 1) - self.zero_point

    @property
    def step(self) -> float:
        """The real value of one integer step: the float scale if any, else 2^-frac."""
        return self.scale if self.scale is not None else 2.0 ** -self.frac

    @property
    def storage_dtype(self) -> np.dtype:
        """Container type of an activation in this format (numerics.md section 10)."""
        if self.bits <= 8:
            return np.dtype(np.int8 if self.signed else np.uint8)
        if self.bits <= 16:
            return np.dtype(np.int16 if self.signed else np.uint16)
        return np.dtype(np.int32)

    def with_bits(self, bits: int) -> Format:
        return Format(bits, self.frac, self.signed)

    def with_frac(self, frac: int) -> Format:
        return Format(self.bits, frac, self.signed)

    def to_dict(self) -> dict:
        d = {"bits": self.bits, "frac": self.frac, "signed": self.signed}
        if self.scale is not None:
            d["scale"] = self.scale
        if self.zero_point:
            d["zero_point"] = self.zero_point
        return d

    @classmethod
    def from_dict(cls, d: dict) -> Format:
        scale = d.get("scale")
        return cls(int(d["bits"]), int(d["frac"]), bool(d.get("signed", True)),
                   None if scale is None else float(scale), int(d.get("zero_point", 0)))

    def __str__(self) -> str:
        text = f"{'s' if self.signed else 'u'}{self.bits}.{self.frac}"
        text = text if self.scale is None else f"{text}@{self.scale:.6g}"
        return text if not self.zero_point else f"{text}z{self.zero_point}"


def stored_zero_point(fmt: Format, hybrid: bool = False) -> int:
    """The zero point of the int8/int16 tensor that stores `fmt` (the file holds q + zero point): an
    asymmetric format's own; -128 for unsigned 8 bits (TFLite's uint8 ranges in int8) and, in hybrid
    fxp files (`hybrid`), for every unsigned format of fewer bits too; 0 otherwise. The one rule of
    the writers, the readers and the numpy model of TFLM (docs/format.md 7, 8)."""
    if fmt.zero_point:
        return fmt.zero_point
    return -128 if not fmt.signed and (fmt.bits == 8 or (hybrid and fmt.bits < 8)) else 0


def packed_row_bytes(bits: int, count: int) -> int:
    """Flash bytes of one output channel's run of `count` weights of width `bits` (numerics.md 9).

    Every width 2..16 is bit-packed and every run starts on a byte boundary, so a run costs
    ceil(count * bits / 8) bytes. The packer (flatbuffer.packing), the device accounting
    (memory.py) and the C kernels' fxpq_packed_row_size follow this one rule.
    """
    return (int(count) * int(bits) + 7) // 8


def check_activation_bits(bits: int, what: str = "bits") -> None:
    """Weights and activations are limited to 2..16 bits (biases may use up to 32)."""
    if not MIN_BITS <= int(bits) <= MAX_BITS:
        raise FormatError(f"{what} must be in {MIN_BITS}..{MAX_BITS}, got {bits}")


def check_integers(x: np.ndarray, fmt: Format, what: str = "input") -> np.ndarray:
    """x as int64 when every value is an integer of fmt's range; else a ValueError naming the first
    bad value (engines would otherwise disagree: numpy computes with it, C wraps it to int16)."""
    x = np.asarray(x)
    if x.dtype.kind not in "iub":
        with np.errstate(invalid="ignore"):
            bad = ~np.isfinite(x) | (x != np.floor(x)) if x.dtype.kind in "fc" else np.ones(x.shape, bool)
        if bad.any():
            i = tuple(int(j) for j in np.argwhere(bad)[0])
            raise ValueError(f"{what} value {x[i]!r} at {list(i)} is not an integer of format {fmt} "
                             f"(range {fmt.lo}..{fmt.hi})")
        big = np.abs(x) >= 2.0**62
        if big.any():
            i = tuple(int(j) for j in np.argwhere(big)[0])
            raise ValueError(f"{what} value {x[i]!r} at {list(i)} is outside format {fmt} (range {fmt.lo}..{fmt.hi})")
    q = x.astype(np.int64)
    out = (q < fmt.lo) | (q > fmt.hi)
    if x.dtype.kind == "u":
        out |= x > fmt.hi
    if out.any():
        i = tuple(int(j) for j in np.argwhere(out)[0])
        raise ValueError(f"{what} value {x[i]!r} at {list(i)} is outside format {fmt} (range {fmt.lo}..{fmt.hi})")
    return q


def saturate(v: np.ndarray, fmt: Format) -> np.ndarray:
    return np.clip(np.asarray(v, dtype=np.int64), fmt.lo, fmt.hi)


def quantize(x: np.ndarray, fmt: Format | None = None, *, frac=None, lo=None, hi=None) -> np.ndarray:
    """q = saturate(floor(x * 2^frac + 0.5)) in float64; frac may be a per-channel array
    broadcasting against x. Returns int64."""
    x = np.asarray(x, dtype=np.float64)
    if np.isnan(x).any():
        raise ValueError("cannot quantize NaN")
    if fmt is not None:
        frac, lo, hi = fmt.frac, fmt.lo, fmt.hi
    scaled = np.floor(np.ldexp(x, np.asarray(frac, dtype=np.int32)) + 0.5)
    return np.clip(scaled, lo, hi).astype(np.int64)


def dequantize(q: np.ndarray, frac) -> np.ndarray:
    """q * 2^-frac as float32 (exact for the legal formats)."""
    return np.ldexp(np.asarray(q, dtype=np.float64), -np.asarray(frac, dtype=np.int32)).astype(np.float32)


def rescale(v: np.ndarray, from_frac, to_frac) -> np.ndarray:
    """Exact round_half_up(v * 2^(to_frac - from_frac)) on int64, not yet saturated.

    Fracs may be arrays broadcasting against v (per-channel). Left shifts that would leave
    int64 are clamped to +-2^62 so that a later saturate gives the contract's answer.
    """
    v = np.asarray(v, dtype=np.int64)
    shift = np.asarray(to_frac, dtype=np.int64) - np.asarray(from_frac, dtype=np.int64)
    if shift.ndim == 0 and v.ndim:  # one shift for every element (per-tensor formats): the same rule, no masks
        return _rescale_by(v, int(shift))
    if shift.size and bool(np.all((shift < 0) & (shift > -63))):
        # right shifts only (per-channel accumulators to a narrower output): the rule below without its
        # masks, the shifts broadcast against v
        s = -shift
        return (v + (np.int64(1) << (s - 1))) >> s
    v, shift = np.broadcast_arrays(v, shift)
    out = np.empty(v.shape, dtype=np.int64)
    right = shift < 0
    s = np.minimum(-shift[right], 63)
    vr = v[right]
    res = (vr + (np.int64(1) << (s - 1))) >> s
    res[s >= 63] = 0
    out[right] = res
    left = ~right
    ls = np.minimum(shift[left], 62)
    vl = v[left]
    limit = np.int64(1) << 62
    big = (np.abs(vl) >= (limit >> ls)) & (vl != 0)
    res = vl << ls
    res[big] = np.where(vl[big] > 0, limit, -limit)
    out[left] = res
    return out


def _rescale_by(v: np.ndarray, shift: int) -> np.ndarray:
    """`rescale` with one shift for all of int64 `v` (the per-element rule below, element for element)."""
    if shift < 0:
        s = min(-shift, 63)
        if s >= 63:
            return np.zeros(v.shape, dtype=np.int64)
        return (v + (np.int64(1) << np.int64(s - 1))) >> np.int64(s)
    ls = np.int64(min(shift, 62))
    limit = np.int64(1) << np.int64(62)
    res = v << ls
    big = (np.abs(v) >= (limit >> ls)) & (v != 0)
    if big.any():
        res[big] = np.where(v[big] > 0, limit, -limit)
    return res


def requantize(v: np.ndarray, from_frac, out: Format) -> np.ndarray:
    """rescale then saturate: the one path every op uses to reach its output format."""
    return saturate(rescale(v, from_frac, out.frac), out)


def relu_bounds(out: Format, activation: str | None) -> tuple[int, int]:
    """Integer clamp of a fused activation in the output format (numerics.md section 4)."""
    lo, hi = out.lo, out.hi
    if activation in (None, "linear", "none"):
        return lo, hi
    if activation == "relu":
        return max(lo, 0), hi
    if activation == "relu6":
        six = int(saturate(rescale(np.int64(6), 0, out.frac), out))
        return max(lo, 0), min(hi, six)
    raise ValueError(f"unsupported fused activation {activation!r}; supported: relu, relu6, linear")


def apply_activation(y: np.ndarray, out: Format, activation: str | None) -> np.ndarray:
    lo, hi = relu_bounds(out, activation)
    return np.clip(y, lo, hi)


def frac_for_range(max_abs: float, bits: int, signed: bool = True) -> int:
    """Largest frac whose range still holds max_abs (without saturation beyond 1/2 LSB)."""
    int_bits = bits - 1 if signed else bits
    if not np.isfinite(max_abs):
        raise ValueError("range is not finite")
    if max_abs <= 0:
        return int(np.clip(int_bits, MIN_FRAC, MAX_FRAC))
    # need (max_abs * 2^frac) <= 2^int_bits - 1
    frac = int(math.floor(math.log2((2**int_bits - 1) / max_abs)))
    return int(np.clip(frac, MIN_FRAC, MAX_FRAC))


def canonical_frac(scale: float) -> int:
    """The frac of a float scale: 2^-(frac+1) < scale <= 2^-frac (exact, from the binary exponent)."""
    mant, exp = math.frexp(float(scale))
    return 1 - exp if mant == 0.5 else -exp


def activation_scale(max_abs: float, fmt: Format) -> float:
    """Target builtin's float activation scale (issue 23): s = min(max_abs / hi, 2^-frac) in
    float32, hi the format's largest integer (127 for s8, 255 for u8 stored as int8 with zero
    point -128, 32767 for s16 and u15). At the range-derived frac (frac_for_range) that is
    TFLite's own scale, max|a| / qmax: a u8 activation uses all 256 codes instead of the 129 to
    256 a power-of-two step leaves; a larger frac (mechanism 3's candidates) keeps its finer
    power-of-two step, which clips. max_abs <= 0 (a silent tensor) keeps 2^-frac.
    The one rule: the fake-quant's variables and the lowering both take it from here (scaled_format).
    """
    step = math.ldexp(1.0, -fmt.frac)
    if not max_abs > 0 or not np.isfinite(max_abs):
        return step
    return float(min(np.float32(np.float32(max_abs) / np.float32(fmt.hi)), np.float32(step)))


def asymmetric_format(fmt: Format, low: float, high: float) -> Format:
    """A signed 8-bit `fmt` as TFLite's asymmetric int8 over the calibration range [low, high]
    widened to hold 0: scale s = min((high - low) / 255, 2^-frac) in float32 and the integer zero
    point floor(-(low + high) / (2 s)) clamped to int8, which centres the 256 codes on the range
    (at s = (high - low) / 255 it is TFLite's round(-128 - low / s)), so real 0 is a code and a
    range of one sign spends every code on it (zero point -128: q in 0..255, stored as the unsigned
    8-bit format is, while the policy's format stays signed). A silent tensor (high == low), or one
    too narrow for a frac in MIN_FRAC..MAX_FRAC, keeps `fmt`.
    The one rule: the fake-quant's variables and the lowering both take it from here (scaled_format).
    """
    low, high = min(float(low), 0.0), max(float(high), 0.0)
    if not (np.isfinite(low) and np.isfinite(high) and high > low):
        return fmt
    width = np.float32(np.float32(high) - np.float32(low))
    scale = float(min(np.float32(width / np.float32(255)), np.float32(math.ldexp(1.0, -fmt.frac))))
    if not scale > 0 or not MIN_FRAC <= canonical_frac(scale) <= MAX_FRAC:
        return fmt  # a range too narrow for any format's step: the format's own (as frac_for_range clips)
    zp = int(np.clip(math.floor(-(low + high) / (2.0 * scale)), -128, 127))
    return Format(8, canonical_frac(scale), True, None if math.frexp(scale)[0] == 0.5 else scale, zp)


def takes_bounds(fmt: Format) -> bool:
    """Whether calibration bounds make `fmt` asymmetric (scaled_format): signed 8 bits; int16 stays
    symmetric, as TFLM's int16x8 kernels need."""
    return fmt.bits == 8 and fmt.signed


def scaled_format(fmt: Format, max_abs: float | None, bounds: tuple[float, float] | None = None) -> Format:
    """`fmt` with its float activation scale (activation_scale) when that is not a power of two, at
    the scale's canonical frac; `fmt` itself when max_abs is None or the scale is 2^-frac. With the
    calibration `bounds` (min, max) a signed 8-bit format is asymmetric (asymmetric_format)."""
    if bounds is not None and takes_bounds(fmt):
        return asymmetric_format(fmt, *bounds)
    if max_abs is None:
        return fmt
    scale = activation_scale(max_abs, fmt)
    if math.frexp(scale)[0] == 0.5:
        return Format(fmt.bits, canonical_frac(scale), fmt.signed)
    return Format(fmt.bits, canonical_frac(scale), fmt.signed, scale)


def accumulator_needs_64(bits_x: int, signed_x: bool, bits_w: int, terms: int) -> bool:
    """The contract's width rule: int32 only when the dot product provably fits."""
    x_bits = bits_x if signed_x else bits_x + 1
    return x_bits + bits_w + math.ceil(math.log2(max(terms, 1))) > 31
