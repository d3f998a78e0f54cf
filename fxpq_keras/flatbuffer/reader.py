"""TFLite flatbuffer -> IntegerGraph: the inverse of writer.py, strict about everything it reads.

A file that is malformed, truncated, foreign or inconsistent with docs/format.md raises
FlatbufferFormatError with a message naming the problem; nothing downstream sees half a graph.
"""

from __future__ import annotations

import json
import math
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..formats import MAX_FRAC, Format, FormatError, canonical_frac, relu_bounds
from ..integer_graph import IntegerGraph, Node, TensorSpec
from ..integer_graph.graph import stock_seam_problem
from ..integer_graph.ops import conv_output_size
from . import packing
from .errors import FlatbufferFormatError
from .options import ACTIVATION_NAMES, CUSTOM_OPS, METADATA_NAME, PADDING_NAMES, READABLE_VERSIONS, decode_options
from .schema import schema as S
from .stock_ops import STOCK_BUILTINS, stock_node
from .tables import read_model

_NP_TYPES = {
    S.TensorType.INT8: np.int8, S.TensorType.UINT8: np.uint8, S.TensorType.INT16: np.int16,
    S.TensorType.UINT16: np.uint16, S.TensorType.INT32: np.int32, S.TensorType.FLOAT32: np.float32,
    S.TensorType.INT64: np.int64,
}
_BUILTIN_NAMES = {v: k for k, v in vars(S.BuiltinOperator).items() if not k.startswith("_")}


@dataclass
class FileInfo:
    """What a file says about itself besides the graph."""

    target: str
    float_input: bool
    version: str
    policy: Any
    file_bytes: int
    op_names: list[str]
    op_types: list[str]  # FXP_* custom code or builtin name, per operator
    weight_bytes: dict[str, int] = field(default_factory=dict)  # node name -> bytes of its weight buffer
    # activation tensor name -> stored zero point, only where it is not 0 (int8-builtin's SOFTMAX output):
    # the tensor's format integer is `stored - zero_point` (engines reading raw tensors subtract it)
    zero_points: dict[str, int] = field(default_factory=dict)


# The C runner's limits (fxpq_runner.c fx_read_tensor): a dimension is 1..2^30-1; the Python
# reader refuses exactly what the runner refuses.
MAX_DIMENSION = 2**30 - 1
MAX_OUTPUTS = 8  # FXPQ_RUNNER_MAX_OUTPUTS


@dataclass(frozen=True)
class ReaderLimits:
    """What a reader accepts from a file, so a small file cannot demand unbounded memory or time
    (docs/format.md section 11). The C runner applies the same numbers (fxpq_runner_limits).

    elements: elements of any one tensor; window: elements of any one windowed op's patches
    (output positions x window taps x input channels) and of its padded input plane; work: MACs of
    the weighted ops in one inference; taps: window taps of the pools plus the elements every
    other op writes (but RESHAPE), in one inference (far slower per unit than a MAC in numpy);
    metadata: bytes of the decompressed fxpq metadata. Raise them with the environment variables
    FXPQ_MAX_ELEMENTS, FXPQ_MAX_WINDOW, FXPQ_MAX_WORK, FXPQ_MAX_TAPS, FXPQ_MAX_METADATA for files
    you trust.
    """

    elements: int = 2**24
    window: int = 2**24
    work: int = 2**32
    taps: int = 2**26
    metadata: int = 2**24

    ENV = {"elements": "FXPQ_MAX_ELEMENTS", "window": "FXPQ_MAX_WINDOW", "work": "FXPQ_MAX_WORK",
           "taps": "FXPQ_MAX_TAPS", "metadata": "FXPQ_MAX_METADATA"}

    @classmethod
    def from_env(cls) -> ReaderLimits:
        """The defaults, each replaced by its environment variable when set (a positive integer)."""
        import os

        values = {}
        for key, var in cls.ENV.items():
            raw = os.environ.get(var, "").strip()
            if raw:
                try:
                    values[key] = int(raw, 0)
                except ValueError:
                    values[key] = 0
                if not 1 <= values[key] < 2**62:
                    raise ValueError(f"environment variable {var}={raw!r} must be a positive integer below 2^62")
        return cls(**values)


def checked_shape(t: S.TensorT, what: str, limits: ReaderLimits | None = None) -> tuple[int, ...]:
    """The tensor's shape when every dimension and the element count are inside the limits."""
    max_elements = (limits or ReaderLimits.from_env()).elements
    shape = tuple(int(d) for d in (t.shape if t.shape is not None else []))
    if len(shape) > 6:
        raise FlatbufferFormatError(f"{what}: rank {len(shape)} above 6")
    bad = [d for d in shape if not 1 <= d <= MAX_DIMENSION]
    if bad:
        raise FlatbufferFormatError(f"{what}: tensor dimension {bad[0]} outside 1..{MAX_DIMENSION} (shape {shape})")
    if math.prod(shape) > max_elements:
        raise FlatbufferFormatError(f"{what}: tensor of shape {shape} has {math.prod(shape)} elements, more than "
                                    f"{max_elements} (raise FXPQ_MAX_ELEMENTS if you trust the file)")
    return shape


