"""Weight tensors of the fxp target (docs/format.md 2.2) on top of the shared packer.

The bit packing itself is fxpq_keras.kernels.packing (numerics.md section 9, one copy for the
project); this module only shapes it into TFLite tensors: uint8 [O, row_bytes] for 2..8 bits,
int16 [O, K] for 9..16.
"""

from __future__ import annotations

import numpy as np

from ..kernels.packing import pack_weights, packed_row_size, unpack_weights


def row_bytes(k: int, bits: int) -> int:
    """Bytes of one packed row of k values (2..8 bits)."""
    return packed_row_size(bits, k)


def pack_rows(rows: np.ndarray, bits: int) -> np.ndarray:
    """[O, K] integers -> the weight tensor's array (uint8 [O, row_bytes] or int16 [O, K])."""
    rows = np.asarray(rows, dtype=np.int64)
    data = pack_weights(rows, bits)
    if bits > 8:
        return np.frombuffer(data, dtype="<i2").reshape(rows.shape).astype(np.int16)
    return np.frombuffer(data, dtype=np.uint8).reshape(rows.shape[0], row_bytes(rows.shape[1], bits))


def unpack_rows(stored: np.ndarray, bits: int, k: int) -> np.ndarray:
    """Inverse of pack_rows: int64 [O, K]."""
    stored = np.asarray(stored)
    data = stored.astype("<i2").tobytes() if bits > 8 else stored.astype(np.uint8).tobytes()
    return unpack_weights(data, bits, (stored.shape[0], k))


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
