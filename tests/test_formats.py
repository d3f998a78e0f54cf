"""The scalar rules of the numerics contract against exact Python integer/fraction arithmetic."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from fxpq_keras.formats import (
    Format,
    FormatError,
    frac_for_range,
    quantize,
    relu_bounds,
    requantize,
    rescale,
)


def exact_round_half_up(value: Fraction) -> int:
    return math.floor(value + Fraction(1, 2))


@given(st.integers(-(2**40), 2**40), st.integers(-32, 64), st.integers(-32, 64))
def test_rescale_is_exact_round_half_up(v, a, b):
    expected = exact_round_half_up(Fraction(v) * Fraction(2) ** (b - a))
    got = int(rescale(np.int64(v), a, b))
    if abs(expected) < 2**62:
        assert got == expected
    else:  # saturation marker: a later saturate must clamp to the right end
        assert np.sign(got) == np.sign(expected) and abs(got) == 2**62


@given(st.lists(st.integers(-(2**62), 2**62), min_size=1, max_size=12), st.data())
def test_rescale_per_channel_is_the_scalar_rule_per_element(values, data):
    """Per-channel fracs (arrays on the last axis, the fast paths included) give what the scalar rule
    gives element by element."""
    channels = data.draw(st.integers(1, 4))
    v = np.resize(np.asarray(values, dtype=np.int64), (3, channels))
    low = data.draw(st.integers(-40, 70))
    from_frac = np.asarray(data.draw(st.lists(st.integers(low, low + data.draw(st.integers(0, 80))),
                                              min_size=channels, max_size=channels)), dtype=np.int64)
    to_frac = data.draw(st.integers(-10, 10))
    got = rescale(v, from_frac, to_frac)
    expected = [[int(rescale(np.int64(v[i, c]), int(from_frac[c]), to_frac)) for c in range(channels)]
                for i in range(3)]
    assert got.tolist() == expected


@given(st.integers(2, 16), st.integers(-32, 32), st.booleans(),
       st.floats(-1e6, 1e6, allow_nan=False, width=32))
def test_quantize_rule(bits, frac, signed, x):
    fmt = Format(bits, frac, signed)
    expected = min(max(exact_round_half_up(Fraction(float(np.float32(x))) * Fraction(2) ** frac), fmt.lo), fmt.hi)
    assert int(quantize(np.float32(x), fmt)) == expected


def test_ties_round_up_both_signs():
    fmt = Format(8, 0)
    assert quantize(np.array([0.5, -0.5, 1.5, -1.5, 2.5]), fmt).tolist() == [1, 0, 2, -1, 3]
    assert rescale(np.array([1, -1, 3, -3]), 1, 0).tolist() == [1, 0, 2, -1]


def test_saturation_and_ranges():
    assert (Format(2, 0).lo, Format(2, 0).hi) == (-2, 1)
    assert (Format(16, 0, False).lo, Format(16, 0, False).hi) == (0, 65535)
    assert requantize(np.array([10**9, -(10**9)]), 0, Format(4, 0)).tolist() == [7, -8]
    assert quantize(np.array([1e30, -1e30]), Format(16, 3)).tolist() == [32767, -32768]


def test_relu6_bound_uses_the_quantize_rule():
    assert relu_bounds(Format(8, 4), "relu6") == (0, 96)
    assert relu_bounds(Format(8, 5), "relu6") == (0, 127)  # 6 * 32 = 192 saturates
    assert relu_bounds(Format(8, -2), "relu6") == (0, 2)  # 6 / 4 = 1.5 rounds half up
    assert relu_bounds(Format(8, 0, False), "relu") == (0, 255)


@pytest.mark.parametrize("bad", [dict(bits=1, frac=0), dict(bits=33, frac=0), dict(bits=8, frac=40),
                                 dict(bits=8, frac=-33), dict(bits=8.5, frac=0)])
def test_format_rejects_out_of_range(bad):
    with pytest.raises(FormatError, match="bits|frac"):
        Format(**bad)


def test_quantize_rejects_nan():
    with pytest.raises(ValueError, match="NaN"):
        quantize(np.array([1.0, np.nan]), Format(8, 4))


@given(st.floats(1e-6, 1e6), st.integers(2, 16), st.booleans())
def test_frac_for_range_is_the_largest_frac_that_holds_the_range(max_abs, bits, signed):
    frac = frac_for_range(max_abs, bits, signed)
    fmt = Format(bits, frac, signed)
    if -32 < frac < 32:
        assert max_abs * 2.0**frac <= fmt.hi
        assert max_abs * 2.0 ** (frac + 1) > fmt.hi
