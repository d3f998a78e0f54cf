"""Random IntegerGraph builders for the export tests (until lower_model lands), and their checks.

Each builder runs the graph node by node on calibration data while building it, so every output
frac fits the data it sees (outputs are not all saturated and the comparisons mean something).
"""

from __future__ import annotations

import numpy as np
import pytest

from fxpq_keras.formats import Format, frac_for_range
from fxpq_keras.integer_graph import IntegerGraph, Node, TensorSpec
from fxpq_keras.integer_graph.graph import run_node


class GraphBuilder:
    def __init__(self, rng: np.random.Generator, input_shape, calib: np.ndarray, in_fmt: Format,
                 max_bits: int = 16, signed_only: bool = False):
        self.rng = rng
        self.max_bits = max_bits
        self.signed_only = signed_only
        self.tensors = {"input": TensorSpec("input", tuple(input_shape), None)}
        self.nodes: list[Node] = []
        self.values = {"input": calib}
        self.graph = IntegerGraph("input", [], self.tensors, self.nodes)
        self.counter = 0
        self._add(Node("quantize", "quantize", ["input"], "x0"), fmt=in_fmt, shape=tuple(input_shape))

    def bits(self, lo: int = 3) -> int:
        return int(self.rng.integers(lo, self.max_bits + 1))

    def _add(self, node: Node, fmt: Format | None = None, shape=None, signed: bool | None = None,
             bits: int | None = None) -> str:
        """Run the node with a provisional wide format, then choose the output format from the range."""
        if fmt is None:
            probe = _probe(self.graph, node, [self.values[i] for i in node.inputs])
            if signed is None:
                signed = True if self.signed_only else bool(self.rng.integers(0, 2)) or probe.min() < 0
            if not signed and probe.min() < 0 and node.attrs.get("activation") not in ("relu", "relu6"):
                signed = True
            bits = bits or self.bits()
            if not signed:
                bits = min(bits, getattr(self, "max_unsigned_bits", 16))
            fmt = Format(bits, frac_for_range(float(np.abs(probe).max()) + 1e-9, bits, signed), signed)
            shape = probe.shape[1:]
        self.tensors[node.output] = TensorSpec(node.output, tuple(shape), fmt)
        self.nodes.append(node)
        self.values[node.output] = run_node(self.graph, node, [self.values[i] for i in node.inputs])
        return node.output

    def name(self, op: str) -> tuple[str, str]:
        self.counter += 1
        return f"{op}_{self.counter}", f"t{self.counter}"

    def _weights(self, shape, out_ch: int, per_channel: bool):
        bits = int(self.rng.integers(2, min(self.max_bits, 16) + 1))
        axis = -1 if len(shape) == 4 and shape[0] == 1 else 0
        fan_in = int(np.prod(shape)) // out_ch
        w = self.rng.normal(0, 1.5 / np.sqrt(fan_in), size=shape)
        per = np.abs(w).max(axis=tuple(i for i in range(w.ndim) if i != (axis % w.ndim)))
        fracs = np.array([frac_for_range(m, bits) for m in per]) if per_channel else \
            np.full(out_ch, frac_for_range(np.abs(w).max(), bits))
        fr = fracs.reshape([-1 if i == axis % w.ndim else 1 for i in range(w.ndim)])
        lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
        q = np.clip(np.floor(np.ldexp(w, fr) + 0.5), lo, hi).astype(np.int64)
        return q, bits, fracs.astype(np.int64)

    def _bias(self, node: Node, x_frac: int, with_bias: bool):
        if not with_bias:
            return
        o = len(node.weight_frac)
        facc = x_frac + node.weight_frac
        bias_bits = int(self.rng.integers(8, 33))
        bias_frac = int(facc.min() - self.rng.integers(0, 4))
        lim = (1 << (bias_bits - 1)) - 1
        real = self.rng.normal(0, 0.3, size=o)
        node.bias = np.clip(np.floor(np.ldexp(real, bias_frac) + 0.5), -lim - 1, lim).astype(np.int64)
        node.bias_bits, node.bias_frac = bias_bits, bias_frac

    def fmt(self, t: str) -> Format:
        return self.tensors[t].fmt

    def conv(self, x: str, filters: int, k=(3, 3), stride=(1, 1), padding="same", dilation=(1, 1),
             activation=None, per_channel=True, bias=True, **kw) -> str:
        c = self.tensors[x].shape[-1]
        q, bits, fracs = self._weights((filters,) + tuple(k) + (c,), filters, per_channel)
        name, out = self.name("conv")
        node = Node("conv2d", name, [x], out, {"stride": stride, "padding": padding, "dilation": dilation,
                                               "activation": activation}, q, bits, fracs)
        self._bias(node, self.fmt(x).frac, bias)
        return self._add(node, **kw)

    def depthwise(self, x: str, k=(3, 3), multiplier=1, stride=(1, 1), padding="same", dilation=(1, 1),
                  activation=None, per_channel=True, bias=True, **kw) -> str:
        c = self.tensors[x].shape[-1]
        q, bits, fracs = self._weights((1,) + tuple(k) + (c * multiplier,), c * multiplier, per_channel)
        name, out = self.name("dwconv")
        node = Node("depthwise_conv2d", name, [x], out, {"stride": stride, "padding": padding, "dilation": dilation,
                                                         "depth_multiplier": multiplier, "activation": activation},
                    q, bits, fracs)
        self._bias(node, self.fmt(x).frac, bias)
        return self._add(node, **kw)

    def dense(self, x: str, units: int, activation=None, per_channel=False, bias=True, **kw) -> str:
        k = int(np.prod(self.tensors[x].shape))
        q, bits, fracs = self._weights((units, k), units, per_channel)
        name, out = self.name("dense")
        node = Node("fully_connected", name, [x], out, {"activation": activation}, q, bits, fracs)
        self._bias(node, self.fmt(x).frac, bias)
        return self._add(node, **kw)

    def add(self, a: str, b: str, activation=None, **kw) -> str:
        name, out = self.name("add")
        return self._add(Node("add", name, [a, b], out, {"activation": activation}), **kw)

    def pool(self, x: str, kind="max", pool=(2, 2), stride=(2, 2), padding="valid", activation=None, **kw) -> str:
        op = "max_pool2d" if kind == "max" else "average_pool2d"
        name, out = self.name(op)
        if kind == "max" and "fmt" not in kw and "bits" not in kw:
            kw = {"fmt": self.fmt(x), "shape": None, **kw}
            node = Node(op, name, [x], out,
                        {"pool": pool, "stride": stride, "padding": padding, "activation": activation})
            probe = _probe(self.graph, node, [self.values[x]])
            kw["shape"] = probe.shape[1:]
            return self._add(node, **kw)
        return self._add(Node(op, name, [x], out, {"pool": pool, "stride": stride, "padding": padding,
                                                   "activation": activation}), **kw)

    def gap(self, x: str, **kw) -> str:
        name, out = self.name("gap")
        return self._add(Node("global_average_pool2d", name, [x], out, {}), **kw)

    def requantize(self, x: str, activation=None, **kw) -> str:
        name, out = self.name("requantize")
        return self._add(Node("requantize", name, [x], out, {"activation": activation}), **kw)

    def concat(self, a: str, b: str, **kw) -> str:
        name, out = self.name("concat")
        return self._add(Node("concat", name, [a, b], out, {}), **kw)

    def leaky(self, x: str, alpha_shift: int, **kw) -> str:
        name, out = self.name("leaky_relu")
        return self._add(Node("leaky_relu", name, [x], out, {"alpha_shift": alpha_shift}), signed=True, **kw)

    def pad(self, x: str, pads) -> str:
        """Zero padding keeps the input's format (as the converter writes it)."""
        name, out = self.name("pad")
        (top, bottom), (left, right) = pads
        h, w, c = self.tensors[x].shape
        return self._add(Node("pad", name, [x], out, {"pads": pads}), fmt=self.fmt(x),
                         shape=(h + top + bottom, w + left + right, c))

    def flatten(self, x: str) -> str:
        name, out = self.name("reshape")
        shape = (int(np.prod(self.tensors[x].shape)),)
        return self._add(Node("reshape", name, [x], out, {"shape": shape}), fmt=self.fmt(x), shape=shape)

    def finish(self, *outputs: str, softmax: bool = False) -> IntegerGraph:
        g = IntegerGraph("input", list(outputs), dict(self.tensors), list(self.nodes), softmax,
                         {"builder": "random"})
        return g


