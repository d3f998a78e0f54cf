"""The stock-op numpy reference (integer_graph/tflm_ops.py) against the real TFLM kernels of the
`tflite-micro` wheel, bit for bit, on randomized single-op .tflite files (issue 19).

Each test builds a one-operator model with TensorFlow's schema object API, runs it in the wheel's
interpreter and compares every stored output value. Hypothesis draws shapes (odd sizes,
broadcasting), scales (powers of two with extreme fracs, and arbitrary float32 scales), zero points
and values including the int8/int16 extremes. Few examples per op keep the file in CI's budget.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from long_mode import examples
from stock_cases import broadcast_partner, quant, shapes4, values

from fxpq_keras.flatbuffer.schema import schema as S
from fxpq_keras.integer_graph import tflm_ops as T
from fxpq_keras.integer_graph.tflm_ops import TensorQ

runtime = pytest.importorskip("tflite_micro.python.tflite_micro.runtime")

SETTINGS = dict(max_examples=examples(12), deadline=None, suppress_health_check=[HealthCheck.too_slow])
_TYPES = {"int8": (S.TensorType.INT8, np.int8), "int16": (S.TensorType.INT16, np.int16),
          "int32": (S.TensorType.INT32, np.int32)}
_ACT = {None: S.ActivationFunctionType.NONE, "relu": S.ActivationFunctionType.RELU,
        "relu6": S.ActivationFunctionType.RELU6, "relu_n1_to_1": S.ActivationFunctionType.RELU_N1_TO_1}


def _tensor(shape, dtype: str, q: TensorQ | None, buffer: int, name: str):
    t = S.TensorT()
    t.shape = np.asarray(shape, dtype=np.int32)
    t.type = _TYPES[dtype][0]
    t.buffer = buffer
    t.name = name
    if q is not None:
        t.quantization = S.QuantizationParametersT()
        t.quantization.scale = [float(np.float32(q.scale))]
        t.quantization.zeroPoint = [int(q.zero_point)]
    return t


def one_op_model(op: int) -> S.ModelT:
    """The skeleton of a one-operator .tflite: version, the op's code, the empty buffer 0."""
    model = S.ModelT()
    model.version = 3
    code = S.OperatorCodeT()
    code.builtinCode = op
    code.deprecatedBuiltinCode = min(op, 127)
    code.version = 1
    model.operatorCodes = [code]
    model.buffers = [S.BufferT()]
    return model


def build_model(op: int, inputs, output, options_type: int = 0, options=None, consts=()) -> bytes:
    """One-op .tflite. inputs/output: (shape, TensorQ); consts: int32 arrays appended as inputs."""
    model = one_op_model(op)
    tensors = []
    for i, (shape, q) in enumerate(inputs):
        tensors.append(_tensor(shape, q.dtype, q, 0, f"in{i}"))
    for i, c in enumerate(consts):
        buf = S.BufferT()
        buf.data = np.frombuffer(np.asarray(c, dtype="<i4").tobytes(), dtype=np.uint8)
        model.buffers.append(buf)
        tensors.append(_tensor(np.shape(c), "int32", None, len(model.buffers) - 1, f"const{i}"))
    out_shape, out_q = output
    tensors.append(_tensor(out_shape, out_q.dtype, out_q, 0, "out"))
    sub = S.SubGraphT()
    sub.tensors = tensors
    sub.inputs = list(range(len(inputs)))
    sub.outputs = [len(tensors) - 1]
    operator = S.OperatorT()
    operator.opcodeIndex = 0
    operator.inputs = list(range(len(tensors) - 1))
    operator.outputs = [len(tensors) - 1]
    operator.builtinOptionsType = options_type
    operator.builtinOptions = options
    sub.operators = [operator]
    model.subgraphs = [sub]
    import flatbuffers

    b = flatbuffers.Builder(1024)
    b.Finish(model.Pack(b), file_identifier=b"TFL3")
    return bytes(b.Output())


