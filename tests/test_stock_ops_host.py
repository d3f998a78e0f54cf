"""The C stock-op kernels (tflm_kernels/src/kernels/fxpq_stock_ops.c) on the host, through ctypes,
equal the numpy reference (integer_graph/tflm_ops.py) bit for bit, and refuse what it refuses.

The numpy reference is itself held to the real TFLM kernels by tests/test_tflm_ops.py.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from long_mode import examples
from stock_cases import broadcast_partner, quant, shapes4, values

from fxpq_keras.integer_graph import tflm_ops as T
from fxpq_keras.integer_graph.tflm_ops import TensorQ
from fxpq_keras.kernels import stock_host as C
from fxpq_keras.kernels.host import KernelError

SETTINGS = dict(max_examples=examples(25), deadline=None, suppress_health_check=[HealthCheck.too_slow])
ACTS = list(T.ACTIVATIONS)


def _same(numpy_fn, c_fn, *args) -> None:
    """Both succeed with equal outputs, or both refuse (numpy ValueError, C error status)."""
    try:
        ours = numpy_fn(*args)
    except ValueError as e:
        with pytest.raises(KernelError):
            c_fn(*args)
        assert "C kernel" not in str(e)
        return
    theirs = c_fn(*args)
    assert theirs.shape == ours.shape
    np.testing.assert_array_equal(theirs, ours)


@settings(**SETTINGS)
@given(st.data(), st.sampled_from([("int8", "int8"), ("int8", "int16"), ("int16", "int8"), ("int16", "int16")]))
def test_requantize_c_equals_numpy(data, types):
    qi, qo = data.draw(quant(types[0], -8, 30)), data.draw(quant(types[1], -8, 30))
    x = values(data.draw, data.draw(shapes4), types[0])
    _same(T.requantize, C.requantize, x, qi, qo)


@settings(**SETTINGS)
@given(st.data(), st.sampled_from(["int8", "int16"]), st.sampled_from(ACTS))
def test_mul_c_equals_numpy(data, dtype, activation):
    q1, q2, qo = (data.draw(quant(dtype, -6, 24)) for _ in range(3))
    shape = data.draw(shapes4)
    other = broadcast_partner(data.draw, shape)
    a_shape, b_shape = (shape, other) if data.draw(st.booleans()) else (other, shape)
    a, b = values(data.draw, a_shape, dtype), values(data.draw, b_shape, dtype)
    _same(T.mul, C.mul, a, b, q1, q2, qo, activation)


@settings(**SETTINGS)
@given(st.data(), st.booleans(), st.sampled_from(ACTS), st.sampled_from(["int8", "int16"]))
def test_add_sub_c_equals_numpy(data, subtract, activation, dtype):
    q1, q2, qo = (data.draw(quant(dtype, -6, 24)) for _ in range(3))
    shape = data.draw(shapes4)
    other = broadcast_partner(data.draw, shape)
    a_shape, b_shape = (shape, other) if data.draw(st.booleans()) else (other, shape)
    a, b = values(data.draw, a_shape, dtype), values(data.draw, b_shape, dtype)
    _same(T.add, C.add, a, b, q1, q2, qo, activation, subtract)


@settings(**SETTINGS)
@given(st.data(), st.sampled_from(["logistic", "tanh", "hard_swish", "elu"]))
def test_activations_c_equal_numpy(data, op):
    qi = data.draw(quant("int8", -8, 30))
    if op == "logistic":
        qo = data.draw(st.sampled_from([TensorQ(1 / 256, -128), TensorQ(1 / 256, 0), TensorQ(1 / 128, -128)]))
    elif op == "tanh":
        qo = data.draw(st.sampled_from([TensorQ(1 / 128, 0), TensorQ(1 / 128, 3), TensorQ(1 / 256, 0)]))
    else:
        qo = data.draw(quant("int8", -8, 30))
    x = values(data.draw, data.draw(shapes4))
    _same(getattr(T, op), getattr(C, op), x, qi, qo)


@settings(**SETTINGS)
@given(st.data())
def test_elu_table_c_equals_numpy(data):
    """Every input (the whole table) at drawn scales: C's own double exp against numpy's."""
    qi, qo = data.draw(quant("int8", -8, 30)), data.draw(quant("int8", -8, 30))
    _same(T.elu, C.elu, np.arange(-128, 128, dtype=np.int64), qi, qo)


def test_activations_every_input_c_equals_numpy():
    x = np.arange(-128, 128, dtype=np.int64)
    for frac in range(-2, 12):
        for zp in (-128, 0, 37):
            qi = TensorQ(2.0**-frac, zp)
            np.testing.assert_array_equal(C.logistic(x, qi, TensorQ(1 / 256, -128)),
                                          T.logistic(x, qi, TensorQ(1 / 256, -128)))
            np.testing.assert_array_equal(C.tanh(x, qi, TensorQ(1 / 128)), T.tanh(x, qi, TensorQ(1 / 128)))
            for fo in range(frac - 1, frac + 4):
                qo = TensorQ(2.0**-fo, -zp // 2)
                _same(T.hard_swish, C.hard_swish, x, qi, qo)
                _same(T.elu, C.elu, x, qi, qo)


@settings(**SETTINGS)
@given(st.data(), st.booleans(), st.sampled_from(["int8", "int16"]))
def test_maximum_minimum_c_equal_numpy(data, is_max, dtype):
    q = data.draw(quant(dtype))
    shape = data.draw(shapes4)
    other = broadcast_partner(data.draw, shape)
    a_shape, b_shape = (shape, other) if data.draw(st.booleans()) else (other, shape)
    a, b = values(data.draw, a_shape, dtype), values(data.draw, b_shape, dtype)
    name = "maximum" if is_max else "minimum"
    _same(getattr(T, name), getattr(C, name), a, b, q, q, q)


def test_c_refuses_bad_parameters_with_a_status():
    with pytest.raises(KernelError, match="BAD_PARAM"):
        C.logistic(np.zeros(4), TensorQ(0.1), TensorQ(1 / 256, 0))  # TFLM needs zero point -128
    with pytest.raises(KernelError, match="BAD_PARAM"):
        C.add(np.zeros(4), np.zeros(4), TensorQ(1.0), TensorQ(1.0), TensorQ(2.0**-21))  # TFLM aborts
    with pytest.raises(KernelError, match="BAD_PARAM"):
        C.mul(np.zeros(4), np.zeros(4), TensorQ(1.0, 0, "int16"), TensorQ(1.0, 3, "int16"), TensorQ(1.0, 0, "int16"))
    with pytest.raises(KernelError, match="BAD_PARAM"):
        C.requantize(np.zeros(4), TensorQ(float("nan")), TensorQ(1.0))
    with pytest.raises(KernelError, match="BAD_DIMS"):
        C.maximum(np.zeros((2, 3)), np.zeros((2, 4)), TensorQ(1.0), TensorQ(1.0), TensorQ(1.0))


@settings(**SETTINGS)
@given(st.data(), st.sampled_from(["int8", "int16"]), st.booleans())
def test_mean_c_equals_numpy(data, dtype, keep_dims):
    qi, qo = data.draw(quant(dtype, -6, 24)), data.draw(quant(dtype, -6, 24))
    shape = data.draw(st.lists(st.integers(1, 6), min_size=1, max_size=5).map(tuple))
    axes = data.draw(st.lists(st.integers(0, len(shape) - 1), min_size=1, max_size=len(shape), unique=True))
    x = values(data.draw, shape, dtype)
    _same(T.mean, C.mean, x, axes, qi, qo, keep_dims)


@settings(**SETTINGS)
@given(st.data(), st.sampled_from(["int8", "int16"]), st.booleans(), st.booleans())
def test_resize_nearest_neighbor_c_equals_numpy(data, dtype, align_corners, half_pixel_centers):
    q = data.draw(quant(dtype))
    x = values(data.draw, data.draw(shapes4), dtype)
    size = (data.draw(st.integers(1, 13)), data.draw(st.integers(1, 13)))
    _same(T.resize_nearest_neighbor, C.resize_nearest_neighbor, x, size, q, q, align_corners, half_pixel_centers)


@settings(**SETTINGS)
@given(st.data(), st.sampled_from(["int8", "int16"]))
def test_transpose_and_concatenation_c_equal_numpy(data, dtype):
    q = data.draw(quant(dtype))
    shape = data.draw(st.lists(st.integers(1, 5), min_size=1, max_size=5).map(tuple))
    x = values(data.draw, shape, dtype)
    _same(T.transpose, C.transpose, x, data.draw(st.permutations(range(len(shape)))), q, q)
    axis = data.draw(st.integers(-len(shape), len(shape) - 1))
    parts = []
    for _ in range(data.draw(st.integers(1, 4))):
        s = list(shape)
        s[axis] = data.draw(st.integers(1, 4))
        parts.append(values(data.draw, tuple(s), dtype))
    _same(T.concatenation, C.concatenation, parts, axis, [q] * len(parts), q)


def test_data_movement_c_refuses_bad_arguments():
    q = TensorQ(0.5)
    with pytest.raises(KernelError, match="BAD_PARAM"):
        C.transpose(np.zeros((2, 3)), (0, 0), q, q)
    with pytest.raises(KernelError, match="BAD_DIMS"):
        C.resize_nearest_neighbor(np.zeros((1, 2, 2)), (3, 3), q, q)
    with pytest.raises(KernelError, match="BAD_PARAM"):
        C.mean(np.zeros((1, 4, 4, 1)), (1, 2), TensorQ(1.0), TensorQ(2.0**-40))


def test_numpy_refuses_stored_values_outside_the_type():
    """A stored int8 value of 200 is an integration bug, not an input: say so instead of indexing
    ELU's table out of range or wrapping."""
    with pytest.raises(ValueError, match="outside the int8 range"):
        T.elu(np.array([200]), TensorQ(0.1), TensorQ(0.1))
    with pytest.raises(ValueError, match="outside the int16 range"):
        T.mul(np.array([40000]), np.array([1]), *(TensorQ(1.0, 0, "int16"),) * 3)
    with pytest.raises(ValueError, match="must be integers"):
        T.requantize(np.array([0.5]), TensorQ(1.0), TensorQ(1.0))


