"""The integer graph: the quantized network as integers and formats, ready to export or run.

It is the hand-off point of the pipeline: the fake-quant Keras model plus its Policy lower to an
IntegerGraph (fxpq_keras.integer_graph.lower), the exporter writes it as a flatbuffer, and the
reference interpreter rebuilds the same IntegerGraph from the file. `IntegerGraph.run` executes it
with the numpy integer reference ops, so "the file computes what Python promised" reduces to
"both sides build equal graphs".
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..formats import Format, check_integers, stored_zero_point
from . import ops

# Op kinds of the integer graph and the attributes each one carries.
OP_ATTRS: dict[str, tuple[str, ...]] = {
    "quantize": (),  # float input -> integer (first op when the model input is float)
    "conv2d": ("stride", "padding", "dilation", "activation"),
    "depthwise_conv2d": ("stride", "padding", "dilation", "depth_multiplier", "activation"),
    "fully_connected": ("activation",),
    "add": ("activation",),
    "max_pool2d": ("pool", "stride", "padding", "activation"),
    "average_pool2d": ("pool", "stride", "padding", "activation"),
    "global_average_pool2d": (),  # [N,H,W,C] -> [N,C]
    "requantize": ("activation",),  # standalone ReLU/ReLU6 or a format change
    "reshape": ("shape",),  # new shape without the batch dimension
    "pad": ("pads",),  # zero padding ((top, bottom), (left, right)) of [N,H,W,C]
    "leaky_relu": ("alpha_shift",),  # negative slope 2^-alpha_shift
    "concat": (),  # two inputs joined on the last (channel) axis, each rescaled to the output format
    # stock TFLite builtin ops (fxpq_keras/stock_layers.py): TFLM's int8 reference kernels, exactly
    "mul": (),  # two inputs, broadcasting
    "sub": (),
    "logistic": (),  # output u8.8 (int8, zero point -128)
    "tanh": (),  # output s8.7
    "hard_swish": (),
    "elu": (),
    "maximum": (),  # two inputs (broadcasting) and the output in one format
    "minimum": (),
    "upsample_nearest": ("size",),  # RESIZE_NEAREST_NEIGHBOR by integer factors (sh, sw)
    "transpose": ("perm",),  # permutation of all axes, batch included (perm[0] == 0)
    "stock_quantize": (),  # QUANTIZE int8 -> int8 between formats (the zero point -128 seam)
}

#: integer ops that the file holds as stock builtin ops (everything else is an FXP_* custom op or RESHAPE)
STOCK_OPS = ("mul", "sub", "maximum", "minimum", "logistic", "tanh", "hard_swish", "elu", "upsample_nearest",
             "transpose", "stock_quantize")
#: stock ops whose int8 TFLM kernel insists on one output format (LOGISTIC: scale 1/256, zero point -128)
STOCK_FIXED_FORMATS = {"logistic": Format(8, 8, False), "tanh": Format(8, 7, True)}
#: stock ops whose TFLM kernels take any float scale and zero point on every tensor (they requantize
#: with multipliers derived from the scales): target builtin gives their tensors float activation scales
STOCK_FLOAT_SCALED = ("mul", "sub", "hard_swish", "elu")

WEIGHTED_OPS = ("conv2d", "depthwise_conv2d", "fully_connected")


@dataclass
class TensorSpec:
    """An activation tensor: shape without the batch dimension, and its format (None = float)."""

    name: str
    shape: tuple[int, ...]
    fmt: Format | None


@dataclass
class Node:
    """One integer op. Weights are int64 in TFLite layout (OHWI, [1,kh,kw,C*M], [out,in])."""

    op: str
    name: str
    inputs: list[str]
    output: str
    attrs: dict[str, Any] = field(default_factory=dict)
    weights: np.ndarray | None = None
    weight_bits: int | None = None
    weight_frac: np.ndarray | None = None  # int array, one per output channel (all equal if per-tensor)
    bias: np.ndarray | None = None
    bias_bits: int | None = None
    bias_frac: int | None = None
    # TFLite's float weight scales (float32, one per output channel or one per tensor) of a policy with
    # float weight scales (target builtin): the stock targets only; None: the scales are 2^-weight_frac
    weight_scale: np.ndarray | None = None

    @property
    def per_channel(self) -> bool:
        return self.weight_frac is not None and len(set(np.asarray(self.weight_frac).tolist())) > 1


@dataclass
class IntegerGraph:
    """Nodes in execution order over named tensors; one input, one or more outputs.

    Example (the numpy integer reference, the source of truth the C kernels match)::

        graph = lower_model(result.model)
        probabilities = graph.run(x)[0]
        integers = graph.run(x, raw=True)[0]
    """

    input: str
    outputs: list[str]
    tensors: dict[str, TensorSpec]
    nodes: list[Node]
    output_softmax: bool = False  # the Keras model ended in softmax, applied in float after dequantize
    metadata: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for node in self.nodes:
            if node.op not in OP_ATTRS:
                raise ValueError(f"unknown integer op {node.op!r} in node {node.name!r}; known: {sorted(OP_ATTRS)}")

    @property
    def float_input(self) -> bool:
        return self.tensors[self.input].fmt is None

    def run(self, x: np.ndarray, *, raw: bool = False) -> list[np.ndarray]:
        """Execute with the numpy reference. x: float batch (or integers if the input is integer).

        Returns the outputs as integers when raw, else dequantized floats (softmax applied if the
        Keras model ended with one).
        """
        in_fmt = self.tensors[self.input].fmt
        values: dict[str, np.ndarray] = {self.input: np.asarray(x) if in_fmt is None else check_integers(x, in_fmt)}
        for node in self.nodes:
            values[node.output] = run_node(self, node, [values[i] for i in node.inputs])
        outs = []
        for name in self.outputs:
            q = values[name]
            if raw:
                outs.append(q)
                continue
            outs.append(self.finish_output(q, self.tensors[name].fmt.frac))
        return outs

    def finish_output(self, q: np.ndarray, frac: int) -> np.ndarray:
        """Output integers -> floats the way every engine reports them: dequantize, then the
        Keras model's final softmax in float on the host (docs/format.md)."""
        y = ops.dequantize_output(q, frac)
        return softmax(y).astype(np.float32) if self.output_softmax else y


