"""Weight packing, numerics.md section 9 and docs/format.md section 2.2.

Weights are a matrix W[O][K] of output-channel rows. Widths 2..8 are packed per row into a
little-endian bit stream (LSB first in each byte, each row starting on a byte boundary); 9..16
are int16. (Kept here until a shared `fxpq_keras.kernels.packing` exists.)
"""

from __future__ import annotations

import numpy as np

from ..formats import MAX_BITS, MIN_BITS


def row_bytes(k: int, bits: int) -> int:
    """Bytes one packed row of k values takes."""
    return (k * bits + 7) // 8


def _check(bits: int) -> None:
    if not MIN_BITS <= bits <= MAX_BITS:
        raise ValueError(f"weight bits must be in {MIN_BITS}..{MAX_BITS}, got {bits}")


def pack_rows(q: np.ndarray, bits: int, signed: bool = True) -> np.ndarray:
    """[O, K] integers -> uint8 [O, row_bytes] (bits <= 8) or int16 [O, K] (bits 9..16).

    Values must already lie in the format's range: packing a value that does not fit is a bug
    upstream, so it raises instead of wrapping silently.
    """
    _check(bits)
    q = np.asarray(q, dtype=np.int64)
    if q.ndim != 2:
        raise ValueError(f"pack_rows expects [O, K], got shape {q.shape}")
    lo, hi = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)
    if q.size and (q.min() < lo or q.max() > hi):
        raise ValueError(f"values out of the {bits}-bit {'signed' if signed else 'unsigned'} range [{lo}, {hi}]")
    if bits > 8:
        return q.astype(np.int16 if signed else np.uint16)
    o, k = q.shape
    pattern = (q & ((1 << bits) - 1)).astype(np.uint64)
    # bit j of value i lands at stream bit i*bits + j
    bit_values = (pattern[:, :, None] >> np.arange(bits, dtype=np.uint64)) & np.uint64(1)  # [O, K, bits]
    stream = np.zeros((o, row_bytes(k, bits) * 8), dtype=np.uint8)
    stream[:, : k * bits] = bit_values.reshape(o, k * bits)
    return np.packbits(stream, axis=1, bitorder="little")


def unpack_rows(data: np.ndarray, bits: int, k: int, signed: bool = True) -> np.ndarray:
    """Inverse of pack_rows: uint8 [O, row_bytes] or int16 [O, K] -> int64 [O, K]."""
    _check(bits)
    data = np.asarray(data)
    if bits > 8:
        return data.astype(np.int64).reshape(data.shape[0], k)
    if data.ndim != 2 or data.shape[1] != row_bytes(k, bits):
        raise ValueError(f"packed rows of {k} x {bits}-bit values need {row_bytes(k, bits)} bytes each, got {data.shape}")
    bits_arr = np.unpackbits(data.astype(np.uint8), axis=1, bitorder="little")[:, : k * bits]
    vals = bits_arr.reshape(data.shape[0], k, bits).astype(np.int64) << np.arange(bits, dtype=np.int64)
    v = vals.sum(axis=2)
    if signed:
        v = np.where(v >= (1 << (bits - 1)), v - (1 << bits), v)
    return v


def weights_to_rows(op: str, w: np.ndarray) -> np.ndarray:
    """TFLite-layout weights -> W[O][K] rows (depthwise [1,kh,kw,C*M] becomes [C*M, kh*kw])."""
    w = np.asarray(w)
    if op == "depthwise_conv2d":
        return w.reshape(-1, w.shape[-1]).T
    return w.reshape(w.shape[0], -1)


def rows_to_weights(op: str, rows: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Inverse of weights_to_rows for the TFLite-layout `shape`."""
    if op == "depthwise_conv2d":
        return rows.T.reshape(shape)
    return rows.reshape(shape)
