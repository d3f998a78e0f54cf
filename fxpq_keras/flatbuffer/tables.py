"""A bounds-checked, lazy reader of the TFLite flatbuffer fields fxpq reads, with the C runner's rules.

The flatbuffers package's object API (`ModelT.InitFromObj`) unpacks every field a file holds, so a
flipped offset in a field no reader needs (a description, a signature, a tensor's shape signature)
made the Python reader refuse files the C runner accepts. This module reads exactly the fields the
runner reads (tflm_kernels/src/runner/fxpq_flatbuffer.c: the same alignment, vtable and size
checks; tables and vectors only when asked for) and returns objects with the object API's
attribute names, so reader.py and builtin.py read them as before. Any violation raises
FlatbufferFormatError.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from .errors import FlatbufferFormatError
from .schema import schema as S


def _malformed(what: str) -> FlatbufferFormatError:
    return FlatbufferFormatError(f"malformed or truncated flatbuffer ({what} out of bounds)")


class Table:
    """One table: position, vtable, sizes (fxfb_table_at's checks)."""

    def __init__(self, buf: bytes, pos: int, what: str) -> None:
        self.buf, self.what = buf, what
        if not _fits(buf, pos, 4) or pos & 3:
            raise _malformed(what)
        vtable = pos - struct.unpack_from("<i", buf, pos)[0]
        if vtable < 0 or vtable & 1 or not _fits(buf, vtable, 4):
            raise _malformed(what)
        vt_size, t_size = struct.unpack_from("<HH", buf, vtable)
        if vt_size < 4 or vt_size & 1 or not _fits(buf, vtable, vt_size) or t_size < 4 or not _fits(buf, pos, t_size):
            raise _malformed(what)
        self.pos, self.vtable, self.vt_size, self.t_size = pos, vtable, vt_size, t_size

    def _field(self, field: int, width: int) -> int | None:
        slot = 4 + 2 * field
        if slot + 2 > self.vt_size:
            return None
        off = struct.unpack_from("<H", self.buf, self.vtable + slot)[0]
        if off == 0:
            return None
        if off < 4 or off + width > self.t_size:
            raise _malformed(self.what)
        return self.pos + off

    def scalar(self, field: int, fmt: str, default: Any = 0) -> Any:
        """A scalar field (struct format letter: b B h i I q Q f); default when absent."""
        pos = self._field(field, struct.calcsize(fmt))
        return default if pos is None else struct.unpack_from("<" + fmt, self.buf, pos)[0]

    def _ref(self, field: int) -> int | None:
        pos = self._field(field, 4)
        if pos is None:
            return None
        target = pos + struct.unpack_from("<I", self.buf, pos)[0]
        if not _fits(self.buf, target, 4):
            raise _malformed(self.what)
        return target

    def table(self, field: int, what: str) -> Table | None:
        target = self._ref(field)
        return None if target is None else Table(self.buf, target, what)

    def vector(self, field: int, elem: str, what: str) -> np.ndarray | None:
        """A vector of scalars (numpy dtype string such as '<i4'), or None when absent."""
        span = self._vector(field, np.dtype(elem).itemsize, what)
        if span is None:
            return None
        pos, n = span
        return np.frombuffer(self.buf, dtype=elem, count=n, offset=pos).astype(np.dtype(elem).newbyteorder("="))

    def _vector(self, field: int, size: int, what: str) -> tuple[int, int] | None:
        target = self._ref(field)
        if target is None:
            return None
        if target & 3:
            raise _malformed(what)
        n = struct.unpack_from("<I", self.buf, target)[0]
        if not _fits(self.buf, target + 4, n * size):
            raise _malformed(what)
        return target + 4, n

    def tables(self, field: int, make: Callable[[Table], Any], what: str) -> Sequence[Any] | None:
        """A vector of tables, parsed (and checked) one by one when indexed."""
        span = self._vector(field, 4, what)
        return None if span is None else _LazyTables(self.buf, span[0], span[1], make, what)

    def string(self, field: int, what: str) -> bytes | None:
        span = self._vector(field, 1, what)
        if span is None:
            return None
        pos, n = span
        if not _fits(self.buf, pos + n, 1) or self.buf[pos + n] != 0:
            raise _malformed(what)
        return bytes(self.buf[pos:pos + n])


def _fits(buf: bytes, pos: int, length: int) -> bool:
    return 0 <= pos <= len(buf) and 0 <= length <= len(buf) - pos


class _LazyTables(Sequence):
    def __init__(self, buf: bytes, pos: int, n: int, make: Callable[[Table], Any], what: str) -> None:
        self.buf, self.pos, self.n, self.make, self.what = buf, pos, n, make, what
        self._cache: dict[int, Any] = {}

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i):  # type: ignore[override]
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(self.n))]
        if not 0 <= i < self.n:
            raise IndexError(i)
        if i not in self._cache:
            at = self.pos + 4 * i
            self._cache[i] = self.make(Table(self.buf, at + struct.unpack_from("<I", self.buf, at)[0],
                                             f"{self.what} {i}"))
        return self._cache[i]


