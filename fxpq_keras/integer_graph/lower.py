"""Step 4 of the pipeline: lower a fake-quant model (or canonical nodes + Policy) to an IntegerGraph.

Weights and biases are quantized here, once, with the same rule as the fake-quant (formats.quantize)
and moved to TFLite layouts. A ReLU that follows an Add whose output is not a data structure is
fused into the Add (the integer Add clamps in the ReLU's format).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..formats import Format, quantize
from ..keras_model import WEIGHTED, CNode
from ..policy import Policy
from ..stock_layers import STOCK_KINDS
from .graph import STOCK_OPS, IntegerGraph, Node, TensorSpec, offset_tensors


def lower_model(qmodel: Any) -> IntegerGraph:
    """The IntegerGraph of a fake-quant tf_keras model with its current formats.

    Example::

        integers = lower_model(qmodel).run(x, raw=True)[0]
    """
    from ..fakequant.model import describe

    cnodes, policy = describe(qmodel)
    shapes = {n.name: tuple(qmodel.get_layer(_keras_name(qmodel, n.name)).output_shape[1:]) for n in cnodes[1:]}
    shapes[cnodes[0].name] = tuple(cnodes[0].config["shape"])
    return lower(cnodes, policy, shapes)


def _keras_name(qmodel: Any, name: str) -> str:
    names = {layer.name for layer in qmodel.layers}
    return f"quant_{name}" if f"quant_{name}" in names else name


def quantize_weights(node: CNode, policy: Policy, in_frac: int = 0, in_scale: float | None = None
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, int | None, np.ndarray | None]:
    """(int weights in TFLite layout, per-output-channel fracs, int bias, bias frac, float scales) of
    a layer. With the policy's float weight scales (target builtin) the scales are float32 per output
    channel (one for fully connected), min(max|w| / (2^(bits-1) - 1), 2^-frac), from the fake-quant's
    own function, and the bias is at the
    accumulator's scale s_in * s_w (TFLite's rule; bias frac None; s_in is in_scale, a float activation
    scale, or 2^-in_frac), rounded half up; else scales None."""
    wds = policy.get(node.name, "weights")
    k = node.kernel
    if policy.weight_scales == "float":
        from ..fakequant.model import bias_scale, float_weights  # lazy: needs TensorFlow

        q, scale = float_weights(k, node.kind, wds)
        q = q.astype(np.int64)
        if node.kind == "depthwise_conv2d":
            q = q.reshape(1, *k.shape[:2], -1)
        else:
            q = q.transpose(3, 0, 1, 2) if node.kind == "conv2d" else q.T
        fr = wds.fracs(len(scale) if node.kind != "dense" else k.shape[-1])
        bias = None
        if node.bias is not None:
            acc_scale = bias_scale(np.ldexp(1.0, -in_frac) if in_scale is None else in_scale, scale)
            bias = np.floor(np.asarray(node.bias, np.float64) / acc_scale.astype(np.float64) + 0.5).astype(np.int64)
        return np.ascontiguousarray(q), fr, bias, None, scale
    if node.kind == "depthwise_conv2d":
        kh, kw, c, m = k.shape
        fr = wds.fracs(c * m)
        q = quantize(k, frac=fr.reshape(c, m), lo=wds.fmt.lo, hi=wds.fmt.hi).reshape(1, kh, kw, c * m)
    else:
        fr = wds.fracs(k.shape[-1])
        q = quantize(k, frac=fr, lo=wds.fmt.lo, hi=wds.fmt.hi)
        q = q.transpose(3, 0, 1, 2) if node.kind == "conv2d" else q.T
    bias = bias_frac = None
    if node.bias is not None:
        bds = policy.get(node.name, "bias")
        bias, bias_frac = quantize(node.bias, bds.fmt), bds.fmt.frac
    return np.ascontiguousarray(q), fr, bias, bias_frac, None


def lower(cnodes: list[CNode], policy: Policy, shapes: dict[str, tuple[int, ...]]) -> IntegerGraph:
    """IntegerGraph of canonical nodes under a policy; shapes are layer output shapes (no batch)."""
    inp = cnodes[0]
    qin = f"{inp.name}_quantized"
    tensors = {inp.name: TensorSpec(inp.name, tuple(shapes[inp.name]), None),
               qin: TensorSpec(qin, tuple(shapes[inp.name]), policy.input.fmt)}
    nodes = [Node("quantize", f"{inp.name}_quantize", [inp.name], qin)]
    produced: dict[str, str] = {inp.name: qin}  # canonical layer -> tensor holding its output
    by_output: dict[str, Node] = {}
    output_softmax = False
    for n in cnodes[1:]:
        ins = [produced[i] for i in n.inputs]
        ds = policy.layers[n.name].get("output")
        fmt = policy.tensor_format(n.name) if ds is not None else tensors[ins[0]].fmt
        shape = tuple(shapes[n.name])
        if n.kind == "softmax":
            output_softmax = True
            produced[n.name] = ins[0]
            continue
        node = Node(_OP[n.kind], n.name, ins, n.name)
        if n.kind in WEIGHTED:
            if n.kind == "dense" and len(tensors[ins[0]].shape) != 1:
                raise ValueError(f"layer '{n.name}': Dense on a {len(tensors[ins[0]].shape) + 1}-D input is not "
                                 f"supported; add a Flatten or GlobalAveragePooling2D before it")
            x_fmt = tensors[ins[0]].fmt
            q, fr, bias, bias_frac, scale = quantize_weights(n, policy, x_fmt.frac, x_fmt.scale)
            wds = policy.get(n.name, "weights")
            node.weights, node.weight_bits, node.weight_frac, node.weight_scale = q, wds.bits, fr, scale
            node.bias, node.bias_frac = bias, bias_frac
            node.bias_bits = policy.get(n.name, "bias").bits if bias is not None else None
            node.attrs["activation"] = n.config["activation"]
            if n.kind != "dense":
                node.attrs.update(stride=tuple(n.config["strides"]), padding=n.config["padding"],
                                  dilation=tuple(n.config["dilation_rate"]))
                if n.kind == "depthwise_conv2d":
                    node.attrs["depth_multiplier"] = int(n.config["depth_multiplier"])
        elif n.kind == "add":
            node.attrs["activation"] = "linear"
        elif n.kind == "concat" and len(ins) > 2:
            # N inputs: a chain of two-input concats whose partial results are already in the
            # output format (rescaling them again is the identity: the same integers as one
            # N-way concat)
            acc = ins[0]
            for k, part in enumerate(ins[1:-1], start=1):
                name = f"{n.name}/part{k}"
                channels = sum(tensors[i].shape[-1] for i in ins[:k + 1])
                tensors[name] = TensorSpec(name, shape[:-1] + (channels,), fmt)
                nodes.append(Node("concat", name, [acc, part], name))
                acc = name
            node.inputs = [acc, ins[-1]]
        elif n.kind in ("max_pool", "avg_pool"):
            node.attrs.update(pool=tuple(n.config["pool_size"]), stride=tuple(n.config["strides"]),
                              padding=n.config["padding"], activation="linear")
        elif n.kind == "relu":
            src = by_output.get(ins[0])
            if src is not None and src.op == "add" and policy.layers[src.name].get("output") is None:
                # the Add has no format of its own: fuse the ReLU into it
                src.attrs["activation"] = n.config["activation"]
                del tensors[src.output]
                src.output = n.name
                tensors[n.name] = TensorSpec(n.name, shape, fmt)
                produced[n.name] = n.name
                by_output[n.name] = src
                continue
            node.attrs["activation"] = n.config["activation"]
        elif n.kind in ("flatten", "reshape"):
            node.attrs["shape"] = shape
        elif n.kind == "leaky_relu":
            node.attrs["alpha_shift"] = int(n.config["alpha_shift"])
        elif n.kind == "zero_pad":
            node.attrs["pads"] = tuple(tuple(int(v) for v in pair) for pair in n.config["padding"])
        elif n.kind == "upsample_nearest":
            node.attrs["size"] = tuple(int(v) for v in n.config["size"])
        elif n.kind == "transpose":
            node.attrs["perm"] = tuple(int(p) for p in n.config["perm"])  # batch axis 0 included
        tensors[n.name] = TensorSpec(n.name, shape, fmt)
        produced[n.name] = n.name
        by_output[n.name] = node
        nodes.append(node)
    last = produced[cnodes[-1].name]
    last = requantize_offset_seams(nodes, tensors, last)
    graph = IntegerGraph(inp.name, [last], tensors, nodes, output_softmax=output_softmax,
                         metadata={"policy": policy.to_json(indent=None, channel_scales=False)})
    return graph


def requantize_offset_seams(nodes: list[Node], tensors: dict[str, TensorSpec], output: str) -> str:
    """Insert a stock QUANTIZE where one of our kernels (or the model output) would read a stock
    op's unsigned 8-bit output, which TFLM stores as int8 with zero point -128 (stock_layers.py):
    it becomes the signed 8-bit format of the same range (frac - 1). Returns the output tensor."""
    offset = offset_tensors(nodes, tensors)
    if not offset:
        return output
    seams: dict[str, str] = {}

    def seam(name: str) -> str:
        if name not in seams:
            fmt = tensors[name].fmt
            new = f"{name}/s8"
            tensors[new] = TensorSpec(new, tensors[name].shape, Format(8, fmt.frac - 1, True))
            producer = next(i for i, n in enumerate(nodes) if n.output == name)
            nodes.insert(producer + 1, Node("stock_quantize", new, [name], new))
            seams[name] = new
        return seams[name]

    for node in list(nodes):
        if node.op in STOCK_OPS or node.op == "reshape":
            continue
        node.inputs = [seam(i) if i in offset else i for i in node.inputs]
    return seam(output) if output in offset else output


_OP = {**{k: k for k in STOCK_KINDS},
       "conv2d": "conv2d", "depthwise_conv2d": "depthwise_conv2d", "dense": "fully_connected", "add": "add",
       "max_pool": "max_pool2d", "avg_pool": "average_pool2d", "gap": "global_average_pool2d",
       "relu": "requantize", "flatten": "reshape", "reshape": "reshape", "zero_pad": "pad", "leaky_relu": "leaky_relu",
       "concat": "concat"}

__all__ = ["lower_model", "lower", "quantize_weights"]