class _File:
    """Checked accessors over one parsed model."""

    def __init__(self, data: bytes, limits: ReaderLimits | None = None) -> None:
        self.limits = limits or ReaderLimits.from_env()
        if len(data) < 8:
            raise FlatbufferFormatError(f"file is {len(data)} bytes: too short to be a TFLite flatbuffer")
        if data[4:8] != b"TFL3":
            raise FlatbufferFormatError(f"not a TFLite flatbuffer: file identifier is {bytes(data[4:8])!r}, "
                                        "expected b'TFL3'")
        self.model = read_model(data)  # checked field by field as read, with the C runner's rules
        if self.model.version != 3:
            raise FlatbufferFormatError(f"TFLite schema version {self.model.version}, expected 3")
        if self.model.subgraphs is None or len(self.model.subgraphs) != 1:
            n = len(self.model.subgraphs or [])
            raise FlatbufferFormatError(f"expected exactly one subgraph, found {n}")
        self.sub = self.model.subgraphs[0]
        self.buffers = self.model.buffers or []
        for buf in self.buffers:  # every buffer inside the bytes given (the runner checks them all)
            buf.data  # noqa: B018 - read to check it
        self.metadata: dict[str, bytes] = {}
        for meta in self.model.metadata or []:
            name = (meta.name or b"").decode(errors="replace")
            self.metadata[name] = bytes(self.buffer_bytes(meta.buffer, f"metadata {name!r}", check_offset=False))
        self.tensors = self.sub.tensors or []

    def buffer_bytes(self, index: int, what: str, check_offset: bool = True) -> bytes:
        if index == 0:  # TFLite's empty sentinel: never read (the C runner's rule)
            return b""
        if not 0 <= index < len(self.buffers):
            raise FlatbufferFormatError(f"{what} refers to buffer {index}, but the file has {len(self.buffers)}")
        buf = self.buffers[index]
        if check_offset and buf.offset > 1:  # the C runner's rule: 0 and 1 mean the data is inside the flatbuffer
            raise FlatbufferFormatError(f"{what}: buffers stored outside the flatbuffer (offset/size) "
                                        "are not supported")
        data = buf.data
        if data is None:
            return b""
        return np.asarray(data, dtype=np.uint8).tobytes()

    def check_shape_input(self, index: int, rank: int, where: str) -> None:
        """RESHAPE's optional shape input: a constant INT32 [rank] (both readers check it)."""
        t = self.tensor(index, where + " shape input")
        shape = self.constant(index, where + " shape input")
        if t.type != S.TensorType.INT32 or shape.shape != (rank,):
            raise FlatbufferFormatError(f"{where}: the shape input must be a constant int32[{rank}], got "
                                        f"{shape.dtype.name}{list(shape.shape)}")

    def tensor(self, index: int, what: str) -> S.TensorT:
        if not 0 <= index < len(self.tensors):
            raise FlatbufferFormatError(f"{what} refers to tensor {index}, but the subgraph has {len(self.tensors)}")
        return self.tensors[index]

    def tensor_name(self, index: int) -> str:
        return (self.tensors[index].name or b"").decode(errors="replace") or f"tensor_{index}"

    def int4_constant(self, index: int, what: str) -> np.ndarray:
        """A kTfLiteInt4 constant: its logical shape, (n + 1) // 2 packed bytes (tflm_ops.unpack_int4)."""
        from ..integer_graph.tflm_ops import unpack_int4

        t = self.tensor(index, what)
        shape = checked_shape(t, what, self.limits)
        try:
            return unpack_int4(self.buffer_bytes(t.buffer, what), math.prod(shape)).reshape(shape)
        except ValueError as exc:
            raise FlatbufferFormatError(f"{what}: {exc}") from None

    def constant(self, index: int, what: str) -> np.ndarray:
        t = self.tensor(index, what)
        if t.type not in _NP_TYPES:
            raise FlatbufferFormatError(f"{what}: tensor type {t.type} is not supported")
        dtype = np.dtype(_NP_TYPES[t.type]).newbyteorder("<")
        shape = checked_shape(t, what, self.limits)
        raw = self.buffer_bytes(t.buffer, what)
        need = math.prod(shape) * dtype.itemsize
        if len(raw) != need:
            raise FlatbufferFormatError(f"{what}: buffer holds {len(raw)} bytes, shape {shape} of {dtype.name} "
                                        f"needs {need}")
        return np.frombuffer(raw, dtype=dtype).reshape(shape).astype(dtype.newbyteorder("="))