def run_tflm(model: bytes, arrays, out_dtype: str) -> np.ndarray:
    interp = runtime.Interpreter.from_bytes(model)
    for i, a in enumerate(arrays):
        interp.set_input(np.asarray(a, dtype=interp.get_input_details(i)["dtype"]), i)
    interp.invoke()
    out = interp.get_output(0)
    assert out.dtype == _TYPES[out_dtype][1]
    return out.astype(np.int64)


def _check(model: bytes, arrays, ours: np.ndarray, out_dtype: str) -> None:
    theirs = run_tflm(model, arrays, out_dtype)
    assert theirs.shape == ours.shape
    bad = np.flatnonzero(theirs != ours)
    assert bad.size == 0, (f"{bad.size} of {ours.size} differ; first at flat index {bad[0]}: "
                           f"TFLM {theirs.flat[bad[0]]}, numpy {ours.flat[bad[0]]}")


# ---------------------------------------------------------------------------------- 1. QUANTIZE

@settings(**SETTINGS)
@given(st.data(), st.sampled_from([("int8", "int8"), ("int8", "int16"), ("int16", "int8"), ("int16", "int16")]))
def test_requantize_matches_tflm(data, types):
    din, dout = types
    qi = data.draw(quant(din, -10, 31))
    qo = data.draw(quant(dout, -10, 31))
    shape = data.draw(shapes4)
    x = values(data.draw, shape, din)
    try:
        ours = T.requantize(x, qi, qo)
    except ValueError:
        assume(False)
    _check(build_model(S.BuiltinOperator.QUANTIZE, [(shape, qi)], (shape, qo)), [x], ours, dout)


# ---------------------------------------------------------------------------------- 2. MUL

@settings(**SETTINGS)
@given(st.data(), st.sampled_from(["int8", "int16"]), st.sampled_from(list(_ACT)))
def test_mul_matches_tflm(data, dtype, activation):
    q1, q2, qo = (data.draw(quant(dtype, -8, 28)) for _ in range(3))
    shape = data.draw(shapes4)
    other = broadcast_partner(data.draw, shape)
    a_shape, b_shape = (shape, other) if data.draw(st.booleans()) else (other, shape)
    a, b = values(data.draw, a_shape, dtype), values(data.draw, b_shape, dtype)
    try:
        ours = T.mul(a, b, q1, q2, qo, activation)
    except ValueError:
        assume(False)
    opts = S.MulOptionsT()
    opts.fusedActivationFunction = _ACT[activation]
    model = build_model(S.BuiltinOperator.MUL, [(a_shape, q1), (b_shape, q2)], (ours.shape, qo),
                        S.BuiltinOptions.MulOptions, opts)
    _check(model, [a, b], ours, dtype)


# ---------------------------------------------------------------------------------- 3. LOGISTIC

@settings(**SETTINGS)
@given(st.data())
def test_logistic_int8_matches_tflm(data):
    qi = data.draw(quant("int8", -8, 28))
    qo = TensorQ(1 / 256, -128)
    shape = data.draw(shapes4)
    x = values(data.draw, shape)
    ours = T.logistic(x, qi, qo)
    _check(build_model(S.BuiltinOperator.LOGISTIC, [(shape, qi)], (shape, qo)), [x], ours, "int8")


def test_logistic_every_input_at_common_scales():
    """All 256 inputs at the scales SE blocks produce (2^-1 .. 2^-7, zero points 0 and -128)."""
    x = np.arange(-128, 128, dtype=np.int64).reshape(1, 256)
    for frac in range(1, 8):
        for zp in (0, -128, 17):
            qi, qo = TensorQ(2.0**-frac, zp), TensorQ(1 / 256, -128)
            _check(build_model(S.BuiltinOperator.LOGISTIC, [((1, 256), qi)], ((1, 256), qo)), [x],
                   T.logistic(x, qi, qo), "int8")


def test_logistic_refuses_what_tflm_refuses():
    with pytest.raises(ValueError, match="zero point must be -128"):
        T.prepare_logistic(TensorQ(0.1, 0), TensorQ(1 / 256, 0))
    with pytest.raises(RuntimeError):
        run_tflm(build_model(S.BuiltinOperator.LOGISTIC, [((1, 4), TensorQ(0.1))], ((1, 4), TensorQ(1 / 256, 0))),
                 [np.zeros((1, 4))], "int8")
    with pytest.raises(ValueError, match="1/256"):
        T.logistic(np.zeros(3), TensorQ(0.1), TensorQ(1 / 128, -128))


