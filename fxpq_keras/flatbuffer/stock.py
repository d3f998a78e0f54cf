"""numpy model of TFLM's reference kernels for int8-builtin and builtin files (bit-exact with TFLM).

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

from ..formats import stored_zero_point
from ..integer_graph import IntegerGraph, Node, tflm_ops
from ..integer_graph.graph import STOCK_OPS as GRAPH_STOCK_OPS
from ..integer_graph.graph import run_stock_node
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
from ..integer_graph.tflm_math import exp_on_negative_values as _exp_on_negative_values
from ..integer_graph.tflm_math import reciprocal as _reciprocal
from ..integer_graph.tflm_math import sat_mul_pot as _sat_mul_pot
from ..integer_graph.tflm_math import wrap32 as _wrap32


def zero_point(fmt: Any) -> int:
    """Stored zero point of a stock tensor (formats.stored_zero_point; a float tensor: 0)."""
    return 0 if fmt is None else stored_zero_point(fmt)


def activation_range(frac: int, activation: str | None, zp: int = 0) -> tuple[int, int]:
    """CalculateActivationRangeQuantized for int8 with zero point `zp`, scale 2^-frac (stored values)."""
    lo, hi = -128, 127
    if activation in ("relu", "relu6"):
        lo = max(lo, zp)
    if activation == "relu6":
        v = math.ldexp(6.0, frac)
        hi = min(hi, zp + int(math.floor(v + 0.5)))  # TfLiteRound: half away from zero (v > 0)
    return lo, hi


# Every op below takes and returns *stored* values (format integer + zero point), as TFLM.

def _zp(graph: IntegerGraph, name: str) -> int:
    return zero_point(graph.tensors[name].fmt)


def _q(graph: IntegerGraph, name: str) -> tflm_ops.TensorQ:
    """The TFLite quantization of a stock-graph tensor (int8, u8 as int8 with zero point -128, or int16)."""
    return tflm_ops.format_quant(graph.tensors[name].fmt)


def weight_scales(node: Node) -> np.ndarray:
    """A weighted node's weight scales as the file stores them (float32 values, one per output
    channel or one): TFLite's float scales where the policy has them (node.weight_scale, target
    builtin), else 2^-frac."""
    if node.weight_scale is not None:
        return np.atleast_1d(np.asarray(node.weight_scale, dtype=np.float32)).astype(np.float64)
    return np.ldexp(1.0, -np.atleast_1d(np.asarray(node.weight_frac, dtype=np.int64)))


def _weighted(graph: IntegerGraph, node: Node, x: np.ndarray) -> np.ndarray:
    """CONV_2D / DEPTHWISE_CONV_2D / FULLY_CONNECTED through the one numpy model of TFLM's kernels
    (integer_graph/tflm_ops.py): int8 with int8 or int4 weights, or int16x8 (int64 bias)."""
    a = node.attrs
    q_in, q_out = _q(graph, node.inputs[0]), _q(graph, node.output)
    scales = weight_scales(node).tolist()
    wtype = a.get("weight_type", "int8")
    if node.op == "fully_connected":
        per_tensor = len(set(scales)) == 1
        return tflm_ops.fully_connected(x, node.weights, node.bias, q_in, scales[:1] if per_tensor else scales, q_out,
                                        a.get("activation"), wtype)
    common = dict(stride=tuple(a["stride"]), padding=a["padding"], dilation=tuple(a.get("dilation", (1, 1))),
                  activation=a.get("activation"), weight_dtype=wtype)
    if node.op == "conv2d":
        return tflm_ops.conv2d(x, node.weights, node.bias, q_in, scales, q_out, **common)
    return tflm_ops.depthwise_conv2d(x, node.weights, node.bias, q_in, scales, q_out,
                                     depth_multiplier=a["depth_multiplier"], **common)


def _add(graph: IntegerGraph, node: Node, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return tflm_ops.add(a, b, _q(graph, node.inputs[0]), _q(graph, node.inputs[1]), _q(graph, node.output),
                        node.attrs.get("activation"))


def _pool(graph: IntegerGraph, node: Node, x: np.ndarray) -> np.ndarray:
    """Stock pools never rescale: input and output share scale and zero point (builtin.py)."""
    a = node.attrs
    fn = tflm_ops.max_pool2d if node.op == "max_pool2d" else tflm_ops.average_pool2d
    return fn(x, tuple(a["pool"]), tuple(a["stride"]), a["padding"], _q(graph, node.inputs[0]),
              _q(graph, node.output), a.get("activation"))


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
    step = graph.tensors[node.output].fmt.step  # 2^-frac, or a float activation scale
    zo = _zp(graph, node.output)
    if graph.tensors[node.inputs[0]].fmt is None:
        lo, hi = (-32768, 32767) if graph.tensors[node.output].fmt.bits > 8 else (-128, 127)
        v = (np.asarray(x, dtype=np.float32) / np.float32(step)).astype(np.float64)
        r = np.sign(v) * np.floor(np.abs(v) + 0.5)  # TfLiteRound: half away from zero
        return np.clip(r + zo, lo, hi).astype(np.int64)
    return tflm_ops.requantize(x, _q(graph, node.inputs[0]), _q(graph, node.output))


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
        elif node.op in GRAPH_STOCK_OPS:  # MUL, HARD_SWISH, ...: the one model of them (graph.run_stock_node)
            y = run_stock_node(graph, node, [v - _zp(graph, i) for v, i in zip(ins, node.inputs, strict=True)]) \
                + _zp(graph, node.output)
        else:
            raise ValueError(f"stock int8 has no op {node.op!r} (node {node.name!r})")
        values[node.output] = y
    return [values[o] - _zp(graph, o) for o in graph.outputs]
