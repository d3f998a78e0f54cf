"""IntegerGraph -> TFLite flatbuffer (docs/format.md).

`export_tflite` is the one entry point; keyword-only options are validated here once. The `fxp`
target maps every integer op to an `FXP_*` custom op (plus stock RESHAPE); the `int8-builtin`
target first rewrites the graph into what stock int8 kernels can express (builtin.py) and then
writes stock ops.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from ..formats import Format, accumulator_needs_64, relu_bounds
from ..integer_graph import IntegerGraph, Node, TensorSpec
from ..integer_graph.graph import STOCK_OPS, offset_tensors, stock_seam_problem
from ..integer_graph.ops import conv_output_size
from . import packing
from .builder import _Builder, scale_quant
from .builtin import _activation as stock_activation
from .builtin import to_builtin_graph, write_builtin
from .errors import ExportError
from .options import ACTIVATION_CODES, OP_TO_CUSTOM, PADDING_CODES, encode_options
from .schema import schema as S
from .stock_ops import stock_op

TARGETS = ("fxp", "int8-builtin", "builtin")


# ----------------------------------------------------------------------------------------------
# graph preparation shared by both targets


def with_input_mode(graph: IntegerGraph, float_input: bool) -> IntegerGraph:
    """The same graph with a float input (leading quantize) or an integer input (format.md 3)."""
    if graph.float_input == float_input:
        return graph
    tensors = dict(graph.tensors)
    nodes = list(graph.nodes)
    if not float_input:
        first = nodes[0]
        if first.op != "quantize" or first.inputs != [graph.input]:
            raise ExportError("an integer model input needs the graph's first node to quantize the float input")
        uses = [n.name for n in nodes[1:] if graph.input in n.inputs]
        if uses:
            raise ExportError(f"the float input is also used by {uses}; export with float_input=True")
        del tensors[graph.input]
        return replace(graph, input=first.output, tensors=tensors, nodes=nodes[1:])
    spec = tensors[graph.input]
    float_name = f"{graph.input}_float"
    tensors[float_name] = TensorSpec(float_name, spec.shape, None)
    q = Node("quantize", "quantize_input", [float_name], graph.input)
    return replace(graph, input=float_name, tensors=tensors, nodes=[q] + nodes)


def validate_graph(graph: IntegerGraph) -> None:
    """Structural checks with messages that name the node (bad graphs never half-write a file)."""
    known = {graph.input}
    if graph.input not in graph.tensors:
        raise ExportError(f"graph input {graph.input!r} has no tensor spec")
    for node in graph.nodes:
        for name in node.inputs:
            if name not in known:
                raise ExportError(f"node {node.name!r} reads {name!r} before it is produced")
        if node.output not in graph.tensors:
            raise ExportError(f"node {node.name!r} writes {node.output!r}, which has no tensor spec")
        out = graph.tensors[node.output].fmt
        if out is None:
            raise ExportError(f"node {node.name!r}: output {node.output!r} has no fixed-point format")
        if out.bits > 16:
            raise ExportError(f"node {node.name!r}: activation bits {out.bits} > 16")
        if node.op != "quantize" and any(graph.tensors[i].fmt is None for i in node.inputs):
            raise ExportError(f"node {node.name!r} ({node.op}) reads a float tensor; only quantize may")
        known.add(node.output)
    for name in graph.outputs:
        if name not in known:
            raise ExportError(f"graph output {name!r} is never produced")
        if graph.tensors[name].fmt is None:
            raise ExportError(f"graph output {name!r} is float; outputs must be fixed-point")


def conv_padding(node: Node, graph: IntegerGraph) -> dict[str, int]:
    """Explicit pad amounts for the file's shapes (format.md section 4, pad_*)."""
    h, w = graph.tensors[node.inputs[0]].shape[:2]
    a = node.attrs
    if node.op in ("conv2d", "depthwise_conv2d"):
        kh, kw = node.weights.shape[1:3]
        dil = tuple(a.get("dilation", (1, 1)))
    else:
        kh, kw = a["pool"]
        dil = (1, 1)
    _, top, bottom = conv_output_size(h, kh, a["stride"][0], dil[0], a["padding"])
    _, left, right = conv_output_size(w, kw, a["stride"][1], dil[1], a["padding"])
    return {"pad_top": top, "pad_bottom": bottom, "pad_left": left, "pad_right": right,
            "padding": PADDING_CODES[a["padding"]], "stride_h": a["stride"][0], "stride_w": a["stride"][1],
            "filter_h": kh, "filter_w": kw}


def _activation_code(node: Node) -> int:
    act = node.attrs.get("activation")
    act = None if act in (None, "linear", "none") else act
    if act not in ACTIVATION_CODES:
        raise ExportError(f"node {node.name!r}: fused activation {act!r} is not supported (relu, relu6, none)")
    return ACTIVATION_CODES[act]


