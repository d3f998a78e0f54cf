"""Weight packing of numerics.md section 9 and the weight tensors of docs/format.md 2.2.

Packing is part of the file format, so it lives here (the ``kernels`` package, which drives the
C code that reads these bytes, imports it from here; never the other way round).

Every width 2..16: each value is its ``bits``-wide two's-complement pattern, written into a
little-endian bit stream, least significant bit first within each byte; every output channel's
run starts on a byte boundary, so a channel of ``K`` values takes ``ceil(K * bits / 8)`` bytes
(a 10-bit weight costs 10 bits of flash, plus at most 7 padding bits per channel).

The output channel is the outermost axis of the array given to :func:`pack_weights`. That is
already the case for conv (OHWI) and fully-connected (``[out, in]``) weights; depthwise weights
(TFLite layout ``[1, kh, kw, C*M]``) must first be brought to ``[C*M, kh, kw]`` with
:func:`depthwise_rows` (or use :func:`pack_depthwise_weights`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..formats import MAX_BITS, MIN_BITS, packed_row_bytes

__all__ = [
    "packed_row_size",
    "packed_size",
    "pack_weights",
    "unpack_weights",
    "depthwise_rows",
    "pack_depthwise_weights",
    "unpack_depthwise_weights",
    "row_bytes",
    "pack_rows",
    "unpack_rows",
    "weights_to_rows",
    "rows_to_weights",
]


def _check_bits(bits: int) -> int:
    if isinstance(bits, bool) or not isinstance(bits, (int, np.integer)) or not MIN_BITS <= bits <= MAX_BITS:
        raise ValueError(f"weight bits must be an integer in {MIN_BITS}..{MAX_BITS}, got {bits!r}")
    return int(bits)


def packed_row_size(bits: int, count: int) -> int:
    """Bytes of one output channel's run of ``count`` weights of width ``bits`` (any width 2..16)."""
    bits = _check_bits(bits)
    if count < 0:
        raise ValueError(f"count must be >= 0, got {count}")
    return packed_row_bytes(bits, count)


def packed_size(shape: Sequence[int], bits: int) -> int:
    """Bytes of a packed array of ``shape`` (output channel on axis 0)."""
    shape = tuple(int(s) for s in shape)
    if not shape:
        raise ValueError("weights must have at least one dimension (the output channel)")
    rows = shape[0]
    count = int(np.prod(shape[1:], dtype=np.int64)) if len(shape) > 1 else 1
    return rows * packed_row_size(bits, count)


def _rows(q: np.ndarray) -> np.ndarray:
    if q.ndim == 0:
        raise ValueError("weights must have at least one dimension (the output channel)")
    return q.reshape(q.shape[0], -1)


def pack_weights(q: np.ndarray, bits: int) -> bytes:
    """Pack integer weights ``q`` (output channel on axis 0) of width ``bits`` (2..16).

    Every value must lie in ``[-2^(bits-1), 2^(bits-1) - 1]`` (weights are always signed).
    A 1-D array is one value per output channel (each channel then takes its own byte(s)).
    Returns the bytes numerics.md section 9 prescribes; ``len(result) == packed_size(q.shape, bits)``.
    """
    bits = _check_bits(bits)
    q = np.asarray(q)
    if q.dtype.kind not in "iu":
        if q.dtype.kind == "f" and np.all(np.isfinite(q)) and np.all(q == np.round(q)):
            q = q.astype(np.int64)
        else:
            raise ValueError(f"weights must be integers, got dtype {q.dtype}")
    q = q.astype(np.int64)
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    if q.size and (q.min() < lo or q.max() > hi):
        raise ValueError(f"weights outside the {bits}-bit signed range [{lo}, {hi}]: "
                         f"min {q.min()}, max {q.max()}")
    rows = _rows(q)
    n_rows, count = rows.shape
    if n_rows == 0 or count == 0:
        return b"\x00" * packed_size(q.shape, bits)
    patterns = (rows & ((1 << bits) - 1)).astype(np.uint32)  # two's-complement bit patterns
    bit_matrix = ((patterns[:, :, None] >> np.arange(bits, dtype=np.uint32)) & 1).astype(np.uint8)
    bit_matrix = bit_matrix.reshape(n_rows, count * bits)  # LSB first, values in order
    pad = (-bit_matrix.shape[1]) % 8
    if pad:
        bit_matrix = np.pad(bit_matrix, ((0, 0), (0, pad)))
    return np.packbits(bit_matrix, axis=1, bitorder="little").tobytes()