def tensor_format(t: S.TensorT, what: str, offset_ok: bool = False, need_range: bool = False,
                  float_scale_ok: bool = False) -> Format | None:
    """The format of an activation tensor from its type, scale and min/max (format.md 2.1).

    offset_ok admits TFLite's softmax-output convention (int8 with zero point -128, format.md 7):
    such a tensor is described as the unsigned 8-bit format of `stored + 128`, so the rest of
    the reader and the engines deal with zero-point-0 integers only. float_scale_ok (builtin files)
    admits a float32 scale that is not a power of two: the Format carries it at its canonical frac
    (formats.scaled_format); and an int8 zero point in -127..127, asymmetric int8 (formats.asymmetric_format:
    the format's integers are stored minus the zero point).
    """
    if t.type == S.TensorType.FLOAT32:
        return None
    if t.type not in (S.TensorType.INT8, S.TensorType.UINT8, S.TensorType.INT16, S.TensorType.UINT16):
        raise FlatbufferFormatError(f"{what}: activation tensor type {t.type} is not int8/uint8/int16/uint16/float32")
    q = t.quantization
    zero_points = [] if q is None or q.zeroPoint is None else [int(z) for z in q.zeroPoint]
    offset = offset_ok and t.type == S.TensorType.INT8 and zero_points == [-128]
    asymmetric = (float_scale_ok and t.type == S.TensorType.INT8 and len(zero_points) == 1
                  and zero_points[0] != 0 and -127 <= zero_points[0] <= 127)
    if q is None or q.scale is None or len(q.scale) != 1 or (zero_points != [0] and not offset and not asymmetric):
        raise FlatbufferFormatError(f"{what}: needs one scale and zero_point 0"
                                    f"{' (or an int8 one in -127..127)' if float_scale_ok else ''}")
    scale = float(q.scale[0])
    mant, exp = math.frexp(scale) if scale > 0 and math.isfinite(scale) else (0.0, 0)
    float_scale = None
    if mant != 0.5:
        if not (float_scale_ok and mant > 0 and -MAX_FRAC <= -exp <= MAX_FRAC):
            raise FlatbufferFormatError(f"{what}: scale {scale} is not a power of two")
        float_scale = scale
    frac = 1 - exp if float_scale is None else canonical_frac(scale)
    signed = t.type in (S.TensorType.INT8, S.TensorType.INT16) and not offset
    storage = 8 if t.type in (S.TensorType.INT8, S.TensorType.UINT8) else 16
    if asymmetric:
        bits = 8  # min/max are the shifted range [-128 - zp, 127 - zp] * scale, checked below
    elif q.min is None or q.max is None or len(q.min) != 1 or len(q.max) != 1:
        if need_range:  # fxp files: the format's bits live in min/max (format.md 2.1)
            raise FlatbufferFormatError(f"{what}: needs one min/max (the format's range)")
        bits = storage
    else:
        hi = float(q.max[0]) / scale
        bits = int(round(math.log2(hi + 1))) + (1 if signed else 0) if hi > 0 else -1
    try:
        fmt = Format(bits, frac, signed, float_scale, zero_points[0] if asymmetric else 0)
    except FormatError as exc:
        raise FlatbufferFormatError(f"{what}: {exc}") from None
    has_range = q.min is not None and q.max is not None and len(q.min) == 1 and len(q.max) == 1
    # min/max are float32 in the file: with a float scale, lo * scale and hi * scale are rounded
    tol = 1e-5 if float_scale is not None else 0.0
    if has_range and (abs(float(q.min[0]) / scale - fmt.lo) > tol * abs(fmt.lo)
                      or abs(float(q.max[0]) / scale - fmt.hi) > tol * abs(fmt.hi)):
        raise FlatbufferFormatError(f"{what}: min/max {q.min[0]}/{q.max[0]} are not a format's range at scale {scale}")
    if bits > storage or (storage == 16 and bits <= 8):
        raise FlatbufferFormatError(f"{what}: {bits}-bit format in a {storage}-bit tensor (2..8 bits are stored "
                                    "in 8-bit tensors, 9..16 in 16-bit ones)")
    return fmt


def _inflate(blob: bytes, cap: int) -> bytes:
    """zlib-decompress at most `cap` bytes: a small file must not inflate to gigabytes."""
    d = zlib.decompressobj()
    try:
        out = d.decompress(blob, cap + 1)
    except zlib.error as exc:
        raise FlatbufferFormatError(f"fxpq metadata is not a zlib stream: {exc}") from None
    if len(out) > cap:
        raise FlatbufferFormatError(f"fxpq metadata inflates to more than {cap} bytes (raise FXPQ_MAX_METADATA if you "
                                    "trust the file)")
    if not d.eof:
        raise FlatbufferFormatError("fxpq metadata is not a zlib stream: truncated")
    return out


