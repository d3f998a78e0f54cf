"""The numpy reference of TFLM's CONV_2D, DEPTHWISE_CONV_2D, FULLY_CONNECTED and pools
(integer_graph/tflm_ops.py) against the real kernels of the `tflite-micro` wheel, bit for bit, in
the types the `builtin` target writes (issue 23): int8 activations with int8 or packed int4
weights (int32 bias), int16 activations with int8 weights (int64 bias), per-channel or per-tensor
weight scales (powers of two and arbitrary float32), every fused activation.
"""

from __future__ import annotations

import flatbuffers
import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from long_mode import examples
from stock_cases import quant, scales, values
from test_tflm_ops import one_op_model

from fxpq_keras.flatbuffer.schema import schema as S
from fxpq_keras.integer_graph import tflm_ops as T
from fxpq_keras.integer_graph.tflm_ops import TensorQ

runtime = pytest.importorskip("tflite_micro.python.tflite_micro.runtime")

SETTINGS = dict(max_examples=examples(15), deadline=None, suppress_health_check=[HealthCheck.too_slow])
_ACT = {None: S.ActivationFunctionType.NONE, "relu": S.ActivationFunctionType.RELU,
        "relu6": S.ActivationFunctionType.RELU6, "relu_n1_to_1": S.ActivationFunctionType.RELU_N1_TO_1}
_TYPE = {"int8": S.TensorType.INT8, "int16": S.TensorType.INT16, "int4": S.TensorType.INT4,
         "int32": S.TensorType.INT32, "int64": S.TensorType.INT64}
# activation type -> (weight types, bias type)
KINDS = [("int8", "int8"), ("int8", "int4"), ("int16", "int8")]


def _quant(scale_list, zero_points, dim: int = 0):
    q = S.QuantizationParametersT()
    q.scale = [float(np.float32(s)) for s in scale_list]
    q.zeroPoint = [int(z) for z in zero_points]
    q.quantizedDimension = dim
    return q


def weighted_model(op: int, x_shape, q_in: TensorQ, weights: np.ndarray, w_scales, w_dtype: str, w_dim: int,
                   bias: np.ndarray | None, out_shape, q_out: TensorQ, options_type: int, options) -> bytes:
    """A one-operator .tflite: activation input, constant weights (int4 packed), bias, output."""
    model = one_op_model(op)

    def const(data: bytes) -> int:
        buf = S.BufferT()
        buf.data = np.frombuffer(data, dtype=np.uint8)
        model.buffers.append(buf)
        return len(model.buffers) - 1

    def tensor(shape, dtype: str, q, buffer: int, name: str):
        t = S.TensorT()
        t.shape = np.asarray(shape, dtype=np.int32)
        t.type = _TYPE[dtype]
        t.buffer = buffer
        t.name = name
        t.quantization = q
        return t

    wdata = T.pack_int4(weights) if w_dtype == "int4" else np.asarray(weights, dtype=np.int8).tobytes()
    tensors = [tensor(x_shape, q_in.dtype, _quant([q_in.scale], [q_in.zero_point]), 0, "x"),
               tensor(weights.shape, w_dtype, _quant(w_scales, [0] * len(w_scales), w_dim), const(wdata), "w")]
    inputs = [0, 1]
    if bias is not None:
        b_dtype = "int64" if q_in.dtype == "int16" else "int32"
        b_scales = [float(np.float32(q_in.scale)) * float(np.float32(s)) for s in w_scales]
        data = np.asarray(bias, dtype="<i8" if b_dtype == "int64" else "<i4").tobytes()
        tensors.append(tensor(bias.shape, b_dtype, _quant(b_scales, [0] * len(b_scales)), const(data), "b"))
        inputs.append(2)
    else:
        inputs.append(-1)
    tensors.append(tensor(out_shape, q_out.dtype, _quant([q_out.scale], [q_out.zero_point]), 0, "y"))
    sub = S.SubGraphT()
    sub.tensors = tensors
    sub.inputs = [0]
    sub.outputs = [len(tensors) - 1]
    operator = S.OperatorT()
    operator.opcodeIndex = 0
    operator.inputs = inputs
    operator.outputs = [len(tensors) - 1]
    operator.builtinOptionsType = options_type
    operator.builtinOptions = options
    sub.operators = [operator]
    model.subgraphs = [sub]
    b = flatbuffers.Builder(1024)
    b.Finish(model.Pack(b), file_identifier=b"TFL3")
    return bytes(b.Output())


def run_tflm(model: bytes, x: np.ndarray, dtype: str) -> np.ndarray:
    interp = runtime.Interpreter.from_bytes(model)
    interp.set_input(np.asarray(x, dtype=np.int16 if dtype == "int16" else np.int8), 0)
    interp.invoke()
    return interp.get_output(0).astype(np.int64)


