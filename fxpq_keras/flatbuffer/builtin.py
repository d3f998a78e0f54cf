"""Target int8-builtin: rewrite an IntegerGraph into what stock int8 kernels express, write it
with builtin ops, and read such a file back (docs/format.md section 7).

The rewritten ("stock") graph is a StockGraph: an IntegerGraph whose formats are all s8 and whose
weighted nodes hold their bias already at the accumulator frac (`bias_frac` None, `bias_bits` 32),
plus one op the integer graph does not have, `softmax`. Its output tensor is TFLite's softmax
convention (int8, scale 1/256, zero point -128); the graph describes it as u8 frac 8 (the stored
int8 plus 128), so "raw" outputs stay integers in a format with zero point 0 like every other
tensor and `q * 2^-8` is the probability. StockGraph.run is stock.run_stock, the numpy model of
TFLM's int8 kernels, so nobody runs a stock graph with the fxp rules by accident.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from ..formats import Format
from ..integer_graph import IntegerGraph, Node, TensorSpec, tflm_ops
from ..integer_graph.graph import OP_ATTRS, STOCK_FLOAT_SCALED
from ..integer_graph.graph import STOCK_OPS as GRAPH_STOCK_OPS
from . import stock
from .builder import float_scale_quant, scale_quant
from .errors import ExportError, FlatbufferFormatError
from .schema import schema as S
from .stock import weight_scales
from .stock_ops import STOCK_BUILTINS, stock_node, stock_op

STOCK_OPS = tuple(OP_ATTRS) + ("softmax",)
SOFTMAX_FORMAT = Format(8, stock.SOFTMAX_OUT_FRAC, False)  # int8 with zero point -128, as u8

_ACT_CODES = {None: S.ActivationFunctionType.NONE, "relu": S.ActivationFunctionType.RELU,
              "relu6": S.ActivationFunctionType.RELU6}
_ACT_NAMES = {v: k for k, v in _ACT_CODES.items()}
_PAD = {"same": S.Padding.SAME, "valid": S.Padding.VALID}
_PAD_NAMES = {v: k for k, v in _PAD.items()}
WEIGHTED = ("conv2d", "depthwise_conv2d", "fully_connected")


@dataclass
class StockGraph(IntegerGraph):
    """The graph of an int8-builtin file: stock ops, TFLM's arithmetic (see the module doc)."""

    def __post_init__(self) -> None:
        for node in self.nodes:
            if node.op not in STOCK_OPS:
                raise ValueError(f"unknown stock op {node.op!r} in node {node.name!r}; known: {sorted(STOCK_OPS)}")

    def run(self, x: np.ndarray, *, raw: bool = False) -> list[np.ndarray]:
        """TFLM's results for a batch: raw integers, or dequantized (softmax is in the graph)."""
        outs = stock.run_stock(self, x)
        if raw:
            return outs
        # output_softmax: 16-bit logits of a builtin file, softmax on the host (as in fxp files)
        return [self.finish_output(q, self.tensors[o].fmt.frac) for q, o in zip(outs, self.outputs)]


def _s8(fmt: Format) -> Format:
    """int8 at the same scale, an asymmetric format's zero point kept."""
    return Format(8, fmt.frac, True, fmt.scale, fmt.zero_point if fmt.bits == 8 else 0)


def _s16(fmt: Format) -> Format:
    """int16, zero point 0, at the same scale (float or 2^-frac): an asymmetric int8 tensor widens
    to it exactly (its values q, stored q + zero point in int8, are stored q in int16)."""
    return Format(16, fmt.frac, True, fmt.scale)


def _stock_fmt(fmt: Format) -> Format:
    """The stock tensor of a format: u8 stays u8 (int8 with zero point -128, as TFLite stores
    unsigned ranges), s8 stays s8 (with its zero point, asymmetric int8); every other format of <= 8
    bits becomes s8 (u1..u7 with a fused ReLU); 9..16
    bits (target builtin only) become s16, int16 with zero point 0 (u16 does not fit: refused)."""
    if fmt.bits > 8:
        return _s16(fmt)
    return fmt if (not fmt.signed and fmt.bits == 8) else _s8(fmt)


def _is16(fmt: Format | None) -> bool:
    return fmt is not None and fmt.bits > 8


def weight_type(node: Node, in_fmt: Format) -> str:
    """How the builtin target stores a layer's weights: packed int4 where TFLM has the kernel
    (<= 4-bit weights, int8 input; FULLY_CONNECTED only per-tensor, TFLM refuses per-channel int4
    there), int8 otherwise (exact: int4 values are int8 values)."""
    if node.weight_bits is None or node.weight_bits > 4 or _is16(in_fmt):
        return "int8"
    if node.op == "fully_connected" and len(set(weight_scales(node).tolist())) > 1:
        return "int8"
    return "int4"


def multiplier_shifts(node: Node, x: Format, out: Format) -> np.ndarray:
    """Per output channel, the shift of TFLM's QuantizeMultiplier(double(s_in) * double(s_w) /
    double(s_out)) for a node with float weight or activation scales (the power-of-two case is
    out_frac - facc + 1, _check_weighted)."""
    s_in, s_out = tflm_ops.f32(x.step), tflm_ops.f32(out.step)
    return np.array([tflm_ops.quantize_multiplier(s_in * float(s) / s_out)[1] for s in weight_scales(node)],
                    dtype=np.int64)


def _scaled(*fmts: Format | None) -> bool:
    """Whether any of these formats has a float activation scale (formats.scaled_format)."""
    return any(f is not None and f.scale is not None for f in fmts)


def _input_magnitude(fmt: Format) -> int:
    """The largest |stored - zero point| of an input TFLM's weighted kernels multiply: 32768 for
    int16, 128 + |zero point| for int8 (128 for s8, 255 for u8 with zero point -128)."""
    return 32768 if _is16(fmt) else 128 + abs(stock.zero_point(fmt))


def _accumulator_bound(node: Node, input_magnitude: int = 128) -> np.ndarray:
    """Per output channel, the largest |acc + bias| any input can produce (input_magnitude:
    _input_magnitude of the input)."""
    w = np.abs(np.asarray(node.weights, dtype=np.int64))
    per_o = w.reshape(-1, w.shape[-1]).sum(axis=0) if node.op == "depthwise_conv2d" else \
        w.reshape(w.shape[0], -1).sum(axis=1)
    return per_o * input_magnitude + np.abs(np.asarray(node.bias, dtype=np.int64))


