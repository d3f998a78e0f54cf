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
from ..integer_graph.tflm_math import (  # noqa: F401 (the primitives moved to tflm_math; names kept)
    INT32_MAX,
    INT32_MIN,
    SINGLE_ROUNDING,
    mbqm,
    mbqm_smaller_than_one,
    quantize_multiplier,
    rdbpot,
    srdhm,
)
from ..integer_graph.tflm_math import c_div as _c_div_arr
from ..integer_graph.tflm_math import exp_on_negative_values as _exp_on_negative_values
from ..integer_graph.tflm_math import reciprocal as _reciprocal
from ..integer_graph.tflm_math import sat_mul_pot as _sat_mul_pot
from ..integer_graph.tflm_math import wrap32 as _wrap32


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
