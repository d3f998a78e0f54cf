"""Random op cases for testing the C kernels against the numpy reference.

An :class:`OpCase` is one call of an op of :mod:`fxpq_keras.integer_graph.ops`: positional
arrays, the keyword arguments shared by ops.py and the C bridges, and the extra facts the C side
needs (input formats, weight bits). :func:`random_case` draws one from a numpy Generator, so a
seed reproduces it; keyword constraints pin features (padding, signedness, widths, ...) so that
tests can make sure each one is covered. The host tests (ctypes) and the QEMU harness use the
same cases.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..formats import Format
from ..integer_graph import ops

__all__ = ["OPS", "OpCase", "node_case", "random_case", "random_format"]

#: the op names (functions of ops.py) the kernels implement
OPS = (
    "conv2d",
    "depthwise_conv2d",
    "fully_connected",
    "add",
    "max_pool2d",
    "average_pool2d",
    "global_average_pool2d",
    "quantize_input",
    "dequantize_output",
    "requantize_op",
    "zero_pad2d",
    "leaky_relu",
    "concatenate",
)

_ACTIVATIONS = (None, "relu", "relu6")


@dataclass
class OpCase:
    """One call: ``ops.<op>(*args, **kwargs)``; C bridges also get ``**extra``."""

    op: str
    args: tuple
    kwargs: dict[str, Any]
    extra: dict[str, Any] = field(default_factory=dict)

    def reference(self) -> np.ndarray:
        """The numpy reference result (the source of truth)."""
        return getattr(ops, self.op)(*self.args, **self.kwargs)

    def run_host(self) -> np.ndarray:
        """The C kernels on the host, through the ctypes bridge."""
        from . import host

        return getattr(host, self.op)(*self.args, **self.kwargs, **self.extra)

    def describe(self) -> str:
        shapes = [getattr(a, "shape", a) for a in self.args]
        return f"{self.op}(shapes={shapes}, kwargs={self.kwargs}, extra={self.extra})"


def _pick(rng: np.random.Generator, options):
    return options[int(rng.integers(len(options)))]


def random_format(rng: np.random.Generator, bits: int | None = None, signed: bool | None = None,
                  frac: int | None = None, frac_range=(-6, 14)) -> Format:
    """A random activation format (bits 2..16)."""
    bits = int(rng.integers(2, 17)) if bits is None else int(bits)
    signed = bool(rng.random() < 0.5) if signed is None else bool(signed)
    frac = int(rng.integers(frac_range[0], frac_range[1] + 1)) if frac is None else int(frac)
    return Format(bits, int(np.clip(frac, -32, 32)), signed)


def _values(rng: np.random.Generator, lo: int, hi: int, shape) -> np.ndarray:
    """Integers in [lo, hi]: uniform, extreme-heavy, or small, chosen at random."""
    mode = int(rng.integers(4))
    if mode == 2:  # small magnitudes around 0 (clipped into the range)
        span = max(1, int(math.isqrt(max(hi - lo, 1))))
        v = rng.integers(-span, span + 1, size=shape)
        return np.clip(v, lo, hi).astype(np.int64)
    v = rng.integers(lo, hi + 1, size=shape, dtype=np.int64)
    if mode == 1:  # a quarter at the extremes
        pick = rng.random(shape)
        v = np.where(pick < 0.125, lo, np.where(pick < 0.25, hi, v))
    if mode == 3:  # all at one extreme: worst case for the accumulator
        v = np.full(shape, _pick(rng, (lo, hi)), dtype=np.int64)
    return v


def _spatial(rng, kernel: int, dilation: int, padding: str, max_extra: int = 7) -> int:
    eff = (kernel - 1) * dilation + 1
    lo = 1 if padding == "same" else eff
    return int(rng.integers(lo, lo + max_extra + 1))


def _out_frac(rng, acc_frac: int, magnitude_bits: float, out: Format, spread: int = 3) -> int:
    """An output frac that keeps typical results in range, +- spread (so some saturate)."""
    int_bits = out.bits - 1 if out.signed else out.bits
    f = acc_frac - int(round(magnitude_bits)) + int_bits + int(rng.integers(-spread, spread + 1))
    return int(np.clip(f, -32, 32))


def _weight_and_bias(rng, out_ch: int, k: int, x_fmt: Format, w_bits: int | None, per_channel: bool | None,
                     with_bias: bool | None):
    w_bits = int(rng.integers(2, 17)) if w_bits is None else int(w_bits)
    per_channel = bool(rng.random() < 0.5) if per_channel is None else per_channel
    base = int(rng.integers(-4, 12))
    if per_channel:
        w_frac = np.clip(base + rng.integers(-3, 4, size=out_ch), -32, 32).astype(np.int64)
        fracs = w_frac
    else:
        w_frac = base
        fracs = np.array([base])
    acc_fracs = x_fmt.frac + fracs
    x_bits_eff = x_fmt.bits if x_fmt.signed else x_fmt.bits + 1
    magnitude = x_bits_eff + w_bits - 2 + math.log2(max(k, 1)) / 2
    with_bias = bool(rng.random() < 0.75) if with_bias is None else with_bias
    if with_bias:
        lo_f, hi_f = int(acc_fracs.max()) - 30, int(acc_fracs.min())
        bias_frac = int(rng.integers(max(lo_f, hi_f - 12), hi_f + 1))
        # bias comparable to the products (in accumulator units), sometimes up to 32 bits
        bias_bits = int(np.clip(magnitude - (hi_f - bias_frac) + rng.integers(-4, 3), 2, 32))
        if rng.random() < 0.1:
            bias_bits = 32
        bias = _values(rng, -(1 << (bias_bits - 1)), (1 << (bias_bits - 1)) - 1, (out_ch,))
    else:
        bias, bias_frac = None, None
    return w_bits, w_frac, bias, bias_frac, int(acc_fracs.min()), magnitude


def _conv_family(op: str, rng: np.random.Generator, c: dict) -> OpCase:
    padding = c.get("padding") or _pick(rng, ("same", "valid"))
    kh, kw = c.get("kernel") or tuple(int(rng.integers(1, 5)) for _ in range(2))
    if op == "fully_connected":
        kh = kw = 1
    dil = (1, 1)
    if op != "fully_connected" and c.get("dilation", rng.random() < 0.3):
        dil = (int(rng.integers(1, 4)), int(rng.integers(1, 4)))
    stride = (int(rng.integers(1, 4)), int(rng.integers(1, 4))) if op != "fully_connected" else (1, 1)
    stride = tuple(c["stride"]) if "stride" in c else stride
    n = int(rng.integers(1, 3))
    h = _spatial(rng, kh, dil[0], padding)
    w_ = _spatial(rng, kw, dil[1], padding)
    h, w_ = c.get("size") or (h, w_)
    cin = int(c.get("cin") or rng.integers(1, 7))
    x_fmt = random_format(rng, bits=c.get("x_bits"), signed=c.get("x_signed"))
    out_fmt = random_format(rng, bits=c.get("out_bits"), signed=c.get("out_signed"))
    act = c["activation"] if "activation" in c else _pick(rng, _ACTIVATIONS)
    if op == "conv2d":
        out_ch = int(c.get("out_ch") or rng.integers(1, 7))
        k = kh * kw * cin
    elif op == "depthwise_conv2d":
        mult = int(c.get("depth_multiplier") or rng.integers(1, 4))
        out_ch = cin * mult
        k = kh * kw
    else:
        cin = int(c.get("in_features") or _pick(rng, (1, 3, 8, 17, 64, 200)))
        out_ch = int(c.get("out_ch") or rng.integers(1, 9))
        k = cin
    w_bits, w_frac, bias, bias_frac, acc_frac, magnitude = _weight_and_bias(
        rng, out_ch, k, x_fmt, c.get("w_bits"), c.get("per_channel"), c.get("with_bias"))
    out_fmt = out_fmt.with_frac(_out_frac(rng, acc_frac, magnitude, out_fmt))
    wlo, whi = -(1 << (w_bits - 1)), (1 << (w_bits - 1)) - 1
    kwargs: dict[str, Any] = dict(x_frac=x_fmt.frac, w_frac=w_frac, bias_frac=bias_frac, out_fmt=out_fmt,
                                  activation=act)
    extra = dict(x_fmt=x_fmt, w_bits=w_bits)
    if op == "fully_connected":
        x = _values(rng, x_fmt.lo, x_fmt.hi, (n, cin))
        wts = _values(rng, wlo, whi, (out_ch, cin))
    else:
        x = _values(rng, x_fmt.lo, x_fmt.hi, (n, h, w_, cin))
        kwargs.update(stride=stride, padding=padding, dilation=dil)
        if op == "conv2d":
            wts = _values(rng, wlo, whi, (out_ch, kh, kw, cin))
        else:
            wts = _values(rng, wlo, whi, (1, kh, kw, out_ch))
            kwargs["depth_multiplier"] = mult
    return OpCase(op, (x, wts, bias), kwargs, extra)


def _pool(op: str, rng: np.random.Generator, c: dict) -> OpCase:
    padding = c.get("padding") or _pick(rng, ("same", "valid"))
    pool = (int(rng.integers(1, 4)), int(rng.integers(1, 4)))
    stride = (int(rng.integers(1, 4)), int(rng.integers(1, 4)))
    n = int(rng.integers(1, 3))
    h, w_ = _spatial(rng, pool[0], 1, padding), _spatial(rng, pool[1], 1, padding)
    ch = int(rng.integers(1, 6))
    in_fmt = random_format(rng, bits=c.get("x_bits"), signed=c.get("x_signed"))
    out_fmt = random_format(rng, bits=c.get("out_bits"), signed=c.get("out_signed"))
    d = int(rng.integers(-24, 25)) if rng.random() < 0.15 else int(rng.integers(-5, 6))
    if in_fmt.bits > out_fmt.bits and rng.random() < 0.7:
        d -= in_fmt.bits - out_fmt.bits  # mostly keep the magnitude in range
    out_fmt = out_fmt.with_frac(int(np.clip(in_fmt.frac + d, -32, 32)))
    if abs(out_fmt.frac - in_fmt.frac) > 24:
        out_fmt = out_fmt.with_frac(in_fmt.frac + int(np.sign(out_fmt.frac - in_fmt.frac)) * 24)
    x = _values(rng, in_fmt.lo, in_fmt.hi, (n, h, w_, ch))
    act = c["activation"] if "activation" in c else _pick(rng, _ACTIVATIONS)
    if op == "global_average_pool2d":
        return OpCase(op, (x,), dict(in_frac=in_fmt.frac, out_fmt=out_fmt, keepdims=bool(rng.random() < 0.5)),
                      dict(in_fmt=in_fmt))
    kwargs = dict(pool=pool, stride=stride, padding=padding, in_frac=in_fmt.frac, out_fmt=out_fmt, activation=act)
    return OpCase(op, (x,), kwargs, dict(in_fmt=in_fmt))


def _elementwise_shape(rng) -> tuple:
    return _pick(rng, ((int(rng.integers(1, 40)),), (1, int(rng.integers(1, 6)), int(rng.integers(1, 6)),
                                                     int(rng.integers(1, 5)))))


def _add(rng: np.random.Generator, c: dict) -> OpCase:
    shape = _elementwise_shape(rng)
    a_fmt = random_format(rng, bits=c.get("x_bits"), signed=c.get("x_signed"))
    diff = int(rng.integers(-32, 33)) if rng.random() < 0.2 else int(rng.integers(-8, 9))
    b_frac = int(np.clip(a_fmt.frac + diff, -32, 32))
    b_fmt = random_format(rng, frac=b_frac)
    out_fmt = random_format(rng, bits=c.get("out_bits"), signed=c.get("out_signed"))
    f = max(a_fmt.frac, b_fmt.frac)
    out_fmt = out_fmt.with_frac(int(np.clip(f - max(a_fmt.bits, b_fmt.bits) + out_fmt.bits
                                            + int(rng.integers(-4, 3)), -32, 32)))
    a = _values(rng, a_fmt.lo, a_fmt.hi, shape)
    b = _values(rng, b_fmt.lo, b_fmt.hi, shape)
    act = c["activation"] if "activation" in c else _pick(rng, _ACTIVATIONS)
    return OpCase("add", (a, b), dict(a_frac=a_fmt.frac, b_frac=b_fmt.frac, out_fmt=out_fmt, activation=act),
                  dict(a_fmt=a_fmt, b_fmt=b_fmt))


def _quantize(rng: np.random.Generator, c: dict) -> OpCase:
    out_fmt = random_format(rng, bits=c.get("out_bits"), signed=c.get("out_signed"), frac_range=(-32, 32))
    shape = _elementwise_shape(rng)
    step = 2.0 ** -out_fmt.frac
    span = (out_fmt.hi - out_fmt.lo + 1) * step
    kind = int(rng.integers(4))
    if kind == 0:
        x = rng.normal(size=shape) * span / 3
    elif kind == 1:  # exact rounding ties
        x = (rng.integers(out_fmt.lo - 2, out_fmt.hi + 2, size=shape) + 0.5) * step
    elif kind == 2:  # out of range, infinities, float32 extremes
        x = rng.choice(np.array([np.inf, -np.inf, 3.0e38, -3.0e38, 1e-45, -1e-45, 0.0, -0.0,
                                 span * 4, -span * 4]), size=shape)
    else:  # near the boundaries of the range
        x = (rng.choice(np.array([out_fmt.lo, out_fmt.hi])) + rng.uniform(-1.5, 1.5, size=shape)) * step
    x = np.asarray(x, dtype=np.float32)
    return OpCase("quantize_input", (x, out_fmt), {}, {})


def _dequantize(rng: np.random.Generator, c: dict) -> OpCase:
    in_fmt = random_format(rng, bits=c.get("x_bits"), signed=c.get("x_signed"), frac_range=(-32, 32))
    q = _values(rng, in_fmt.lo, in_fmt.hi, _elementwise_shape(rng))
    return OpCase("dequantize_output", (q, in_fmt.frac), {}, dict(in_fmt=in_fmt))


def _requantize(rng: np.random.Generator, c: dict) -> OpCase:
    in_fmt = random_format(rng, bits=c.get("x_bits"), signed=c.get("x_signed"))
    out_fmt = random_format(rng, bits=c.get("out_bits"), signed=c.get("out_signed"))
    d = int(rng.integers(-40, 41)) if rng.random() < 0.15 else int(rng.integers(-6, 7))
    out_fmt = out_fmt.with_frac(int(np.clip(in_fmt.frac + d - max(0, in_fmt.bits - out_fmt.bits), -32, 32)))
    x = _values(rng, in_fmt.lo, in_fmt.hi, _elementwise_shape(rng))
    act = c["activation"] if "activation" in c else _pick(rng, _ACTIVATIONS)
    return OpCase("requantize_op", (x,), dict(in_frac=in_fmt.frac, out_fmt=out_fmt, activation=act),
                  dict(in_fmt=in_fmt))


def _zero_pad(rng: np.random.Generator, c: dict) -> OpCase:
    """Odd sizes, pads of 0..3 per side; mostly the converter's equal formats, sometimes a
    rescale (which the kernel also does, saturating)."""
    in_fmt = random_format(rng, bits=c.get("x_bits"), signed=c.get("x_signed"))
    out_fmt = in_fmt
    if rng.random() < 0.4 or "out_bits" in c or "out_signed" in c:
        out_fmt = random_format(rng, bits=c.get("out_bits"), signed=c.get("out_signed"))
        out_fmt = out_fmt.with_frac(int(np.clip(in_fmt.frac + rng.integers(-6, 7), -32, 32)))
    shape = (int(rng.integers(1, 3)), int(rng.integers(1, 6)), int(rng.integers(1, 6)), int(rng.integers(1, 5)))
    pads = tuple(tuple(int(v) for v in rng.integers(0, 4, size=2)) for _ in range(2))
    x = _values(rng, in_fmt.lo, in_fmt.hi, shape)
    return OpCase("zero_pad2d", (x,), dict(pads=pads, in_frac=in_fmt.frac, out_fmt=out_fmt), dict(in_fmt=in_fmt))


def _leaky_relu(rng: np.random.Generator, c: dict) -> OpCase:
    """Slopes 2^-1..2^-31 (mostly small k), any formats; output fracs around the input's so that
    both sides round, saturate and sometimes vanish."""
    in_fmt = random_format(rng, bits=c.get("x_bits"), signed=c.get("x_signed"))
    out_fmt = random_format(rng, bits=c.get("out_bits"), signed=c.get("out_signed", True))
    k = int(rng.integers(1, 32)) if rng.random() < 0.15 else int(rng.integers(1, 6))
    d = int(rng.integers(-6, 7)) - max(0, in_fmt.bits - out_fmt.bits)
    out_fmt = out_fmt.with_frac(int(np.clip(in_fmt.frac + d, -32, 32)))
    x = _values(rng, in_fmt.lo, in_fmt.hi, _elementwise_shape(rng))
    return OpCase("leaky_relu", (x,), dict(alpha_shift=k, in_frac=in_fmt.frac, out_fmt=out_fmt), dict(in_fmt=in_fmt))


def _concatenate(rng: np.random.Generator, c: dict) -> OpCase:
    """Two inputs of unrelated formats (frac distances up to 40: some vanish, some saturate),
    odd channel counts, rank 2 or 4."""
    a_fmt = random_format(rng, bits=c.get("x_bits"), signed=c.get("x_signed"))
    diff = int(rng.integers(-40, 41)) if rng.random() < 0.2 else int(rng.integers(-6, 7))
    b_fmt = random_format(rng, frac=int(np.clip(a_fmt.frac + diff, -32, 32)))
    out_fmt = random_format(rng, bits=c.get("out_bits"), signed=c.get("out_signed"))
    out_fmt = out_fmt.with_frac(int(np.clip(max(a_fmt.frac, b_fmt.frac) + int(rng.integers(-6, 3)), -32, 32)))
    lead = _pick(rng, ((int(rng.integers(1, 9)),), (int(rng.integers(1, 3)), int(rng.integers(1, 5)),
                                                     int(rng.integers(1, 5)))))
    a = _values(rng, a_fmt.lo, a_fmt.hi, lead + (int(rng.integers(1, 6)),))
    b = _values(rng, b_fmt.lo, b_fmt.hi, lead + (int(rng.integers(1, 6)),))
    return OpCase("concatenate", (a, b), dict(a_frac=a_fmt.frac, b_frac=b_fmt.frac, out_fmt=out_fmt),
                  dict(a_fmt=a_fmt, b_fmt=b_fmt))


def random_case(op: str, rng: np.random.Generator, **constraints: Any) -> OpCase:
    """A random case of ``op`` (one of :data:`OPS`).

    Constraints (all optional): ``padding`` ('same'/'valid'), ``dilation`` (bool),
    ``x_bits``, ``x_signed``, ``out_bits``, ``out_signed``, ``w_bits``, ``per_channel``,
    ``with_bias``, ``activation``, ``depth_multiplier``, ``in_features``, ``cin`` (conv and
    depthwise input channels), ``out_ch`` (conv and fully-connected output channels), ``kernel``
    ((kh, kw) of conv and depthwise), ``stride`` and ``size`` ((h, w) of the input; conv and depthwise).
    """
    if op in ("conv2d", "depthwise_conv2d", "fully_connected"):
        return _conv_family(op, rng, constraints)
    if op in ("max_pool2d", "average_pool2d", "global_average_pool2d"):
        return _pool(op, rng, constraints)
    if op == "add":
        return _add(rng, constraints)
    if op == "quantize_input":
        return _quantize(rng, constraints)
    if op == "dequantize_output":
        return _dequantize(rng, constraints)
    if op == "requantize_op":
        return _requantize(rng, constraints)
    if op == "zero_pad2d":
        return _zero_pad(rng, constraints)
    if op == "leaky_relu":
        return _leaky_relu(rng, constraints)
    if op == "concatenate":
        return _concatenate(rng, constraints)
    raise ValueError(f"unknown op {op!r}; known: {', '.join(OPS)}")


def node_case(graph, node, inputs: list[np.ndarray]) -> OpCase | None:
    """The kernel call one node of an IntegerGraph makes, on the node's actual input integers
    (for per-layer measurements of a real model); None for nodes without a kernel of their own
    (quantize of a float input, reshape, pad)."""
    t = graph.tensors
    out = t[node.output].fmt
    a = node.attrs
    if node.op in ("quantize", "reshape", "pad"):
        return None
    in_fmt = t[node.inputs[0]].fmt
    x = inputs[0]
    if node.op in ("conv2d", "depthwise_conv2d", "fully_connected"):
        kwargs: dict[str, Any] = dict(x_frac=in_fmt.frac, w_frac=np.asarray(node.weight_frac),
                                      bias_frac=node.bias_frac, out_fmt=out, activation=a.get("activation"))
        if node.op == "fully_connected":
            x = x.reshape(x.shape[0], -1)
        else:
            kwargs.update(stride=tuple(a["stride"]), padding=a["padding"], dilation=tuple(a["dilation"]))
        if node.op == "depthwise_conv2d":
            kwargs["depth_multiplier"] = a["depth_multiplier"]
        return OpCase(node.op, (x, node.weights, node.bias), kwargs, dict(x_fmt=in_fmt, w_bits=node.weight_bits))
    if node.op == "add":
        b_fmt = t[node.inputs[1]].fmt
        return OpCase("add", (x, inputs[1]), dict(a_frac=in_fmt.frac, b_frac=b_fmt.frac, out_fmt=out,
                                                   activation=a.get("activation")), dict(a_fmt=in_fmt, b_fmt=b_fmt))
    if node.op in ("max_pool2d", "average_pool2d"):
        return OpCase(node.op, (x,), dict(pool=tuple(a["pool"]), stride=tuple(a["stride"]), padding=a["padding"],
                                          in_frac=in_fmt.frac, out_fmt=out, activation=a.get("activation")),
                      dict(in_fmt=in_fmt))
    if node.op == "global_average_pool2d":
        return OpCase(node.op, (x,), dict(in_frac=in_fmt.frac, out_fmt=out), dict(in_fmt=in_fmt))
    if node.op == "requantize":
        return OpCase("requantize_op", (x,), dict(in_frac=in_fmt.frac, out_fmt=out, activation=a.get("activation")),
                      dict(in_fmt=in_fmt))
    return None