def _check_weighted(node: Node, facc: np.ndarray, out_frac: int, input_magnitude: int = 128,
                    shift: np.ndarray | None = None) -> list[str]:
    """Why TFLM could not compute this layer exactly (empty when it can).

    QuantizeMultiplier(2^(out_frac - facc)) gives the multiplier 2^30 and shift
    out_frac - facc + 1. A positive shift is a left shift of the int32 accumulator inside
    MultiplyByQuantizedMultiplier (then the doubling high multiply halves it: exact), so
    output frac > accumulator frac is fine as long as `acc << shift` cannot leave int32 (C
    signed overflow: no defined result). A shift below -31 makes the multiplier 0, which is
    also exact (|acc| < 2^31 rounds to 0 at 2^-32 resolution). With float weight scales `shift`
    gives QuantizeMultiplier's shifts (multiplier_shifts) and the same limits apply.
    """
    problems = []
    scaled = shift is not None
    if shift is None:
        shift = out_frac - facc + 1
    else:
        shift = np.asarray(shift, dtype=np.int64)
    bound = _accumulator_bound(node, input_magnitude)
    if input_magnitude > 255:  # int16x8: MultiplyByQuantizedMultiplier(int64) shifts right by 15 - shift
        bad = np.flatnonzero((shift > 14) | (shift < -48))
        if bad.size:
            o = int(bad[0])
            what = (f"the scale ratio s_in * s_w / s_out of channel {o} (weight scale {weight_scales(node)[0]:.3g}, "
                    f"output frac {out_frac}) needs a shift of {int(shift[o])}" if scaled else
                    f"output frac {out_frac} and accumulator frac {int(facc[o])} (channel {o}) need a shift")
            problems.append(f"layer {node.name!r}: {what} TFLM's int16 kernels cannot apply "
                            f"({'shift in -48..14' if scaled else 'out - acc in -49..13'})")
        if (bound >= 2**47).any():
            problems.append(f"layer {node.name!r}: a worst-case int16x8 accumulator reaches 2^47 (TFLM's limit)")
        return problems
    left = np.maximum(shift, 0)
    worst = bound.astype(np.float64) * np.exp2(left)  # exact: bound < 2^53, times a power of two
    if (worst > 2**31 - 1).any() or (left > 30).any():
        o = int(np.argmax(np.where(left > 30, np.inf, worst)))
        where = (f"the scale ratio s_in * s_w / s_out of channel {o} is about 2^{int(shift[o]) - 1} (output frac "
                 f"{out_frac})" if scaled else f"output frac {out_frac} is {int(shift[o]) - 1} above the accumulator "
                 f"frac {int(facc[o])} (channel {o})")
        problems.append(f"layer {node.name!r}: {where}; TFLM shifts the int32 accumulator left by "
                        f"{int(left[o])} and a worst-case accumulator of {int(bound[o])} would overflow int32")
    return problems


def _act(node: Node) -> str | None:
    a = node.attrs.get("activation")
    return None if a in (None, "linear", "none") else a


