"""Fake-quant tf_keras models: tfmot quantizers and configs whose formats are variables."""

from .configs import FxpQuantizeConfig
from .model import NotFakeQuantModelError, describe, quantize_model, quantize_scope, quantizer_variables, set_policy
from .quantizers import FxpQuantizer, InputQuantizer, fake_quant

__all__ = ["FxpQuantizeConfig", "NotFakeQuantModelError",
           "FxpQuantizer", "InputQuantizer", "fake_quant", "describe", "quantize_model",
           "quantize_scope", "quantizer_variables", "set_policy"]
