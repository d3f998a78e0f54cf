"""Canonical layer kinds that run as stock TFLite builtin ops inside an fxp file (docs/format.md 8).

A kind listed here has no fixed-point kernel of ours: the exported file holds TFLM's own builtin op
on int8 tensors whose scale is 2^-frac (an unsigned 8-bit format is int8 with zero point -128), and
the numpy reference computes exactly what TFLM's reference kernel computes
(fxpq_keras/integer_graph/tflm_ops.py). This module is the one list of those kinds and the format
rules they impose; every later step (calibration, policy, fake-quant model, lowering, writer,
reader) asks it.

- Outputs are fixed-width: 8 bits. Some ops fix the format itself (TFLM's int8 LOGISTIC writes
  scale 1/256 with zero point -128, i.e. the unsigned format u8.8; TANH writes s8.7).
- Inputs are at most 8 bits (an int8 container) and signed unless a stock op produced them
  (our kernels store an unsigned format as uint8, which no stock int8 kernel reads).
- A stock output stored with zero point -128 that one of our kernels (or the model output) reads
  goes through one stock QUANTIZE to the signed format of the same range first (lower.py).
"""

from __future__ import annotations

from typing import Any

from ._tf import keras, tf
from .integer_graph.graph import STOCK_FIXED_FORMATS

#: kinds with two inputs (Keras broadcasting) and one output of their own
STOCK_BINARY = ("mul", "sub")
#: element-wise kinds with one input and an output format of their own
STOCK_UNARY = ("logistic", "tanh", "hard_swish")
#: kinds that only move data: the output keeps the input's format (no data structure of its own)
STOCK_MOVE = ("upsample_nearest", "transpose")
STOCK_KINDS = STOCK_BINARY + STOCK_UNARY + STOCK_MOVE

#: kind -> (bits, frac, signed) TFLM's int8 kernel insists on for the output
FIXED_OUTPUT_FORMATS = {k: (f.bits, f.frac, f.signed) for k, f in STOCK_FIXED_FORMATS.items()}
STOCK_BITS = 8


@keras.utils.register_keras_serializable(package="fxpq")
class HardSwish(keras.layers.Layer):
    """x * relu6(x + 3) / 6 (TFLite's HARD_SWISH; tf_keras has no such activation)."""

    def call(self, inputs: Any) -> Any:
        return inputs * tf.nn.relu6(inputs + 3.0) * (1.0 / 6.0)


def make_stock_layer(kind: str, name: str, config: dict[str, Any]) -> keras.layers.Layer:
    """The float tf_keras layer of a stock canonical node."""
    if kind == "mul":
        return keras.layers.Multiply(name=name)
    if kind == "sub":
        return keras.layers.Subtract(name=name)
    if kind == "logistic":
        return keras.layers.Activation("sigmoid", name=name)
    if kind == "tanh":
        return keras.layers.Activation("tanh", name=name)
    if kind == "hard_swish":
        return HardSwish(name=name)
    if kind == "upsample_nearest":
        return keras.layers.UpSampling2D(tuple(config["size"]), interpolation="nearest", name=name)
    if kind == "transpose":
        return keras.layers.Permute(tuple(int(p) for p in config["perm"]), name=name)
    raise ValueError(f"{kind!r} is not a stock layer kind ({STOCK_KINDS})")


def stock_kind_of(layer: keras.layers.Layer) -> tuple[str, dict[str, Any]] | None:
    """Inverse of make_stock_layer: (kind, config) of a float layer, or None if it is not one."""
    cfg = layer.get_config()
    if isinstance(layer, keras.layers.Multiply):
        return "mul", {}
    if isinstance(layer, keras.layers.Subtract):
        return "sub", {}
    if isinstance(layer, HardSwish):
        return "hard_swish", {}
    if isinstance(layer, keras.layers.Activation) and cfg["activation"] in ("sigmoid", "tanh"):
        return ("logistic" if cfg["activation"] == "sigmoid" else "tanh"), {}
    if isinstance(layer, keras.layers.UpSampling2D):
        return "upsample_nearest", {"size": tuple(int(s) for s in cfg["size"])}
    if isinstance(layer, keras.layers.Permute):
        return "transpose", {"perm": tuple(int(p) for p in cfg["dims"])}
    return None