def _check(model: bytes, x, ours: np.ndarray, dtype: str) -> None:
    theirs = run_tflm(model, x, dtype)
    assert theirs.shape == ours.shape
    bad = np.flatnonzero(theirs != ours)
    assert bad.size == 0, (f"{bad.size} of {ours.size} differ; first at flat index {bad[0]}: "
                           f"TFLM {theirs.flat[bad[0]]}, numpy {ours.flat[bad[0]]}")


def _draw_layer(data, act_dtype: str, w_dtype: str, channels: int, per_channel: bool, fan_in: int):
    """Quantizations, weights and bias of one weighted layer; pot=True draws power-of-two scales only."""
    zp = act_dtype == "int8"
    q_in = data.draw(quant(act_dtype, -4, 16, zero_point=zp))
    q_out = data.draw(quant(act_dtype, -4, 16, zero_point=zp))
    w_scales = [data.draw(scales(-2, 10)) for _ in range(channels if per_channel else 1)]
    lo, hi = T.WEIGHT_RANGES[w_dtype]
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    bias_bound = 2**40 if act_dtype == "int16" else 2**20
    bias = rng.integers(-bias_bound, bias_bound, size=channels) if data.draw(st.booleans()) else None
    return q_in, q_out, w_scales, rng, (lo, hi), bias


@settings(**SETTINGS)
@given(st.data(), st.sampled_from(KINDS), st.sampled_from(list(_ACT)), st.booleans())
def test_conv2d_matches_tflm(data, kind, activation, per_channel):
    act_dtype, w_dtype = kind
    n, h, w, c = data.draw(st.tuples(st.integers(1, 2), st.integers(1, 7), st.integers(1, 7), st.integers(1, 5)))
    o, kh, kw = data.draw(st.integers(1, 5)), data.draw(st.integers(1, 3)), data.draw(st.integers(1, 3))
    stride = data.draw(st.tuples(st.integers(1, 2), st.integers(1, 2)))
    dilation = data.draw(st.tuples(st.integers(1, 2), st.integers(1, 2)))
    padding = data.draw(st.sampled_from(["same", "valid"]))
    q_in, q_out, w_scales, rng, (lo, hi), bias = _draw_layer(data, act_dtype, w_dtype, o, per_channel, kh * kw * c)
    weights = rng.integers(lo, hi + 1, size=(o, kh, kw, c))
    x = values(data.draw, (n, h, w, c), act_dtype)
    try:
        ours = T.conv2d(x, weights, bias, q_in, w_scales, q_out, stride, padding, dilation, activation, w_dtype)
    except ValueError:
        assume(False)
    opts = S.Conv2DOptionsT()
    opts.padding = S.Padding.SAME if padding == "same" else S.Padding.VALID
    opts.strideH, opts.strideW = stride
    opts.dilationHFactor, opts.dilationWFactor = dilation
    opts.fusedActivationFunction = _ACT[activation]
    model = weighted_model(S.BuiltinOperator.CONV_2D, x.shape, q_in, weights, w_scales, w_dtype, 0, bias,
                           ours.shape, q_out, S.BuiltinOptions.Conv2DOptions, opts)
    _check(model, x, ours, act_dtype)


@settings(**SETTINGS)
@given(st.data(), st.sampled_from(KINDS), st.sampled_from(list(_ACT)), st.booleans())
def test_depthwise_conv2d_matches_tflm(data, kind, activation, per_channel):
    act_dtype, w_dtype = kind
    n, h, w, c = data.draw(st.tuples(st.integers(1, 2), st.integers(1, 7), st.integers(1, 7), st.integers(1, 5)))
    mult, kh, kw = data.draw(st.integers(1, 2)), data.draw(st.integers(1, 3)), data.draw(st.integers(1, 3))
    stride = data.draw(st.tuples(st.integers(1, 2), st.integers(1, 2)))
    dilation = data.draw(st.tuples(st.integers(1, 2), st.integers(1, 2)))
    padding = data.draw(st.sampled_from(["same", "valid"]))
    q_in, q_out, w_scales, rng, (lo, hi), bias = _draw_layer(data, act_dtype, w_dtype, c * mult, per_channel, kh * kw)
    weights = rng.integers(lo, hi + 1, size=(1, kh, kw, c * mult))
    if bias is None:  # the wheel's DEPTHWISE_CONV_2D crashes on an omitted (-1) bias; fxpq always writes one
        bias = np.zeros(c * mult, dtype=np.int64)
    x = values(data.draw, (n, h, w, c), act_dtype)
    try:
        ours = T.depthwise_conv2d(x, weights, bias, q_in, w_scales, q_out, stride, padding, dilation, mult,
                                  activation, w_dtype)
    except ValueError:
        assume(False)
    opts = S.DepthwiseConv2DOptionsT()
    opts.padding = S.Padding.SAME if padding == "same" else S.Padding.VALID
    opts.strideH, opts.strideW = stride
    opts.dilationHFactor, opts.dilationWFactor = dilation
    opts.depthMultiplier = mult
    opts.fusedActivationFunction = _ACT[activation]
    model = weighted_model(S.BuiltinOperator.DEPTHWISE_CONV_2D, x.shape, q_in, weights, w_scales, w_dtype, 3, bias,
                           ours.shape, q_out, S.BuiltinOptions.DepthwiseConv2DOptions, opts)
    _check(model, x, ours, act_dtype)