def _metadata(metadata: dict[str, bytes], op_types: list[str], cap: int) -> tuple[dict, Any, str]:
    """(graph metadata, policy dict or None, fxpq version) of a format version 2 or 3 file."""
    try:
        if METADATA_NAME in metadata:
            blob = json.loads(_inflate(metadata[METADATA_NAME], cap))
            if not isinstance(blob, dict):
                raise FlatbufferFormatError("fxpq metadata is not a JSON object")
            meta, policy, version = blob, blob.get("policy"), str(blob.get("version", "?"))
        elif "fxpq_graph" in metadata:  # format versions 1 and 2: plain-JSON entries
            if sum(len(metadata.get(k, b"")) for k in ("fxpq_graph", "fxpq_policy", "fxpq_version")) > cap:
                raise FlatbufferFormatError(f"fxpq metadata is larger than {cap} bytes (raise FXPQ_MAX_METADATA if "
                                            "you trust the file)")
            meta = json.loads(metadata["fxpq_graph"])
            policy = json.loads(metadata.get("fxpq_policy", b"null"))
            version = metadata.get("fxpq_version", b"?").decode(errors="replace")
        else:
            raise FlatbufferFormatError(f"not an fxpq file: no '{METADATA_NAME}' metadata "
                                        f"(ops: {sorted(set(op_types))})")
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise FlatbufferFormatError(f"fxpq metadata is not valid JSON: {exc}") from None
    except RecursionError:
        raise FlatbufferFormatError("fxpq metadata JSON is nested too deeply") from None
    found = meta.get("format_version") if isinstance(meta, dict) else meta
    if found == 1 and type(found) is int:
        raise FlatbufferFormatError(
            "fxpq file format version 1 (9..16-bit weights stored as int16) is no longer read; "
            f"this reader knows versions {READABLE_VERSIONS} (every weight width bit-packed): re-export the model")
    if not isinstance(meta, dict) or type(found) is not int or found not in READABLE_VERSIONS:
        raise FlatbufferFormatError(f"unsupported fxpq format_version {found!r}; this reader knows {READABLE_VERSIONS}")
    kinds = {"graph_metadata": (dict, type(None)), "op_names": (list, type(None)), "float_input": (bool, type(None)),
             "output_softmax": (bool, type(None)), "target": (str,)}
    for key, allowed in kinds.items():
        if not isinstance(meta.get(key), allowed):
            raise FlatbufferFormatError(f"fxpq metadata {key!r} is a {type(meta.get(key)).__name__}, expected "
                                        f"{' or '.join('null' if a is type(None) else a.__name__ for a in allowed)}")
    if any(not isinstance(n, (str, type(None))) for n in meta.get("op_names") or []):
        raise FlatbufferFormatError("fxpq metadata 'op_names' holds entries that are neither text nor null")
    if not isinstance(policy, (dict, type(None))):
        raise FlatbufferFormatError(f"fxpq metadata 'policy' is a {type(policy).__name__}, expected an object or null")
    return meta, policy, version