def softmax(z: np.ndarray) -> np.ndarray:
    """Float softmax over the last axis (float64 inside, for a stable result)."""
    z = np.asarray(z, dtype=np.float64)
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def run_node(graph: IntegerGraph, node: Node, inputs: list[np.ndarray]) -> np.ndarray:
    """Dispatch one node to its numpy reference op."""
    t = graph.tensors
    out = t[node.output].fmt
    a = node.attrs
    if node.op == "quantize":
        return ops.quantize_input(inputs[0], out)
    in_fmt = t[node.inputs[0]].fmt
    if node.op in WEIGHTED_OPS and node.weight_scale is not None:
        raise ValueError(f"layer {node.name!r} has float weight scales (target builtin): the fixed-point reference "
                         "runs power-of-two weights only; export with target='builtin' and run the file")
    if node.op in WEIGHTED_OPS:
        common = dict(x_frac=in_fmt.frac, w_frac=np.asarray(node.weight_frac), bias_frac=node.bias_frac,
                      out_fmt=out, activation=a.get("activation"))
        if node.op == "fully_connected":
            x = inputs[0].reshape(inputs[0].shape[0], -1)
            return ops.fully_connected(x, node.weights, node.bias, **common)
        conv_kw = dict(stride=tuple(a["stride"]), padding=a["padding"], dilation=tuple(a["dilation"]))
        if node.op == "conv2d":
            return ops.conv2d(inputs[0], node.weights, node.bias, **common, **conv_kw)
        return ops.depthwise_conv2d(inputs[0], node.weights, node.bias, depth_multiplier=a["depth_multiplier"],
                                    **common, **conv_kw)
    if node.op == "add":
        return ops.add(inputs[0], inputs[1], a_frac=in_fmt.frac, b_frac=t[node.inputs[1]].fmt.frac, out_fmt=out,
                       activation=a.get("activation"))
    if node.op in ("max_pool2d", "average_pool2d"):
        fn = ops.max_pool2d if node.op == "max_pool2d" else ops.average_pool2d
        return fn(inputs[0], pool=tuple(a["pool"]), stride=tuple(a["stride"]), padding=a["padding"],
                  in_frac=in_fmt.frac, out_fmt=out, activation=a.get("activation"))
    if node.op == "global_average_pool2d":
        return ops.global_average_pool2d(inputs[0], in_frac=in_fmt.frac, out_fmt=out)
    if node.op == "requantize":
        return ops.requantize_op(inputs[0], in_frac=in_fmt.frac, out_fmt=out, activation=a.get("activation"))
    if node.op == "reshape":
        return inputs[0].reshape((inputs[0].shape[0],) + tuple(a["shape"]))
    if node.op == "concat":
        return ops.concatenate(inputs[0], inputs[1], a_frac=in_fmt.frac, b_frac=t[node.inputs[1]].fmt.frac,
                               out_fmt=out)
    if node.op == "leaky_relu":
        return ops.leaky_relu(inputs[0], alpha_shift=a["alpha_shift"], in_frac=in_fmt.frac, out_fmt=out)
    if node.op == "pad":
        return ops.zero_pad2d(inputs[0], pads=a["pads"], in_frac=in_fmt.frac, out_fmt=out)
    if node.op in STOCK_OPS:
        return run_stock_node(graph, node, inputs)
    raise AssertionError(node.op)


