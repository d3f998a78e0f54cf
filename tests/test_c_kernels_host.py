"""C kernels on the host (ctypes) == the numpy integer reference, bit for bit.

Cases come from fxpq_keras.kernels.cases (seeded numpy generators); hypothesis draws the seeds and
feature constraints, deterministically (derandomize=True). Targeted tests pin each feature of
the contract: bit widths 2..16, signed/unsigned, negative frac, saturation, per-channel frac,
same/valid padding, strides, dilation, depth multipliers, the 64-bit accumulator, relu/relu6,
weight packing, bad input.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import subprocess

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from long_mode import examples

from fxpq_keras.flatbuffer.packing import (
    pack_depthwise_weights,
    pack_weights,
    packed_row_size,
    packed_size,
    unpack_depthwise_weights,
    unpack_weights,
)
from fxpq_keras.formats import Format, accumulator_needs_64, rescale
from fxpq_keras.integer_graph import ops
from fxpq_keras.kernels import host
from fxpq_keras.kernels.cases import OPS, OpCase, random_case

# derandomized by the "fxpq" profile (tests/conftest.py); FXPQ_LONG=N draws N times more, fresh each run
SETTINGS = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow])
CONV_OPS = ("conv2d", "depthwise_conv2d", "fully_connected")


def _assert_same(case: OpCase) -> np.ndarray:
    ref = case.reference()
    got = case.run_host()
    assert got.shape == ref.shape, case.describe()
    if ref.dtype.kind == "f":
        assert np.array_equal(got.view(np.int32), ref.astype(np.float32).view(np.int32)), case.describe()
    else:
        assert np.array_equal(got, ref), f"{case.describe()}\nref {ref.ravel()[:16]}\nc   {got.ravel()[:16]}"
    return ref


def _constraints(op: str):
    opt: dict = {
        "x_signed": st.booleans(),
        "out_signed": st.booleans(),
        "x_bits": st.integers(2, 16),
        "out_bits": st.integers(2, 16),
        "activation": st.sampled_from([None, "relu", "relu6"]),
    }
    if op in CONV_OPS:
        opt.update(w_bits=st.integers(2, 16), per_channel=st.booleans(), with_bias=st.booleans())
    if op in ("conv2d", "depthwise_conv2d", "max_pool2d", "average_pool2d"):
        opt.update(padding=st.sampled_from(["same", "valid"]))
    if op in ("conv2d", "depthwise_conv2d"):
        opt.update(dilation=st.booleans())
    if op == "depthwise_conv2d":
        opt.update(depth_multiplier=st.integers(1, 4))
    return st.fixed_dictionaries({}, optional=opt)


# -------------------------------------------------------------- randomized, every op -------

@pytest.mark.parametrize("op", OPS)
@settings(max_examples=examples(200), **SETTINGS)
@given(seed=st.integers(0, 2**32 - 1), data=st.data())
def test_op_matches_numpy(op, seed, data):
    constraints = data.draw(_constraints(op))
    if op in ("quantize_input",):
        constraints = {k: v for k, v in constraints.items() if k in ("out_bits", "out_signed")}
    case = random_case(op, np.random.default_rng(seed), **constraints)
    _assert_same(case)


# -------------------------------------------------------------- targeted features ----------

@pytest.mark.parametrize("op", CONV_OPS)
@pytest.mark.parametrize("x_signed", [True, False])
@pytest.mark.parametrize("per_channel", [True, False])
def test_conv_family_signedness_and_per_channel(op, x_signed, per_channel):
    for seed in range(12):
        _assert_same(random_case(op, np.random.default_rng([seed, 1]), x_signed=x_signed, per_channel=per_channel))


@pytest.mark.parametrize("op", ("conv2d", "depthwise_conv2d", "max_pool2d", "average_pool2d"))
@pytest.mark.parametrize("padding", ["same", "valid"])
def test_padding_modes(op, padding):
    for seed in range(15):
        _assert_same(random_case(op, np.random.default_rng([seed, 2]), padding=padding))


@pytest.mark.parametrize("op", ("conv2d", "depthwise_conv2d"))
def test_dilation(op):
    for seed in range(25):
        case = random_case(op, np.random.default_rng([seed, 3]), dilation=True)
        _assert_same(case)


@pytest.mark.parametrize("mult", [1, 2, 3, 5])
def test_depth_multiplier(mult):
    for seed in range(10):
        _assert_same(random_case("depthwise_conv2d", np.random.default_rng([seed, 4]), depth_multiplier=mult))


@pytest.mark.parametrize("x_bits,out_bits", [(2, 16), (8, 8), (9, 2), (16, 9), (5, 12)])
@pytest.mark.parametrize("x_signed,out_signed", [(True, True), (False, False), (True, False), (False, True)])
def test_all_storage_types(x_bits, out_bits, x_signed, out_signed):
    """int8 / uint8 / int16 / uint16 on the input and the output side of every op."""
    for i, op in enumerate(OPS):
        c = dict(x_bits=x_bits, out_bits=out_bits, x_signed=x_signed, out_signed=out_signed)
        if op == "quantize_input":
            c = dict(out_bits=out_bits, out_signed=out_signed)
        _assert_same(random_case(op, np.random.default_rng([x_bits, out_bits, i]), **c))


@pytest.mark.parametrize("w_bits", range(2, 17))
def test_every_weight_width(w_bits):
    for i, op in enumerate(CONV_OPS):
        for seed in range(3):
            _assert_same(random_case(op, np.random.default_rng([w_bits, i, seed]), w_bits=w_bits))


@pytest.mark.parametrize("activation", ["relu", "relu6"])
@pytest.mark.parametrize("op", ("conv2d", "depthwise_conv2d", "fully_connected", "add", "max_pool2d",
                                "average_pool2d", "requantize_op"))
def test_fused_activations(op, activation):
    for seed in range(8):
        _assert_same(random_case(op, np.random.default_rng([seed, 5]), activation=activation))


def test_relu6_bound_in_the_output_format():
    x = np.arange(-40, 200, dtype=np.int64)
    for out in (Format(8, 4, True), Format(4, 0, False), Format(8, 6, False), Format(3, -2, True),
                Format(16, 12, False)):
        got = host.requantize_op(x, in_frac=3, out_fmt=out, activation="relu6")
        assert np.array_equal(got, ops.requantize_op(x, in_frac=3, out_fmt=out, activation="relu6"))


def test_saturation_both_ends():
    """Outputs land on lo and hi: the rescale saturates, never wraps."""
    x = np.array([[-127, 127, 100, -100, 0, 1], [127, -127, -100, 100, 0, -1]], dtype=np.int64)
    w = np.array([[127, -128, 64, 0, 1, 1], [-1, 1, 1, 1, 1, 1]], dtype=np.int64)
    for out in (Format(4, 0, True), Format(4, 0, False), Format(16, 2, True), Format(2, 5, True)):
        kwargs = dict(x_frac=0, w_frac=np.array([0, 3]), bias_frac=None, out_fmt=out)
        ref = ops.fully_connected(x, w, None, **kwargs)
        got = host.fully_connected(x, w, None, x_fmt=Format(8, 0, True), w_bits=8, **kwargs)
        assert np.array_equal(got, ref)
        assert out.hi in ref and out.lo in ref


def test_negative_and_large_fracs():
    rng = np.random.default_rng(7)
    for x_frac, w_frac, out_frac in [(-5, -3, -20), (20, 14, 30), (-32, 0, -32), (32, -10, 20), (0, -32, -32)]:
        x = rng.integers(-500, 500, size=(2, 5, 5, 3))
        w = rng.integers(-20, 20, size=(4, 3, 3, 3))
        kwargs = dict(x_frac=x_frac, w_frac=w_frac, bias_frac=None, out_fmt=Format(12, out_frac, True), padding="same")
        assert np.array_equal(host.conv2d(x, w, None, **kwargs), ops.conv2d(x, w, None, **kwargs))


# -------------------------------------------------------------- 64-bit accumulator ---------

def test_accumulator_rule_matches_python():
    lib = host.load_library()
    for bx in range(2, 17):
        for bw in range(2, 17):
            for signed in (0, 1):
                for k in (1, 2, 3, 9, 100, 1 << 12, (1 << 12) + 1, 1 << 20, 2**31 - 1):
                    want = accumulator_needs_64(bx, bool(signed), bw, k)
                    assert bool(lib.fxpq_acc_needs_64(bx, signed, bw, k)) == want, (bx, signed, bw, k)


@pytest.mark.parametrize("x_fmt", [Format(16, 0, True), Format(16, 0, False)])
def test_64bit_accumulator_extremes(x_fmt):
    """16-bit x and w at their extremes over a large K: the exact sum is far beyond int32."""
    k = 4096
    x = np.full((2, k), x_fmt.lo if x_fmt.signed else x_fmt.hi, dtype=np.int64)
    x[1, ::2] = x_fmt.hi
    w = np.full((3, k), -32768, dtype=np.int64)
    w[1] = 32767
    w[2, ::3] = 32767
    acc = x @ w.T
    assert np.abs(acc).max() > 2**40
    out = Format(16, -30, True)
    kwargs = dict(x_frac=0, w_frac=0, bias_frac=-2, out_fmt=out)
    bias = np.array([2**31 - 1, -(2**31), 12345])
    ref = ops.fully_connected(x, w, bias, **kwargs)
    got = host.fully_connected(x, w, bias, x_fmt=x_fmt, w_bits=16, **kwargs)
    assert np.array_equal(got, ref)
    assert len(set(ref.ravel().tolist())) > 2  # not all saturated: the high bits are right


def test_64bit_accumulator_conv_and_depthwise():
    rng = np.random.default_rng(11)
    x = rng.choice([-32768, 32767], size=(1, 9, 9, 16))
    w = rng.choice([-32768, 32767], size=(4, 3, 3, 16))
    kwargs = dict(x_frac=0, w_frac=0, bias_frac=None, out_fmt=Format(16, -26, True), padding="same")
    assert np.array_equal(host.conv2d(x, w, None, **kwargs), ops.conv2d(x, w, None, **kwargs))
    wd = rng.choice([-32768, 32767], size=(1, 4, 4, 32))
    kwargs = dict(x_frac=0, w_frac=0, bias_frac=None, out_fmt=Format(16, -20, True), depth_multiplier=2,
                  dilation=(2, 1), padding="same")
    assert np.array_equal(host.depthwise_conv2d(x, wd, None, **kwargs), ops.depthwise_conv2d(x, wd, None, **kwargs))


@pytest.mark.parametrize("x_signed", [True, False])
def test_int32_path_at_the_rule_boundary(x_signed):
    """bits_x (+1 unsigned) + bits_w + ceil(log2 K) == 31 stays on the int32 path, exactly."""
    xb = 8 if x_signed else 7
    wb, k = 8, 1 << 15
    assert not accumulator_needs_64(xb, x_signed, wb, k)
    x_fmt = Format(xb, 0, x_signed)
    x = np.full((1, k), x_fmt.lo if x_signed else x_fmt.hi, dtype=np.int64)
    w = np.full((2, k), -128, dtype=np.int64)
    w[1] = 127
    kwargs = dict(x_frac=0, w_frac=0, bias_frac=None, out_fmt=Format(16, -14, True))
    assert np.array_equal(host.fully_connected(x, w, None, x_fmt=x_fmt, w_bits=wb, **kwargs),
                          ops.fully_connected(x, w, None, **kwargs))


# -------------------------------------------------------------- scalar helpers -------------

def test_rescale_matches_python():
    lib = host.load_library()
    rng = np.random.default_rng(3)
    values = [0, 1, -1, 2, -2, 3, -3, 5, -5, 2**31 - 1, -(2**31), 2**40 + 3, -(2**40) - 3, 2**61, -(2**61),
              2**62 - 1, -(2**62) + 1]
    values += rng.integers(-(2**50), 2**50, size=200).tolist()
    shifts = list(range(-70, 71))
    for v in values:
        for s in shifts:
            want = int(rescale(np.int64(v), 0, s))
            assert lib.fxpq_rescale(v, 0, s) == want, (v, s)


def test_floor_div_matches_numpy():
    lib = host.load_library()
    for a in range(-50, 51):
        for b in (1, 2, 3, 7, 10, 64):
            assert lib.fxpq_floor_div(a, b) == a // b


# -------------------------------------------------------------- quantize special values ----

def test_quantize_special_values():
    fmt = Format(8, 3, True)
    x = np.array([np.nan, np.inf, -np.inf, 1e30, -1e30, 0.0625, -0.0625, 0.1875, -0.1875, -0.0], dtype=np.float32)
    got = host.quantize_input(x, fmt, nan_ok=True)
    assert got[0] == 0  # NaN -> 0 (numerics.md section 2)
    assert np.array_equal(got[1:], ops.quantize_input(x[1:], fmt))
    assert got[1] == fmt.hi and got[2] == fmt.lo
    with pytest.raises(ValueError, match="NaN"):
        host.quantize_input(x, fmt)


def quantize_edge_floats(fmt: Format) -> np.ndarray:
    """Float32 inputs where an exact QUANTIZE can go wrong: +-0, subnormals, +-2^k and their
    neighbours for every exponent, the largest float, and for this format the grid points
    q 2^-frac and the halves (q + 1/2) 2^-frac (with their float neighbours) around 0 and both ends
    of the range, just inside and just outside. Finite only; NaN is tested on its own."""
    f32 = np.float32
    tiny = np.finfo(f32).smallest_subnormal
    vals = [0.0, tiny, 2 * tiny, 3 * tiny, np.finfo(f32).tiny - tiny, np.finfo(f32).tiny, np.finfo(f32).max]
    vals += [2.0 ** k for k in range(-149, 128)]
    qs = np.unique(np.array([fmt.lo - 2, fmt.lo - 1, fmt.lo, fmt.lo + 1, -3, -2, -1, 0, 1, 2, 3,
                             fmt.hi - 1, fmt.hi, fmt.hi + 1, fmt.hi + 2], dtype=np.float64))
    grid = np.concatenate([qs, qs + 0.5, qs + 0.25, qs - 0.25])
    vals += list(np.ldexp(grid, -fmt.frac))
    x = np.array(vals, dtype=np.float64)
    x = x[np.abs(x) <= np.finfo(f32).max].astype(f32)
    with np.errstate(over="ignore"):
        x = np.concatenate([x, np.nextafter(x, f32(np.inf)), np.nextafter(x, f32(-np.inf))])
    x = x[np.isfinite(x)]
    return np.unique(np.concatenate([x, -x]))


# every storage type at both range ends, a negative, zero and positive frac, the frac extremes
EDGE_FORMATS = [Format(b, f, s) for b in range(2, 17) for s in (True, False)
                for f in ((b - 1) % 7 - 3, -32 + b, 32 - b)]
EDGE_FORMATS += [Format(16, -32, True), Format(16, 32, False), Format(2, 32, True), Format(2, -32, False)]


@pytest.mark.parametrize("fmt", EDGE_FORMATS, ids=str)
def test_quantize_edge_floats(fmt):
    """Exact halves (round half up: -2.5 -> -2, 2.5 -> 3), 2^k boundaries, range ends."""
    x = quantize_edge_floats(fmt)
    assert np.array_equal(host.quantize_input(x, fmt), ops.quantize_input(x, fmt))


def test_quantize_round_half_up():
    x = np.array([-2.5, -1.5, -0.5, 0.5, 1.5, 2.5, -2.4999998, 2.4999998, -0.0], dtype=np.float32)
    assert host.quantize_input(x, Format(8, 0)).tolist() == [-2, -1, 0, 1, 2, 3, -2, 2, 0]


def quantize_floats(fmt: Format) -> st.SearchStrategy:
    """Float32 arrays mixing every bit pattern (NaN excluded) with values near the format's grid."""
    any_bits = st.integers(0, 2**32 - 1).map(lambda b: np.array(b, dtype=np.uint32).view(np.float32).item())
    near = st.tuples(st.integers(4 * fmt.lo - 8, 4 * fmt.hi + 8), st.integers(-2, 2)).map(
        lambda t: float(np.nextafter(np.float32(np.ldexp(t[0] / 4, -fmt.frac)), np.float32(np.inf) * t[1])
                        if t[1] else np.float32(np.ldexp(t[0] / 4, -fmt.frac))))
    return st.lists(st.one_of(any_bits, near, st.floats(width=32, allow_nan=False)), min_size=1, max_size=64).map(
        lambda v: np.array([a for a in v if not np.isnan(a)] or [0.0], dtype=np.float32))