# ---------------------------------------------------------------------------------- 4. HARD_SWISH

@settings(**SETTINGS)
@given(st.data())
def test_hard_swish_matches_tflm(data):
    qi = data.draw(quant("int8", -8, 24))
    qo = data.draw(quant("int8", -8, 28))
    shape = data.draw(shapes4)
    x = values(data.draw, shape)
    try:
        ours = T.hard_swish(x, qi, qo)
    except ValueError:
        assume(False)
    _check(build_model(S.BuiltinOperator.HARD_SWISH, [(shape, qi)], (shape, qo)), [x], ours, "int8")


def test_hard_swish_every_input_at_common_scales():
    x = np.arange(-128, 128, dtype=np.int64).reshape(1, 256)
    for fi in range(0, 8):
        for fo in range(fi, fi + 3):
            for zi, zo in ((0, 0), (-128, -128), (5, -3)):
                qi, qo = TensorQ(2.0**-fi, zi), TensorQ(2.0**-fo, zo)
                _check(build_model(S.BuiltinOperator.HARD_SWISH, [((1, 256), qi)], ((1, 256), qo)), [x],
                       T.hard_swish(x, qi, qo), "int8")


# ---------------------------------------------------------------------------------- 5. TANH

@settings(**SETTINGS)
@given(st.data())
def test_tanh_int8_matches_tflm(data):
    qi = data.draw(quant("int8", -8, 28))
    qo = TensorQ(1 / 128, 0)
    shape = data.draw(shapes4)
    x = values(data.draw, shape)
    ours = T.tanh(x, qi, qo)
    _check(build_model(S.BuiltinOperator.TANH, [(shape, qi)], (shape, qo)), [x], ours, "int8")


def test_tanh_every_input_at_common_scales():
    x = np.arange(-128, 128, dtype=np.int64).reshape(1, 256)
    for frac in range(0, 8):
        for zp in (0, -128, 9):
            qi, qo = TensorQ(2.0**-frac, zp), TensorQ(1 / 128, 0)
            _check(build_model(S.BuiltinOperator.TANH, [((1, 256), qi)], ((1, 256), qo)), [x],
                   T.tanh(x, qi, qo), "int8")


# ---------------------------------------------------------------------------------- 6. SUB / ADD

@settings(**SETTINGS)
@given(st.data(), st.booleans(), st.sampled_from(list(_ACT)), st.sampled_from(["int8", "int16"]))
def test_add_sub_match_tflm(data, subtract, activation, dtype):
    q1, q2, qo = (data.draw(quant(dtype, -8, 28)) for _ in range(3))
    shape = data.draw(shapes4)
    other = broadcast_partner(data.draw, shape)
    a_shape, b_shape = (shape, other) if data.draw(st.booleans()) else (other, shape)
    a, b = values(data.draw, a_shape, dtype), values(data.draw, b_shape, dtype)
    try:
        ours = T.add(a, b, q1, q2, qo, activation, subtract=subtract)
    except ValueError:
        assume(False)
    if subtract:
        opts, op, kind = S.SubOptionsT(), S.BuiltinOperator.SUB, S.BuiltinOptions.SubOptions
    else:
        opts, op, kind = S.AddOptionsT(), S.BuiltinOperator.ADD, S.BuiltinOptions.AddOptions
    opts.fusedActivationFunction = _ACT[activation]
    model = build_model(op, [(a_shape, q1), (b_shape, q2)], (ours.shape, qo), kind, opts)
    _check(model, [a, b], ours, dtype)


def test_add_refuses_an_output_scale_tflm_aborts_on():
    with pytest.raises(ValueError, match="output scale is too small"):
        T.prepare_add(TensorQ(1.0), TensorQ(1.0), TensorQ(2.0**-21))


# ---------------------------------------------------------------------------------- 7. MAXIMUM / MINIMUM

