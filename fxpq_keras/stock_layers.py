"""Canonical layer kinds that run as stock TFLite builtin ops inside an fxp file (docs/format.md 8).

A kind listed here has no fixed-point kernel of ours: the exported file holds TFLM's own builtin op
on int8 tensors whose scale is 2^-frac (an unsigned 8-bit format is int8 with zero point -128), and
the numpy reference computes exactly what TFLM's reference kernel computes
(fxpq_keras/integer_graph/tflm_ops.py). This module is the one list of those kinds, their float
Keras layers, and the format rules they impose; every later step (calibration, policy, fake-quant
model, lowering, writer, reader) asks it.

- Outputs are fixed-width: 8 bits. Some ops fix the format itself (TFLM's int8 LOGISTIC writes
  scale 1/256 with zero point -128, i.e. the unsigned format u8.8; TANH writes s8.7).
- Inputs are at most 8 bits (an int8 container) and signed unless a stock op produced them
  (our kernels store an unsigned format as uint8, which no stock int8 kernel reads).
- HARD_SWISH and SUB refuse an output frac too far above the input's
  (STOCK_MAX_OUT_FRAC_ABOVE_INPUT), LOGISTIC and TANH an input frac outside
  STOCK_INPUT_FRAC_RANGE: the policy moves those fracs inside.
- MAXIMUM and MINIMUM compare stored values: their inputs and output share one format (the
  policy ties the second input's producer to the first's, `Policy.constrain_stock`).
- A stock output stored with zero point -128 that one of our kernels (or the model output) reads
  goes through one stock QUANTIZE to the signed format of the same range first (lower.py).

Config conventions: `upsample_nearest` {"size": (sh, sw)}; `transpose` {"perm": axes including the
batch axis 0, as TFLite's TRANSPOSE}; the others {}.
"""

from __future__ import annotations

from typing import Any

from ._tf import keras
from .integer_graph.graph import STOCK_FIXED_FORMATS

#: kinds with two inputs (Keras broadcasting) and one output of their own
STOCK_BINARY = ("mul", "sub")
#: two-input kinds whose inputs and output share one format (they compare stored values)
STOCK_SAME_FORMAT = ("maximum", "minimum")
#: element-wise kinds with one input and an output format of their own
STOCK_UNARY = ("logistic", "tanh", "hard_swish", "elu")
#: kinds that only move data: the output keeps the input's format (no data structure of its own)
STOCK_MOVE = ("upsample_nearest", "transpose")
STOCK_KINDS = STOCK_BINARY + STOCK_SAME_FORMAT + STOCK_UNARY + STOCK_MOVE
#: stock kinds whose output is not a data structure of its own (it keeps the first input's format)
STOCK_PASS_THROUGH = STOCK_SAME_FORMAT + STOCK_MOVE

#: kind -> (bits, frac, signed) TFLM's int8 kernel insists on for the output
FIXED_OUTPUT_FORMATS = {k: (f.bits, f.frac, f.signed) for k, f in STOCK_FIXED_FORMATS.items()}
STOCK_BITS = 8
#: kind -> how far the output frac may exceed the (smallest) input frac before TFLM's Prepare
#: refuses: HARD_SWISH needs output scale > input scale / 128; SUB's output multiplier
#: 2 max(s_in) / (2^20 s_out) must stay below 1 (docs/numerics.md section 11)
STOCK_MAX_OUT_FRAC_ABOVE_INPUT = {"hard_swish": 6, "sub": 18}
#: kind -> (lowest, highest) input frac TFLM's Prepare takes: LOGISTIC and TANH scale the input to
#: Q4.27 with a left shift of 0..62 (input scale 2^-28..2^35)
STOCK_INPUT_FRAC_RANGE = {"logistic": (-35, 28), "tanh": (-35, 28)}


def hard_swish(x: Any) -> Any:
    """x * relu6(x + 3) / 6: TFLite's HARD_SWISH, Keras 3's hard_silu / hard_swish, which tf_keras
    lacks (keras3.py maps to it)."""
    from ._tf import tf

    return x * tf.nn.relu6(x + 3.0) * (1.0 / 6.0)


_MERGE = {"mul": "Multiply", "sub": "Subtract", "maximum": "Maximum", "minimum": "Minimum"}
_ACTIVATION = {"logistic": "sigmoid", "tanh": "tanh", "elu": "elu", "hard_swish": "hard_swish"}


def make_stock_layer(kind: str, name: str, config: dict[str, Any]) -> keras.layers.Layer:
    """The float tf_keras layer of a stock canonical node."""
    if kind in _MERGE:
        return getattr(keras.layers, _MERGE[kind])(name=name)
    if kind in _ACTIVATION:
        act = hard_swish if kind == "hard_swish" else _ACTIVATION[kind]
        return keras.layers.Activation(act, name=name)
    if kind == "upsample_nearest":
        return keras.layers.UpSampling2D(tuple(config["size"]), interpolation="nearest", name=name)
    if kind == "transpose":
        return keras.layers.Permute(tuple(int(p) for p in config["perm"][1:]), name=name)
    raise ValueError(f"{kind!r} is not a stock layer kind ({STOCK_KINDS})")


def stock_kind_of(layer: keras.layers.Layer) -> tuple[str, dict[str, Any]] | None:
    """Inverse of make_stock_layer: (kind, config) of a float layer, or None if it is not one."""
    for kind, cls in _MERGE.items():
        if type(layer) is getattr(keras.layers, cls):
            return kind, {}
    if isinstance(layer, keras.layers.Activation):
        act = layer.get_config()["activation"]
        if isinstance(act, dict):  # a serialized function: {"class_name": "function", "config": name, ...}
            act = act.get("config")
        act = act if isinstance(act, str) else getattr(act, "__name__", str(act))
        for kind, name in _ACTIVATION.items():
            if act == name:
                return kind, {}
        return None
    if isinstance(layer, keras.layers.UpSampling2D):
        return "upsample_nearest", {"size": tuple(int(s) for s in layer.get_config()["size"])}
    if isinstance(layer, keras.layers.Permute):
        return "transpose", {"perm": (0,) + tuple(int(p) for p in layer.get_config()["dims"])}
    return None
