"""Device accounting of a .tflite file (any TFLite file: fxp, int8-builtin, or TFLiteConverter's).

The same records as :mod:`fxpq_keras.memory` builds from an IntegerGraph, read from the file:
activation tensors in file order with their lifetimes (RESHAPE aliases its input in the C
runner, not in TFLM), the C runner's kernel scratch of the FXP_* weighted ops, the bytes of
weights and biases as stored, and what TFLM charges per operator (fxpq_keras.tflm_arena: OpData,
parsed options, per-channel parameters, CMSIS-NN or fxpq kernel scratch). So an fxpq file and a
TFLite int8 file of the same model are measured by one rule: ``flash_bytes`` = the file's size,
``ram_bytes`` = TFLM's arena on Cortex-M, ``runner_planned_bytes`` = the C runner's plan.
"""

from __future__ import annotations

import math

import numpy as np

from .. import tflm_arena as T
from ..integer_graph.ops import conv_output_size
from ..memory import (
    DeviceLayout,
    DeviceMemory,
    DeviceModel,
    LayoutTensor,
    LayoutWeights,
    layout_calls,
    layout_root,
    scratch_bytes,
)
from .errors import FlatbufferFormatError
from .options import CUSTOM_OPS, decode_options
from .schema import schema as S

# TFLite tensor type -> bytes per element (the C runner's fx_type_size for the types it knows)
ELEM_BYTES = {S.TensorType.FLOAT32: 4, S.TensorType.INT32: 4, S.TensorType.INT64: 8, S.TensorType.FLOAT16: 2,
               S.TensorType.INT16: 2, S.TensorType.UINT16: 2}
_BUILTIN_NAMES = {v: k for k, v in vars(S.BuiltinOperator).items() if not k.startswith("_")}
# stock ops whose CMSIS-NN scratch is measured for int8 only (fxpq_keras.tflm_arena); int16x8 files get a note
_INT16_SCRATCH_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "AVERAGE_POOL_2D")
_STOCK_WEIGHTED = {S.BuiltinOperator.CONV_2D: "conv2d", S.BuiltinOperator.DEPTHWISE_CONV_2D: "depthwise_conv2d",
                   S.BuiltinOperator.FULLY_CONNECTED: "fully_connected"}

__all__ = ["device_model_from_graph", "device_model_from_tflite", "file_memory", "layout_from_tflite"]