def read_bytes(data: bytes, limits: ReaderLimits | None = None) -> tuple[IntegerGraph, FileInfo]:
    """Parse an exported file into its IntegerGraph (for int8-builtin: the stock-op graph).

    limits: what the file may demand (default ReaderLimits.from_env()); a file above them is refused.
    """
    limits = limits or ReaderLimits.from_env()
    f = _File(bytes(data), limits)
    op_types = []
    for op in f.sub.operators or []:
        op_types.append(_op_type(f, op))
    meta, policy, version = _metadata(f.metadata, op_types, limits.metadata)
    target = meta.get("target")
    if target not in ("fxp", "int8-builtin", "builtin"):
        raise FlatbufferFormatError(f"unknown target {target!r} in fxpq metadata")
    names = list(meta.get("op_names") or [])
    n_ops = len(f.sub.operators or [])
    if len(names) != n_ops:
        names = [f"op_{i}" for i in range(n_ops)]
    for i, op in enumerate(f.sub.operators or []):  # null: the op's output tensor name (format.md 5)
        if names[i] is None:
            outs = op.outputs if op.outputs is not None else []
            names[i] = f.tensor_name(int(outs[0])) if len(outs) and 0 <= int(outs[0]) < len(f.sub.tensors or []) \
                else f"op_{i}"
    info = FileInfo(target, bool(meta.get("float_input")), version, policy, len(data), names, op_types)

    if f.sub.inputs is None or len(f.sub.inputs) != 1:
        raise FlatbufferFormatError("the subgraph must have exactly one input")
    if f.sub.outputs is None or not 1 <= len(f.sub.outputs) <= MAX_OUTPUTS:
        raise FlatbufferFormatError(f"the subgraph has {len(f.sub.outputs if f.sub.outputs is not None else [])} "
                                    f"outputs, expected 1..{MAX_OUTPUTS}")
    specs: dict[int, TensorSpec] = {}
    used_names: set[str] = set()

    def spec(index: int, what: str) -> TensorSpec:
        if index not in specs:
            t = f.tensor(index, what)
            name = f.tensor_name(index)
            if name in used_names:
                name = f"{name}#{index}"
            used_names.add(name)
            shape = checked_shape(t, f"{what} tensor {name!r}", limits)
            if len(shape) < 1 or shape[0] != 1:
                raise FlatbufferFormatError(f"{what}: activation tensor {name!r} has shape {shape}, "
                                            "needs rank >= 1 and batch 1")
            if f.buffer_bytes(t.buffer, f"{what} tensor {name!r}"):
                raise FlatbufferFormatError(f"{what}: activation tensor {name!r} is a constant (has buffer data)")
            fmt = tensor_format(t, f"{what} tensor {name!r}", offset_ok=True, need_range=target == "fxp",
                                float_scale_ok=target == "builtin")
            if fmt is not None and t.quantization.zeroPoint is not None and int(t.quantization.zeroPoint[0]) != 0:
                info.zero_points[name] = int(t.quantization.zeroPoint[0])
            specs[index] = TensorSpec(name, shape[1:], fmt)
        return specs[index]

    input_spec = spec(int(f.sub.inputs[0]), "model input")
    if (input_spec.fmt is None) != info.float_input:
        raise FlatbufferFormatError("metadata float_input disagrees with the input tensor's type")
    nodes = []
    written = {int(f.sub.inputs[0])}
    for i, op in enumerate(f.sub.operators or []):
        where = f"operator {i} ({op_types[i]}, {names[i]!r})"
        if op.outputs is None or len(op.outputs) != 1:
            raise FlatbufferFormatError(f"{where}: expected one output")
        if int(op.outputs[0]) in written:
            raise FlatbufferFormatError(f"{where}: writes tensor {int(op.outputs[0])}, which the model input or an "
                                        "earlier op already holds")
        written.add(int(op.outputs[0]))
        if target == "fxp":
            node = _fxp_node(f, op, op_types[i], names[i], where, spec, info)
        else:
            from .builtin import builtin_node

            node = builtin_node(f, op, op_types[i], names[i], where, spec, info)
        nodes.append(node)
    outputs = [spec(int(o), "model output").name for o in f.sub.outputs]
    tensors = {s.name: s for s in specs.values()}
    graph_meta = dict(meta.get("graph_metadata") or {})
    if policy is not None:
        graph_meta["policy"] = policy
    if target in ("int8-builtin", "builtin"):
        from .builtin import StockGraph

        graph_cls: type[IntegerGraph] = StockGraph
    else:
        graph_cls = IntegerGraph
    try:
        graph = graph_cls(input_spec.name, outputs, tensors, nodes, bool(meta.get("output_softmax")), graph_meta)
    except ValueError as exc:
        raise FlatbufferFormatError(str(exc)) from None
    problem = stock_seam_problem(graph) if target == "fxp" else None
    if problem:
        raise FlatbufferFormatError(problem)
    produced = {graph.input}
    for node in graph.nodes:
        missing = [n for n in node.inputs if n not in produced]
        if missing:
            raise FlatbufferFormatError(f"node {node.name!r} reads {missing} before they are produced")
        produced.add(node.output)
    if any(o not in produced or o == graph.input for o in outputs):
        raise FlatbufferFormatError(f"model outputs {[o for o in outputs if o not in produced or o == graph.input]} "
                                    "are not written by any op")
    check_work(graph, limits)
    return graph, info


