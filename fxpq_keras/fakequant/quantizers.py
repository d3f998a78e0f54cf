"""The fake-quant rule as a tfmot Quantizer whose format lives in non-trainable variables.

bits, frac, signed and an on/off switch are tf.Variables created in `build`; changing a format is
a variable assignment, so the traced model is never rebuilt or retraced (FxP-QNet changes
formats thousands of times).
"""

from __future__ import annotations

from typing import Any

from .._tf import keras, tf, tfmot


def fake_quant(x: tf.Tensor, bits: tf.Tensor, frac: tf.Tensor, signed: tf.Tensor, enabled: tf.Tensor,
               straight_through: bool = True) -> tf.Tensor:
    """q * 2^-frac with q = clamp(floor(x * 2^frac + 0.5)), numerics.md section 2.

    The straight-through estimator (identity gradient) is written as `q + (x - stop_gradient(x))`
    so that the forward value is exactly q * 2^-frac, with no float rounding from `x + (q - x)`.
    Without `straight_through` (inference: what the search evaluates thousands of times) the
    element-wise rule runs as one XLA-fused kernel (`_rounded`): one pass over the tensor instead of
    seven, the same values bit for bit (scale, lo and hi are computed outside it, by TensorFlow's own
    `pow`; inside, every operation is exact or IEEE-rounded the same way).
    """
    scale = tf.pow(tf.constant(2.0, x.dtype), frac)
    half_range = tf.pow(tf.constant(2.0, x.dtype), bits - 1.0)
    lo = tf.where(signed > 0.5, -half_range, tf.zeros_like(half_range))
    hi = tf.where(signed > 0.5, half_range - 1.0, 2.0 * half_range - 1.0)
    if not straight_through:
        return _rounded(x, scale, lo, hi, enabled)
    q = tf.clip_by_value(tf.floor(x * scale + 0.5), lo, hi) / scale
    return tf.where(enabled > 0.5, q + (x - tf.stop_gradient(x)), x)


@tf.function(jit_compile=True)
def _rounded(x: tf.Tensor, scale: tf.Tensor, lo: tf.Tensor, hi: tf.Tensor, enabled: tf.Tensor) -> tf.Tensor:
    """The quantize rule's forward value, fused by XLA (no gradient: inference only)."""
    return tf.where(enabled > 0.5, tf.clip_by_value(tf.floor(x * scale + 0.5), lo, hi) / scale, x)


def inference(training: Any) -> bool:
    """True for a Python-level inference call (training False or Keras' learning phase 0): the
    quantizer needs no gradient path then."""
    return isinstance(training, int) and not training


class FxpQuantizer(tfmot.quantization.keras.quantizers.Quantizer):
    """Dynamic fixed-point quantizer; `channel_shape` gives one frac per output channel."""

    def __init__(self, channel_shape: tuple[int, ...] | None = None, signed: bool = True, bits: int = 16,
                 frac: int = 8) -> None:
        self.channel_shape = tuple(channel_shape) if channel_shape else ()
        self.signed = bool(signed)
        self.bits = int(bits)
        self.frac = int(frac)

    def build(self, tensor_shape: Any, name: str, layer: keras.layers.Layer) -> dict[str, tf.Variable]:
        def var(suffix: str, value: float, shape: tuple[int, ...] = ()) -> tf.Variable:
            return layer.add_weight(f"{name}_{suffix}", shape=shape, initializer=keras.initializers.Constant(value),
                                    trainable=False)

        return {"bits": var("bits", self.bits), "frac": var("frac", self.frac, self.channel_shape),
                "signed": var("signed", 1.0 if self.signed else 0.0), "enabled": var("enabled", 1.0)}

    def __call__(self, inputs: tf.Tensor, training: Any, weights: dict[str, tf.Variable], **kwargs: Any) -> tf.Tensor:
        return fake_quant(inputs, weights["bits"], weights["frac"], weights["signed"], weights["enabled"],
                          straight_through=not inference(training))

    def get_config(self) -> dict[str, Any]:
        return {"channel_shape": list(self.channel_shape), "signed": self.signed, "bits": self.bits,
                "frac": self.frac}

    def __eq__(self, other: object) -> bool:
        return isinstance(other, FxpQuantizer) and self.get_config() == other.get_config()

    def __ne__(self, other: object) -> bool:
        return not self.__eq__(other)


class InputQuantizer(keras.layers.Layer):
    """Quantizes the model input (the first data structure of the Policy)."""

    def __init__(self, signed: bool = True, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.signed = bool(signed)
        self.quantizer = FxpQuantizer(signed=signed)

    def build(self, input_shape: Any) -> None:
        self.quantizer_vars = self.quantizer.build(input_shape, "input", self)
        super().build(input_shape)

    def call(self, inputs: tf.Tensor, training: Any = None) -> tf.Tensor:
        return self.quantizer(inputs, keras.backend.learning_phase() if training is None else training,
                              self.quantizer_vars)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "signed": self.signed}