def layout_from_tflite(data: bytes) -> DeviceLayout:
    """The device layout of a TFLite file (first subgraph)."""
    data = bytes(data)
    try:
        model = S.ModelT.InitFromObj(S.Model.GetRootAs(data, 0))
        sub = model.subgraphs[0]
    except Exception as exc:  # noqa: BLE001 - flatbuffers raises anything on garbage
        raise FlatbufferFormatError(f"not a TFLite flatbuffer: {exc}") from None
    tensors_fb = sub.tensors or []
    buffers = model.buffers or []

    def buffer_bytes(i: int) -> int:
        t = tensors_fb[i]
        if t.buffer is None or t.buffer <= 0 or t.buffer >= len(buffers):
            return 0
        b = buffers[t.buffer]
        if b.data is not None and len(b.data):
            return len(b.data)
        return int(getattr(b, "size", 0) or 0)

    def elements(i: int) -> int:
        n = 1
        for d in tensors_fb[i].shape if tensors_fb[i].shape is not None else []:
            n *= max(int(d), 1)
        return n

    n_ops = len(sub.operators or [])
    first: dict[int, int] = {int(sub.inputs[0]): -1}
    last: dict[int, int] = {int(sub.inputs[0]): -1}
    alias: dict[int, int] = {}
    scratch: list[int] = []
    weights: list[LayoutWeights] = []
    tflm_ops: list[T.TflmOp] = []
    macs: list[int] = []
    op_codes = model.operatorCodes or []
    for i, op in enumerate(sub.operators or []):
        code = op_codes[op.opcodeIndex]
        builtin = max(int(code.builtinCode), int(code.deprecatedBuiltinCode))
        custom = code.customCode.decode() if code.customCode else None
        ins = [int(x) for x in (op.inputs if op.inputs is not None else [])]
        for x in ins:
            if x >= 0 and buffer_bytes(x) == 0 and x in first:
                last[x] = i
        for out in (op.outputs if op.outputs is not None else []):
            first[int(out)] = last[int(out)] = i
        kind = CUSTOM_OPS[custom][0] if custom in CUSTOM_OPS else _STOCK_WEIGHTED.get(builtin)
        k = rows = 0
        out0 = int(op.outputs[0]) if op.outputs is not None and len(op.outputs) else -1
        if kind in ("conv2d", "depthwise_conv2d", "fully_connected"):
            bias_at = 3 if custom else 2
            w = tensors_fb[ins[1]]
            shape = [int(d) for d in w.shape]
            if custom:
                blob = bytes(op.customOptions) if op.customOptions is not None else b""
                opts = decode_options(custom, blob, f"op {i} ({custom})")
                bits = int(opts["weight_bits"])
                x_shape = [int(d) for d in tensors_fb[ins[0]].shape]
                k = opts["filter_h"] * opts["filter_w"] * (x_shape[-1] if kind == "conv2d" else 1) \
                    if kind != "fully_connected" else elements(ins[0]) // max(x_shape[0], 1)
                rows = shape[0]
            else:
                bits = 4 if w.type == S.TensorType.INT4 else 8 * ELEM_BYTES.get(w.type, 1)
                rows = shape[-1] if kind == "depthwise_conv2d" else shape[0]
                k = elements(ins[1]) // max(rows, 1)
            bias = ins[bias_at] if len(ins) > bias_at else -1
            bias_elems = elements(bias) if bias >= 0 else 0
            bias_elem = ELEM_BYTES.get(tensors_fb[bias].type, 1) if bias >= 0 else 4
            weights.append(LayoutWeights(_name(tensors_fb, op.outputs[0]), rows, k, bits, bias_elems, bias_elem,
                                         stored_bytes=buffer_bytes(ins[1])))
        macs.append(elements(out0) * k if out0 >= 0 else 0)  # K terms per output element
        taps = opts["filter_h"] * opts["filter_w"] if custom and kind == "conv2d" else 1
        scratch.append(scratch_bytes(kind, k, taps) if custom else 0)
        tflm_ops.append(_tflm_op(op, custom, builtin, tensors_fb, scratch[-1]))
        if builtin == S.BuiltinOperator.RESHAPE and ins and op.outputs is not None:
            alias[int(op.outputs[0])] = ins[0]
    for o in sub.outputs if sub.outputs is not None else []:
        last[int(o)] = n_ops
    # activation tensors in file order (constants and unused tensors are not planned)
    order = sorted(first)
    position = {t: j for j, t in enumerate(order)}
    quantize_outputs = {int(op.outputs[0]) for op in sub.operators or []
                        if (op_codes[op.opcodeIndex].customCode or b"") == b"FXP_QUANTIZE"}
    is_fxp = any((c.customCode or b"").startswith(b"FXP_") for c in op_codes)
    layout_tensors = []
    for t in order:
        elem = ELEM_BYTES.get(tensors_fb[t].type, 1)
        integer = tensors_fb[t].type != S.TensorType.FLOAT32
        source = None
        if is_fxp and integer:
            source = "input" if t in quantize_outputs or (t == int(sub.inputs[0])) else _name(tensors_fb, t)
        layout_tensors.append(LayoutTensor(_name(tensors_fb, t), elements(t), 8 * elem if integer else None,
                                           first[t], last[t], source=source, elem_bytes=elem))
    for t, src in alias.items():
        if t in position and src in position:
            layout_tensors[position[t]].alias = layout_root(layout_tensors, position[src])
    param = sum(w.weight_bytes() + w.bias_elements * w.bias_elem_bytes for w in weights)
    io = [int(t) for t in sub.inputs if t >= 0] + [int(t) for t in (sub.outputs if sub.outputs is not None else [])]
    tflm = T.TflmLayout(len(tensors_fb), tflm_ops, [_quant_channels(tensors_fb[t]) for t in io],
                        inputs=len([t for t in sub.inputs if t >= 0]), subgraphs=len(model.subgraphs))
    wide = {op.code for op, fb in zip(tflm_ops, sub.operators or []) if op.code in _INT16_SCRATCH_OPS
            and fb.inputs is not None and len(fb.inputs) and tensors_fb[int(fb.inputs[0])].type == S.TensorType.INT16}
    tflm.notes = sorted({f"{op.code}: default charges (not modelled)" for op in tflm_ops
                         if not op.charges["cmsis-nn"].known}
                        | {f"{code} with int16 activations: CMSIS-NN's int16 scratch is modelled as its int8 "
                           "scratch (ram_bytes is an estimate)" for code in wide})
    return DeviceLayout(layout_tensors, scratch, weights, len(data) - param, tflm, macs)