def _probe(graph: IntegerGraph, node: Node, inputs) -> np.ndarray:
    """Node output in real units, computed with a wide provisional format."""
    saved = graph.tensors.get(node.output)
    try:
        # Run with the widest output format available at a high frac, then convert to reals.
        for frac in (16, 8, 0):
            graph.tensors[node.output] = TensorSpec(node.output, (), Format(32, frac))
            try:
                y = run_node(graph, node, inputs)
            except ValueError:
                continue
            return np.ldexp(y.astype(np.float64), -frac)
        raise AssertionError(f"cannot probe {node.name}")
    finally:
        if saved is None:
            graph.tensors.pop(node.output, None)
        else:
            graph.tensors[node.output] = saved


def calib(rng: np.random.Generator, n: int, shape) -> np.ndarray:
    return rng.normal(0, 1, size=(n,) + tuple(shape)).astype(np.float32)


def cnn_graph(seed: int = 0, max_bits: int = 16, signed_only: bool = False, n: int = 32,
              bias: bool = True, int8: bool = False) -> tuple[IntegerGraph, np.ndarray]:
    """A CNN with every supported op: conv, depthwise (multiplier 2), max/avg pool, add, global
    average pool, requantize, zero padding, leaky ReLU, concatenation, flatten + dense, unsigned post-ReLU formats,
    per-channel fracs."""
    rng = np.random.default_rng(seed)
    x = calib(rng, n, (9, 9, 3))
    in_bits = int(rng.integers(6, max_bits + 1))
    if int8:  # what stock int8 can express: <= 8 bits (u8 as int8 with zero point -128), no standalone ReLU
        max_bits, in_bits = 8, 8
    b = GraphBuilder(rng, (9, 9, 3), x, Format(in_bits, frac_for_range(3.0, in_bits)), max_bits, signed_only)
    t = b.conv("x0", 6, activation="relu", signed=False if not signed_only else None, bias=bias)
    t = b.depthwise(t, multiplier=2, stride=(2, 2), padding="valid", activation="relu6", bias=bias)
    u = b.conv(t, 12, k=(1, 1), per_channel=False, bias=bias)
    v = b.conv(t, 12, k=(3, 3), dilation=(2, 2), padding="same", activation=None, bias=False)
    t = b.add(u, v, activation="relu")
    t = b.conv(b.concat(t, v), 12, k=(1, 1), activation="relu", bias=bias)
    m = b.pool(t, "max", pool=(2, 2), stride=(1, 1), padding="same")
    a = b.pool(b.pad(t, ((1, 0), (0, 2))), "avg", pool=(3, 3), stride=(2, 2), padding="same")
    g = b.gap(m)
    r = b.requantize(a, activation=None if int8 else "relu")
    f = b.flatten(b.leaky(b.conv(r, 4, k=(1, 1), bias=bias), 2))
    d1 = b.dense(f, 10, per_channel=True, bias=bias)
    d2 = b.dense(g, 10, activation=None, bias=bias)
    out = b.add(d1, d2)
    return b.finish(out, softmax=True), x


