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


def float_scale_quantize(w: tf.Tensor, bits: tf.Tensor, channel_dims: int,
                         frac: tf.Tensor | None = None) -> tuple[tf.Tensor, tf.Tensor]:
    """TFLite's symmetric weight scales (target builtin, issue 23): (q, scale) with, per output
    channel (the last `channel_dims` axes; 0: one scale for the tensor),
    scale = min(max|w| / (2^(bits-1) - 1), 2^-frac) in float32 and
    q = clamp(floor(w / scale + 0.5), -(2^(bits-1) - 1), 2^(bits-1) - 1).

    At the range-derived frac (the search's start and first candidate) 2^-frac >= max|w| / (2^(bits-1) - 1),
    so the scale is TFLite's own; a larger frac (mechanism 3's candidates) is a finer power-of-two
    step that clips the largest weights, which the prediction-error statistic may prefer (at 4 bits
    it often does). Round half up, the project's rule (TFLite's converter rounds half away from
    zero: the two differ only on exact ties at negative half-integers). A channel of zeros takes the
    tensor's scale (TFLM needs a positive one; its q is 0 either way), a tensor of zeros scale 1.
    The one implementation: the fake-quant applies q * scale in the graph (FloatScaleQuantizer) and
    the exporter takes q and scale from this same function (integer_graph/lower.py), so the file
    holds exactly the weights the search measured.
    """
    w = tf.convert_to_tensor(w, tf.float32)
    axes = list(range(w.shape.rank - channel_dims))
    qmax = tf.pow(tf.constant(2.0, tf.float32), tf.cast(bits, tf.float32) - 1.0) - 1.0
    top = tf.reduce_max(tf.abs(w))
    peak = tf.reduce_max(tf.abs(w), axis=axes)
    peak = tf.where(peak > 0.0, peak, tf.where(top > 0.0, top, qmax))
    scale = peak / qmax
    if frac is not None:
        step = tf.pow(tf.constant(2.0, tf.float32), -tf.cast(frac, tf.float32))
        scale = tf.minimum(scale, tf.reduce_min(step) if channel_dims == 0 else tf.reshape(step, tf.shape(scale)))
    q = tf.clip_by_value(tf.floor(w / scale + 0.5), -qmax, qmax)
    return q, scale


class FloatScaleQuantizer(FxpQuantizer):
    """The weights quantizer of target builtin: TFLite's float per-channel (`per_tensor`: one)
    symmetric scales from the float weights, the width and frac variables (`float_scale_quantize`);
    the same variables as FxpQuantizer, so a format change is an assignment, no retrace."""

    def __init__(self, channel_shape: tuple[int, ...] | None = None, signed: bool = True, bits: int = 16,
                 frac: int = 8, per_tensor: bool = False) -> None:
        super().__init__(channel_shape, signed, bits, frac)
        self.per_tensor = bool(per_tensor)

    def __call__(self, inputs: tf.Tensor, training: Any, weights: dict[str, tf.Variable], **kwargs: Any) -> tf.Tensor:
        q, scale = float_scale_quantize(inputs, weights["bits"], 0 if self.per_tensor else len(self.channel_shape),
                                        weights["frac"])
        value = q * scale
        if not inference(training):
            value = value + (inputs - tf.stop_gradient(inputs))
        return tf.where(weights["enabled"] > 0.5, value, inputs)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "per_tensor": self.per_tensor}

    def __eq__(self, other: object) -> bool:
        return isinstance(other, FloatScaleQuantizer) and self.get_config() == other.get_config()


class AccumulatorBiasQuantizer(FxpQuantizer):
    """The bias quantizer of target builtin (float weight scales): TFLite's bias, round(b / step) *
    step at the accumulator scale step = s_in * s_w per output channel, which the file stores as an
    int32 (int64 beside int16 activations) at that scale (integer_graph/lower.py quantize_weights).
    `step` is a variable that set_policy and the search write from the policy (model.bias_step), so
    a format change is still an assignment; until it is written (step 0) the power-of-two rule of
    FxpQuantizer applies. A bias a few hundredths of an output step off the file's moves a whole
    channel of bias-only outputs (a uniform image region) across a rounding boundary."""

    def build(self, tensor_shape: Any, name: str, layer: keras.layers.Layer) -> dict[str, tf.Variable]:
        qvars = super().build(tensor_shape, name, layer)
        qvars["step"] = layer.add_weight(f"{name}_step", shape=tuple(tensor_shape), trainable=False,
                                         initializer=keras.initializers.Constant(0.0))
        return qvars

    def __call__(self, inputs: tf.Tensor, training: Any, weights: dict[str, tf.Variable], **kwargs: Any) -> tf.Tensor:
        pow2 = super().__call__(inputs, training, weights, **kwargs)
        step = tf.cast(weights["step"], inputs.dtype)
        written = step > 0.0
        safe = tf.where(written, step, tf.ones_like(step))
        value = tf.floor(inputs / safe + 0.5) * safe
        if not inference(training):
            value = value + (inputs - tf.stop_gradient(inputs))
        return tf.where(tf.logical_and(written, weights["enabled"] > 0.5), value, pow2)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, AccumulatorBiasQuantizer) and self.get_config() == other.get_config()