def _quant_channels(t) -> int | None:
    """Entries TFLM copies from a tensor's quantization (None: it has no scale + zero point)."""
    q = t.quantization
    if q is None or q.scale is None or q.zeroPoint is None or not len(q.scale) or not len(q.zeroPoint):
        return None
    return len(q.scale)


def tflm_padding(size: int, kernel: int, stride: int, dilation: int, padding: str) -> int:
    """The padding TFLM passes CMSIS-NN on one axis: the 'before' amount of the one padding rule
    (conv_output_size: half the total, rounded down); 0 where a 'valid' window does not fit."""
    try:
        return conv_output_size(size, kernel, stride, dilation, padding)[1]
    except ValueError:
        return 0


def _tflm_op(op, custom: str | None, builtin: int, tensors_fb, fxp_scratch: int) -> T.TflmOp:
    """What TFLM charges for one operator under each kernel set (fxpq_keras.tflm_arena)."""
    if custom is not None:
        if custom in CUSTOM_OPS:
            charge = T.fxp_op_charge(custom, fxp_scratch)
        else:
            charge = T.TflmCharge(None, T.UNKNOWN_OP_DATA, known=False)
        return T.TflmOp(custom, {k: charge for k in T.KERNEL_SETS})
    code = _BUILTIN_NAMES.get(builtin, str(builtin))
    ins = [int(x) for x in (op.inputs if op.inputs is not None else [])]
    outs = [int(x) for x in (op.outputs if op.outputs is not None else [])]

    def shape(i: int) -> list[int]:
        return [int(d) for d in tensors_fb[i].shape] if i >= 0 and tensors_fb[i].shape is not None else []

    x = shape(ins[0]) if ins else []
    y = shape(outs[0]) if outs else []
    int8 = bool(ins) and tensors_fb[ins[0]].type in (S.TensorType.INT8, S.TensorType.INT16)
    kw: dict = {"int8": int8}
    opts = op.builtinOptions
    if code in ("CONV_2D", "DEPTHWISE_CONV_2D") and len(ins) > 1 and len(x) == 4:
        w = shape(ins[1])
        padding = "same" if opts is not None and opts.padding == S.Padding.SAME else "valid"
        stride = (opts.strideH, opts.strideW) if opts is not None else (1, 1)
        dil = (opts.dilationHFactor, opts.dilationWFactor) if opts is not None else (1, 1)
        kh, kw_ = w[1], w[2]
        pad = (tflm_padding(x[1], kh, stride[0], dil[0], padding), tflm_padding(x[2], kw_, stride[1], dil[1], padding))
        if code == "CONV_2D":
            kw["channels"] = w[0]
            kw["scratch_cmsis"] = T.cmsis_conv_s8_scratch(kh, kw_, x[3], pad, stride, dil) if int8 else 0
        else:
            kw["channels"] = w[3]
            kw["scratch_cmsis"] = T.cmsis_depthwise_s8_scratch(kh, kw_, x[3], w[3], pad, dil) if int8 else 0
    elif code == "FULLY_CONNECTED" and len(ins) > 1:
        w = shape(ins[1])
        q = tensors_fb[ins[1]].quantization
        per_channel = q is not None and q.scale is not None and len(q.scale) > 1
        kw["per_channel"] = per_channel
        kw["channels"] = len(q.scale) if per_channel else 0
        kw["scratch_cmsis"] = T.cmsis_fully_connected_s8_scratch(len(y), w[-1], y[-1], per_channel) if int8 else 0
    if code in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED") and len(ins) > 1 \
            and tensors_fb[ins[1]].type == S.TensorType.INT4:
        kw["scratch_reference"] = math.prod(shape(ins[1]))  # the reference kernels unpack int4 weights
    if code == "AVERAGE_POOL_2D" and int8 and len(y) == 4:
        kw["scratch_cmsis"] = T.cmsis_avgpool_s8_scratch(y[3])
    elif code == "MEAN" and len(ins) > 1:
        out_elems = 1
        for d in y:
            out_elems *= d
        axes = 1
        for d in shape(ins[1]):
            axes *= d
        kw["scratch_common"] = ((4 * out_elems,) if int8 else ()) + (4 * len(x), 4 * axes)
    elif code == "RESHAPE" and -1 in y:
        kw["writable_dims"] = len(y)
    return T.TflmOp(code, {k: T.stock_op_charge(code, k, **kw) for k in T.KERNEL_SETS})