def test_format_quant_maps_fxp_formats_onto_stock_tensors():
    from fxpq_keras.formats import Format

    assert T.format_quant(Format(8, 8, False)) == TensorQ(1 / 256, -128, "int8")  # LOGISTIC's output: u8.8
    assert T.format_quant(Format(5, 3, False)) == TensorQ(1 / 8, 0, "int8")
    assert T.format_quant(Format(8, -2, True)) == TensorQ(4.0, 0, "int8")
    assert T.format_quant(Format(12, 10, True)) == TensorQ(2.0**-10, 0, "int16")
    assert T.format_quant(Format(15, 4, False)) == TensorQ(1 / 16, 0, "int16")
    with pytest.raises(ValueError, match="unsigned 16-bit"):
        T.format_quant(Format(16, 4, False))
    T.prepare_logistic(T.format_quant(Format(8, 4)), T.format_quant(Format(8, 8, False)))
    T.prepare_tanh(T.format_quant(Format(6, 2)), T.format_quant(Format(8, 7)))
    q = np.arange(0, 256)
    u8 = Format(8, 8, False)
    np.testing.assert_array_equal(T.from_stored(T.to_stored(q, u8), u8), q)
    assert T.to_stored(q, u8).min() == -128 and T.to_stored(q, u8).max() == 127