def to_builtin_graph(graph: IntegerGraph, target: str = "int8-builtin") -> IntegerGraph:
    """The stock form of `graph`; ExportError lists every layer that does not fit.

    target "int8-builtin": every format must fit 8 bits. target "builtin" (issue 23) also takes
    9..16-bit signed activations (int16, zero point 0) and stores <= 4-bit weights packed as int4
    where TFLM has the kernel (weight_type); an op that reads or writes an int16 tensor computes in
    int16 (TFLM's int16x8 kernels need every activation of the op int16): int8 inputs are first
    widened by an exact QUANTIZE (same scale), an int8 output is computed as int16 at its scale
    and narrowed by a QUANTIZE (saturation only).
    """
    wide = target == "builtin"
    name_of = "builtin" if wide else "int8-builtin"
    problems: list[str] = []
    for name, spec in graph.tensors.items():
        fmt = spec.fmt
        if fmt is None:
            continue
        if fmt.bits > 8 and not wide:
            problems.append(f"tensor {name!r} is {fmt} (more than 8 bits)")
        elif fmt.zero_point and not wide:
            problems.append(f"tensor {name!r} is {fmt} (asymmetric int8: target builtin only)")
        elif wide and fmt.bits == 16 and not fmt.signed:
            problems.append(f"tensor {name!r} is {fmt} (int16 holds at most u15: use a signed 16-bit format)")
    for node in graph.nodes:
        if node.op in WEIGHTED and node.weight_bits is not None and node.weight_bits > 8:
            problems.append(f"layer {node.name!r} has {node.weight_bits}-bit weights")
        if node.op == "requantize" and _act(node) is not None:
            problems.append(f"layer {node.name!r} is a standalone {_act(node)} (stock QUANTIZE has no activation; "
                            "fuse it into the previous layer)")
    if problems:
        kinds = "int8/int16 activations and int4/int8 weights" if wide else "stock int8"
        raise ExportError(f"{name_of} target: these layers do not fit {kinds} (the fxp target takes any format): "
                          + "; ".join(problems))

    tensors: dict[str, TensorSpec] = {}
    for name, spec in graph.tensors.items():
        tensors[name] = TensorSpec(name, spec.shape, None if spec.fmt is None else _stock_fmt(spec.fmt))
    nodes: list[Node] = []
    t = graph.tensors

    def act_for(node: Node) -> str | None:
        a = _act(node)
        # an unsigned format (<= 7 bits) becomes s8 + ReLU: the stock clamp [0, 127] keeps it >= 0
        if a is None and tensors[node.output].fmt.signed and not t[node.output].fmt.signed:
            return "relu"
        return a

    def widened(name: str) -> str:
        """`name` as int16 at its own scale (an exact QUANTIZE, added once per tensor)."""
        fmt = tensors[name].fmt
        if _is16(fmt):
            return name
        wide_name = f"{name}/int16"
        if wide_name not in tensors:
            tensors[wide_name] = TensorSpec(wide_name, tensors[name].shape, _s16(fmt))
            nodes.append(Node("requantize", wide_name, [name], wide_name, {"activation": None}))
        return wide_name

    def in16(node: Node) -> bool:
        return any(_is16(tensors[n].fmt) for n in list(node.inputs) + [node.output])

    def narrowed(node: Node, new: Node) -> None:
        """Append `new`; where the op computes in int16, an int8 output gets an int16 twin and a QUANTIZE."""
        out = node.output
        if _is16(tensors[out].fmt) or not in16(node):
            nodes.append(new)
            return
        # not "{out}/int16": that is the exact widening of the saturated int8 tensor (widened), which a
        # later int16 op must read; this twin holds the op's unsaturated int16 result
        twin = f"{out}/int16 result"
        tensors[twin] = TensorSpec(twin, tensors[out].shape, _s16(tensors[out].fmt))
        nodes.append(replace(new, output=twin, name=f"{node.name}/int16"))
        nodes.append(Node("requantize", node.name, [twin], out, {"activation": None}))

    for node in graph.nodes:
        out = t[node.output].fmt
        if node.op in WEIGHTED:
            x = t[node.inputs[0]].fmt
            n_out = len(np.atleast_1d(node.weight_frac))
            fracs = np.broadcast_to(np.asarray(node.weight_frac, dtype=np.int64), (n_out,))
            facc = x.frac + fracs
            is16 = in16(node)
            bias_limit = 2**40 if is16 else 2**31  # int64 bias (int16x8) or int32
            scaled = node.weight_scale is not None  # float weight scales: the bias is at s_in * s_w already
            if not scaled and _scaled(x, out):
                problems.append(f"layer {node.name!r}: float activation scales need float weight scales (a policy "
                                "with activation_ranges needs weight_scales 'float')")
            if node.bias is None:
                bias = np.zeros(len(fracs), dtype=np.int64)
            elif scaled:
                bias = np.asarray(node.bias, dtype=np.int64)
            else:
                bias = np.asarray(node.bias, dtype=np.int64) << (facc - node.bias_frac)
                if np.abs(bias).max(initial=0) >= bias_limit:
                    problems.append(f"layer {node.name!r}: bias at the accumulator frac does not fit "
                                    f"{'int64 (2^40)' if is16 else 'int32'}")
            src = widened(node.inputs[0]) if is16 else node.inputs[0]
            wtype = weight_type(node, x) if wide and not is16 else "int8"
            new = replace(node, inputs=[src], attrs={**node.attrs, "activation": act_for(node), "weight_type": wtype},
                          bias=bias, bias_bits=64 if is16 else 32, bias_frac=None, weight_frac=np.asarray(fracs).copy())
            if np.abs(bias).max(initial=0) < bias_limit:
                magnitude = 32768 if is16 else _input_magnitude(tensors[node.inputs[0]].fmt)
                shift = multiplier_shifts(new, x, out) if scaled or _scaled(x, out) else None
                problems += _check_weighted(new, facc, out.frac, magnitude, shift)
            narrowed(node, new)
        elif node.op == "add":
            fa, fb = t[node.inputs[0]].fmt.frac, t[node.inputs[1]].fmt.frac
            fmts = [t[node.inputs[0]].fmt, t[node.inputs[1]].fmt, out]
            if in16(node) or _scaled(*fmts):  # TFLM's ADD Prepare's limits, as the numpy model checks them
                try:
                    qs = [tflm_ops.format_quant(_s16(f) if in16(node) else _stock_fmt(f)) for f in fmts]
                    tflm_ops.prepare_add(*qs)
                except ValueError as exc:
                    problems.append(f"layer {node.name!r}: {exc}")
            elif out.frac - min(fa, fb) > 18 or abs(fa - fb) > 30:
                problems.append(f"layer {node.name!r}: stock ADD needs out_frac - min(in fracs) <= 18 and "
                                f"|frac_a - frac_b| <= 30 (got {fa}, {fb} -> {out.frac})")
            new = replace(node, attrs={**node.attrs, "activation": act_for(node)})
            if in16(node):
                narrowed(node, replace(new, inputs=[widened(i) for i in node.inputs]))
            else:
                nodes.append(new)
        elif node.op in ("max_pool2d", "average_pool2d", "global_average_pool2d"):
            x = t[node.inputs[0]]
            changes = _stock_fmt(x.fmt) != _stock_fmt(out)  # stock pools keep scale and zero point
            if node.op == "global_average_pool2d":
                h, w, c = x.shape
                pooled = f"{node.output}/pool"
                tensors[pooled] = TensorSpec(pooled, (1, 1, c), _stock_fmt(x.fmt))
                nodes.append(Node("average_pool2d", f"{node.name}/pool", [node.inputs[0]], pooled,
                                  {"pool": (h, w), "stride": (1, 1), "padding": "valid", "activation": act_for(node)}))
                flat = f"{node.output}/flat" if changes else node.output
                tensors[flat] = TensorSpec(flat, (c,), _stock_fmt(x.fmt))
                nodes.append(Node("reshape", f"{node.name}/reshape", [pooled], flat, {"shape": (c,)}))
                src = flat
            else:
                dst = f"{node.output}/pool" if changes else node.output
                tensors[dst] = TensorSpec(dst, t[node.output].shape, _stock_fmt(x.fmt))
                nodes.append(replace(node, output=dst, attrs={**node.attrs, "activation": act_for(node)},
                                     name=node.name if not changes else f"{node.name}/pool"))
                src = dst
            if changes:
                nodes.append(Node("requantize", node.name, [src], node.output, {"activation": None}))
        elif node.op == "concat":
            # TFLM's int8 CONCATENATION requires every input's scale and zero point to equal the
            # output's: an input in another format is first brought there by a QUANTIZE
            ins = []
            for k, name in enumerate(node.inputs):
                if tensors[name].fmt != tensors[node.output].fmt:
                    moved = f"{node.output}/in{k}"
                    tensors[moved] = TensorSpec(moved, t[name].shape, tensors[node.output].fmt)
                    nodes.append(Node("requantize", f"{node.name}/in{k}", [name], moved, {"activation": None}))
                    name = moved
                ins.append(name)
            nodes.append(replace(node, inputs=ins, attrs={}))
        elif node.op == "leaky_relu":
            if _scaled(t[node.inputs[0]].fmt, out):
                problems.append(f"layer {node.name!r}: LEAKY_RELU takes power-of-two scales (no activation range)")
            if in16(node):
                problems.append(f"layer {node.name!r}: LEAKY_RELU on int16 tensors is not modelled (keep it at 8 bits)")
            d = out.frac - t[node.inputs[0]].fmt.frac
            if d > 22:  # LEAKY_RELU shifts the int8 input left by d + 1 in int32 first
                problems.append(f"layer {node.name!r}: raising the frac by {d} (more than 22) would overflow int32 "
                                "in stock LEAKY_RELU")
            nodes.append(replace(node, attrs=dict(node.attrs)))
        elif node.op == "pad":
            # stock PAD pads with the output zero point and never rescales
            x = t[node.inputs[0]]
            changes = _stock_fmt(x.fmt) != _stock_fmt(out)
            dst = f"{node.output}/pad" if changes else node.output
            tensors[dst] = TensorSpec(dst, t[node.output].shape, _stock_fmt(x.fmt))
            nodes.append(replace(node, output=dst, name=f"{node.name}/pad" if changes else node.name))
            if changes:
                nodes.append(Node("requantize", node.name, [dst], node.output, {"activation": None}))
        elif node.op in ("quantize", "requantize", "reshape"):
            if node.op == "requantize" and tensors[node.inputs[0]].fmt == tensors[node.output].fmt:
                nodes.append(Node("reshape", node.name, node.inputs, node.output, {"shape": t[node.output].shape}))
            else:
                nodes.append(replace(node, attrs=dict(node.attrs)))
        elif node.op == "stock_quantize":  # the fxp file's zero-point seam: a QUANTIZE here too
            nodes.append(Node("requantize", node.name, list(node.inputs), node.output, {"activation": None}))
        elif node.op in GRAPH_STOCK_OPS:  # MUL, HARD_SWISH, ...: the same stock op, int8 as in fxp files
            if node.op not in STOCK_FLOAT_SCALED and _scaled(*(t[i].fmt for i in node.inputs), out):
                problems.append(f"layer {node.name!r}: stock {node.op} takes power-of-two scales (no activation "
                                "range)")
            if in16(node):
                problems.append(f"layer {node.name!r}: stock {node.op} on int16 tensors is not modelled (keep its "
                                "tensors at 8 bits)")
            nodes.append(replace(node, attrs=dict(node.attrs)))
        else:
            problems.append(f"layer {node.name!r}: op {node.op!r} has no stock int8 equivalent")
    for node in nodes:
        if node.op == "requantize" and wide and (_is16(tensors[node.output].fmt) or _is16(tensors[node.inputs[0]].fmt)
                                                 or _scaled(tensors[node.output].fmt, tensors[node.inputs[0]].fmt)):
            try:
                tflm_ops.prepare_requantize(tflm_ops.format_quant(tensors[node.inputs[0]].fmt),
                                            tflm_ops.format_quant(tensors[node.output].fmt))
            except ValueError as exc:
                problems.append(f"layer {node.name!r}: {exc}")
        elif node.op == "requantize":
            d = tensors[node.output].fmt.frac - tensors[node.inputs[0]].fmt.frac
            if d > 23:  # QUANTIZE int8 -> int8 computes x << (d + 1) in int32 before the high multiply
                problems.append(f"layer {node.name!r}: raising the frac by {d} (more than 23) would overflow int32 "
                                "in stock QUANTIZE")
    scaled_out = [n for n in graph.outputs if _scaled(tensors[n].fmt)]
    if scaled_out:
        problems.append(f"outputs {scaled_out}: a model output takes a power-of-two scale (no activation range)")
    outputs = list(graph.outputs)
    host_softmax = wide and graph.output_softmax and any(_is16(tensors[n].fmt) for n in graph.outputs)
    if graph.output_softmax and not host_softmax:
        outputs = []
        for name in graph.outputs:
            frac = tensors[name].fmt.frac
            lo, hi = stock.SOFTMAX_FRAC_RANGE
            if not lo <= frac <= hi:
                problems.append(f"output {name!r}: stock SOFTMAX needs the logits' frac in {lo}..{hi} (TFLM's "
                                f"Prepare aborts or shifts out of int32 otherwise), got {frac}")
            probs = f"{name}/softmax"
            tensors[probs] = TensorSpec(probs, tensors[name].shape, SOFTMAX_FORMAT)
            nodes.append(Node("softmax", "softmax" if len(graph.outputs) == 1 else f"{name}/softmax", [name], probs,
                              {"beta": 1.0}))
            outputs.append(probs)
    if problems:
        raise ExportError(f"{name_of} target: " + "; ".join(problems))
    # 8-bit logits end in TFLM's int8 SOFTMAX; 16-bit ones (target builtin) are the file's output and
    # the softmax runs on the host, as in fxp files (TFLM's int16 SOFTMAX is not modelled)
    return StockGraph(graph.input, outputs, tensors, nodes, host_softmax, dict(graph.metadata))