class _Lazy:
    """Attributes by the object API's names, each read (and checked) on first access: a reader
    checks exactly the fields it uses, like the C runner."""

    def __init__(self, **getters: Callable[[], Any]) -> None:
        self._getters = getters

    def __getattr__(self, name: str) -> Any:
        getters = self.__dict__.get("_getters", {})
        if name not in getters:
            raise AttributeError(name)
        value = getters[name]()
        setattr(self, name, value)
        return value


def _buffer(t: Table) -> _Lazy:
    return _Lazy(data=lambda: t.vector(0, "u1", "buffer data"), offset=lambda: t.scalar(1, "Q"))


def _metadata(t: Table) -> _Lazy:
    return _Lazy(name=lambda: t.string(0, "metadata name"), buffer=lambda: t.scalar(1, "I"))


def _opcode(t: Table) -> _Lazy:
    return _Lazy(deprecatedBuiltinCode=lambda: t.scalar(0, "b"), customCode=lambda: t.string(1, "operator code"),
                 builtinCode=lambda: t.scalar(3, "i"))


def _quantization(t: Table) -> _Lazy:
    return _Lazy(min=lambda: t.vector(0, "<f4", "quantization min"), max=lambda: t.vector(1, "<f4", "quantization max"),
                 scale=lambda: t.vector(2, "<f4", "quantization scale"),
                 zeroPoint=lambda: t.vector(3, "<i8", "zero point"))


def _tensor(t: Table) -> _Lazy:
    """A tensor as the C runner reads one (fx_read_tensor): shape, type, buffer, name, sparsity
    (refused) and the quantization table are checked at once, the quantization's vectors on use."""
    shape, kind, buffer, name = (t.vector(0, "<i4", "tensor shape"), t.scalar(1, "b"), t.scalar(2, "I"),
                                 t.string(3, "tensor name"))
    if t.table(6, "tensor sparsity") is not None:
        raise FlatbufferFormatError("sparse tensors are not supported")
    quant = t.table(4, "tensor quantization")
    q = None if quant is None else _quantization(quant)
    return _Lazy(shape=lambda: shape, type=lambda: kind, buffer=lambda: buffer, name=lambda: name,
                 quantization=lambda: q, sparsity=lambda: None)