@settings(**SETTINGS)
@given(st.data(), st.booleans(), st.sampled_from(["int8", "int16"]))
def test_maximum_minimum_match_tflm(data, is_max, dtype):
    q = data.draw(quant(dtype))
    shape = data.draw(shapes4)
    other = broadcast_partner(data.draw, shape)
    a_shape, b_shape = (shape, other) if data.draw(st.booleans()) else (other, shape)
    a, b = values(data.draw, a_shape, dtype), values(data.draw, b_shape, dtype)
    ours = (T.maximum if is_max else T.minimum)(a, b, q, q, q)
    op = S.BuiltinOperator.MAXIMUM if is_max else S.BuiltinOperator.MINIMUM
    _check(build_model(op, [(a_shape, q), (b_shape, q)], (ours.shape, q)), [a, b], ours, dtype)


# ---------------------------------------------------------------------------------- 8. RESIZE_NEAREST_NEIGHBOR

@settings(**SETTINGS)
@given(st.data(), st.booleans(), st.booleans())
def test_resize_nearest_neighbor_matches_tflm(data, align_corners, half_pixel_centers):
    q = data.draw(quant("int8"))
    shape = data.draw(shapes4)
    size = (data.draw(st.integers(1, 11)), data.draw(st.integers(1, 11)))
    x = values(data.draw, shape)
    ours = T.resize_nearest_neighbor(x, size, q, q, align_corners, half_pixel_centers)
    opts = S.ResizeNearestNeighborOptionsT()
    opts.alignCorners, opts.halfPixelCenters = align_corners, half_pixel_centers
    model = build_model(S.BuiltinOperator.RESIZE_NEAREST_NEIGHBOR, [(shape, q)], (ours.shape, q),
                        S.BuiltinOptions.ResizeNearestNeighborOptions, opts, consts=[np.asarray(size)])
    _check(model, [x], ours, "int8")


# ---------------------------------------------------------------------------------- 9. TRANSPOSE, CONCATENATION, MEAN

@settings(**SETTINGS)
@given(st.data(), st.sampled_from(["int8", "int16"]))
def test_transpose_matches_tflm(data, dtype):
    q = data.draw(quant(dtype))
    shape = data.draw(shapes4)
    perm = data.draw(st.permutations(range(4)))
    x = values(data.draw, shape, dtype)
    ours = T.transpose(x, perm, q, q)
    model = build_model(S.BuiltinOperator.TRANSPOSE, [(shape, q)], (ours.shape, q),
                        S.BuiltinOptions.TransposeOptions, S.TransposeOptionsT(), consts=[np.asarray(perm)])
    _check(model, [x], ours, dtype)


@settings(**SETTINGS)
@given(st.data(), st.integers(-4, 3), st.integers(1, 3))
def test_concatenation_matches_tflm(data, axis, n):
    q = data.draw(quant("int8"))
    base = list(data.draw(shapes4))
    shapes = []
    for _ in range(n):
        s = list(base)
        s[axis] = data.draw(st.integers(1, 4))
        shapes.append(tuple(s))
    xs = [values(data.draw, s) for s in shapes]
    ours = T.concatenation(xs, axis, [q] * n, q)
    opts = S.ConcatenationOptionsT()
    opts.axis = axis
    model = build_model(S.BuiltinOperator.CONCATENATION, [(s, q) for s in shapes], (ours.shape, q),
                        S.BuiltinOptions.ConcatenationOptions, opts)
    _check(model, xs, ours, "int8")


def test_concatenation_refuses_mixed_scales():
    with pytest.raises(ValueError, match="same type, scale and zero point"):
        T.concatenation([np.zeros((1, 2))] * 2, -1, [TensorQ(0.5), TensorQ(0.25)], TensorQ(0.5))


@settings(**SETTINGS)
@given(st.data(), st.sampled_from(["int8", "int16"]), st.booleans(),
       st.sampled_from([(1, 2), (2, 1), (1,), (3,), (1, 2, 3), (0, 3)]))