def write_builtin(b, graph: IntegerGraph) -> None:
    """Emit stock ops for a graph from to_builtin_graph (b is writer._Builder)."""
    t = graph.tensors
    _activation(b, t[graph.input])
    for node in graph.nodes:
        ins = [_activation(b, t[i]) for i in node.inputs]
        a = node.attrs
        if node.op == "softmax":
            dst = _activation(b, t[node.output])
            opts = S.SoftmaxOptionsT()
            opts.beta = float(a.get("beta", 1.0))
            b.operator(node.name, b.op_code(S.BuiltinOperator.SOFTMAX), ins, [dst],
                       builtin_type=S.BuiltinOptions.SoftmaxOptions, builtin_options=opts)
            continue
        dst = _activation(b, t[node.output])
        if node.op == "reshape":
            b.reshape(node.name, ins[0], dst, tuple(t[node.output].shape))
        elif node.op in ("quantize", "requantize"):
            b.operator(node.name, b.op_code(S.BuiltinOperator.QUANTIZE), ins, [dst])
        elif node.op == "concat":
            opts = S.ConcatenationOptionsT()
            opts.axis = len(t[node.output].shape)  # the last axis of [1, ..., C]
            b.operator(node.name, b.op_code(S.BuiltinOperator.CONCATENATION), ins, [dst],
                       builtin_type=S.BuiltinOptions.ConcatenationOptions, builtin_options=opts)
        elif node.op == "leaky_relu":
            opts = S.LeakyReluOptionsT()
            opts.alpha = float(np.ldexp(1.0, -a["alpha_shift"]))
            b.operator(node.name, b.op_code(S.BuiltinOperator.LEAKY_RELU), ins, [dst],
                       builtin_type=S.BuiltinOptions.LeakyReluOptions, builtin_options=opts)
        elif node.op == "pad":
            (top, bottom), (left, right) = a["pads"]
            pads = b.constant(f"{node.name}/paddings",
                              np.array([[0, 0], [top, bottom], [left, right], [0, 0]], dtype=np.int32))
            b.operator(node.name, b.op_code(S.BuiltinOperator.PAD), ins + [pads], [dst],
                       builtin_type=S.BuiltinOptions.PadOptions, builtin_options=S.PadOptionsT())
        elif node.op in WEIGHTED:
            x = t[node.inputs[0]].fmt
            fracs = np.asarray(node.weight_frac, dtype=np.int64)
            dim = 3 if node.op == "depthwise_conv2d" else 0
            # per-channel scales on conv and depthwise (TFLM and LiteRT both accept them). A FULLY_CONNECTED
            # is per tensor when int4 (TFLM refuses per-channel int4 there; weight_type keeps int8 otherwise)
            # or when its channels share one scale: CMSIS-NN's FULLY_CONNECTED refuses per-channel int16x8
            # (cmsis_nn/fully_connected.cc Prepare; the reference does not), and one scale instead of
            # O saves 24 bytes per output channel in the file (weight and bias scales, zero points) and
            # TFLM's per-channel multipliers and shifts in the arena
            int4 = a.get("weight_type") == "int4"
            scales = np.broadcast_to(weight_scales(node), fracs.shape)
            per_tensor = node.op == "fully_connected" and (int4 or len(set(scales.tolist())) == 1)
            if node.weight_scale is not None:  # TFLite's float scales; the bias at s_in * s_w (float32)
                wq = float_scale_quant(scales[:1] if per_tensor else scales, dim)
                bq = float_scale_quant(np.float32(x.step) * np.float32(scales[:1] if per_tensor else scales), 0)
            else:
                wq = scale_quant(fracs[:1] if per_tensor else fracs, dim)
                bq = scale_quant((x.frac + fracs)[:1] if per_tensor else x.frac + fracs, 0)
            if int4:
                w_t = b.constant_int4(f"{node.name}/weights", np.asarray(node.weights), wq)
            else:
                w_t = b.constant(f"{node.name}/weights", np.asarray(node.weights).astype(np.int8), wq)
            bias_type = np.int64 if x.bits > 8 else np.int32  # int16x8 kernels take an int64 bias
            b_t = b.constant(f"{node.name}/bias", np.asarray(node.bias).astype(bias_type), bq)
            act = _fused_code(a.get("activation"), t[node.output].fmt)
            if node.op == "fully_connected":
                opts = S.FullyConnectedOptionsT()
                opts.fusedActivationFunction = act
                code, otype = S.BuiltinOperator.FULLY_CONNECTED, S.BuiltinOptions.FullyConnectedOptions
            else:
                opts = S.Conv2DOptionsT() if node.op == "conv2d" else S.DepthwiseConv2DOptionsT()
                opts.padding = _PAD[a["padding"]]
                opts.strideH, opts.strideW = a["stride"]
                opts.dilationHFactor, opts.dilationWFactor = a.get("dilation", (1, 1))
                opts.fusedActivationFunction = act
                if node.op == "conv2d":
                    code, otype = S.BuiltinOperator.CONV_2D, S.BuiltinOptions.Conv2DOptions
                else:
                    opts.depthMultiplier = a["depth_multiplier"]
                    code, otype = S.BuiltinOperator.DEPTHWISE_CONV_2D, S.BuiltinOptions.DepthwiseConv2DOptions
            b.operator(node.name, b.op_code(code), ins + [w_t, b_t], [dst], builtin_type=otype, builtin_options=opts)
        elif node.op == "add":
            opts = S.AddOptionsT()
            opts.fusedActivationFunction = _fused_code(a.get("activation"), t[node.output].fmt)
            b.operator(node.name, b.op_code(S.BuiltinOperator.ADD), ins, [dst],
                       builtin_type=S.BuiltinOptions.AddOptions, builtin_options=opts)
        elif node.op in ("max_pool2d", "average_pool2d"):
            opts = S.Pool2DOptionsT()
            opts.padding = _PAD[a["padding"]]
            opts.strideH, opts.strideW = a["stride"]
            opts.filterHeight, opts.filterWidth = a["pool"]
            opts.fusedActivationFunction = _fused_code(a.get("activation"), t[node.output].fmt)
            code = S.BuiltinOperator.MAX_POOL_2D if node.op == "max_pool2d" else S.BuiltinOperator.AVERAGE_POOL_2D
            b.operator(node.name, b.op_code(code), ins, [dst], builtin_type=S.BuiltinOptions.Pool2DOptions,
                       builtin_options=opts)
        elif node.op in GRAPH_STOCK_OPS:
            stock_op(b, graph, node, ins, dst)
        else:  # pragma: no cover - to_builtin_graph admits nothing else
            raise AssertionError(node.op)


