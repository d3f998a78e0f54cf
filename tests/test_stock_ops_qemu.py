"""The C stock-op kernels on an emulated Cortex-M4 (QEMU mps2-an386) and Cortex-M7 (mps2-an500)
equal the numpy reference (integer_graph/tflm_ops.py) bit for bit, and refuse what it refuses.

Seeded random cases of every stock op run in ONE firmware session per CPU (FXPQ_HOP_STOCK
records of the kernel harness). Skipped only when qemu-system-arm / arm-none-eabi-gcc are missing.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from long_mode import LONG, SEED, examples

from fxpq_keras.integer_graph import tflm_ops as T
from fxpq_keras.integer_graph.tflm_ops import TensorQ
from fxpq_keras.kernels import qemu, stock_qemu

_missing = qemu.missing_tools()
pytestmark = pytest.mark.skipif(bool(_missing), reason=f"needs {', '.join(_missing)} (installed by scripts/setup.sh)")

_RANGE = {"int8": (-128, 127), "int16": (-32768, 32767)}


def _scale(rng: np.random.Generator, lo_frac: int = -6, hi_frac: int = 24) -> float:
    if rng.random() < 0.6:
        return math.ldexp(1.0, -int(rng.integers(lo_frac, hi_frac + 1)))
    return float(np.float32(math.ldexp(1.0, -hi_frac) + rng.random() * math.ldexp(1.0, -lo_frac)))


def _q(rng: np.random.Generator, dtype: str = "int8", zero_point: bool = True) -> TensorQ:
    zp = int(rng.integers(-128, 128)) if dtype == "int8" and zero_point else 0
    return TensorQ(_scale(rng), zp, dtype)


def _values(rng: np.random.Generator, shape, dtype: str = "int8") -> np.ndarray:
    lo, hi = _RANGE[dtype]
    v = rng.integers(lo, hi + 1, size=shape)
    if v.size and rng.random() < 0.5:
        v.flat[rng.integers(0, v.size, size=max(1, v.size // 4))] = rng.choice([lo, hi])
    return v.astype(np.int64)


def _shape(rng: np.random.Generator, rank: int = 4) -> tuple[int, ...]:
    return tuple(int(rng.integers(1, 6)) for _ in range(rank))


def _partner(rng: np.random.Generator, shape) -> tuple[int, ...]:
    rank = int(rng.integers(1, len(shape) + 1))
    return tuple(1 if rng.random() < 0.5 else d for d in shape[len(shape) - rank:])


def _case(op: str, rng: np.random.Generator):
    """(op, args, kwargs) with the numpy op's arguments."""
    if op == "requantize":
        din, dout = rng.choice(["int8", "int16"]), rng.choice(["int8", "int16"])
        qi, qo = _q(rng, din), _q(rng, dout)
        return op, (_values(rng, _shape(rng), din), qi, qo), {}
    if op in ("mul", "add", "sub", "maximum", "minimum"):
        dtype = "int16" if rng.random() < 0.4 else "int8"
        shape = _shape(rng)
        other = _partner(rng, shape)
        a_shape, b_shape = (shape, other) if rng.random() < 0.5 else (other, shape)
        if op in ("maximum", "minimum"):
            q1 = q2 = qo = _q(rng, dtype)
            extra: tuple = ()
        else:
            q1, q2, qo = _q(rng, dtype), _q(rng, dtype), _q(rng, dtype)
            extra = (T.ACTIVATIONS[int(rng.integers(0, len(T.ACTIVATIONS)))],)
        return op, (_values(rng, a_shape, dtype), _values(rng, b_shape, dtype), q1, q2, qo) + extra, {}
    if op == "elu":  # the whole table, as the kernel builds it at prepare
        return op, (np.arange(-128, 128, dtype=np.int64).reshape(2, 128), _q(rng), _q(rng)), {}
    if op in ("logistic", "tanh", "hard_swish"):
        qi = _q(rng)
        qo = {"logistic": TensorQ(1 / 256, -128), "tanh": TensorQ(1 / 128, 0)}.get(op) or _q(rng)
        return op, (_values(rng, _shape(rng)), qi, qo), {}
    if op == "mean":
        dtype = rng.choice(["int8", "int16"])
        shape = _shape(rng)
        axes = (1, 2) if rng.random() < 0.6 else tuple(int(a) for a in rng.choice(4, int(rng.integers(1, 4)), False))
        return op, (_values(rng, shape, dtype), axes, _q(rng, dtype), _q(rng, dtype), bool(rng.random() < 0.5)), {}
    if op == "resize_nearest_neighbor":
        dtype = rng.choice(["int8", "int16"])
        q = _q(rng, dtype)
        size = (int(rng.integers(1, 12)), int(rng.integers(1, 12)))
        kw = {"align_corners": bool(rng.random() < 0.5), "half_pixel_centers": bool(rng.random() < 0.5)}
        return op, (_values(rng, _shape(rng), dtype), size, q, q), kw
    if op == "transpose":
        dtype = rng.choice(["int8", "int16"])
        q = _q(rng, dtype)
        shape = _shape(rng, int(rng.integers(1, 6)))
        return op, (_values(rng, shape, dtype), tuple(int(p) for p in rng.permutation(len(shape))), q, q), {}
    if op == "concatenation":
        dtype = rng.choice(["int8", "int16"])
        q = _q(rng, dtype)
        shape = list(_shape(rng))
        axis = int(rng.integers(-4, 4))
        other = list(shape)
        other[axis] = int(rng.integers(1, 5))
        return op, ((_values(rng, tuple(shape), dtype), _values(rng, tuple(other), dtype)), axis, (q, q), q), {}
    raise AssertionError(op)


def _numpy(op: str, args, kwargs):
    if op == "concatenation":
        xs, axis, qs, qo = args
        return T.concatenation(list(xs), axis, list(qs), qo)
    return getattr(T, op)(*args, **kwargs)


def _run(cpu: str, per_op: int, salt: int) -> None:
    cases = []
    for i, op in enumerate(stock_qemu.STOCK_OPS):
        for s in range(per_op):
            rng = np.random.default_rng([SEED, salt, i, s] if LONG else [salt, i, s])
            cases.append(_case(op, rng))
    results = stock_qemu.run_stock_cases(cases, cpu=cpu)
    refused = 0
    for (op, args, kwargs), r in zip(cases, results):
        try:
            expected = _numpy(op, args, kwargs)
        except ValueError as e:
            refused += 1
            assert r.status != 0, f"{op}: numpy refused ({e}) but the {cpu} kernel returned status 0"
            continue
        assert r.status == 0, f"{op} case {r.case_id}: {cpu} status {r.status_name}"
        assert r.output.shape == expected.shape, op
        bad = np.flatnonzero(r.output != expected)
        assert bad.size == 0, f"{op} case {r.case_id} on {cpu}: {bad.size} of {expected.size} differ"
    assert refused < len(cases) // 4  # the batch mostly exercises arithmetic, not refusals


def test_stock_ops_on_m4_equal_numpy():
    _run("m4", examples(60), salt=19)


def test_stock_ops_on_m7_equal_numpy():
    _run("m7", examples(15), salt=23)


def test_stock_protocol_numbers_match_the_header():
    consts = qemu.protocol_from_header()
    assert consts["FXPQ_HOP_STOCK"] == stock_qemu.HOP_STOCK
    for op, op_id in stock_qemu.STOCK_OPS.items():
        assert consts[f"FXPQ_SOP_{op.upper()}"] == op_id
    for name, index in stock_qemu.WORDS.items():
        assert consts[f"FXPQ_SW_{name}"] == index