def test_mean_matches_tflm(data, dtype, keep_dims, axes):
    """Over H, W (global average pooling, keepdims or not) and other axes."""
    qi = data.draw(quant(dtype, -8, 28))
    qo = data.draw(quant(dtype, -8, 28))
    shape = data.draw(st.tuples(st.integers(1, 2), st.integers(1, 9), st.integers(1, 9), st.integers(1, 5)))
    x = values(data.draw, shape, dtype)
    try:
        ours = T.mean(x, axes, qi, qo, keep_dims)
    except ValueError:
        assume(False)
    opts = S.ReducerOptionsT()
    opts.keepDims = keep_dims
    model = build_model(S.BuiltinOperator.MEAN, [(shape, qi)], (ours.shape, qo),
                        S.BuiltinOptions.ReducerOptions, opts, consts=[np.asarray(axes)])
    _check(model, [x], ours, dtype)


# ---------------------------------------------------------------------------------- 10. ELU

@settings(**SETTINGS)
@given(st.data())
def test_elu_every_input_matches_tflm(data):
    """The whole lookup table: all 256 inputs at drawn scales and zero points."""
    qi = data.draw(quant("int8", -6, 20))
    qo = data.draw(quant("int8", -6, 20))
    x = np.arange(-128, 128, dtype=np.int64).reshape(1, 2, 128)
    try:
        ours = T.elu(x, qi, qo)
    except ValueError:
        assume(False)
    _check(build_model(S.BuiltinOperator.ELU, [(x.shape, qi)], (x.shape, qo)), [x], ours, "int8")


def test_elu_at_power_of_two_scales_matches_tflm():
    x = np.arange(-128, 128, dtype=np.int64).reshape(1, 256)
    for fi in range(0, 8):
        for fo in range(max(0, fi - 1), fi + 3):
            for zi, zo in ((0, 0), (-128, -128), (3, 60)):
                qi, qo = TensorQ(2.0**-fi, zi), TensorQ(2.0**-fo, zo)
                _check(build_model(S.BuiltinOperator.ELU, [((1, 256), qi)], ((1, 256), qo)), [x],
                       T.elu(x, qi, qo), "int8")


# ---------------------------------------------------------------------------------- refusals

def _concat_options(axis: int):
    opts = S.ConcatenationOptionsT()
    opts.axis = axis
    return opts


_REFUSED = {
    "hard_swish output scale below input/128": (
        S.BuiltinOperator.HARD_SWISH, [((1, 4), TensorQ(1.0))], ((1, 4), TensorQ(2.0**-9)), 0, None,
        lambda: T.prepare_hard_swish(TensorQ(1.0), TensorQ(2.0**-9)), "output exponent"),
    "int16 mul with a zero point": (
        S.BuiltinOperator.MUL, [((1, 4), TensorQ(0.5, 0, "int16")), ((1, 4), TensorQ(0.5, 0, "int16"))],
        ((1, 4), TensorQ(0.5, 1, "int16")), S.BuiltinOptions.MulOptions, S.MulOptionsT(),
        lambda: T.prepare_mul(TensorQ(0.5, 0, "int16"), TensorQ(0.5, 0, "int16"), TensorQ(0.5, 1, "int16")),
        "zero point 0"),
    "concatenation of two scales": (
        S.BuiltinOperator.CONCATENATION, [((1, 2), TensorQ(0.5)), ((1, 2), TensorQ(0.25))], ((1, 4), TensorQ(0.5)),
        S.BuiltinOptions.ConcatenationOptions, _concat_options(-1),
        lambda: T.concatenation([np.zeros((1, 2))] * 2, -1, [TensorQ(0.5), TensorQ(0.25)], TensorQ(0.5)),
        "same type, scale and zero point"),
}


@pytest.mark.parametrize("case", sorted(_REFUSED))
def test_numpy_refuses_what_tflm_refuses(case):
    """Where TFLM's Prepare returns an error, prepare raises a ValueError naming the problem."""
    op, inputs, output, kind, opts, prepare, message = _REFUSED[case]
    with pytest.raises(ValueError, match=message):
        prepare()
    with pytest.raises(RuntimeError):
        run_tflm(build_model(op, inputs, output, kind, opts), [np.zeros(s) for s, _ in inputs], output[1].dtype)