class ScaledActivationQuantizer(FxpQuantizer):
    """The output quantizer of target builtin with float activation scales (issue 23): q * scale with
    q = clamp(floor(x / scale + 0.5)) in the format's range shifted down by `zero_point` (asymmetric
    int8: the file stores q + zero point), `scale` and `zero_point` variables that set_policy and the
    search write from the policy's tensor format (formats.scaled_format; 2^-frac and 0 where the policy
    has no range: then the value is FxpQuantizer's exactly); `range` keeps the calibration max|a|
    (-1: none) and `bounds` its (min, max) (min > max: none) so that describe() gives the policy back."""

    def build(self, tensor_shape: Any, name: str, layer: keras.layers.Layer) -> dict[str, tf.Variable]:
        qvars = super().build(tensor_shape, name, layer)
        for suffix, value, shape in (("scale", 2.0 ** -self.frac, ()), ("range", -1.0, ()), ("zero_point", 0.0, ()),
                                     ("bounds", [1.0, -1.0], (2,))):
            qvars[suffix] = layer.add_weight(f"{name}_{suffix}", shape=shape, trainable=False,
                                             initializer=keras.initializers.Constant(value))
        return qvars

    def __call__(self, inputs: tf.Tensor, training: Any, weights: dict[str, tf.Variable], **kwargs: Any) -> tf.Tensor:
        scale = tf.cast(weights["scale"], inputs.dtype)
        half_range = tf.pow(tf.constant(2.0, inputs.dtype), weights["bits"] - 1.0)
        zero_point = tf.cast(weights["zero_point"], inputs.dtype)
        lo = tf.where(weights["signed"] > 0.5, -half_range, tf.zeros_like(half_range)) - zero_point
        hi = tf.where(weights["signed"] > 0.5, half_range - 1.0, 2.0 * half_range - 1.0) - zero_point
        value = tf.clip_by_value(self._round(inputs / scale, weights), lo, hi) * scale
        if not inference(training):
            value = value + (inputs - tf.stop_gradient(inputs))
        return tf.where(weights["enabled"] > 0.5, value, inputs)

    def _round(self, steps: tf.Tensor, weights: dict[str, tf.Variable]) -> tf.Tensor:
        """The integer code of a value in steps: round half up, the project's rule."""
        return tf.floor(steps + 0.5)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ScaledActivationQuantizer) and self.get_config() == other.get_config()


def _round_half_away(v: tf.Tensor) -> tf.Tensor:
    return tf.sign(v) * tf.floor(tf.abs(v) + 0.5)


class RequantizedOutputQuantizer(ScaledActivationQuantizer):
    """The output quantizer of a target-builtin weighted layer: TFLM's int8 kernels requantize the
    int32 accumulator with MultiplyByQuantizedMultiplier, which rounds twice: to 2^-r of an output
    step, half up (SaturatingRoundingDoublingHighMul; r the multiplier's right shift, per output
    channel), then to the step, half away from zero (RoundingDivideByPOT). `pre_round` holds 2^r
    per output channel (model.pre_round; 0: round once, half up, as for int16 kernels, whose int64
    requantization rounds once). A value a few thousandths of a step below a half rounds up in the
    file: in a uniform image region every output of a channel can."""

    def build(self, tensor_shape: Any, name: str, layer: keras.layers.Layer) -> dict[str, tf.Variable]:
        qvars = super().build(tensor_shape, name, layer)
        qvars["pre_round"] = layer.add_weight(f"{name}_pre_round", shape=(int(tensor_shape[-1]),), trainable=False,
                                              initializer=keras.initializers.Constant(0.0))
        return qvars

    def _round(self, steps: tf.Tensor, weights: dict[str, tf.Variable]) -> tf.Tensor:
        grid = tf.cast(weights["pre_round"], steps.dtype)
        written = grid > 0.0
        safe = tf.where(written, grid, tf.ones_like(grid))
        twice = _round_half_away(tf.floor(steps * safe + 0.5) / safe)
        return tf.where(written, twice, tf.floor(steps + 0.5))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, RequantizedOutputQuantizer) and self.get_config() == other.get_config()


class AveragePoolOutputQuantizer(ScaledActivationQuantizer):
    """The output quantizer of a target-builtin average pool: TFLM's AVERAGE_POOL_2D divides the
    int32 sum of the *stored* codes (q + zero point) by the count rounding half away from zero, so a
    mean on a half step rounds down where the stored sum is negative (u8 below the middle of its
    range: zero point -128). `stored_zero_point` holds that zero point (formats.stored_zero_point);
    the mean, in steps, is first snapped to 1/256 of a step so that float sums sit on their ties (a
    count up to 256 keeps every other mean at least 1/512 of a step off a half)."""

    def build(self, tensor_shape: Any, name: str, layer: keras.layers.Layer) -> dict[str, tf.Variable]:
        qvars = super().build(tensor_shape, name, layer)
        qvars["stored_zero_point"] = layer.add_weight(f"{name}_stored_zero_point", shape=(), trainable=False,
                                                      initializer=keras.initializers.Constant(0.0))
        return qvars

    def _round(self, steps: tf.Tensor, weights: dict[str, tf.Variable]) -> tf.Tensor:
        zero_point = tf.cast(weights["stored_zero_point"], steps.dtype)
        snapped = tf.round(steps * 256.0) / 256.0
        return _round_half_away(snapped + zero_point) - zero_point

    def __eq__(self, other: object) -> bool:
        return isinstance(other, AveragePoolOutputQuantizer) and self.get_config() == other.get_config()


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