# builtin options the readers read: union code -> (object API class, [(attribute, field, format, default)])
_OPTIONS: dict[int, tuple[type, list[tuple[str, int, str, Any]]]] = {
    S.BuiltinOptions.Conv2DOptions: (S.Conv2DOptionsT, [
        ("padding", 0, "b", 0), ("strideW", 1, "i", 0), ("strideH", 2, "i", 0), ("fusedActivationFunction", 3, "b", 0),
        ("dilationWFactor", 4, "i", 1), ("dilationHFactor", 5, "i", 1)]),
    S.BuiltinOptions.DepthwiseConv2DOptions: (S.DepthwiseConv2DOptionsT, [
        ("padding", 0, "b", 0), ("strideW", 1, "i", 0), ("strideH", 2, "i", 0), ("depthMultiplier", 3, "i", 0),
        ("fusedActivationFunction", 4, "b", 0), ("dilationWFactor", 5, "i", 1), ("dilationHFactor", 6, "i", 1)]),
    S.BuiltinOptions.Pool2DOptions: (S.Pool2DOptionsT, [
        ("padding", 0, "b", 0), ("strideW", 1, "i", 0), ("strideH", 2, "i", 0), ("filterWidth", 3, "i", 0),
        ("filterHeight", 4, "i", 0), ("fusedActivationFunction", 5, "b", 0)]),
    S.BuiltinOptions.FullyConnectedOptions: (S.FullyConnectedOptionsT, [("fusedActivationFunction", 0, "b", 0)]),
    S.BuiltinOptions.SoftmaxOptions: (S.SoftmaxOptionsT, [("beta", 0, "f", 0.0)]),
    S.BuiltinOptions.ConcatenationOptions: (S.ConcatenationOptionsT, [
        ("axis", 0, "i", 0), ("fusedActivationFunction", 1, "b", 0)]),
    S.BuiltinOptions.AddOptions: (S.AddOptionsT, [("fusedActivationFunction", 0, "b", 0)]),
    S.BuiltinOptions.LeakyReluOptions: (S.LeakyReluOptionsT, [("alpha", 0, "f", 0.0)]),
    # the stock ops of hybrid fxp files (format.md section 8)
    S.BuiltinOptions.MulOptions: (S.MulOptionsT, [("fusedActivationFunction", 0, "b", 0)]),
    S.BuiltinOptions.SubOptions: (S.SubOptionsT, [("fusedActivationFunction", 0, "b", 0)]),
    S.BuiltinOptions.ResizeNearestNeighborOptions: (S.ResizeNearestNeighborOptionsT, [
        ("alignCorners", 0, "B", 0), ("halfPixelCenters", 1, "B", 0)]),
    S.BuiltinOptions.MaximumMinimumOptions: (S.MaximumMinimumOptionsT, []),
    S.BuiltinOptions.TransposeOptions: (S.TransposeOptionsT, []),
}


def _options(t: Table) -> Any:
    kind = t.scalar(3, "B")
    table = t.table(4, "operator options") if kind else None
    if table is None or kind not in _OPTIONS:
        return None
    cls, fields = _OPTIONS[kind]
    options = cls()
    for attr, field, fmt, default in fields:
        setattr(options, attr, table.scalar(field, fmt, default))
    return options


def _operator(t: Table) -> _Lazy:
    return _Lazy(opcodeIndex=lambda: t.scalar(0, "I"), inputs=lambda: t.vector(1, "<i4", "operator inputs"),
                 outputs=lambda: t.vector(2, "<i4", "operator outputs"),
                 builtinOptionsType=lambda: t.scalar(3, "B"), builtinOptions=lambda: _options(t),
                 customOptions=lambda: t.vector(5, "u1", "custom options"),
                 customOptionsFormat=lambda: t.scalar(6, "b"), largeCustomOptionsOffset=lambda: t.scalar(9, "Q"),
                 largeCustomOptionsSize=lambda: 0)


def _subgraph(t: Table) -> _Lazy:
    tensors, inputs = t.tables(0, _tensor, "tensor"), t.vector(1, "<i4", "subgraph inputs")
    outputs, operators = t.vector(2, "<i4", "subgraph outputs"), t.tables(3, _operator, "operator")
    return _Lazy(tensors=lambda: tensors, inputs=lambda: inputs, outputs=lambda: outputs, operators=lambda: operators)


def read_model(data: bytes) -> _Lazy:
    """The model table (fx_open's reads: version, operator codes, subgraphs, buffers; metadata)."""
    if len(data) < 8:
        raise _malformed("root")
    root = Table(data, struct.unpack_from("<I", data, 0)[0], "model table")
    version, codes = root.scalar(0, "I"), root.tables(1, _opcode, "operator code")
    subgraphs, buffers = root.tables(2, _subgraph, "subgraph"), root.tables(4, _buffer, "buffer")
    metadata = root.tables(6, _metadata, "metadata")
    return _Lazy(version=lambda: version, operatorCodes=lambda: codes, subgraphs=lambda: subgraphs,
                 buffers=lambda: buffers, metadata=lambda: metadata)
