"""The C kernels from Python: weight packing (numerics.md section 9), the host ctypes bridge
(:mod:`.host`) and the QEMU Cortex-M test harness driver (:mod:`.qemu`).

``packing`` is numpy-only; ``host`` and ``qemu`` build the C code on first use.
"""

from .packing import (
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