def _clamp(node: Node, out: Format) -> dict[str, int]:
    act = node.attrs.get("activation")
    lo, hi = relu_bounds(out, None if act in ("linear", "none") else act)
    return {"act_min": lo, "act_max": hi}


# ----------------------------------------------------------------------------------------------
# target fxp


def _weighted(b: _Builder, graph: IntegerGraph, node: Node) -> tuple[list[int], dict[str, int]]:
    """Weight rows, frac and bias tensors plus the options they imply (format.md 2.2-2.4)."""
    x = graph.tensors[node.inputs[0]].fmt
    out = graph.tensors[node.output].fmt
    bits = node.weight_bits
    if node.weights is None or bits is None or not 2 <= bits <= 16:
        raise ExportError(f"node {node.name!r}: weight bits must be 2..16, got {bits}")
    rows = packing.weights_to_rows(node.op, node.weights)
    o, k = rows.shape
    try:
        stored = packing.pack_rows(rows, bits)
    except ValueError as exc:
        raise ExportError(f"node {node.name!r}: {exc}") from None
    fracs = np.broadcast_to(np.asarray(node.weight_frac, dtype=np.int64), (o,))
    if fracs.min() < -32 or fracs.max() > 32:
        raise ExportError(f"node {node.name!r}: weight fracs must be in -32..32")
    w_t = b.constant(f"{node.name}/weights", stored)
    f_t = b.constant(f"{node.name}/weight_frac", fracs.astype(np.int8))
    opts = {"weight_bits": bits, "in_bits": x.bits, "in_frac": x.frac, "out_frac": out.frac,
            "acc_bits": 64 if accumulator_needs_64(x.bits, x.signed, bits, k) else 32,
            "activation": _activation_code(node), **_clamp(node, out)}
    if node.bias is not None:
        bias = np.asarray(node.bias, dtype=np.int64)
        if node.bias_bits is None or not 2 <= node.bias_bits <= 32 or node.bias_frac is None:
            raise ExportError(f"node {node.name!r}: bias needs bias_bits in 2..32 and a bias_frac")
        shift = fracs + x.frac - node.bias_frac
        if shift.min() < 0 or shift.max() > 30:
            raise ExportError(f"node {node.name!r}: bias frac {node.bias_frac} must satisfy "
                              "0 <= frac_acc - frac_b <= 30")
        b_t = b.constant(f"{node.name}/bias", bias.astype(np.int32), scale_quant([node.bias_frac]))
        opts.update(bias_bits=node.bias_bits, bias_frac=node.bias_frac)
    else:
        b_t = -1
        opts.update(bias_bits=0, bias_frac=0)
    return [w_t, f_t, b_t], opts


def check_stock_seams(graph: IntegerGraph) -> set[str]:
    """The tensors stored with zero point -128, after checking the seams (graph.stock_seam_problem)."""
    problem = stock_seam_problem(graph)
    if problem:
        raise ExportError(problem)
    return offset_tensors(graph.nodes, graph.tensors)




def _write_fxp(b: _Builder, graph: IntegerGraph) -> None:
    t = graph.tensors
    offset = check_stock_seams(graph)

    def tensor(name: str) -> int:
        return stock_activation(b, t[name]) if name in offset else b.activation(t[name])

    for node in graph.nodes:
        out_spec = t[node.output]
        out = out_spec.fmt
        ins = [tensor(i) for i in node.inputs]
        dst = tensor(node.output)
        if node.op == "reshape":
            b.reshape(node.name, ins[0], dst, tuple(node.attrs["shape"]))
            continue
        if node.op in STOCK_OPS:
            stock_op(b, graph, node, ins, dst)
            continue
        custom = OP_TO_CUSTOM.get(node.op)
        if custom is None:
            raise ExportError(f"node {node.name!r}: op {node.op!r} has no fxp custom op")
        in_fmt = t[node.inputs[0]].fmt
        if node.op == "quantize":
            opts = {"out_frac": out.frac, "act_min": out.lo, "act_max": out.hi}
        elif node.op in ("conv2d", "depthwise_conv2d", "fully_connected"):
            extra, opts = _weighted(b, graph, node)
            ins += extra
            if node.op != "fully_connected":
                opts.update(conv_padding(node, graph))
                dil = tuple(node.attrs.get("dilation", (1, 1)))
                opts.update(dilation_h=dil[0], dilation_w=dil[1])
            if node.op == "depthwise_conv2d":
                opts["depth_multiplier"] = node.attrs["depth_multiplier"]
        elif node.op == "add":
            opts = {"in1_frac": in_fmt.frac, "in2_frac": t[node.inputs[1]].fmt.frac, "out_frac": out.frac,
                    "activation": _activation_code(node), **_clamp(node, out)}
        elif node.op in ("max_pool2d", "average_pool2d"):
            opts = {"in_frac": in_fmt.frac, "out_frac": out.frac, "activation": _activation_code(node),
                    **_clamp(node, out), **conv_padding(node, graph)}
        elif node.op == "global_average_pool2d":
            opts = {"in_frac": in_fmt.frac, "out_frac": out.frac, "act_min": out.lo, "act_max": out.hi}
        elif node.op == "requantize":
            opts = {"in_frac": in_fmt.frac, "out_frac": out.frac, "activation": _activation_code(node),
                    **_clamp(node, out)}
        elif node.op == "concat":
            opts = {"in1_frac": in_fmt.frac, "in2_frac": t[node.inputs[1]].fmt.frac, "out_frac": out.frac,
                    "act_min": out.lo, "act_max": out.hi}
        elif node.op == "leaky_relu":
            opts = {"in_frac": in_fmt.frac, "out_frac": out.frac, "act_min": out.lo, "act_max": out.hi,
                    "alpha_shift": int(node.attrs["alpha_shift"])}
        elif node.op == "pad":
            (top, bottom), (left, right) = node.attrs["pads"]
            opts = {"in_frac": in_fmt.frac, "out_frac": out.frac, "act_min": out.lo, "act_max": out.hi,
                    "pad_top": top, "pad_bottom": bottom, "pad_left": left, "pad_right": right}
        else:  # pragma: no cover - OP_TO_CUSTOM covers every other op
            raise AssertionError(node.op)
        b.operator(node.name, b.op_code(S.BuiltinOperator.CUSTOM, custom), ins, [dst],
                   custom_options=encode_options(custom, opts))