def offset_tensors(nodes: list[Node], tensors: dict[str, TensorSpec]) -> set[str]:
    """Tensors stored as int8 with zero point -128: unsigned 8-bit outputs of stock ops, and
    reshapes of them (RESHAPE moves no data)."""
    out: set[str] = set()
    for node in nodes:
        fmt = tensors[node.output].fmt
        unsigned8 = fmt is not None and not fmt.signed and fmt.bits <= 8
        if unsigned8 and (node.op in STOCK_OPS or (node.op == "reshape" and node.inputs[0] in out)):
            out.add(node.output)
    return out


def stock_seam_problem(graph: IntegerGraph) -> str | None:
    """What breaks the storage rule between stock ops and ours, or None (format.md 8): no stock op
    reads one of our uint8 tensors, none of our kernels (nor the model output) reads a tensor
    stored with zero point -128."""
    t = graph.tensors
    offset = offset_tensors(graph.nodes, t)
    for node in graph.nodes:
        if node.op in ("maximum", "minimum", "upsample_nearest", "transpose") and any(
                t[i].fmt != t[node.output].fmt for i in node.inputs):
            return (f"node {node.name!r} ({node.op}) moves or compares stored values: its inputs and output need one "
                    f"format, got {[str(t[i].fmt) for i in node.inputs]} -> {t[node.output].fmt}")
        for name in node.inputs:
            fmt = t[name].fmt
            if fmt is None or fmt.signed or fmt.bits > 8:
                continue
            if node.op in STOCK_OPS and name not in offset:
                return (f"node {node.name!r} ({node.op}) is a stock op reading {name!r}, an unsigned tensor of an "
                        f"fxp kernel ({fmt}); stock int8 kernels read signed formats only")
            if node.op not in STOCK_OPS and node.op != "reshape" and name in offset:
                return (f"node {node.name!r} ({node.op}) reads {name!r}, a stock op's output stored with zero "
                        "point -128 (a stock QUANTIZE to a signed format must come first)")
    bad = [o for o in graph.outputs if o in offset]
    if bad:
        return f"model outputs {bad} are stored with zero point -128 (a stock QUANTIZE to a signed format must follow)"
    return None


def stock_params(fmt: Format) -> tuple[float, int]:
    """(scale, zero point) of a format as a stock tensor of a hybrid file: 2^-frac; an unsigned
    format of <= 8 bits is int8 with zero point -128 (format.md 8, formats.stored_zero_point)."""
    return float(fmt.step), stored_zero_point(fmt, hybrid=True)


def run_stock_node(graph: IntegerGraph, node: Node, inputs: list[np.ndarray]) -> np.ndarray:
    """A stock op on format integers: to stored values, TFLM's kernel (tflm_ops), back."""
    from . import tflm_ops

    def q_of(name: str) -> tflm_ops.TensorQ:
        fmt = graph.tensors[name].fmt
        scale, zp = stock_params(fmt)
        return tflm_ops.TensorQ(scale, zp, "int16" if fmt.bits > 8 else "int8")

    qs = [q_of(i) for i in node.inputs]
    q_out = q_of(node.output)
    xs = [np.asarray(x, dtype=np.int64) + q.zero_point for x, q in zip(inputs, qs)]
    op = node.op
    if op in ("mul", "sub"):
        y = getattr(tflm_ops, op)(xs[0], xs[1], qs[0], qs[1], q_out)
    elif op in ("maximum", "minimum"):
        y = getattr(tflm_ops, op)(xs[0], xs[1], qs[0], qs[1], q_out)
    elif op in ("logistic", "tanh", "hard_swish", "elu"):
        y = getattr(tflm_ops, op)(xs[0], qs[0], q_out)
    elif op == "upsample_nearest":
        h, w = xs[0].shape[1:3]
        sh, sw = node.attrs["size"]
        y = tflm_ops.resize_nearest_neighbor(xs[0], (h * sh, w * sw), qs[0], q_out)
    elif op == "transpose":
        y = tflm_ops.transpose(xs[0], node.attrs["perm"], qs[0], q_out)
    elif op == "stock_quantize":
        y = tflm_ops.requantize(xs[0], qs[0], q_out)
    else:  # pragma: no cover - STOCK_OPS lists exactly these
        raise AssertionError(op)
    return np.asarray(y, dtype=np.int64) - q_out.zero_point
