"""tfmot QuantizeConfigs: *what* gets quantized in each canonical layer.

One config class serves every layer kind: the attributes that hold weights (kernel or
depthwise_kernel, then bias), the shape of the per-channel frac vector, and whether the output is a
data structure of its own (Flatten, Reshape, softmax and an Add that feeds a ReLU pass their input
format through).
"""

from __future__ import annotations

from typing import Any

from .._tf import keras, tfmot
from .quantizers import (
    AccumulatorBiasQuantizer,
    AveragePoolOutputQuantizer,
    FloatScaleQuantizer,
    FxpQuantizer,
    RequantizedOutputQuantizer,
    ScaledActivationQuantizer,
)

WEIGHT_SCALES = ("pow2", "float")


class FxpQuantizeConfig(tfmot.quantization.keras.QuantizeConfig):
    """Weights (per-channel-capable), bias and output quantizers of one layer."""

    def __init__(self, weight_attrs: list[str] | tuple[str, ...] = (), channel_shape: tuple[int, ...] | None = None,
                 quantize_output: bool = True, output_signed: bool = True, weight_scales: str = "pow2",
                 per_tensor_weights: bool = False, activation_scales: str = "pow2",
                 stock_average: bool = False) -> None:
        if weight_scales not in WEIGHT_SCALES:
            raise ValueError(f"weight_scales must be one of {WEIGHT_SCALES}, got {weight_scales!r}")
        self.weight_attrs = list(weight_attrs)
        # "float": target builtin's weights, TFLite's float scales (FloatScaleQuantizer); per_tensor_weights:
        # one scale for the tensor (FULLY_CONNECTED: TFLM refuses per-channel int4 there)
        self.weight_scales = weight_scales
        # "float": target builtin's outputs with float activation scales (ScaledActivationQuantizer)
        if activation_scales not in WEIGHT_SCALES:
            raise ValueError(f"activation_scales must be one of {WEIGHT_SCALES}, got {activation_scales!r}")
        self.activation_scales = activation_scales
        # an average pool the file computes as stock AVERAGE_POOL_2D (with float activation scales:
        # target builtin), whose rounding is TFLM's (AveragePoolOutputQuantizer)
        self.stock_average = bool(stock_average)
        self.per_tensor_weights = bool(per_tensor_weights)
        self.channel_shape = tuple(channel_shape) if channel_shape else ()
        self.quantize_output = bool(quantize_output)
        self.output_signed = bool(output_signed)

    def _quantizer(self, attr: str) -> FxpQuantizer:
        kernel = attr in ("kernel", "depthwise_kernel")
        if self.weight_scales == "float":  # TFLite's weight scales, and its bias at s_in * s_w
            if kernel:
                return FloatScaleQuantizer(self.channel_shape, signed=True, bits=8, per_tensor=self.per_tensor_weights)
            return AccumulatorBiasQuantizer(None, signed=True, bits=32)
        return FxpQuantizer(self.channel_shape if kernel else None, signed=True, bits=16 if kernel else 32)

    def get_weights_and_quantizers(self, layer: keras.layers.Layer) -> list[tuple[Any, FxpQuantizer]]:
        return [(getattr(layer, a), self._quantizer(a)) for a in self.weight_attrs]

    def get_activations_and_quantizers(self, layer: keras.layers.Layer) -> list:
        return []

    def set_quantize_weights(self, layer: keras.layers.Layer, quantize_weights: list) -> None:
        if len(quantize_weights) != len(self.weight_attrs):
            raise ValueError(f"{layer.name}: expected {len(self.weight_attrs)} quantized weights, "
                             f"got {len(quantize_weights)}")
        for attr, w in zip(self.weight_attrs, quantize_weights):
            setattr(layer, attr, w)

    def set_quantize_activations(self, layer: keras.layers.Layer, quantize_activations: list) -> None:
        return None

    def get_output_quantizers(self, layer: keras.layers.Layer) -> list[FxpQuantizer]:
        if not self.quantize_output:
            return []
        if self.activation_scales == "float":
            if self.weight_attrs and self.weight_scales == "float":  # TFLM's requantization of a weighted op
                return [RequantizedOutputQuantizer(signed=self.output_signed)]
            if self.stock_average:
                return [AveragePoolOutputQuantizer(signed=self.output_signed)]
            return [ScaledActivationQuantizer(signed=self.output_signed)]
        return [FxpQuantizer(signed=self.output_signed)]

    def get_config(self) -> dict[str, Any]:
        config = {"weight_attrs": self.weight_attrs, "channel_shape": list(self.channel_shape),
                  "quantize_output": self.quantize_output, "output_signed": self.output_signed}
        if self.weight_scales != "pow2":  # (the fxp target's configs stay as they were)
            config.update(weight_scales=self.weight_scales, per_tensor_weights=self.per_tensor_weights)
        if self.activation_scales != "pow2":
            config["activation_scales"] = self.activation_scales
        if self.stock_average:
            config["stock_average"] = True
        return config