def op_cost(graph: IntegerGraph, node: Node) -> tuple[int, int, int]:
    """(MACs, taps, window) of one node: MACs of the weighted ops; window taps of the pools, or the
    elements any other op writes (RESHAPE none); window the larger of a windowed op's patch
    elements (output positions x taps x input channels) and its padded input plane. The C runner
    counts the same (fxpq_runner.c fx_window_cost and the phase-1 loop)."""
    t = graph.tensors
    out = t[node.output].shape
    x = t[node.inputs[0]].shape
    if node.op == "fully_connected":
        return math.prod(out) * math.prod(x), 0, 0
    if node.op == "global_average_pool2d":
        return 0, math.prod(x), 0
    if node.op == "reshape":
        return 0, 0, 0
    if node.op not in ("conv2d", "depthwise_conv2d", "max_pool2d", "average_pool2d"):
        return 0, math.prod(out), 0
    h, w, c = x
    oh, ow, o = out
    if node.op in ("max_pool2d", "average_pool2d"):
        kh, kw = node.attrs["pool"]
        dh, dw = 1, 1
    else:
        kh, kw = np.shape(node.weights)[1:3]
        dh, dw = node.attrs.get("dilation", (1, 1))
    patches = oh * ow * int(kh) * int(kw) * c
    pad_h = max((oh - 1) * node.attrs["stride"][0] + (kh - 1) * dh + 1, h)
    pad_w = max((ow - 1) * node.attrs["stride"][1] + (kw - 1) * dw + 1, w)
    window = max(patches, pad_h * pad_w * c)
    if node.op == "conv2d":
        return patches * o, 0, window
    if node.op == "depthwise_conv2d":
        return patches * (o // c), 0, window
    return 0, patches, window


def check_work(graph: IntegerGraph, limits: ReaderLimits) -> None:
    """Refuse a graph whose one inference exceeds the limits' work or window (format.md section 11)."""
    macs = taps = 0
    for node in graph.nodes:
        op_macs, op_taps, window = op_cost(graph, node)
        if window > limits.window:
            raise FlatbufferFormatError(f"node {node.name!r}: its window spans {window} elements, more than "
                                        f"{limits.window} (raise FXPQ_MAX_WINDOW if you trust the file)")
        macs, taps = macs + op_macs, taps + op_taps
    if macs > limits.work:
        raise FlatbufferFormatError(f"one inference costs {macs} MACs, more than {limits.work} "
                                    "(raise FXPQ_MAX_WORK if you trust the file)")
    if taps > limits.taps:
        raise FlatbufferFormatError(f"one inference costs {taps} window taps and written elements, more than "
                                    f"{limits.taps} (raise FXPQ_MAX_TAPS if you trust the file)")


def read_tflite(path: str | Path, limits: ReaderLimits | None = None) -> tuple[IntegerGraph, FileInfo]:
    """read_bytes on a file (FileNotFoundError when it does not exist)."""
    return read_bytes(Path(path).read_bytes(), limits)


def _op_type(f: _File, op: S.OperatorT) -> str:
    codes = f.model.operatorCodes or []
    if not 0 <= op.opcodeIndex < len(codes):
        raise FlatbufferFormatError(f"operator refers to op code {op.opcodeIndex}, the file has {len(codes)}")
    code = codes[op.opcodeIndex]
    builtin = max(int(code.builtinCode), int(code.deprecatedBuiltinCode))
    custom = code.customCode  # read for every op, as the runner does
    if builtin == S.BuiltinOperator.CUSTOM:
        return (custom or b"").decode(errors="replace")
    return _BUILTIN_NAMES.get(builtin, f"BUILTIN_{builtin}")


def check_clamp(opts: dict[str, int], out: Format, activation: str | None, where: str) -> None:
    lo, hi = relu_bounds(out, activation)
    if (opts["act_min"], opts["act_max"]) != (lo, hi):
        raise FlatbufferFormatError(f"{where}: act_min/act_max {opts['act_min']}/{opts['act_max']} disagree with "
                                    f"output format {out} and activation {activation} ({lo}/{hi})")


def _fxp_node(f: _File, op, kind: str, name: str, where: str, spec, info: FileInfo) -> Node:
    op.customOptions, op.customOptionsFormat, op.largeCustomOptionsOffset  # noqa: B018 - read, as the runner does
    inputs = [int(i) for i in (op.inputs if op.inputs is not None else [])]
    out_spec = spec(int(op.outputs[0]), where + " output")
    if kind == "RESHAPE":
        if len(inputs) not in (1, 2):
            raise FlatbufferFormatError(f"{where}: RESHAPE takes 1 or 2 inputs")
        src = spec(inputs[0], where + " input")
        if src.fmt != out_spec.fmt:
            raise FlatbufferFormatError(f"{where}: RESHAPE changes the format {src.fmt} -> {out_spec.fmt}")
        if int(np.prod(src.shape)) != int(np.prod(out_spec.shape)):
            raise FlatbufferFormatError(f"{where}: RESHAPE from {src.shape} to {out_spec.shape} changes the size")
        if len(inputs) == 2:
            f.check_shape_input(inputs[1], 1 + len(out_spec.shape), where)
        return Node("reshape", name, [src.name], out_spec.name, {"shape": tuple(out_spec.shape)})
    if kind in STOCK_BUILTINS:
        return stock_node(f, op, STOCK_BUILTINS[kind], name, where, spec, inputs, out_spec)
    if kind not in CUSTOM_OPS:
        raise FlatbufferFormatError(f"{where}: op {kind!r} is not part of the fxp format (known: "
                                    f"{sorted(CUSTOM_OPS) + ['RESHAPE'] + sorted(STOCK_BUILTINS)})")
    graph_op, _ = CUSTOM_OPS[kind]
    if op.customOptionsFormat != 0:
        raise FlatbufferFormatError(f"{where}: custom_options_format {op.customOptionsFormat} is not 0 (FlexBuffers)")
    if getattr(op, "largeCustomOptionsOffset", 0) or getattr(op, "largeCustomOptionsSize", 0):
        raise FlatbufferFormatError(f"{where}: large custom options (stored outside the operator) are not supported")
    blob = bytes(np.asarray(op.customOptions, dtype=np.uint8)) if op.customOptions is not None else b""
    opts = decode_options(kind, blob, where)
    out = out_spec.fmt
    if out is None:
        raise FlatbufferFormatError(f"{where}: output must be an integer tensor")
    if opts.get("out_frac", out.frac) != out.frac:
        raise FlatbufferFormatError(f"{where}: out_frac {opts['out_frac']} != output tensor frac {out.frac}")
    n_act = {"add": 2, "concat": 2, "conv2d": 1, "depthwise_conv2d": 1, "fully_connected": 1}.get(graph_op, 1)
    n_in = 4 if graph_op in ("conv2d", "depthwise_conv2d", "fully_connected") else n_act
    if len(inputs) != n_in:
        raise FlatbufferFormatError(f"{where}: expected {n_in} inputs, got {len(inputs)}")
    act_specs = [spec(i, where + " input") for i in inputs[:n_act]]
    x = act_specs[0].fmt
    activation = ACTIVATION_NAMES.get(opts.get("activation", 0), "?")
    if activation == "?":
        raise FlatbufferFormatError(f"{where}: unknown activation code {opts['activation']}")
    if graph_op == "quantize":
        if x is not None:
            raise FlatbufferFormatError(f"{where}: FXP_QUANTIZE input must be FLOAT32")
        check_clamp(opts, out, None, where)
        if act_specs[0].shape != out_spec.shape:
            raise FlatbufferFormatError(f"{where}: input shape {act_specs[0].shape} != output shape {out_spec.shape}")
        return Node("quantize", name, [act_specs[0].name], out_spec.name)
    if x is None:
        raise FlatbufferFormatError(f"{where}: input must be an integer tensor")
    for key, s in (("in_frac", act_specs[0]), ("in1_frac", act_specs[0]), ("in2_frac", act_specs[-1])):
        if key in opts and opts[key] != s.fmt.frac:
            raise FlatbufferFormatError(f"{where}: {key} {opts[key]} != tensor {s.name!r} frac {s.fmt.frac}")
    if "in_bits" in opts and opts["in_bits"] != x.bits:  # format version 4 (options.OPTIONAL_KEYS)
        raise FlatbufferFormatError(f"{where}: in_bits {opts['in_bits']} != input tensor {act_specs[0].name!r} "
                                    f"bits {x.bits}")
    check_clamp(opts, out, activation, where)
    attrs: dict[str, Any] = {}
    if graph_op in ("conv2d", "depthwise_conv2d", "max_pool2d", "average_pool2d"):
        if opts["padding"] not in PADDING_NAMES:
            raise FlatbufferFormatError(f"{where}: padding code {opts['padding']} is not 0 (same) or 1 (valid)")
        dilation_keys = ("dilation_h", "dilation_w") if "dilation_h" in opts else ()
        for key in ("stride_h", "stride_w", "filter_h", "filter_w") + dilation_keys:
            if opts[key] < 1:
                raise FlatbufferFormatError(f"{where}: {key} must be >= 1, got {opts[key]}")
        attrs.update(stride=(opts["stride_h"], opts["stride_w"]), padding=PADDING_NAMES[opts["padding"]])
        if len(act_specs[0].shape) != 3:
            raise FlatbufferFormatError(f"{where}: input must be [1, H, W, C], got {act_specs[0].shape}")
        h, w, c = act_specs[0].shape
        dil = (opts.get("dilation_h", 1), opts.get("dilation_w", 1))
        try:
            oh, top, bottom = conv_output_size(h, opts["filter_h"], opts["stride_h"], dil[0], attrs["padding"])
            ow, left, right = conv_output_size(w, opts["filter_w"], opts["stride_w"], dil[1], attrs["padding"])
        except ValueError as exc:
            raise FlatbufferFormatError(f"{where}: {exc}") from None
        if (top, bottom, left, right) != (opts["pad_top"], opts["pad_bottom"], opts["pad_left"], opts["pad_right"]):
            raise FlatbufferFormatError(f"{where}: explicit padding disagrees with padding={attrs['padding']}")
        if len(out_spec.shape) != 3 or out_spec.shape[:2] != (oh, ow):
            raise FlatbufferFormatError(f"{where}: output shape {out_spec.shape} is not [1, {oh}, {ow}, channels]")
    if graph_op in ("conv2d", "depthwise_conv2d", "max_pool2d", "average_pool2d", "fully_connected", "add",
                    "requantize"):
        attrs["activation"] = activation
    if graph_op in ("max_pool2d", "average_pool2d"):
        if out_spec.shape[2] != c:
            raise FlatbufferFormatError(f"{where}: output has {out_spec.shape[2]} channels, the input {c}")
        attrs["pool"] = (opts["filter_h"], opts["filter_w"])
        return Node(graph_op, name, [act_specs[0].name], out_spec.name, attrs)
    if graph_op in ("add", "requantize", "leaky_relu") and any(s.shape != out_spec.shape for s in act_specs):
        raise FlatbufferFormatError(f"{where}: input shapes {[s.shape for s in act_specs]} != output shape "
                                    f"{out_spec.shape} (no broadcasting)")
    if graph_op == "global_average_pool2d" and (len(act_specs[0].shape) != 3
                                                or out_spec.shape != act_specs[0].shape[2:]):
        raise FlatbufferFormatError(f"{where}: input must be [1, H, W, C] and output [1, C], got "
                                    f"{act_specs[0].shape} -> {out_spec.shape}")
    if graph_op in ("add", "requantize", "global_average_pool2d"):
        return Node(graph_op, name, [s.name for s in act_specs], out_spec.name, attrs)
    if graph_op == "concat":
        a, b = act_specs[0].shape, act_specs[1].shape
        if a[:-1] != b[:-1] or out_spec.shape != a[:-1] + (a[-1] + b[-1],):
            raise FlatbufferFormatError(f"{where}: output shape {out_spec.shape} is not inputs {a} and {b} joined on "
                                        "the last axis")
        return Node("concat", name, [s.name for s in act_specs], out_spec.name, {})
    if graph_op == "leaky_relu":  # alpha_shift range checked by decode_options
        return Node("leaky_relu", name, [act_specs[0].name], out_spec.name, {"alpha_shift": opts["alpha_shift"]})
    if graph_op == "pad":
        pads = ((opts["pad_top"], opts["pad_bottom"]), (opts["pad_left"], opts["pad_right"]))
        shape = act_specs[0].shape
        if len(shape) != 3 or out_spec.shape != (shape[0] + sum(pads[0]), shape[1] + sum(pads[1]), shape[2]):
            raise FlatbufferFormatError(f"{where}: output shape {out_spec.shape} is not the input {shape} "
                                        f"padded by {pads}")
        return Node("pad", name, [act_specs[0].name], out_spec.name, {"pads": pads})
    # weighted ops
    bits = opts["weight_bits"]
    if not 2 <= bits <= 16:
        raise FlatbufferFormatError(f"{where}: weight_bits {bits} outside 2..16")
    if graph_op == "conv2d":
        attrs["dilation"] = (opts["dilation_h"], opts["dilation_w"])
        o = out_spec.shape[-1]
        shape = (o, opts["filter_h"], opts["filter_w"], c)
    elif graph_op == "depthwise_conv2d":
        attrs["dilation"] = (opts["dilation_h"], opts["dilation_w"])
        attrs["depth_multiplier"] = opts["depth_multiplier"]
        o = c * opts["depth_multiplier"]
        shape = (1, opts["filter_h"], opts["filter_w"], o)
    else:
        o = out_spec.shape[-1]
        shape = (o, int(np.prod(act_specs[0].shape)))
    if out_spec.shape[-1] != o:
        raise FlatbufferFormatError(f"{where}: output has {out_spec.shape[-1]} channels, expected {o}")
    k = int(np.prod(shape)) // o
    stored = f.constant(inputs[1], where + " weights")
    want_shape = (o, packing.row_bytes(k, bits))
    if stored.dtype != np.uint8 or stored.shape != want_shape:
        raise FlatbufferFormatError(f"{where}: weights are {stored.dtype.name}{list(stored.shape)}, "
                                    f"{bits}-bit weights need bit-packed uint8{list(want_shape)}")
    info.weight_bytes[name] = stored.nbytes
    rows = packing.unpack_rows(stored, bits, k)
    fracs = f.constant(inputs[2], where + " weight fracs")
    if fracs.dtype != np.int8 or fracs.shape != (o,):
        raise FlatbufferFormatError(f"{where}: weight fracs must be int8[{o}], "
                                    f"got {fracs.dtype.name}{list(fracs.shape)}")
    if fracs.min() < -32 or fracs.max() > 32:
        bad = int(fracs[(fracs < -32) | (fracs > 32)][0])
        raise FlatbufferFormatError(f"{where}: weight frac {bad} outside -32..32")
    if (inputs[3] != -1) != (opts["bias_bits"] != 0):
        raise FlatbufferFormatError(f"{where}: bias_bits {opts['bias_bits']} but "
                                    f"{'a' if inputs[3] != -1 else 'no'} bias tensor (bias_bits 0 means no bias)")
    node = Node(graph_op, name, [act_specs[0].name], out_spec.name, attrs,
                weights=packing.rows_to_weights(graph_op, rows, shape), weight_bits=bits,
                weight_frac=fracs.astype(np.int64))
    if inputs[3] != -1:
        bias = f.constant(inputs[3], where + " bias")
        if bias.dtype != np.int32 or bias.shape != (o,):
            raise FlatbufferFormatError(f"{where}: bias must be int32[{o}], got {bias.dtype.name}{list(bias.shape)}")
        if not 2 <= opts["bias_bits"] <= 32:
            raise FlatbufferFormatError(f"{where}: bias_bits {opts['bias_bits']} outside 2..32")
        shift = fracs.astype(np.int64) + x.frac - opts["bias_frac"]
        if shift.min() < 0 or shift.max() > 30:
            raise FlatbufferFormatError(f"{where}: bias_frac {opts['bias_frac']} violates 0 <= frac_acc - frac_b <= 30")
        node.bias, node.bias_bits, node.bias_frac = bias.astype(np.int64), opts["bias_bits"], opts["bias_frac"]
    return node