def _fused_code(activation: str | None, out: Format) -> int:
    """An op's fused activation code. A ReLU6 at an output scale so fine that TFLM's
    Quantize(6.0) would overflow int32 (tflm_ops.quantize_fits; TFLM refuses it) is written as ReLU:
    6.0 then lies far beyond the output type's largest value, so both clamp at that value."""
    if activation == "relu6" and not tflm_ops.quantize_fits(tflm_ops.format_quant(out), 6.0):
        return _ACT_CODES["relu"]
    return _ACT_CODES[activation]


def _activation(b, spec: TensorSpec) -> int:
    """An activation tensor of the stock graph: s8 as in the fxp target; u8 (every u8 tensor,
    the SOFTMAX output among them: TFLM's Prepare insists on scale 1/256, zero point -128 there)
    as INT8 with zero point -128, min/max the real range of the u8 format."""
    if spec.name in b.tensor_index:
        return b.tensor_index[spec.name]
    zp = stock.zero_point(spec.fmt)
    if zp == 0 or spec.fmt.zero_point:  # s8 (asymmetric too: activation_quant writes its zero point), s16
        return b.activation(spec)
    q = S.QuantizationParametersT()
    step = float(spec.fmt.step)
    q.scale, q.zeroPoint = [step], [zp]
    q.min, q.max = [0.0], [float(spec.fmt.hi * step)]
    idx = b._tensor(spec.name, (1,) + tuple(spec.shape), np.int8, q)
    b.tensor_index[spec.name] = idx
    return idx


def _fracs_from_scales(scales, where: str) -> np.ndarray:
    out = []
    for s in scales if scales is not None else []:
        mant, exp = np.frexp(float(s))
        if mant != 0.5:
            raise FlatbufferFormatError(f"{where}: scale {s} is not a power of two")
        if not -32 <= 1 - int(exp) <= 32:
            raise FlatbufferFormatError(f"{where}: weight frac {1 - int(exp)} outside -32..32")
        out.append(1 - int(exp))
    return np.asarray(out, dtype=np.int64)