@st.composite
def quantize_draws(draw) -> tuple[np.ndarray, Format]:
    bits = draw(st.integers(2, 16))
    fmt = Format(bits, draw(st.integers(-32, 32)), draw(st.booleans()))
    return draw(quantize_floats(fmt)), fmt


@settings(max_examples=examples(300), **SETTINGS)
@given(draw=quantize_draws())
def test_quantize_matches_numpy(draw):
    x, fmt = draw
    assert np.array_equal(host.quantize_input(x, fmt), ops.quantize_input(x, fmt))


def test_quantize_nan_payloads():
    """Every NaN (quiet, signalling, either sign) -> 0 in C."""
    bits = np.array([0x7FC00000, 0xFFC00000, 0x7F800001, 0xFF800001, 0x7FFFFFFF, 0xFFFFFFFF], dtype=np.uint32)
    for fmt in (Format(8, 3, True), Format(2, -32, False), Format(16, 32, True)):
        assert host.quantize_input(bits.view(np.float32), fmt, nan_ok=True).tolist() == [0] * 6


def test_dequantize_exact():
    for fmt in (Format(16, 32, True), Format(16, -32, False), Format(2, 0, True), Format(9, 7, False)):
        q = np.arange(fmt.lo, fmt.hi + 1, max(1, (fmt.hi - fmt.lo) // 1000))
        got = host.dequantize_output(q, fmt.frac, in_fmt=fmt)
        assert np.array_equal(got, ops.dequantize_output(q, fmt.frac))


# -------------------------------------------------------------- weight packing -------------

@pytest.mark.parametrize("bits", range(2, 17))
def test_packing_round_trip(bits):
    rng = np.random.default_rng(bits)
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    lib = host.load_library()
    for shape in [(1, 1), (3, 7), (5, 3, 3, 2), (4, 13), (2, 1, 1, 9), (7,)]:
        q = rng.integers(lo, hi + 1, size=shape)
        q.ravel()[:2] = [lo, hi][: q.size]
        data = pack_weights(q, bits)
        assert len(data) == packed_size(shape, bits)
        assert np.array_equal(unpack_weights(data, bits, shape), q)
        # the C unpacker reads every channel's run from its byte boundary
        rows = q.reshape(shape[0], -1)
        k = rows.shape[1]
        row = packed_row_size(bits, k)
        assert lib.fxpq_packed_row_size(bits, k) == row
        buf = (ctypes.c_uint8 * len(data)).from_buffer_copy(data)
        out = np.zeros(k, dtype=np.int16)
        for o in range(shape[0]):
            st_ = lib.fxpq_unpack_weights(ctypes.addressof(buf) + o * row, bits, k, out.ctypes.data_as(ctypes.c_void_p))
            assert st_ == 0
            assert np.array_equal(out, rows[o])


def test_packing_known_bytes():
    # 3-bit [1, -1, 2] -> patterns 001 111 010 -> stream LSB first 1,0,0, 1,1,1, 0,1,0
    assert pack_weights(np.array([[1, -1, 2]]), 3) == bytes([0b10111001, 0b00000000])
    # each output channel starts on a byte boundary
    assert pack_weights(np.array([[1, -1, 2], [0, 0, -4]]), 3) == bytes([0xB9, 0x00, 0x00, 0b00000001])
    # 4-bit: two values per byte, low nibble first
    assert pack_weights(np.array([[1, -2, 7]]), 4) == bytes([0xE1, 0x07])
    # 2-bit -2..1
    assert pack_weights(np.array([[-2, -1, 0, 1, 1]]), 2) == bytes([0b01001110, 0b00000001])
    # 8 bits: plain int8; 16 bits: little-endian int16
    assert pack_weights(np.array([[-1, 5]]), 8) == bytes([0xFF, 0x05])
    assert pack_weights(np.array([[-2, 300]]), 16) == bytes([0xFE, 0xFF, 0x2C, 0x01])
    # 9..15 bits are bit-packed too: 12-bit 0xFFE, 0x12C -> FE, (F | C<<4), 12
    assert pack_weights(np.array([[-2, 300]]), 12) == bytes([0xFE, 0xCF, 0x12])
    # 9-bit [-1, 1]: 18 stream bits in 3 bytes (a 9-bit weight costs 9 bits, not 16)
    assert pack_weights(np.array([[-1, 1]]), 9) == bytes([0xFF, 0x03, 0x00])
    # 11-bit: the third value starts at bit 22 and spans three bytes
    assert pack_weights(np.array([[0, 0, -1]]), 11) == bytes([0, 0, 0xC0, 0xFF, 0x01])


def test_device_accounting_scratch_equals_the_kernels():
    """fxpq_keras.memory.scratch_bytes (the device accounting's RAM) is the kernels' own request."""
    from fxpq_keras.memory import scratch_bytes

    lib = host.load_library()
    for k in [1, 2, 7, 8, 9, 16, 27, 64, 100, 576, 1000, 4608]:
        assert scratch_bytes("fully_connected", k, 1) == lib.fxpq_fully_connected_get_buffer_size(k)
        for kh, kw, c in [(1, 1, k), (3, 3, k), (k, 1, 1), (1, 2, k)]:
            dims = host.CDims(1, kh, kw, c)
            assert scratch_bytes("conv2d", kh * kw * c, kh * kw) == \
                lib.fxpq_conv2d_get_buffer_size(ctypes.byref(dims))
            assert scratch_bytes("depthwise_conv2d", kh * kw, kh * kw) == \
                lib.fxpq_depthwise_conv2d_get_buffer_size(ctypes.byref(dims))


def test_depthwise_packing_layout():
    rng = np.random.default_rng(0)
    w = rng.integers(-4, 4, size=(1, 3, 2, 5))
    data = pack_depthwise_weights(w, 3)
    assert len(data) == 5 * packed_row_size(3, 6)
    assert np.array_equal(unpack_depthwise_weights(data, 3, w.shape), w)
    # channel o's run is w[0, :, :, o] in [kh, kw] order
    assert np.array_equal(unpack_weights(data, 3, (5, 3, 2))[2], w[0, :, :, 2])


def test_packing_rejects_bad_input():
    with pytest.raises(ValueError, match="range"):
        pack_weights(np.array([[4]]), 3)
    with pytest.raises(ValueError, match="range"):
        pack_weights(np.array([[-5]]), 3)
    with pytest.raises(ValueError, match="bits"):
        pack_weights(np.array([[0]]), 1)
    with pytest.raises(ValueError, match="bits"):
        pack_weights(np.array([[0]]), 17)
    with pytest.raises(ValueError, match="integers"):
        pack_weights(np.array([[0.5]]), 4)
    with pytest.raises(ValueError, match="bytes"):
        unpack_weights(b"\x00", 4, (1, 3))


# ------------------------------------------- weights on the stack, scratch-free ops ---------

# The draws of the optimized kernels' paths: one table of choices each, sampled by hypothesis
# (the randomized tests) or by numpy (:func:`draw_choices`: the fixed sample of
# tests/test_kernel_path_coverage.py, which checks that these draws reach every optimized path).
SCRATCH_PATH_CHOICES = {
    # Shapes and formats of the kernels' scratch-free paths (docs/kernels.md): 1x1 convs and fully
    # connected (columns read in place), KxK convs (8- or 16-bit im2col columns), depthwise windows
    # up to and past the stack's FXPQ_DW_TAPS = 25 and FXPQ_WCHUNK = 64 weights, dot products
    # longer than FXPQ_WCHUNK (the reference loops unpack such rows piece by piece).
    "op": CONV_OPS,
    "kernel": [(1, 1), (3, 3), (1, 3), (5, 5), (6, 5), (9, 8)],
    "cin": [1, 3, 4, 5, 8, 13, 20, 37],
    "x_bits": [8, 12, 15, 16, 4],
    "x_signed": [False, True],
    "w_bits": list(range(2, 17)),
    "per_channel": [False, True],
    "padding": ["same", "valid"],
    "in_features": [1, 7, 63, 64, 65, 130],
    "out_ch": list(range(1, 13)),
}
WIDE_PATH_CHOICES = {
    # The wide paths (docs/kernels.md): 16-bit inputs (unsigned 16-bit as x - 2^15 lanes) into
    # conv, fully connected and depthwise channel quads, dot products long enough that the width
    # rule asks for an int64 accumulator (int32 partial sums of a few groups), more output channels
    # than the finish cache holds (64).
    "op": CONV_OPS,
    "kernel": [(1, 1), (3, 3), (3, 1), (2, 3), (5, 5)],
    "cin": [4, 8, 12, 20, 33, 64],
    "x": [(16, False), (16, True), (12, True), (15, False), (8, True), (8, False)],
    "w_bits": list(range(2, 17)),
    "per_channel": [False, True],
    "padding": ["same", "valid"],
    "in_features": [40, 130, 300, 513],
    "out_ch": [1, 5, 12, 63, 70],
}


def choices_strategy(choices: dict) -> st.SearchStrategy:
    """Hypothesis draws of a choice table (one value per key)."""
    return st.fixed_dictionaries({k: st.sampled_from(v) for k, v in choices.items()})


def draw_choices(choices: dict, rng: np.random.Generator) -> dict:
    """A numpy draw of a choice table (one value per key, uniform)."""
    return {k: v[int(rng.integers(len(v)))] for k, v in choices.items()}


def _scratch_path_constraints():
    return choices_strategy(SCRATCH_PATH_CHOICES)


def _path_case(seed: int, op: str, c: dict, out_ch_cap: int | None = None) -> OpCase:
    """A drawn path case of `op`: depthwise keeps its input channels (multiplier 1), fully connected
    takes `in_features` instead of a kernel, the convs a kernel instead of `in_features` (and, with
    `out_ch_cap`, at most that many output channels)."""
    if op == "depthwise_conv2d":
        c = dict(c, depth_multiplier=1)
        c.pop("out_ch")
    if op == "fully_connected":
        c.pop("kernel")
    else:
        c.pop("in_features")
        if out_ch_cap is not None:
            c["out_ch"] = min(c.get("out_ch", 1), out_ch_cap)
    return random_case(op, np.random.default_rng(seed), **c)


def scratch_path_case(seed: int, c: dict) -> OpCase:
    """One case of the scratch-free paths (shared with tests/test_c_kernels_qemu.py)."""
    c = dict(c)
    return _path_case(seed, c.pop("op"), c)


@settings(max_examples=examples(150), **SETTINGS)
@given(seed=st.integers(0, 2**32 - 1), c=_scratch_path_constraints())
def test_scratch_free_paths_match_numpy(seed, c):
    """The reference loops with their weights on the stack (whole rows up to FXPQ_WCHUNK, longer
    rows piece by piece) == numpy, for the shapes the optimized kernels' paths take."""
    _assert_same(scratch_path_case(seed, c))


def _wide_path_constraints():
    return choices_strategy(WIDE_PATH_CHOICES)


def wide_path_case(seed: int, c: dict) -> OpCase:
    """One case of the wide paths (shared with tests/test_c_kernels_qemu.py)."""
    c = dict(c)
    op = c.pop("op")
    c["x_bits"], c["x_signed"] = c.pop("x")
    return _path_case(seed, op, c, out_ch_cap=24)  # conv: the channel count matters less than K


@settings(max_examples=examples(60), **SETTINGS)
@given(seed=st.integers(0, 2**32 - 1), c=_wide_path_constraints())
def test_wide_paths_match_numpy(seed, c):
    """The reference loops == numpy on the draws of the optimized kernels' wide paths."""
    _assert_same(wide_path_case(seed, c))


_BLOCK_X = [(16, False), (16, True), (13, False), (12, True), (15, False), (9, True), (8, True), (8, False), (5, False)]


def block_path_cases(seed: int, count: int) -> list[OpCase]:
    """`count` cases of the optimized conv's unpacked-row paths (docs/kernels.md, run of 2026-12-05 b),
    drawn from one seed (numpy, so that a few hypothesis examples still cover every feature):
    9..16-bit inputs against natural-order int16 rows (SMLAD, and SMLALD when the width rule asks
    for int64: about a third of the cases have 16-bit inputs and 13..16-bit weights), 8-bit inputs
    against int16 lane rows for weights other than 8-bit; K mod 4 / mod 8 tails, more rows than one
    1 KB block or FXPQ_WROWS holds, rows too long for the block (the decoder loop), fully connected
    with 1-2 rows, in a quarter of the cases an output frac 1..3 above the accumulator's (every
    channel's finish a left shift), two worst-case rows just below and just above the int32
    bound, and unsigned 16-bit fully connected with 1-2 rows and int32 sums. Shared with
    tests/test_c_kernels_qemu.py."""
    rng = np.random.default_rng([seed, 0xB10C])
    cases = []
    for i in range(count):
        op = ("conv2d", "conv2d", "fully_connected")[int(rng.integers(3))]
        if i % 3 == 0:
            x, w_bits = _BLOCK_X[int(rng.integers(2))], int(rng.integers(13, 17))
        else:
            x, w_bits = _BLOCK_X[int(rng.integers(len(_BLOCK_X)))], int(rng.integers(2, 17))
        c = dict(x_bits=x[0], x_signed=x[1], w_bits=w_bits, per_channel=bool(rng.integers(2)),
                 out_bits=int(rng.choice([8, 16])), padding=("same", "valid")[int(rng.integers(2))])
        if op == "fully_connected":
            c.update(in_features=int(rng.choice([3, 27, 130, 513, 600])), out_ch=int(rng.choice([1, 5, 12, 33, 70])))
        else:
            kernel = [(1, 1), (1, 1), (3, 3), (1, 3), (2, 2)][int(rng.integers(5))]
            cins = [1, 3, 4, 5, 8, 13, 33, 130, 300] if kernel == (1, 1) else [1, 3, 4, 5, 8, 13, 33, 60]
            c.update(kernel=kernel, cin=int(rng.choice(cins)), out_ch=int(rng.choice([1, 5, 12, 33, 40])))
        case = random_case(op, rng, **c)
        if rng.random() < 0.25:
            acc_frac = case.kwargs["x_frac"] + int(np.max(case.kwargs["w_frac"]))
            out = case.kwargs["out_fmt"].with_frac(acc_frac + int(rng.integers(1, 4)))
            case = OpCase(op, case.args, dict(case.kwargs, out_fmt=out), case.extra)
        cases.append(case)
    # rows whose sum |w| * max|x| is just below 2^31 (int32 sums although the width rule asks for
    # int64) or just above it (SMLALD), every product of the same sign: 257 * 255 * 2^15 < 2^31
    for mag in (255, 256):
        c = random_case("fully_connected", rng, x_bits=16, x_signed=True, w_bits=12, per_channel=False,
                        in_features=257, out_ch=3)
        x, w, bias = c.args
        fmt = c.extra["x_fmt"]
        w = np.where(rng.random(w.shape) < 0.5, -mag, mag)
        x = np.where((w[:1] > 0) == bool(rng.integers(2)), fmt.hi, fmt.lo).repeat(5, axis=0)
        cases.append(OpCase("fully_connected", (x, w, bias), c.kwargs, c.extra))
    # unsigned 16-bit fully connected with one or two rows and int32 sums: the decoder's loop over
    # x - 2^15 lanes, the rows' weight sums from the width's unpacker (tails, past the finish cache)
    for in_features, out_ch in ((17, 3), (130, 70)):
        cases.append(random_case("fully_connected", rng, x_bits=16, x_signed=False, w_bits=int(rng.integers(2, 7)),
                                 in_features=in_features, out_ch=out_ch))
    return cases


@settings(max_examples=examples(2), **SETTINGS)
@given(seed=st.integers(0, 2**32 - 1))
def test_block_paths_match_numpy(seed):
    """The reference loops == numpy on the draws of the optimized conv's unpacked-row paths."""
    for case in block_path_cases(seed, 10):
        _assert_same(case)


_ONE_PIXEL_X = [(16, False), (16, True), (15, False), (12, True), (9, False), (8, True), (8, False), (5, False),
                (2, True), (3, False)]


def one_pixel_cases(seed: int, count: int) -> list[OpCase]:
    """`count` cases of the optimized one-pixel fully connected loop (several rows per column load,
    docs/kernels.md "One-pixel fully connected"), drawn from one seed: 1..3 pixels (batches), every
    input kind (int8, uint8, int16, uint16 of at most 15 bits, full 16-bit uint16 as x - 2^15 lanes
    with the rows' weight sums), weights 2..16 bits, odd K and K mod 4 / mod 8 tails, row counts
    that leave 1..3 rows after the passes of 4 (2 for uint16) and rows whose tail group is decoded
    from a stack copy, per-channel frac, negative fracs, saturation (random output fracs), left-shift
    finishes, int64 accumulators by the width rule as exact int32 partial sums (every input and weight
    at an extreme in a fifth of the cases). Shared with tests/test_c_kernels_qemu.py."""
    rng = np.random.default_rng([seed, 0xFC1])
    cases = []
    for i in range(count):
        x_bits, x_signed = _ONE_PIXEL_X[i % len(_ONE_PIXEL_X)]
        w_bits = int(rng.integers(2, 17)) if i % 4 else int(rng.choice([2, 3, 8, 9, 16]))
        c = dict(x_bits=x_bits, x_signed=x_signed, w_bits=w_bits, per_channel=bool(rng.integers(2)),
                 out_bits=int(rng.choice([4, 8, 12, 16])),
                 in_features=int(rng.choice([1, 3, 7, 8, 13, 64, 127, 130, 257, 600])),
                 out_ch=int(rng.choice([1, 2, 3, 4, 5, 7, 9, 33, 70])))
        case = random_case("fully_connected", rng, **c)
        x, w, bias = case.args
        fmt = case.extra["x_fmt"]
        pixels = int(rng.choice([1, 1, 2, 3]))
        x = np.resize(x, (pixels, x.shape[1]))
        if i % 5 == 4:  # extremes: the largest sums the formats allow (int64 partial sums, int32 wraps)
            lo, hi = -(1 << (w_bits - 1)), (1 << (w_bits - 1)) - 1
            w = np.where(rng.random(w.shape) < 0.5, lo, hi).astype(w.dtype)
            x = np.where(rng.random(x.shape) < 0.5, fmt.lo, fmt.hi).astype(x.dtype)
        kwargs = case.kwargs
        if rng.random() < 0.2:
            acc_frac = kwargs["x_frac"] + int(np.max(kwargs["w_frac"]))
            kwargs = dict(kwargs, out_fmt=kwargs["out_fmt"].with_frac(acc_frac + int(rng.integers(1, 4))))
        cases.append(OpCase("fully_connected", (x, w, bias), kwargs, case.extra))
    # 16-bit unsigned columns of up to 512 terms are turned into lanes once, longer ones per pair of rows
    for in_features, w_bits in ((512, 9), (513, 3), (600, 5), (1000, 2)):
        case = random_case("fully_connected", rng, x_bits=16, x_signed=False, w_bits=w_bits, in_features=in_features,
                           out_ch=int(rng.choice([3, 6, 9])))
        cases.append(OpCase("fully_connected", (case.args[0][:1], *case.args[1:]), case.kwargs, case.extra))
    return cases


@settings(max_examples=examples(2), **SETTINGS)
@given(seed=st.integers(0, 2**32 - 1))
def test_one_pixel_cases_match_numpy(seed):
    """The reference loops == numpy on the draws of the optimized one-pixel fully connected loop."""
    for case in one_pixel_cases(seed, 20):
        _assert_same(case)


def test_scratch_free_ops_take_a_null_buffer():
    """Fully connected, 1x1 conv and depthwise request no scratch and accept a NULL buffer of 0 bytes."""
    lib = host.load_library()
    assert lib.fxpq_fully_connected_get_buffer_size(640) == 0
    assert lib.fxpq_conv2d_get_buffer_size(ctypes.byref(host.CDims(8, 1, 1, 96))) == 0
    assert lib.fxpq_depthwise_conv2d_get_buffer_size(ctypes.byref(host.CDims(1, 3, 3, 96))) == 0
    assert lib.fxpq_conv2d_get_buffer_size(ctypes.byref(host.CDims(8, 3, 3, 5))) == 4 * 45
    S = host.STATUS_CODES
    x = np.ones((1, 4, 4, 2), dtype=np.int8)
    packed = np.frombuffer(pack_weights(np.ones((3, 1, 1, 2), dtype=np.int64), 4), dtype=np.uint8).copy()
    out = np.zeros((1, 4, 4, 3), dtype=np.int8)
    assert _conv_call(ctx=host.CContext(None, 0), f_dims=host.CDims(3, 1, 1, 2), input=x.ctypes.data,
                      weights=host.CWeights(packed.ctypes.data, 4, 0, None), output=out.ctypes.data) == S["FXPQ_OK"]
    assert np.all(out == 2)
    assert _conv_call(ctx=host.CContext(None, 0)) == S["FXPQ_ERR_NULL_POINTER"]  # 3x3 needs its columns


# -------------------------------------------------------------- bad input ------------------

def _conv_scratch_bytes() -> int:
    """fxpq_conv2d_get_buffer_size of _conv_call's 3x3x2 filter (K = 18 terms)."""
    return host.load_library().fxpq_conv2d_get_buffer_size(ctypes.byref(host.CDims(3, 3, 3, 2)))


def _conv_call(**over):
    """Call fxpq_conv2d directly with valid arguments, some overridden; return the status."""
    lib = host.load_library()
    x = np.zeros((1, 4, 4, 2), dtype=np.int8)
    packed = np.frombuffer(pack_weights(np.ones((3, 3, 3, 2), dtype=np.int64), 4), dtype=np.uint8).copy()
    out = np.zeros((1, 4, 4, 3), dtype=np.int8)
    scratch = np.zeros(512, dtype=np.int16)
    a = dict(
        ctx=host.CContext(scratch.ctypes.data, _conv_scratch_bytes()),
        params=host.CConvParams(host.CTile(1, 1), host.CTile(1, 1), 1, 0),
        in_dims=host.CDims(1, 4, 4, 2), input=x.ctypes.data, in_fmt=host.CFormat(8, 0, 1),
        f_dims=host.CDims(3, 3, 3, 2), weights=host.CWeights(packed.ctypes.data, 4, 0, None),
        bias=host.CBias(None, 0), out_dims=host.CDims(1, 4, 4, 3), output=out.ctypes.data,
        out_fmt=host.CFormat(8, 0, 1),
    )
    a.update(over)

    def ref(v):
        return None if v is None else (ctypes.byref(v) if isinstance(v, ctypes.Structure) else v)

    return lib.fxpq_conv2d(*(ref(a[k]) for k in ("ctx", "params", "in_dims", "input", "in_fmt", "f_dims", "weights",
                                                  "bias", "out_dims", "output", "out_fmt")))


def test_bad_input_returns_status():
    S = host.STATUS_CODES
    assert _conv_call() == S["FXPQ_OK"]
    assert _conv_call(input=None) == S["FXPQ_ERR_NULL_POINTER"]
    assert _conv_call(params=None) == S["FXPQ_ERR_NULL_POINTER"]
    assert _conv_call(in_fmt=None) == S["FXPQ_ERR_NULL_POINTER"]
    assert _conv_call(in_fmt=host.CFormat(1, 0, 1)) == S["FXPQ_ERR_BAD_FORMAT"]
    assert _conv_call(out_fmt=host.CFormat(17, 0, 1)) == S["FXPQ_ERR_BAD_FORMAT"]
    assert _conv_call(out_fmt=host.CFormat(8, 33, 1)) == S["FXPQ_ERR_BAD_FORMAT"]
    assert _conv_call(weights=host.CWeights(None, 4, 0, None)) == S["FXPQ_ERR_NULL_POINTER"]
    assert _conv_call(in_dims=host.CDims(1, 0, 4, 2)) == S["FXPQ_ERR_BAD_DIMS"]
    assert _conv_call(in_dims=host.CDims(1, 65536, 65536, 2)) == S["FXPQ_ERR_BAD_DIMS"]  # size overflow
    assert _conv_call(out_dims=host.CDims(1, 4, 3, 3)) == S["FXPQ_ERR_BAD_DIMS"]
    assert _conv_call(params=host.CConvParams(host.CTile(1, 1), host.CTile(1, 1), 7, 0)) == S["FXPQ_ERR_BAD_PADDING"]
    assert _conv_call(params=host.CConvParams(host.CTile(1, 1), host.CTile(3, 1), 0, 0),
                      out_dims=host.CDims(1, 1, 2, 3)) == S["FXPQ_ERR_BAD_PADDING"]  # valid window 7 > 4
    assert _conv_call(params=host.CConvParams(host.CTile(0, 1), host.CTile(1, 1), 1, 0)) == S["FXPQ_ERR_BAD_PARAM"]
    assert _conv_call(params=host.CConvParams(host.CTile(1, 1), host.CTile(1, 1), 1, 9)) == S["FXPQ_ERR_BAD_PARAM"]
    scratch = np.zeros(512, dtype=np.int16)
    need = _conv_scratch_bytes()
    assert need == 4 * 18 <= scratch.nbytes - 1  # 4 im2col columns of 18 8-bit terms
    assert _conv_call(ctx=host.CContext(scratch.ctypes.data, need - 1)) == S["FXPQ_ERR_SCRATCH_TOO_SMALL"]
    assert _conv_call(ctx=host.CContext(scratch.ctypes.data + 1, need)) == S["FXPQ_ERR_MISALIGNED"]
    assert _conv_call(ctx=None) == S["FXPQ_ERR_NULL_POINTER"]
    bias = np.zeros(3, dtype=np.int32)
    assert _conv_call(bias=host.CBias(bias.ctypes.data, 1)) == S["FXPQ_ERR_BAD_BIAS_FRAC"]
    assert _conv_call(bias=host.CBias(bias.ctypes.data, -31)) == S["FXPQ_ERR_BAD_BIAS_FRAC"]
    assert _conv_call(bias=host.CBias(bias.ctypes.data, -30)) == S["FXPQ_OK"]


def test_bad_input_through_the_bridge():
    x = np.zeros((1, 4, 4, 2), dtype=np.int64)
    with pytest.raises(host.KernelError) as e:
        host.depthwise_conv2d(x, np.zeros((1, 3, 3, 2)), None, x_frac=0, w_frac=0, bias_frac=None,
                              out_fmt=Format(20, 0, True))
    assert e.value.status_name == "FXPQ_ERR_BAD_FORMAT"
    with pytest.raises(host.KernelError, match="FXPQ_ERR_BAD_PARAM"):
        host.add(x, x, a_frac=-20, b_frac=20, out_fmt=Format(8, 0))  # frac distance 40 > 32
    with pytest.raises(host.KernelError, match="FXPQ_ERR_BAD_PARAM"):
        host.average_pool2d(x, in_frac=0, out_fmt=Format(8, 25))  # |d| > 24
    with pytest.raises(host.KernelError, match="FXPQ_ERR_BAD_BIAS_FRAC"):
        host.fully_connected(x.reshape(2, 16), np.zeros((3, 16)), np.zeros(3), x_frac=0, w_frac=0, bias_frac=5,
                             out_fmt=Format(8, 0))
    with pytest.raises(ValueError, match="outside format"):
        host.requantize_op(np.array([200]), in_frac=0, out_fmt=Format(8, 0), in_fmt=Format(8, 0, True))
    lib = host.load_library()
    S = host.STATUS_CODES
    fmt = ctypes.byref(host.CFormat(8, 0, 1))
    buf = np.zeros(8, dtype=np.int8)
    params = ctypes.byref(host.CElementwiseParams(0))
    assert lib.fxpq_requantize(params, 0, buf.ctypes.data, fmt, buf.ctypes.data, fmt) == S["FXPQ_ERR_BAD_DIMS"]
    assert lib.fxpq_requantize(params, 8, None, fmt, buf.ctypes.data, fmt) == S["FXPQ_ERR_NULL_POINTER"]
    assert lib.fxpq_quantize(8, None, buf.ctypes.data, fmt) == S["FXPQ_ERR_NULL_POINTER"]
    pool = ctypes.byref(host.CPoolParams(host.CTile(0, 2), host.CTile(1, 1), 0, 0))
    dims = ctypes.byref(host.CDims(1, 2, 2, 2))
    assert lib.fxpq_max_pool2d(pool, dims, buf.ctypes.data, fmt, dims, buf.ctypes.data, fmt) == S["FXPQ_ERR_BAD_PARAM"]
    dw = ctypes.byref(host.CDwConvParams(host.CTile(1, 1), host.CTile(1, 1), 1, 0, 0))
    w = host.CWeights(buf.ctypes.data, 8, 0, None)
    ctx = host.CContext(buf.ctypes.data, 8)
    assert lib.fxpq_depthwise_conv2d(ctypes.byref(ctx), dw, dims, buf.ctypes.data, fmt, dims, ctypes.byref(w), None,
                                     dims, buf.ctypes.data, fmt) == S["FXPQ_ERR_BAD_PARAM"]
    assert lib.fxpq_unpack_weights(buf.ctypes.data, 1, 4, buf.ctypes.data) == S["FXPQ_ERR_BAD_FORMAT"]
    assert lib.fxpq_packed_row_size(17, 4) == -1
    assert host.status_str(-6) == "scratch buffer too small"


# -------------------------------------------------------------- build ----------------------

@pytest.mark.parametrize("cc", ["gcc", "clang"])
def test_clean_build_warning_free(cc, tmp_path):
    """`make host` from a clean build directory, -Wall -Wextra -Werror, with gcc and clang."""
    if shutil.which(cc) is None:
        pytest.skip(f"{cc} not installed")
    env = dict(os.environ)
    proc = subprocess.run(["make", "-C", str(host.KERNELS_DIR), "host", f"BUILD={tmp_path}", f"HOST_CC={cc}"],
                          capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (tmp_path / "host" / "libfxpq_kernels.so").exists()


@pytest.mark.parametrize("signed", [False, True])
def test_average_pool_huge_window_is_exact(signed):
    """numerics.md 7: n * 2^16 * 2^24 exceeds int64 here; the result must still be the exact,
    saturated mean (u16.0 all 65535 -> s16.24 saturates to +32767, never wraps to -32768)."""
    in_fmt = Format(16, 0, signed)
    x = np.full((1, 2048, 4096, 1), in_fmt.hi if not signed else in_fmt.lo, dtype=np.int64)
    x[0, 0, 0, 0] = in_fmt.hi  # not all equal: a nonzero remainder
    out_fmt = Format(16, 24, True)
    want = np.int64(out_fmt.hi if not signed else out_fmt.lo)
    for fn in (ops.global_average_pool2d, host.global_average_pool2d):
        assert fn(x, in_frac=0, out_fmt=out_fmt).ravel().tolist() == [want], fn
    for fn in (ops.average_pool2d, host.average_pool2d):
        y = fn(x, pool=(2048, 4096), stride=(1, 1), padding="valid", in_frac=0, out_fmt=out_fmt)
        assert y.ravel().tolist() == [want], fn
    # a mean that does not saturate: d = 24 on 2^23 inputs, exact against Python's integers
    x = np.zeros((1, 2048, 4096, 1), dtype=np.int64)
    x[0, :3, :5, 0] = [[1, 2, 3, 4, 5]] * 3
    total, n = int(x.sum()), x.size
    exact = (2 * (total << 24) + n) // (2 * n)
    for fn in (ops.global_average_pool2d, host.global_average_pool2d):
        assert fn(x, in_frac=0, out_fmt=Format(16, 24, True)).ravel().tolist() == [exact], fn


@settings(max_examples=examples(300), **SETTINGS)
@given(log_n=st.integers(0, 31), d=st.integers(-24, 24), data=st.data())
def test_average_formula_is_exact_for_every_count(log_n, d, data):
    """The reference's average (the formula the C kernel shares) == round_half_up(sum * 2^d / n) in
    Python's unbounded integers, for every count below 2^31 and sums up to n * 2^16 in magnitude."""
    n = max(1, 2**log_n - data.draw(st.integers(0, 2)))
    mean = data.draw(st.integers(-(2**15), 2**16 - 1))
    total = min(max(mean * n + data.draw(st.integers(-n, n)), -n * 2**15), n * (2**16 - 1))
    out = Format(16, 0, True)
    got = int(ops._average(np.array([total]), np.array([n]), 0, out.with_frac(d), None)[0])
    num, den = total * 2**max(d, 0), n * 2**max(-d, 0)
    assert got == min(max((2 * num + den) // (2 * den), out.lo), out.hi)


# -------------------------------------------------------------- zero padding -----------------

@pytest.mark.parametrize("fmt", [Format(2, -3, True), Format(16, 20, False), Format(9, 0, True), Format(5, 7, False)])
def test_zero_pad_edge_formats(fmt):
    """2 and 16 bits, negative frac, unsigned: padded positions are 0, the rest copied exactly."""
    rng = np.random.default_rng(fmt.bits)
    x = rng.integers(fmt.lo, fmt.hi + 1, size=(2, 3, 5, 3))
    pads = ((1, 0), (3, 2))
    got = host.zero_pad2d(x, pads=pads, in_frac=fmt.frac, out_fmt=fmt, in_fmt=fmt)
    np.testing.assert_array_equal(got, ops.zero_pad2d(x, pads=pads, in_frac=fmt.frac, out_fmt=fmt))
    assert (got[:, 0] == 0).all() and (got[:, :, :3] == 0).all() and (got[:, 1:, 3:-2] == x).all()


def test_zero_pad_bad_input_returns_status():
    lib = host.load_library()
    S = host.STATUS_CODES
    fmt = ctypes.byref(host.CFormat(8, 0, 1))
    buf = np.zeros(64, dtype=np.int8)
    ind, outd = ctypes.byref(host.CDims(1, 2, 2, 2)), ctypes.byref(host.CDims(1, 3, 4, 2))
    good = ctypes.byref(host.CPadParams(1, 0, 1, 1))
    assert lib.fxpq_zero_pad2d(good, ind, buf.ctypes.data, fmt, outd, buf[32:].ctypes.data, fmt) == S["FXPQ_OK"]
    neg = ctypes.byref(host.CPadParams(-1, 2, 1, 1))
    assert lib.fxpq_zero_pad2d(neg, ind, buf.ctypes.data, fmt, outd, buf.ctypes.data, fmt) == S["FXPQ_ERR_BAD_PARAM"]
    wrong = ctypes.byref(host.CDims(1, 4, 4, 2))
    assert lib.fxpq_zero_pad2d(good, ind, buf.ctypes.data, fmt, wrong, buf.ctypes.data, fmt) == S["FXPQ_ERR_BAD_DIMS"]
    assert lib.fxpq_zero_pad2d(good, ind, None, fmt, outd, buf.ctypes.data, fmt) == S["FXPQ_ERR_NULL_POINTER"]
    assert lib.fxpq_zero_pad2d(good, ind, buf.ctypes.data, ctypes.byref(host.CFormat(17, 0, 1)), outd,
                               buf.ctypes.data, fmt) == S["FXPQ_ERR_BAD_FORMAT"]