def _name(tensors_fb, i: int) -> str:
    name = tensors_fb[int(i)].name
    return name.decode() if isinstance(name, bytes) else str(name)


def device_model_from_tflite(data: bytes) -> DeviceModel:
    """A DeviceModel whose other_flash_bytes is the file's exact non-parameter bytes (and, for an
    fxp file, its kernel calls: DeviceModel.instructions)."""
    layout = layout_from_tflite(data)
    if any(t.source is not None for t in layout.tensors):  # an fxp file: its graph names the formats
        from .reader import read_bytes  # lazy: stock files need no graph

        layout.calls = layout_calls(read_bytes(bytes(data))[0])
    return DeviceModel(layout)


def device_model_from_graph(graph, *, float_input: bool = True, other_flash_bytes: int | None = None) -> DeviceModel:
    """The DeviceModel of ``export_tflite(graph, target="fxp", float_input=...)``: the graph is
    exported once and its file read, so tensor order, lifetimes, scratch and what TFLM charges
    are those of the file a user flashes.

    other_flash_bytes: the file's bytes besides weights and biases, if known; None (default)
    leaves them out (they hold the policy's metadata, which varies with the policy, so the
    search compares parameters + RAM).
    """
    from .writer import export_tflite  # lazy: the writer is only needed here

    layout = layout_from_tflite(export_tflite(_power_of_two_twin(graph), float_input=float_input))
    layout.other_flash_bytes = other_flash_bytes
    layout.calls = layout_calls(graph)
    return DeviceModel(layout)


def _power_of_two_twin(graph):
    """`graph` with power-of-two weight scales where it has float ones (target builtin), zero biases
    there, and power-of-two activation scales (the canonical frac's) for float ones, zero points 0:
    the same widths and element counts, which is all the accounting reads, in a graph the fxp
    writer takes (it refuses float scales and zero points)."""
    from dataclasses import replace

    from ..formats import Format

    tensors = {name: replace(spec, fmt=Format(spec.fmt.bits, spec.fmt.frac, spec.fmt.signed))
               if spec.fmt is not None and (spec.fmt.scale is not None or spec.fmt.zero_point) else spec
               for name, spec in graph.tensors.items()}
    if not any(getattr(n, "weight_scale", None) is not None for n in graph.nodes):
        return replace(graph, tensors=tensors)
    nodes = []
    for n in graph.nodes:
        if getattr(n, "weight_scale", None) is not None:
            facc = graph.tensors[n.inputs[0]].fmt.frac + int(np.min(n.weight_frac))
            n = replace(n, weight_scale=None, bias=None if n.bias is None else np.zeros_like(n.bias),
                        bias_frac=None if n.bias is None else facc)
        nodes.append(n)
    return replace(graph, nodes=nodes, tensors=tensors)


def file_memory(data: bytes) -> DeviceMemory:
    """Device accounting of a file as it is: flash_bytes == len(data), ram_bytes = TFLM's arena
    on Cortex-M (CMSIS-NN for stock ops), runner_planned_bytes = the C runner's planned peak."""
    return device_model_from_tflite(data).cost()