# builtin op -> the options table its operators must carry (the writer always writes one)
_OPTIONS = {"SOFTMAX": S.SoftmaxOptionsT, "CONCATENATION": S.ConcatenationOptionsT,
            "LEAKY_RELU": S.LeakyReluOptionsT, "ADD": S.AddOptionsT, "MAX_POOL_2D": S.Pool2DOptionsT,
            "AVERAGE_POOL_2D": S.Pool2DOptionsT, "CONV_2D": S.Conv2DOptionsT,
            "DEPTHWISE_CONV_2D": S.DepthwiseConv2DOptionsT, "FULLY_CONNECTED": S.FullyConnectedOptionsT}
_N_INPUTS = {"SOFTMAX": (1,), "RESHAPE": (1, 2), "QUANTIZE": (1,), "CONCATENATION": (2,), "LEAKY_RELU": (1,),
             "PAD": (2,), "ADD": (2,), "MAX_POOL_2D": (1,), "AVERAGE_POOL_2D": (1,), "CONV_2D": (3,),
             "DEPTHWISE_CONV_2D": (3,), "FULLY_CONNECTED": (3,)}


# ops whose int16 kernels the builtin target uses (TFLM has them; stock.py models them)
_INT16_OPS = ("RESHAPE", "QUANTIZE", "ADD", "MAX_POOL_2D", "AVERAGE_POOL_2D", "CONV_2D", "DEPTHWISE_CONV_2D",
              "FULLY_CONNECTED", "CONCATENATION", "PAD")


def _window(x: TensorSpec, out: TensorSpec, kh: int, kw: int, stride, dilation, padding: str, where: str) -> None:
    """A windowed op's shapes: input [1,H,W,C], output the padding rule's [1,OH,OW,*]."""
    from ..integer_graph.ops import conv_output_size

    if len(x.shape) != 3 or len(out.shape) != 3:
        raise FlatbufferFormatError(f"{where}: input and output must be [1, H, W, C], got {x.shape} -> {out.shape}")
    for key, v in (("stride", stride), ("dilation", dilation), ("filter", (kh, kw))):
        if min(v) < 1 or max(v) > 65535:
            raise FlatbufferFormatError(f"{where}: {key} {tuple(v)} outside 1..65535")
    try:
        oh = conv_output_size(x.shape[0], kh, stride[0], dilation[0], padding)[0]
        ow = conv_output_size(x.shape[1], kw, stride[1], dilation[1], padding)[0]
    except ValueError as exc:
        raise FlatbufferFormatError(f"{where}: {exc}") from None
    if out.shape[:2] != (oh, ow):
        raise FlatbufferFormatError(f"{where}: output shape {out.shape} is not [1, {oh}, {ow}, channels] "
                                    f"(input {x.shape}, padding {padding})")


