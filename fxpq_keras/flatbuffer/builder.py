"""Assembling a TFLite flatbuffer: tensors, 16-byte aligned buffers, op codes, operators and the
compact fxpq metadata (docs/format.md sections 1, 2 and 5).

Both targets write through this builder: writer.py (target `fxp`, and `export_tflite`) and
builtin.py (target `int8-builtin`). It imports neither, so the two never import each other.
"""

from __future__ import annotations

import json
import zlib
from typing import Any

import numpy as np

from ..formats import Format
from ..integer_graph import IntegerGraph, TensorSpec
from .options import FORMAT_VERSION, METADATA_NAME
from .schema import schema as S

BUFFER_ALIGNMENT = 16


def package_version() -> str:
    try:
        from importlib.metadata import version

        return version("fxpq")
    except Exception:  # noqa: BLE001 - not installed as a distribution (e.g. run from a checkout)
        return "0.0.0+unknown"


class _AlignedBufferT(S.BufferT):
    """BufferT whose data vector starts 16-byte aligned (int16/int32 read in place on Cortex-M)."""

    def Pack(self, builder):  # noqa: N802 - flatbuffers' object API name
        data = None
        if self.data is not None:
            payload = bytes(self.data)
            builder.StartVector(1, len(payload), BUFFER_ALIGNMENT)
            builder.head -= len(payload)
            builder.Bytes[builder.head : builder.head + len(payload)] = payload
            data = builder.EndVector()
        S.BufferStart(builder)
        if data is not None:
            S.BufferAddData(builder, data)
        return S.BufferEnd(builder)


_TENSOR_TYPES = {
    np.dtype(np.int8): S.TensorType.INT8,
    np.dtype(np.uint8): S.TensorType.UINT8,
    np.dtype(np.int16): S.TensorType.INT16,
    np.dtype(np.uint16): S.TensorType.UINT16,
    np.dtype(np.int32): S.TensorType.INT32,
    np.dtype(np.int64): S.TensorType.INT64,
    np.dtype(np.float32): S.TensorType.FLOAT32,
}