def unpack_weights(data: bytes | bytearray | memoryview | np.ndarray, bits: int,
                   shape: Sequence[int]) -> np.ndarray:
    """Inverse of :func:`pack_weights`: int64 array of ``shape`` (output channel on axis 0)."""
    bits = _check_bits(bits)
    shape = tuple(int(s) for s in shape)
    expected = packed_size(shape, bits)
    buf = np.frombuffer(bytes(data), dtype=np.uint8)
    if buf.size != expected:
        raise ValueError(f"packed weights of shape {shape} at {bits} bits take {expected} bytes, got {buf.size}")
    n_rows = shape[0]
    count = int(np.prod(shape[1:], dtype=np.int64)) if len(shape) > 1 else 1
    if n_rows == 0 or count == 0:
        return np.zeros(shape, dtype=np.int64)
    bit_matrix = np.unpackbits(buf.reshape(n_rows, -1), axis=1, bitorder="little")[:, : count * bits]
    bit_matrix = bit_matrix.reshape(n_rows, count, bits).astype(np.int64)
    values = (bit_matrix << np.arange(bits, dtype=np.int64)).sum(axis=2)
    values = np.where(values >= (1 << (bits - 1)), values - (1 << bits), values)
    return values.reshape(shape)


def depthwise_rows(w: np.ndarray) -> np.ndarray:
    """TFLite depthwise filter ``[1, kh, kw, C*M]`` -> ``[C*M, kh, kw]`` (channel outermost)."""
    w = np.asarray(w)
    if w.ndim != 4 or w.shape[0] != 1:
        raise ValueError(f"depthwise filter must be [1, kh, kw, C*M], got shape {w.shape}")
    return np.ascontiguousarray(np.transpose(w[0], (2, 0, 1)))


def pack_depthwise_weights(w: np.ndarray, bits: int) -> bytes:
    """Pack a TFLite-layout depthwise filter ``[1, kh, kw, C*M]`` (per output channel runs)."""
    return pack_weights(depthwise_rows(w), bits)


def unpack_depthwise_weights(data, bits: int, shape: Sequence[int]) -> np.ndarray:
    """Inverse of :func:`pack_depthwise_weights`; ``shape`` is the TFLite ``[1, kh, kw, C*M]``."""
    _, kh, kw, cm = (int(s) for s in shape)
    rows = unpack_weights(data, bits, (cm, kh, kw))
    return np.transpose(rows, (1, 2, 0))[None, ...]


# ------------------------------------------------------------ the weight tensor (format.md 2.2)

def row_bytes(k: int, bits: int) -> int:
    """Bytes of one packed row of k values (the weight tensor's second dimension)."""
    return packed_row_size(bits, k)


def pack_rows(rows: np.ndarray, bits: int) -> np.ndarray:
    """[O, K] integers -> the weight tensor's array, uint8 [O, row_bytes] at every width."""
    rows = np.asarray(rows, dtype=np.int64)
    data = pack_weights(rows, bits)
    return np.frombuffer(data, dtype=np.uint8).reshape(rows.shape[0], row_bytes(rows.shape[1], bits))


def unpack_rows(stored: np.ndarray, bits: int, k: int) -> np.ndarray:
    """Inverse of pack_rows: int64 [O, K]."""
    stored = np.asarray(stored)
    return unpack_weights(stored.astype(np.uint8).tobytes(), bits, (stored.shape[0], k))


def weights_to_rows(op: str, w: np.ndarray) -> np.ndarray:
    """TFLite-layout weights -> W[O][K] (depthwise [1,kh,kw,C*M] becomes [C*M, kh*kw])."""
    w = np.asarray(w)
    if op == "depthwise_conv2d":
        return w.reshape(-1, w.shape[-1]).T
    return w.reshape(w.shape[0], -1)


def rows_to_weights(op: str, rows: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Inverse of weights_to_rows for the TFLite-layout `shape`."""
    if op == "depthwise_conv2d":
        return np.ascontiguousarray(rows.T).reshape(shape)
    return rows.reshape(shape)
