"""Estimated instructions per layer of an fxp file on Cortex-M4 (fxpq's optimized kernels).

A linear model per op, fitted to QEMU measurements of the kernels (mps2-an386 under -icount
shift=0) by ``scripts/fit_cost_model.py``, which prints the COEFFICIENTS below and each op's error
on the cases it was fitted to. It is an estimate: it ignores data-dependent paths (e.g. the
64-bit accumulator) and the interpreter's own per-op overhead; ``fxpq run --engine qemu-m4``
measures a whole model. Stock TFLite ops (CMSIS-NN) are not modelled (None).

Features (the order of each COEFFICIENTS tuple), per inference: weighted ops: MACs; MACs with
weights wider than 8 bits; MACs with activations wider than 8 bits; weights (each row is decoded
once per call); weights at a width other than 8 or 16 bits (bit-unpacked); output elements x kernel
taps with activations wider than 8 bits (the 16-bit path loops per tap); output elements; 1.
Other ops: input elements; input elements wider than 8 bits; output elements; 1.
"""

from __future__ import annotations

WEIGHTED = ("conv2d", "depthwise_conv2d", "fully_connected")

# printed by scripts/fit_cost_model.py --cases 60 --seed 0 (the kernels as of 940c2a1, QEMU mps2-an386)
COEFFICIENTS: dict[str, tuple[float, ...]] = {
    # 60 cases: median error 32%, 90th percentile 65%
    "add": (23.48, 3.797, 0, 0),
    # 60 cases: median error 12%, 90th percentile 27%
    "average_pool2d": (1.922, 0, 265, 615.6),
    # 60 cases: median error 7%, 90th percentile 18%
    "concat": (70.71, 5.427, 0, 90.43),
    # 38 cases: median error 39%, 90th percentile 75%
    "conv2d": (1.39, 1.05, 3.971, 2.329, 0, 6.756, 65.45, 2022),
    # 22 cases: median error 13%, 90th percentile 61%
    "conv2d_1x1": (0.2678, 0.4909, 0, 3.175, 0, 32.88, 50.02, 3203),
    # 60 cases: median error 16%, 90th percentile 31%
    "depthwise_conv2d": (0, 0, 7.687, 18.28, 13.18, 0, 84.58, 1913),
    # 60 cases: median error 15%, 90th percentile 74%
    "fully_connected": (2.639, 1.695, 0.8334, 0, 0.4313, 18.52, 93.21, 909.2),
    # 60 cases: median error 10%, 90th percentile 21%
    "global_average_pool2d": (14.66, 0, 215.9, 492.5),
    # 60 cases: median error 9%, 90th percentile 22%
    "leaky_relu": (73.81, 1.728, 0, 0),
    # 60 cases: median error 15%, 90th percentile 45%
    "max_pool2d": (2.517, 18.51, 89.29, 627.1),
    # 60 cases: median error 8%, 90th percentile 23%
    "pad": (78.56, 0, 16.88, 548.8),
    # 60 cases: median error 12%, 90th percentile 23%
    "quantize": (407.6, 0, 0, 35.17),
    # 60 cases: median error 7%, 90th percentile 30%
    "requantize": (69.9, 6.119, 0, 0.9816),
}

__all__ = ["COEFFICIENTS", "features", "layer_instructions", "op_key"]


def op_key(op: str, taps: int = 1) -> str:
    """The model's key of a graph op: a 1x1 conv reads its columns in place, a KxK conv builds im2col."""
    return "conv2d_1x1" if op == "conv2d" and taps == 1 else op


def features(op: str, *, macs: int, out_elements: int, in_elements: int, weight_bits: int = 0, x_bits: int = 0,
             weights: int = 0, taps: int = 1) -> list[float]:
    """The model's features of one layer (per inference)."""
    if op in WEIGHTED:
        packed = weights if weight_bits not in (8, 16) else 0
        wide = x_bits > 8
        return [macs, macs if weight_bits > 8 else 0, macs if wide else 0, weights, packed,
                out_elements * taps if wide else 0, out_elements, 1.0]
    return [in_elements, in_elements if x_bits > 8 else 0, out_elements, 1.0]


def layer_instructions(op: str, *, taps: int, macs: int, out_elements: int, in_elements: int, weight_bits: int = 0,
                       x_bits: int = 0, weights: int = 0) -> int | None:
    """Estimated instructions of one layer, None for an op the model does not describe."""
    coef = COEFFICIENTS.get(op_key(op, taps))
    if coef is None:
        return None
    f = features(op, macs=macs, out_elements=out_elements, in_elements=in_elements, weight_bits=weight_bits,
                 x_bits=x_bits, weights=weights, taps=taps)
    return int(round(sum(c * v for c, v in zip(coef, f))))
