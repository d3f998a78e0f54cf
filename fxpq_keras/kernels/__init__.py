"""The C kernels from Python: the host ctypes bridge (:mod:`.host`) and the QEMU Cortex-M test
harness driver (:mod:`.qemu`); both build the C code on first use.

The weight packing the kernels read (numerics.md section 9) is part of the file format and lives
in :mod:`fxpq_keras.flatbuffer.packing`; it is re-exported here for convenience.
"""

from ..flatbuffer.packing import (
    depthwise_rows,
    pack_depthwise_weights,
    pack_weights,
    packed_row_size,
    packed_size,
    unpack_depthwise_weights,
    unpack_weights,
)

__all__ = [
    "depthwise_rows",
    "pack_depthwise_weights",
    "pack_weights",
    "packed_row_size",
    "packed_size",
    "unpack_depthwise_weights",
    "unpack_weights",
]