@settings(**SETTINGS)
@given(st.data(), st.sampled_from(KINDS), st.sampled_from(list(_ACT)), st.booleans())
def test_fully_connected_matches_tflm(data, kind, activation, per_channel):
    act_dtype, w_dtype = kind
    per_channel = per_channel and w_dtype != "int4"  # TFLM: int4 FC is per-tensor only
    n, k, o = data.draw(st.integers(1, 3)), data.draw(st.integers(1, 40)), data.draw(st.integers(1, 9))
    q_in, q_out, w_scales, rng, (lo, hi), bias = _draw_layer(data, act_dtype, w_dtype, o, per_channel, k)
    weights = rng.integers(lo, hi + 1, size=(o, k))
    x = values(data.draw, (n, k), act_dtype)
    try:
        ours = T.fully_connected(x, weights, bias, q_in, w_scales, q_out, activation, w_dtype)
    except ValueError:
        assume(False)
    opts = S.FullyConnectedOptionsT()
    opts.fusedActivationFunction = _ACT[activation]
    model = weighted_model(S.BuiltinOperator.FULLY_CONNECTED, x.shape, q_in, weights, w_scales, w_dtype, 0, bias,
                           ours.shape, q_out, S.BuiltinOptions.FullyConnectedOptions, opts)
    _check(model, x, ours, act_dtype)


def test_int4_fully_connected_per_channel_is_refused():
    with pytest.raises(ValueError, match="per-tensor"):
        T.prepare_weighted("FULLY_CONNECTED", TensorQ(0.5), [0.25, 0.5], TensorQ(1.0), 2, None, "int4")


def test_int4_packing_is_tflm_nibble_order():
    assert T.pack_int4([1, 2, 3]) == bytes([0x21, 0x03])
    assert T.pack_int4([-1, -8]) == bytes([0x8F])
    with pytest.raises(ValueError, match="int4"):
        T.pack_int4([8])
    v = np.arange(-8, 8)
    assert (T.unpack_int4(T.pack_int4(v), v.size) == v).all()


def _pool_model(op: int, shape, out_shape, q: TensorQ, pool, stride, padding: str, activation) -> bytes:
    model = S.ModelT()
    model.version = 3
    code = S.OperatorCodeT()
    code.builtinCode = code.deprecatedBuiltinCode = op
    code.version = 1
    model.operatorCodes = [code]
    model.buffers = [S.BufferT()]
    tensors = []
    for name, shp in (("x", shape), ("y", out_shape)):
        t = S.TensorT()
        t.shape = np.asarray(shp, dtype=np.int32)
        t.type = _TYPE[q.dtype]
        t.name = name
        t.quantization = _quant([q.scale], [q.zero_point])
        tensors.append(t)
    opts = S.Pool2DOptionsT()
    opts.padding = S.Padding.SAME if padding == "same" else S.Padding.VALID
    opts.strideH, opts.strideW = stride
    opts.filterHeight, opts.filterWidth = pool
    opts.fusedActivationFunction = _ACT[activation]
    operator = S.OperatorT()
    operator.inputs, operator.outputs = [0], [1]
    operator.builtinOptionsType, operator.builtinOptions = S.BuiltinOptions.Pool2DOptions, opts
    sub = S.SubGraphT()
    sub.tensors, sub.inputs, sub.outputs, sub.operators = tensors, [0], [1], [operator]
    model.subgraphs = [sub]
    b = flatbuffers.Builder(1024)
    b.Finish(model.Pack(b), file_identifier=b"TFL3")
    return bytes(b.Output())


@settings(**SETTINGS)
@given(st.data(), st.sampled_from(["int8", "int16"]), st.sampled_from(list(_ACT)), st.booleans())
def test_pools_match_tflm(data, dtype, activation, average):
    q = data.draw(quant(dtype, -4, 16, zero_point=dtype == "int8"))
    shape = data.draw(st.tuples(st.integers(1, 2), st.integers(1, 7), st.integers(1, 7), st.integers(1, 5)))
    pool = data.draw(st.tuples(st.integers(1, 3), st.integers(1, 3)))
    stride = data.draw(st.tuples(st.integers(1, 2), st.integers(1, 2)))
    padding = data.draw(st.sampled_from(["same", "valid"]))
    x = values(data.draw, shape, dtype)
    fn = T.average_pool2d if average else T.max_pool2d
    try:
        ours = fn(x, pool, stride, padding, q, q, activation)
    except ValueError:
        assume(False)
    op = S.BuiltinOperator.AVERAGE_POOL_2D if average else S.BuiltinOperator.MAX_POOL_2D
    _check(_pool_model(op, shape, ours.shape, q, pool, stride, padding, activation), x, ours, dtype)