def builtin_node(f, op, kind: str, name: str, where: str, spec, info) -> Node:
    """One stock operator of an int8-builtin file -> a node of the stock graph.

    Every shape, option and format is checked against what the numpy model of TFLM (stock.py) and
    TFLM itself compute without overflow or undefined behaviour: the exporter's limits
    (to_builtin_graph) are the reader's, so a file the reader accepts runs (docs/format.md 7).
    """
    inputs = [int(i) for i in (op.inputs if op.inputs is not None else [])]
    if kind in STOCK_BUILTINS and kind != "QUANTIZE":  # MUL, HARD_SWISH, ...: read as in fxp files
        return stock_node(f, op, STOCK_BUILTINS[kind], name, where, spec, inputs,
                          spec(int(op.outputs[0]), where + " output"))
    if kind not in _N_INPUTS:
        raise FlatbufferFormatError(f"{where}: op {kind!r} is not part of the int8-builtin format (known: "
                                    f"{sorted(_N_INPUTS)})")
    if len(inputs) not in _N_INPUTS[kind]:
        raise FlatbufferFormatError(f"{where}: {kind} takes {' or '.join(map(str, _N_INPUTS[kind]))} inputs, "
                                    f"got {len(inputs)}")
    out_spec = spec(int(op.outputs[0]), where + " output")
    opts = op.builtinOptions
    if kind in _OPTIONS and not isinstance(opts, _OPTIONS[kind]):
        raise FlatbufferFormatError(f"{where}: {kind} needs its {_OPTIONS[kind].__name__[:-1]}, got "
                                    f"{'none' if opts is None else type(opts).__name__[:-1]}")
    act = getattr(opts, "fusedActivationFunction", 0)
    if act not in _ACT_NAMES:
        raise FlatbufferFormatError(f"{where}: fused activation code {act} is not 0 (none), 1 (relu) or 3 (relu6)")
    activation = _ACT_NAMES[act]
    padding = getattr(opts, "padding", 0)
    if padding not in _PAD_NAMES:
        raise FlatbufferFormatError(f"{where}: padding code {padding} is not 0 (same) or 1 (valid)")

    wide = info.target == "builtin"  # int16 activations (zero point 0) and int4 weights allowed

    def s8_input(i: int, what: str, allow16: bool = False) -> TensorSpec:
        src = spec(inputs[i], f"{where} {what}")
        ok16 = allow16 and wide and src.fmt is not None and src.fmt == _s16(src.fmt)
        if src.fmt is None or (src.fmt != _stock_fmt(src.fmt) or _is16(src.fmt)) and not ok16:
            raise FlatbufferFormatError(f"{where}: {what} must be an s8 tensor or a u8 one (zero point -128)"
                                        f"{' or an s16 one' if allow16 and wide else ''}, got {src.fmt}")
        return src

    def same_shape(*specs: TensorSpec) -> None:
        if any(s.shape != out_spec.shape for s in specs):
            raise FlatbufferFormatError(f"{where}: input shapes {[s.shape for s in specs]} != output shape "
                                        f"{out_spec.shape} (no broadcasting)")

    if kind == "SOFTMAX":
        if out_spec.fmt != SOFTMAX_FORMAT:
            raise FlatbufferFormatError(f"{where}: SOFTMAX output must be int8 with scale 1/256 and zero point -128")
        x = s8_input(0, "input")
        same_shape(x)
        if _scaled(x.fmt):
            raise FlatbufferFormatError(f"{where}: SOFTMAX input must have a power-of-two scale")
        if float(opts.beta) != 1.0:
            raise FlatbufferFormatError(f"{where}: SOFTMAX beta must be 1.0, got {opts.beta}")
        try:
            stock.softmax_params(x.fmt.frac)
        except ValueError as exc:
            raise FlatbufferFormatError(f"{where}: {exc}") from None
        return Node("softmax", name, [x.name], out_spec.name, {"beta": 1.0})
    if out_spec.fmt is None or out_spec.fmt != _stock_fmt(out_spec.fmt) or (_is16(out_spec.fmt) and not wide):
        raise FlatbufferFormatError(f"{where}: {info.target} outputs must be s8 tensors or u8 ones (zero point -128)"
                                    f"{' or s16 ones' if wide else ''}, got {out_spec.fmt}")
    if _is16(out_spec.fmt) and kind not in _INT16_OPS:
        raise FlatbufferFormatError(f"{where}: {kind} on int16 tensors is not part of the builtin format")
    if kind == "RESHAPE":
        src = s8_input(0, "input", allow16=True)
        if src.fmt != out_spec.fmt or int(np.prod(src.shape)) != int(np.prod(out_spec.shape)):
            raise FlatbufferFormatError(f"{where}: RESHAPE from {src.fmt} {src.shape} to {out_spec.fmt} "
                                        f"{out_spec.shape} changes the format or the size")
        if len(inputs) == 2:
            f.check_shape_input(inputs[1], 1 + len(out_spec.shape), where)
        return Node("reshape", name, [src.name], out_spec.name, {"shape": tuple(out_spec.shape)})
    if kind == "QUANTIZE":
        src = spec(inputs[0], where + " input")
        same_shape(src)
        if src.fmt is None:
            return Node("quantize", name, [src.name], out_spec.name, {})
        s8_input(0, "input", allow16=True)
        if _is16(src.fmt) or _is16(out_spec.fmt) or _scaled(src.fmt, out_spec.fmt):
            try:
                tflm_ops.prepare_requantize(tflm_ops.format_quant(src.fmt), tflm_ops.format_quant(out_spec.fmt))
            except ValueError as exc:
                raise FlatbufferFormatError(f"{where}: {exc}") from None
        elif out_spec.fmt.frac - src.fmt.frac > 23:  # the exporter's limit (to_builtin_graph)
            raise FlatbufferFormatError(f"{where}: QUANTIZE raises the frac by {out_spec.fmt.frac - src.fmt.frac} "
                                        "(more than 23 overflows int32 in TFLM)")
        return Node("requantize", name, [src.name], out_spec.name, {"activation": None})
    x = s8_input(0, "input", allow16=kind in _INT16_OPS)
    if kind not in ("ADD", "QUANTIZE") and _is16(x.fmt) != _is16(out_spec.fmt):
        raise FlatbufferFormatError(f"{where}: input {x.fmt} and output {out_spec.fmt} must both be int8 or int16")
    if kind == "CONCATENATION":
        y = s8_input(1, "input 2", allow16=True)
        a, b = x.shape, y.shape
        if opts.axis not in (-1, len(out_spec.shape)) or activation is not None:
            raise FlatbufferFormatError(f"{where}: CONCATENATION must join two inputs on the last axis, no activation")
        if not a or a[:-1] != b[:-1] or out_spec.shape != a[:-1] + (a[-1] + b[-1],):
            raise FlatbufferFormatError(f"{where}: output shape {out_spec.shape} is not inputs {a} and {b} joined on "
                                        "the last axis")
        if x.fmt != out_spec.fmt or y.fmt != out_spec.fmt:
            raise FlatbufferFormatError(f"{where}: CONCATENATION inputs must have the output's format (TFLM's rule)")
        return Node("concat", name, [x.name, y.name], out_spec.name, {})
    if kind == "LEAKY_RELU":
        same_shape(x)
        if _scaled(x.fmt, out_spec.fmt):
            raise FlatbufferFormatError(f"{where}: LEAKY_RELU needs power-of-two scales")
        alpha = float(opts.alpha)
        mant, exp = np.frexp(alpha)
        if mant != 0.5 or not 1 <= 1 - int(exp) <= 31:
            raise FlatbufferFormatError(f"{where}: LEAKY_RELU alpha {alpha} is not 2^-k with k in 1..31")
        if out_spec.fmt.frac - x.fmt.frac > 22:  # the exporter's limit
            raise FlatbufferFormatError(f"{where}: LEAKY_RELU raises the frac by {out_spec.fmt.frac - x.fmt.frac} "
                                        "(more than 22 overflows int32 in TFLM)")
        return Node("leaky_relu", name, [x.name], out_spec.name, {"alpha_shift": 1 - int(exp)})
    if kind == "PAD":
        pads = f.constant(inputs[1], where + " paddings").astype(np.int64)
        if f.tensor(inputs[1], where).type != S.TensorType.INT32 or pads.shape != (4, 2) or pads[0].any() \
                or pads[3].any() or (pads < 0).any():
            raise FlatbufferFormatError(f"{where}: paddings must be int32 [[0,0],[t,b],[l,r],[0,0]] with t,b,l,r >= 0")
        if len(x.shape) != 3 or out_spec.shape != (x.shape[0] + int(pads[1].sum()), x.shape[1] + int(pads[2].sum()),
                                                   x.shape[2]):
            raise FlatbufferFormatError(f"{where}: output shape {out_spec.shape} is not the input {x.shape} padded by "
                                        f"{pads[1:3].tolist()}")
        if x.fmt != out_spec.fmt:
            raise FlatbufferFormatError(f"{where}: PAD must keep the format (stock PAD never rescales)")
        return Node("pad", name, [x.name], out_spec.name,
                    {"pads": ((int(pads[1, 0]), int(pads[1, 1])), (int(pads[2, 0]), int(pads[2, 1])))})
    if kind == "ADD":
        y = s8_input(1, "input 2", allow16=True)
        same_shape(x, y)
        fa, fb, fo = x.fmt.frac, y.fmt.frac, out_spec.fmt.frac
        if not _is16(x.fmt) == _is16(y.fmt) == _is16(out_spec.fmt):
            raise FlatbufferFormatError(f"{where}: ADD inputs and output must share one type (int8 or int16)")
        if _is16(x.fmt) or _scaled(x.fmt, y.fmt, out_spec.fmt):
            try:
                tflm_ops.prepare_add(tflm_ops.format_quant(x.fmt), tflm_ops.format_quant(y.fmt),
                                     tflm_ops.format_quant(out_spec.fmt))
            except ValueError as exc:
                raise FlatbufferFormatError(f"{where}: {exc}") from None
        elif fo - min(fa, fb) > 18 or abs(fa - fb) > 30:  # the exporter's limits
            raise FlatbufferFormatError(f"{where}: stock ADD needs out_frac - min(in fracs) <= 18 and "
                                        f"|frac_a - frac_b| <= 30 (got {fa}, {fb} -> {fo})")
        return Node("add", name, [x.name, y.name], out_spec.name, {"activation": activation})
    if kind in ("MAX_POOL_2D", "AVERAGE_POOL_2D"):
        attrs = {"pool": (opts.filterHeight, opts.filterWidth), "stride": (opts.strideH, opts.strideW),
                 "padding": _PAD_NAMES[padding], "activation": activation}
        _window(x, out_spec, opts.filterHeight, opts.filterWidth, attrs["stride"], (1, 1), attrs["padding"], where)
        if out_spec.shape[2] != x.shape[2] or x.fmt != out_spec.fmt:
            raise FlatbufferFormatError(f"{where}: a stock pool keeps the channels and the format (got {x.shape} "
                                        f"{x.fmt} -> {out_spec.shape} {out_spec.fmt})")
        return Node("max_pool2d" if kind == "MAX_POOL_2D" else "average_pool2d", name, [x.name], out_spec.name, attrs)
    # CONV_2D, DEPTHWISE_CONV_2D, FULLY_CONNECTED
    w_t = f.tensor(inputs[1], where + " weights")
    int4 = w_t.type == S.TensorType.INT4
    if int4 and (not wide or _is16(x.fmt)):
        raise FlatbufferFormatError(f"{where}: int4 weights need the builtin target and an int8 input")
    weights = f.int4_constant(inputs[1], where + " weights") if int4 else f.constant(inputs[1], where + " weights")
    if not int4 and weights.dtype != np.int8:
        raise FlatbufferFormatError(f"{where}: weights must be int8{' or int4' if wide else ''}, "
                                    f"got {weights.dtype.name}")
    weights = weights.astype(np.int64)
    attrs = {"activation": activation}
    if kind == "FULLY_CONNECTED":
        graph_op = "fully_connected"
        k = int(np.prod(x.shape))
        if weights.ndim != 2 or weights.shape[1] != k or out_spec.shape != (weights.shape[0],):
            raise FlatbufferFormatError(f"{where}: weights {list(weights.shape)} and output {out_spec.shape} do not "
                                        f"fit an input of {k} features ([O, {k}] and [1, O])")
    else:
        graph_op = "conv2d" if kind == "CONV_2D" else "depthwise_conv2d"
        if weights.ndim != 4:
            raise FlatbufferFormatError(f"{where}: weights must have rank 4, got {list(weights.shape)}")
        attrs.update(stride=(opts.strideH, opts.strideW), padding=_PAD_NAMES[padding],
                     dilation=(opts.dilationHFactor, opts.dilationWFactor))
        _window(x, out_spec, weights.shape[1], weights.shape[2], attrs["stride"], attrs["dilation"],
                attrs["padding"], where)
        c = x.shape[2]
        if kind == "CONV_2D":
            ok = weights.shape[3] == c and out_spec.shape[2] == weights.shape[0]
        else:
            attrs["depth_multiplier"] = opts.depthMultiplier
            ok = weights.shape[0] == 1 and 1 <= opts.depthMultiplier <= 65535 \
                and weights.shape[3] == c * opts.depthMultiplier == out_spec.shape[2]
        if not ok:
            raise FlatbufferFormatError(f"{where}: weights {list(weights.shape)} do not fit input {x.shape} and output "
                                        f"{out_spec.shape}")
    o = out_spec.shape[-1]
    quant = w_t.quantization
    raw_scales = None if quant is None else quant.scale
    float_scales = None
    if wide and raw_scales is not None and len(raw_scales) and any(np.frexp(float(v))[0] != 0.5 for v in raw_scales):
        # TFLite's float weight scales (a searched builtin file): finite, positive float32 values
        float_scales = np.asarray(raw_scales, dtype=np.float32)
        if not (np.isfinite(float_scales).all() and (float_scales > 0).all()):
            raise FlatbufferFormatError(f"{where}: weight scales must be finite and positive")
        fracs = np.zeros(len(float_scales), dtype=np.int64)  # (not read: the float scales are)
    else:
        fracs = _fracs_from_scales(raw_scales, where + " weights")
    if len(fracs) not in (1, o):
        raise FlatbufferFormatError(f"{where}: weights need 1 or {o} scales, got {len(fracs)}")
    if int4 and kind == "FULLY_CONNECTED" and len(fracs) != 1:
        raise FlatbufferFormatError(f"{where}: int4 FULLY_CONNECTED weights must be per-tensor (TFLM's rule)")
    fracs = np.broadcast_to(fracs, (o,)).copy()
    if float_scales is not None and len(float_scales) == 1 and kind != "FULLY_CONNECTED":
        float_scales = np.broadcast_to(float_scales, (o,)).copy()
    bias_dtype = np.int64 if _is16(x.fmt) else np.int32
    if inputs[2] >= 0:
        bias = f.constant(inputs[2], where + " bias")
        if bias.dtype != bias_dtype or bias.shape != (o,):
            raise FlatbufferFormatError(f"{where}: bias must be {np.dtype(bias_dtype).name}[{o}], got "
                                        f"{bias.dtype.name}{list(bias.shape)}")
        bias = bias.astype(np.int64)
        if _is16(x.fmt) and np.abs(bias).max(initial=0) >= 2**40:  # the exporter's limit
            raise FlatbufferFormatError(f"{where}: int64 bias beyond 2^40")
    elif inputs[2] == -1:
        bias = np.zeros(o, dtype=np.int64)
    else:
        raise FlatbufferFormatError(f"{where}: bias tensor index {inputs[2]} is neither a tensor nor -1")
    info.weight_bytes[name] = (weights.size + 1) // 2 if int4 else weights.size
    attrs["weight_type"] = "int4" if int4 else "int8"
    node = Node(graph_op, name, [x.name], out_spec.name, attrs, weights=weights, weight_bits=4 if int4 else 8,
                weight_frac=fracs, bias=bias, bias_bits=64 if _is16(x.fmt) else 32, bias_frac=None,
                weight_scale=float_scales)
    magnitude = _input_magnitude(x.fmt)
    shift = None if float_scales is None and not _scaled(x.fmt, out_spec.fmt) else \
        multiplier_shifts(node, x.fmt, out_spec.fmt)
    problems = _check_weighted(node, x.fmt.frac + fracs, out_spec.fmt.frac, magnitude, shift)
    if problems:
        raise FlatbufferFormatError(f"{where}: {problems[0]}")
    return node