def narrow_u16_graph(seed: int = 0, n: int = 8) -> tuple[IntegerGraph, np.ndarray]:
    """Every weighted op (conv 3x3 and 1x1, depthwise, fully connected) over an unsigned input of
    9..15 bits stored in uint16: the int16-lane paths the TFLM glue takes from `in_bits` (format
    version 4) and the x - 2^15 lanes it takes without (version 3)."""
    rng = np.random.default_rng(seed)
    x = calib(rng, n, (8, 8, 3))
    b = GraphBuilder(rng, (8, 8, 3), x, Format(8, frac_for_range(3.0, 8)), 16)

    def narrow() -> dict:
        return {"signed": False, "bits": int(rng.integers(9, 16))}

    t = b.conv("x0", 8, activation="relu", **narrow())
    t = b.depthwise(t, activation="relu", **narrow())
    t = b.conv(t, 8, k=(1, 1), activation="relu", **narrow())
    t = b.conv(t, 6, k=(3, 3), stride=(2, 2), activation="relu", **narrow())
    out = b.dense(b.flatten(t), 10, per_channel=True)
    return b.finish(out), x


@pytest.mark.parametrize("seed", range(3))
def test_builder_graphs_run(seed):
    graph, x = cnn_graph(seed)
    (y,) = graph.run(x, raw=True)
    assert y.shape == (len(x), 10)
    assert np.unique(y).size > 3  # not collapsed by saturation
    assert (y.std(axis=0) > 0).mean() > 0.5  # outputs depend on the input