class _Builder:
    """Accumulates tensors, buffers, op codes and operators of the single subgraph."""

    def __init__(self) -> None:
        self.buffers: list[S.BufferT] = [_AlignedBufferT()]
        self.tensors: list[S.TensorT] = []
        self.tensor_index: dict[str, int] = {}
        self.op_codes: list[S.OperatorCodeT] = []
        self.op_code_index: dict[tuple[int, str | None], int] = {}
        self.operators: list[S.OperatorT] = []
        self.op_names: list[str] = []

    def buffer(self, data: bytes) -> int:
        buf = _AlignedBufferT()
        buf.data = data
        self.buffers.append(buf)
        return len(self.buffers) - 1

    def _tensor(self, name: str | None, shape, dtype: np.dtype, quant: S.QuantizationParametersT | None,
                buffer: int = 0) -> int:
        t = S.TensorT()
        t.name = name.encode() if name else None  # constants carry no name (format.md 2: file overhead)
        t.shape = [int(d) for d in shape]
        t.type = _TENSOR_TYPES[np.dtype(dtype)]
        t.buffer = buffer
        t.quantization = quant
        self.tensors.append(t)
        return len(self.tensors) - 1

    def activation(self, spec: TensorSpec) -> int:
        """An activation tensor: batch 1 in the file (format.md 2.1)."""
        if spec.name in self.tensor_index:
            return self.tensor_index[spec.name]
        shape = (1,) + tuple(spec.shape)
        if spec.fmt is None:
            idx = self._tensor(spec.name, shape, np.float32, None)
        else:
            idx = self._tensor(spec.name, shape, spec.fmt.storage_dtype, activation_quant(spec.fmt))
        self.tensor_index[spec.name] = idx
        return idx

    def constant(self, name: str, array: np.ndarray, quant: S.QuantizationParametersT | None = None) -> int:
        """A constant tensor with its own buffer; `name` only documents the call (not written)."""
        array = np.ascontiguousarray(array)
        le = array.astype(array.dtype.newbyteorder("<"), copy=False)
        return self._tensor(None, array.shape, array.dtype, quant, buffer=self.buffer(le.tobytes()))

    def constant_int4(self, name: str, values: np.ndarray, quant: S.QuantizationParametersT | None = None) -> int:
        """A constant kTfLiteInt4 tensor: the logical shape, two values per byte (tflm_ops.pack_int4)."""
        from ..integer_graph.tflm_ops import pack_int4

        idx = self._tensor(None, np.shape(values), np.int8, quant, buffer=self.buffer(pack_int4(values)))
        self.tensors[idx].type = S.TensorType.INT4
        return idx

    def op_code(self, builtin: int, custom: str | None = None) -> int:
        key = (builtin, custom)
        if key not in self.op_code_index:
            code = S.OperatorCodeT()
            code.builtinCode = builtin
            code.deprecatedBuiltinCode = min(builtin, 127)
            code.customCode = custom.encode() if custom else None
            code.version = 1
            self.op_codes.append(code)
            self.op_code_index[key] = len(self.op_codes) - 1
        return self.op_code_index[key]

    def operator(self, name: str, code: int, inputs: list[int], outputs: list[int], *,
                 custom_options: bytes | None = None, builtin_type: int = 0, builtin_options: Any = None) -> None:
        op = S.OperatorT()
        op.opcodeIndex = code
        op.inputs = list(inputs)
        op.outputs = list(outputs)
        if custom_options is not None:
            op.customOptions = list(custom_options)
            op.customOptionsFormat = S.CustomOptionsFormat.FLEXBUFFERS
        if builtin_options is not None:
            op.builtinOptionsType = builtin_type
            op.builtinOptions = builtin_options
        self.operators.append(op)
        self.op_names.append(name)

    def reshape(self, name: str, src: int, dst: int, shape: tuple[int, ...]) -> None:
        shape_t = self.constant(f"{name}/shape", np.array((-1,) + tuple(shape), dtype=np.int32))
        opts = S.ReshapeOptionsT()
        opts.newShape = [1] + [int(d) for d in shape]
        self.operator(name, self.op_code(S.BuiltinOperator.RESHAPE), [src, shape_t], [dst],
                      builtin_type=S.BuiltinOptions.ReshapeOptions, builtin_options=opts)

    def finish(self, graph: IntegerGraph, target: str, *, float_input: bool, policy_json: str) -> bytes:
        sub = S.SubGraphT()
        sub.tensors = self.tensors
        sub.inputs = [self.tensor_index[graph.input]]
        sub.outputs = [self.tensor_index[o] for o in graph.outputs]
        sub.operators = self.operators
        sub.name = b"main"
        model = S.ModelT()
        model.version = 3
        model.operatorCodes = self.op_codes
        model.subgraphs = [sub]
        version = package_version()
        model.description = f"fxpq {version} target={target}".encode()
        # op names equal to the op's output tensor name are implied (null): most of them are
        out_names = [self.tensors[op.outputs[0]].name for op in self.operators]
        op_names = [None if out is not None and out.decode() == name else name
                    for name, out in zip(self.op_names, out_names)]
        blob = json.dumps({
            "format_version": FORMAT_VERSION,
            "version": version,
            "target": target,
            "float_input": float_input,
            "output_softmax": bool(graph.output_softmax),
            "op_names": op_names,
            "graph_metadata": _jsonable(graph.metadata),
            "policy": json.loads(policy_json),
        }, sort_keys=True, separators=(",", ":"))
        meta = S.MetadataT()
        meta.name = METADATA_NAME.encode()
        meta.buffer = self.buffer(zlib.compress(blob.encode(), 9))
        model.metadata = [meta]
        model.buffers = self.buffers
        fb = __import__("flatbuffers").Builder(1024)
        fb.Finish(model.Pack(fb), file_identifier=b"TFL3")
        return bytes(fb.Output())


def activation_quant(fmt: Format) -> S.QuantizationParametersT:
    q = S.QuantizationParametersT()
    step = float(fmt.step)  # 2^-frac, or target builtin's float activation scale
    q.scale = [step]
    q.zeroPoint = [fmt.zero_point]  # 0 but for target builtin's asymmetric int8 (q + zero point is stored)
    q.min = [float(fmt.lo * step)]
    q.max = [float(fmt.hi * step)]
    return q


def scale_quant(fracs, quantized_dimension: int = 0) -> S.QuantizationParametersT:
    q = S.QuantizationParametersT()
    fracs = np.atleast_1d(np.asarray(fracs, dtype=np.int64))
    q.scale = [float(np.ldexp(1.0, -int(f))) for f in fracs]
    q.zeroPoint = [0] * len(fracs)
    q.quantizedDimension = quantized_dimension
    return q


def float_scale_quant(scales, quantized_dimension: int = 0) -> S.QuantizationParametersT:
    """Symmetric quantization with float32 scales (target builtin's weights and their biases)."""
    q = S.QuantizationParametersT()
    scales = np.atleast_1d(np.asarray(scales, dtype=np.float32))
    q.scale = [float(s) for s in scales]
    q.zeroPoint = [0] * len(scales)
    q.quantizedDimension = quantized_dimension
    return q


def _jsonable(meta: dict) -> dict:
    out = {}
    for k, v in (meta or {}).items():
        if k == "policy":
            continue
        try:
            json.dumps(v)
        except TypeError:
            continue
        out[str(k)] = v
    return out
