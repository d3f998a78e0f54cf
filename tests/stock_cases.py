"""Hypothesis strategies shared by the stock-op tests (tests/test_tflm_ops.py, tests/test_stock_ops_host.py)."""

from __future__ import annotations

import math

import numpy as np
from hypothesis import strategies as st

from fxpq_keras.integer_graph.tflm_ops import TensorQ


def scales(lo_frac: int = -6, hi_frac: int = 20) -> st.SearchStrategy[float]:
    """Powers of two 2^-frac (our files) and arbitrary float32 scales (stock mixed precision)."""
    pot = st.integers(lo_frac, hi_frac).map(lambda f: math.ldexp(1.0, -f))
    free = st.floats(math.ldexp(1.0, -hi_frac), math.ldexp(1.0, -lo_frac)).map(lambda s: float(np.float32(s)))
    return st.one_of(pot, free)


def quant(dtype: str = "int8", lo_frac: int = -6, hi_frac: int = 20, zero_point: bool = True):
    zp = st.integers(-128, 127) if dtype == "int8" and zero_point else st.just(0)
    return st.builds(TensorQ, scales(lo_frac, hi_frac), zp, st.just(dtype))


def values(draw, shape, dtype: str = "int8") -> np.ndarray:
    lo, hi = (-128, 127) if dtype == "int8" else (-32768, 32767)
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    v = rng.integers(lo, hi + 1, size=shape)
    if v.size and draw(st.booleans()):  # saturation: some extremes
        v.flat[rng.integers(0, v.size, size=max(1, v.size // 4))] = rng.choice([lo, hi])
    return v.astype(np.int64)


shapes4 = st.tuples(st.integers(1, 2), st.integers(1, 5), st.integers(1, 5), st.integers(1, 7))


def broadcast_partner(draw, shape):
    """A shape that broadcasts against `shape` (dims dropped from the front or set to 1)."""
    rank = draw(st.integers(1, len(shape)))
    tail = list(shape[len(shape) - rank:])
    return tuple(1 if draw(st.booleans()) else d for d in tail)
