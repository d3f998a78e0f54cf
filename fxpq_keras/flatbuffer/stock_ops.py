"""The stock builtin ops (MUL, HARD_SWISH, ...) that both fxp files (docs/format.md 8) and builtin
files (7) hold, read and written in one place: the writer and both readers take them from here."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..integer_graph import IntegerGraph, Node, TensorSpec
from ..integer_graph.graph import STOCK_FIXED_FORMATS
from .builder import _Builder
from .errors import FlatbufferFormatError
from .schema import schema as S

#: stock builtin ops an fxp file may hold (format.md 8) -> integer graph op
STOCK_BUILTINS = {"MUL": "mul", "SUB": "sub", "MAXIMUM": "maximum", "MINIMUM": "minimum", "LOGISTIC": "logistic",
                  "TANH": "tanh", "HARD_SWISH": "hard_swish", "ELU": "elu",
                  "RESIZE_NEAREST_NEIGHBOR": "upsample_nearest", "TRANSPOSE": "transpose", "QUANTIZE": "stock_quantize"}
_STOCK_ARITY = {"mul": 2, "sub": 2, "maximum": 2, "minimum": 2, "upsample_nearest": 2, "transpose": 2}
# the BuiltinOptions type each stock op may carry (none: 0 only)
_STOCK_OPTIONS = {"mul": S.BuiltinOptions.MulOptions, "sub": S.BuiltinOptions.SubOptions,
                  "maximum": S.BuiltinOptions.MaximumMinimumOptions, "minimum": S.BuiltinOptions.MaximumMinimumOptions,
                  "upsample_nearest": S.BuiltinOptions.ResizeNearestNeighborOptions,
                  "transpose": S.BuiltinOptions.TransposeOptions}


def _broadcast_shape(a: tuple[int, ...], b: tuple[int, ...], where: str) -> tuple[int, ...]:
    try:
        return tuple(np.broadcast_shapes(a, b))
    except ValueError:
        raise FlatbufferFormatError(f"{where}: input shapes {a} and {b} do not broadcast") from None


def stock_node(f: Any, op, graph_op: str, name: str, where: str, spec, inputs: list[int],
                out_spec: TensorSpec) -> Node:
    """A stock builtin op of a hybrid fxp file (or a builtin one), checked as TFLM's Prepare would check it."""
    want = _STOCK_OPTIONS.get(graph_op, 0)
    if op.builtinOptionsType not in (0, want):
        raise FlatbufferFormatError(f"{where}: builtin options of type {op.builtinOptionsType}, expected "
                                    f"{want} or none")
    op.builtinOptions  # noqa: B018 - read (bounds-checked) like the C runner, whatever the op uses of it
    n_in = _STOCK_ARITY.get(graph_op, 1)
    if len(inputs) != n_in:
        raise FlatbufferFormatError(f"{where}: expected {n_in} inputs, got {len(inputs)}")
    n_act = 2 if graph_op in ("mul", "sub", "maximum", "minimum") else 1
    acts = [spec(i, where + " input") for i in inputs[:n_act]]
    out = out_spec.fmt
    if out is None or any(a.fmt is None for a in acts):
        raise FlatbufferFormatError(f"{where}: inputs and output must be integer tensors")
    if any(a.fmt.bits > 8 for a in acts) or out.bits > 8:
        raise FlatbufferFormatError(f"{where}: stock ops in fxp files read and write 8-bit tensors only")
    if graph_op in ("maximum", "minimum"):
        shape = _broadcast_shape(acts[0].shape, acts[1].shape, where)
        if shape != out_spec.shape:
            raise FlatbufferFormatError(f"{where}: output shape {out_spec.shape} != broadcast shape {shape}")
        return Node(graph_op, name, [a.name for a in acts], out_spec.name)
    if graph_op in ("mul", "sub"):
        if getattr(op.builtinOptions, "fusedActivationFunction", 0) != 0:
            raise FlatbufferFormatError(f"{where}: fused activations on stock {graph_op} are not supported")
        shape = _broadcast_shape(acts[0].shape, acts[1].shape, where)
        if shape != out_spec.shape:
            raise FlatbufferFormatError(f"{where}: output shape {out_spec.shape} != broadcast shape {shape}")
        return Node(graph_op, name, [a.name for a in acts], out_spec.name)
    src = acts[0]
    if graph_op == "upsample_nearest":
        size = f.constant(inputs[1], where + " size")
        if size.dtype != np.int32 or size.shape != (2,) or len(src.shape) != 3:
            raise FlatbufferFormatError(f"{where}: needs a [1, H, W, C] input and an int32[2] size")
        (h, w, c), (oh, ow) = src.shape, (int(size[0]), int(size[1]))
        if oh % h or ow % w or out_spec.shape != (oh, ow, c) or src.fmt != out:
            raise FlatbufferFormatError(f"{where}: output {out_spec.shape} is not the input {src.shape} upsampled by "
                                        "integer factors in the same format")
        flags = op.builtinOptions
        if getattr(flags, "alignCorners", 0) or getattr(flags, "halfPixelCenters", 0):
            raise FlatbufferFormatError(f"{where}: align_corners and half_pixel_centers must be false (integer "
                                        "upsampling, as the writer writes it)")
        return Node(graph_op, name, [src.name], out_spec.name, {"size": (oh // h, ow // w)})
    if graph_op == "transpose":
        perm = f.constant(inputs[1], where + " perm")
        rank = len(src.shape) + 1
        if perm.dtype != np.int32 or perm.shape != (rank,) or sorted(perm.tolist()) != list(range(rank)) \
                or int(perm[0]) != 0:
            raise FlatbufferFormatError(f"{where}: perm must be an int32 permutation of {rank} axes keeping the batch")
        want = tuple(((1,) + src.shape)[p] for p in perm.tolist())[1:]
        if out_spec.shape != want or src.fmt != out:
            raise FlatbufferFormatError(f"{where}: output {out_spec.shape} is not the input {src.shape} permuted "
                                        f"by {perm.tolist()} in the same format")
        return Node(graph_op, name, [src.name], out_spec.name, {"perm": tuple(int(p) for p in perm)})
    if src.shape != out_spec.shape:
        raise FlatbufferFormatError(f"{where}: input shape {src.shape} != output shape {out_spec.shape}")
    fixed = STOCK_FIXED_FORMATS.get(graph_op)
    if fixed is not None and out != fixed:
        raise FlatbufferFormatError(f"{where}: TFLM's int8 {graph_op} writes {fixed}, the file says {out}")
    return Node(graph_op, name, [src.name], out_spec.name)


def stock_op(b: _Builder, graph: IntegerGraph, node: Node, ins: list[int], dst: int) -> None:
    """One stock builtin op of a hybrid fxp file (format.md 8) or a builtin one (7)."""
    code = _STOCK_CODES[node.op]
    if node.op in ("mul", "sub"):
        opts = S.MulOptionsT() if node.op == "mul" else S.SubOptionsT()
        opts.fusedActivationFunction = S.ActivationFunctionType.NONE
        otype = S.BuiltinOptions.MulOptions if node.op == "mul" else S.BuiltinOptions.SubOptions
        b.operator(node.name, b.op_code(code), ins, [dst], builtin_type=otype, builtin_options=opts)
    elif node.op == "upsample_nearest":
        h, w = graph.tensors[node.output].shape[:2]
        size = b.constant(f"{node.name}/size", np.array([h, w], dtype=np.int32))
        opts = S.ResizeNearestNeighborOptionsT()
        opts.alignCorners, opts.halfPixelCenters = False, False
        b.operator(node.name, b.op_code(code), ins + [size], [dst],
                   builtin_type=S.BuiltinOptions.ResizeNearestNeighborOptions, builtin_options=opts)
    elif node.op == "transpose":
        perm = b.constant(f"{node.name}/perm", np.array(node.attrs["perm"], dtype=np.int32))
        b.operator(node.name, b.op_code(code), ins + [perm], [dst],
                   builtin_type=S.BuiltinOptions.TransposeOptions, builtin_options=S.TransposeOptionsT())
    elif node.op in ("maximum", "minimum"):
        b.operator(node.name, b.op_code(code), ins, [dst], builtin_type=S.BuiltinOptions.MaximumMinimumOptions,
                   builtin_options=S.MaximumMinimumOptionsT())
    else:  # logistic, tanh, hard_swish, elu, stock_quantize: no options
        b.operator(node.name, b.op_code(code), ins, [dst])


_STOCK_CODES = {"mul": S.BuiltinOperator.MUL, "sub": S.BuiltinOperator.SUB, "logistic": S.BuiltinOperator.LOGISTIC,
                "tanh": S.BuiltinOperator.TANH, "hard_swish": S.BuiltinOperator.HARD_SWISH,
                "elu": S.BuiltinOperator.ELU, "maximum": S.BuiltinOperator.MAXIMUM,
                "minimum": S.BuiltinOperator.MINIMUM,
                "upsample_nearest": S.BuiltinOperator.RESIZE_NEAREST_NEIGHBOR,
                "transpose": S.BuiltinOperator.TRANSPOSE, "stock_quantize": S.BuiltinOperator.QUANTIZE}


__all__ = ["STOCK_BUILTINS", "stock_node", "stock_op"]