# ----------------------------------------------------------------------------------------------


def _policy_json(policy: Any, graph: IntegerGraph) -> str:
    policy = policy if policy is not None else (graph.metadata or {}).get("policy")
    if policy is None:
        return "null"
    if hasattr(policy, "to_json"):  # the formats only: the file's weights are already rescaled
        return policy.to_json(indent=None, channel_scales=False)
    if isinstance(policy, str):
        json.loads(policy)  # must be JSON
        return policy
    return json.dumps(policy, sort_keys=True)


def export_tflite(model_or_graph: Any, path: str | Path | None = None, *, target: str = "fxp",
                  float_input: bool = True, policy: Any = None) -> bytes:
    """Write a quantized model as a TFLite flatbuffer and return its bytes.

    model_or_graph: an IntegerGraph, or a fake-quant Keras model (lowered with
    `fxpq_keras.integer_graph.lower.lower_model`). target: "fxp" (custom FXP_* ops, bit-packed
    weights), "int8-builtin" (stock int8 ops; every format must fit 8 bits) or "builtin" (stock ops
    with int8/int16 activations and int8/packed int4 weights, QUANTIZE seams between types; what
    `--target builtin` searches for, docs/format.md section 7). float_input: the
    file takes float input (FXP_QUANTIZE / QUANTIZE first) or the input's integers. policy: a
    Policy (or its JSON) stored in the metadata; defaults to graph.metadata["policy"].
    Nothing is written when the graph cannot be expressed (ExportError names the layers).

    Example::

        export_tflite(result.model, "model.tflite")                        # FXP_* custom ops
        export_tflite(qmodel, "model_int8.tflite", target="int8-builtin")  # stock int8 ops
    """
    if target not in TARGETS:
        raise ValueError(f"target must be one of {TARGETS}, got {target!r}")
    if isinstance(model_or_graph, IntegerGraph):
        graph = model_or_graph
    else:
        from ..integer_graph.lower import lower_model  # lazy: needs TensorFlow

        graph = lower_model(model_or_graph)
    validate_graph(graph)
    graph = with_input_mode(graph, bool(float_input))
    b = _Builder()
    scaled = [n.name for n in graph.nodes if getattr(n, "weight_scale", None) is not None]
    if target == "fxp" and scaled:
        raise ExportError(f"layers {scaled[:4]} have float weight scales (a policy of target builtin): FXP_* ops take "
                          "power-of-two weights; export with target='builtin'")
    float_acts = [name for name, spec in graph.tensors.items()
                  if spec.fmt is not None and (spec.fmt.scale is not None or spec.fmt.zero_point)]
    if target == "fxp" and float_acts:
        raise ExportError(f"tensors {float_acts[:4]} have float activation scales or zero points (a policy of target "
                          "builtin): FXP_* ops take power-of-two scales and zero point 0; export with target='builtin'")
    if target == "fxp":
        b.activation(graph.tensors[graph.input])
        _write_fxp(b, graph)
    else:
        graph = to_builtin_graph(graph, target)
        write_builtin(b, graph)
    data = b.finish(graph, target, float_input=bool(float_input), policy_json=_policy_json(policy, graph))
    if path is not None:
        from .._files import write_atomic

        write_atomic(path, data)
    return data
