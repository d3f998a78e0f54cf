"""Keras 3 models in: a table-driven translation into an equivalent tf_keras model.

Why: since TensorFlow 2.16 `import keras` is Keras 3, which is what most users train and save
(`.keras`, `.h5`), but tfmot (the fake-quant step) works only with tf_keras (Keras 2). Keras 3 is
installed next to tf_keras, so `keras` is Keras 3 even after fxpq_keras set TF_USE_LEGACY_KERAS=1
(that variable only chooses what `tf.keras` is). This module is the first thing step 1 of the
pipeline (keras_model.canonicalize) and the CLI's model loading do with a Keras 3 model: rebuild
it layer by layer as tf_keras layers with the same configuration and the same weights, keeping
layer names (the policy names layers) and the graph (Sequential stays Sequential).

Only what TRANSLATORS lists is translated, plus: nested models (translated as tf_keras models, which
canonicalize flattens), keras.ops nodes of a functional graph (`x + 3.0`, `x * y`: _OPS, translated
into the tf ops whose TFOpLambda layers tf_keras's own graphs hold), and the activations tf_keras
lacks or defines differently (hard_silu, Keras 3's hard_sigmoid: _ACTIVATIONS). Anything else
(another layer type, a subclass of a listed one, a shared layer, a non-float32 dtype policy, a
serialized custom object in a config) raises `Keras3TranslationError`, which names the layer and
says "Keras 3" (and, for a layer keras_model.NEEDS lists, what it would need).

Adding a layer type: add one entry to TRANSLATORS, keyed by the Keras 3 class name:
`Translator(target, keys, convert=None, weights=None)`, where `target` is the tf_keras layer
class name, `keys` the config keys passed through unchanged, `convert(config) -> kwargs` any
renamed or derived constructor arguments, and `weights(list) -> list` a change of weight layout
(None when `get_weights()` order and shapes are the same in both Keras versions), and
`from_layer(layer) -> kwargs` constructor arguments read from the layer itself (Normalization's
statistics). tests/test_keras3.py checks every entry against the real Keras 3 package
(float outputs equal to float tolerance): add the new layer to its model builders too.
"""

from __future__ import annotations

import json
import os
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from ._tf import keras
from .keras_model import NEEDS, UNMAPPED, UnsupportedLayerError, hard_swish, keras3_hard_sigmoid


class Keras3TranslationError(UnsupportedLayerError):
    """A Keras 3 layer that has no tf_keras translation; the message names the layer."""

    def __init__(self, name: str, cls: str, why: str) -> None:
        ValueError.__init__(self, f"Keras 3 layer '{name}' ({cls}) cannot be translated to tf_keras: {why}. "
                         f"Translatable Keras 3 layers: {', '.join(sorted(TRANSLATORS))}")
        self.layer_name = name


@dataclass(frozen=True)
class Translator:
    """How one Keras 3 layer class becomes a tf_keras layer (see the module docstring)."""

    target: str
    keys: tuple[str, ...] = ()
    convert: Callable[[dict[str, Any]], dict[str, Any]] | None = None
    weights: Callable[[list[np.ndarray]], list[np.ndarray]] | None = None
    from_layer: Callable[[Any], dict[str, Any]] | None = None  # constructor arguments read from the layer


def _normalization(layer: Any) -> dict[str, Any]:
    """Keras 3 Normalization keeps its statistics as weights; tf_keras takes them as constants."""
    return {"mean": np.asarray(layer.mean), "variance": np.asarray(layer.variance)}


_CONV = ("kernel_size", "strides", "padding", "data_format", "dilation_rate", "activation", "use_bias")
_POOL = ("pool_size", "strides", "padding", "data_format")

TRANSLATORS: dict[str, Translator] = {
    "Conv1D": Translator("Conv1D", ("filters", "groups") + _CONV),
    "Conv2D": Translator("Conv2D", ("filters", "groups") + _CONV),
    "DepthwiseConv2D": Translator("DepthwiseConv2D", ("depth_multiplier",) + _CONV),
    "SeparableConv2D": Translator("SeparableConv2D", ("filters", "depth_multiplier") + _CONV),
    "Dense": Translator("Dense", ("units", "activation", "use_bias")),
    "BatchNormalization": Translator("BatchNormalization", ("axis", "momentum", "epsilon", "center", "scale")),
    "Add": Translator("Add"),
    "Concatenate": Translator("Concatenate", ("axis",)),
    "MaxPooling2D": Translator("MaxPooling2D", _POOL),
    "AveragePooling2D": Translator("AveragePooling2D", _POOL),
    "GlobalAveragePooling2D": Translator("GlobalAveragePooling2D", ("data_format", "keepdims")),
    "ZeroPadding2D": Translator("ZeroPadding2D", ("padding", "data_format")),
    "ReLU": Translator("ReLU", ("max_value", "negative_slope", "threshold")),
    # Keras 3 renamed LeakyReLU's alpha to negative_slope
    "LeakyReLU": Translator("LeakyReLU", (), convert=lambda c: {"alpha": c["negative_slope"]}),
    "Activation": Translator("Activation", ("activation",)),
    "Softmax": Translator("Softmax", ("axis",)),
    "Flatten": Translator("Flatten", ("data_format",)),
    "Reshape": Translator("Reshape", ("target_shape",)),
    "Dropout": Translator("Dropout", ("rate", "noise_shape", "seed")),
    "Multiply": Translator("Multiply"),
    "Subtract": Translator("Subtract"),
    "Maximum": Translator("Maximum"),
    "Minimum": Translator("Minimum"),
    "Rescaling": Translator("Rescaling", ("scale", "offset")),
    "Normalization": Translator("Normalization", ("axis", "invert"), weights=lambda w: [],
                                from_layer=_normalization),
    "MaxPooling1D": Translator("MaxPooling1D", _POOL),
    "AveragePooling1D": Translator("AveragePooling1D", _POOL),
    "GlobalAveragePooling1D": Translator("GlobalAveragePooling1D", ("data_format", "keepdims")),
    "GlobalMaxPooling2D": Translator("GlobalMaxPooling2D", ("data_format", "keepdims")),
    "GlobalMaxPooling1D": Translator("GlobalMaxPooling1D", ("data_format", "keepdims")),
    "UpSampling2D": Translator("UpSampling2D", ("size", "data_format", "interpolation")),
    "Permute": Translator("Permute", ("dims",)),
    "ELU": Translator("ELU", ("alpha",)),
    "SpatialDropout1D": Translator("SpatialDropout1D", ("rate", "seed")),
    "SpatialDropout2D": Translator("SpatialDropout2D", ("rate", "data_format", "seed")),
    "GaussianNoise": Translator("GaussianNoise", ("stddev", "seed")),
    "GaussianDropout": Translator("GaussianDropout", ("rate", "seed")),
    "AlphaDropout": Translator("AlphaDropout", ("rate", "noise_shape", "seed")),
    "ActivityRegularization": Translator("ActivityRegularization", ("l1", "l2")),
}

# Keras 3 activations that tf_keras lacks or defines differently -> the tf_keras callable computing
# Keras 3's function (keras_model recognizes them by name).
_ACTIVATIONS = {"hard_silu": hard_swish, "hard_swish": hard_swish, "hard_sigmoid": keras3_hard_sigmoid,
                "silu": "swish"}

# Keras 3 operations in a functional graph (x + 3.0, x * y) -> the tf function that makes tf_keras's
# TFOpLambda layer of the same op (what tf_keras's own keras.applications graphs hold).
_OPS = {"Add": "add", "Subtract": "subtract", "Multiply": "multiply", "Divide": "truediv",
        "TrueDivide": "truediv", "Maximum": "maximum", "Minimum": "minimum"}


def is_keras3_model(model: Any) -> bool:
    """True for a Keras 3 model object (its classes live in the `keras` package, tf_keras's in `tf_keras`)."""
    return any(c.__module__.split(".")[0] == "keras" and c.__name__ in ("Model", "Layer")
               for c in type(model).__mro__)


def keras3_file(path: str) -> bool:
    """True if `path` is a `.keras` archive or an HDF5 file that Keras 3 wrote (False for tf_keras's)."""
    version = ""
    if zipfile.is_zipfile(path):
        try:
            with zipfile.ZipFile(path) as z:
                version = str(json.loads(z.read("metadata.json")).get("keras_version", ""))
        except (KeyError, ValueError, OSError, zipfile.BadZipFile):
            return False
    elif os.path.isfile(path):
        with open(path, "rb") as f:
            if f.read(8) != b"\x89HDF\r\n\x1a\n":
                return False
        import h5py

        try:
            with h5py.File(path, "r") as h5:
                version = h5.attrs.get("keras_version", "")
                version = version.decode() if isinstance(version, bytes) else str(version)
        except OSError:
            return False
    return version.split(".")[0] == "3"


def load_keras3(path: str) -> keras.Model:
    """Load a file written by Keras 3 with Keras 3 itself, and translate it."""
    import keras as keras3

    if not keras3.__version__.startswith("3"):
        raise ValueError(f"{path} was written by Keras 3, but `import keras` gives Keras {keras3.__version__}")
    return to_tf_keras(keras3.saving.load_model(path, compile=False))


def to_tf_keras(model: Any) -> keras.Model:
    """The tf_keras equivalent of a Keras 3 model (same layer names, configs, weights and graph)."""
    if len(model.inputs or []) != 1 or len(model.outputs or []) != 1:
        raise ValueError("fxpq supports models with exactly one input and one output (Keras 3 model "
                         f"'{model.name}' has {len(model.inputs or [])} inputs, {len(model.outputs or [])} outputs)")
    if type(model).__name__ == "Sequential":
        shape = tuple(model.inputs[0].shape[1:])
        layers = [translate_layer(layer) for layer in model.layers]
        first = model.get_config()["layers"][0]
        input_name = first["config"]["name"] if first["class_name"] == "InputLayer" else None
        clone = keras.Sequential([keras.Input(shape, name=input_name)] + layers, name=model.name)
        for source, layer in zip(model.layers, layers):
            if not _is_model(source):  # a nested model was translated with its weights
                _set_weights(source, layer)
        return clone
    return _functional(model)


def _functional(model: Any) -> keras.Model:
    config = model.get_config()
    by_name = {layer.name: layer for layer in model.layers}
    tensors: dict[str, Any] = {}
    pairs = []
    for entry in config["layers"]:
        name, cls = entry["name"], entry["class_name"]
        nodes = entry.get("inbound_nodes") or []
        if cls == "InputLayer":
            tensors[name] = keras.Input(tuple(entry["config"]["batch_shape"][1:]), name=name)
            continue
        if len(nodes) != 1:
            raise Keras3TranslationError(name, cls, "a layer called more than once (shared layers)")
        if str(entry.get("module", "")).startswith("keras.src.ops"):
            tensors[name] = _op(name, cls, nodes[0], tensors)
            continue
        kwargs = {k: v for k, v in (nodes[0].get("kwargs") or {}).items() if k not in ("training", "mask")
                  or (k == "mask" and v is not None)}
        if kwargs:
            raise Keras3TranslationError(name, cls, f"call arguments {sorted(kwargs)}")
        layer = translate_layer(by_name[name])
        args = _map_tensors(nodes[0]["args"], tensors, name, cls)
        tensors[name] = layer(*args)
        pairs.append((by_name[name], layer))
    clone = keras.Model(tensors[_endpoint(config["input_layers"])], tensors[_endpoint(config["output_layers"])],
                        name=model.name)
    for source, layer in pairs:
        if not _is_model(source):
            _set_weights(source, layer)
    return clone


def _is_model(layer: Any) -> bool:
    return hasattr(layer, "layers") and hasattr(layer, "inputs")


def _op(name: str, cls: str, node: dict[str, Any], tensors: dict[str, Any]) -> Any:
    """A Keras 3 operation node (x + 3.0 in a functional graph) as the tf op on tf_keras tensors."""
    from ._tf import tf

    if cls not in _OPS or node.get("kwargs") or len(node["args"]) != 2:
        raise Keras3TranslationError(name, cls, f"operation {cls} (mapped: {', '.join(sorted(_OPS))} of two operands)")
    args = _map_tensors(node["args"], tensors, name, cls)
    for a in args:
        if isinstance(a, dict):
            raise Keras3TranslationError(name, cls, "a constant operand that is a serialized array")
    if not any(hasattr(a, "shape") for a in args):
        raise Keras3TranslationError(name, cls, "an operation on constants only")
    return getattr(tf.math, _OPS[cls])(*args)


def _endpoint(spec: Any) -> str:
    """The layer name of a functional config's single input/output: [name, 0, 0] or [[name, 0, 0]]."""
    return spec[0][0] if isinstance(spec[0], (list, tuple)) else spec[0]


def _map_tensors(args: Any, tensors: dict[str, Any], name: str, cls: str) -> Any:
    """The call arguments of a Keras 3 config node with its tensors replaced by the tf_keras ones."""
    if isinstance(args, dict) and args.get("class_name") == "__keras_tensor__":
        source, _, index = args["config"]["keras_history"]
        if index != 0 or source not in tensors:
            raise Keras3TranslationError(name, cls, f"an input from layer '{source}' output {index}")
        return tensors[source]
    if isinstance(args, (list, tuple)):
        return [_map_tensors(a, tensors, name, cls) for a in args]
    return args


def translate_layer(layer: Any) -> keras.layers.Layer:
    """A new, unbuilt tf_keras layer with the configuration of one Keras 3 layer (by TRANSLATORS)."""
    cls = type(layer).__name__
    if _is_model(layer) and cls in ("Functional", "Sequential"):  # nested: canonicalize flattens it
        return to_tf_keras(layer)
    translator = TRANSLATORS.get(cls)
    if translator is None:
        raise Keras3TranslationError(layer.name, cls, NEEDS.get(cls, UNMAPPED))
    if type(layer).__module__.split(".")[0] != "keras":
        raise Keras3TranslationError(layer.name, cls, f"a subclass defined in {type(layer).__module__}")
    config = layer.get_config()
    dtype = getattr(getattr(layer, "dtype_policy", None), "name", "float32")
    if dtype != "float32":
        raise Keras3TranslationError(layer.name, cls, f"dtype policy '{dtype}' (only float32 models)")
    kwargs = {key: config[key] for key in translator.keys if key in config}
    for key, value in kwargs.items():
        if isinstance(value, dict):
            raise Keras3TranslationError(layer.name, cls, f"'{key}' is a serialized object ({value.get('class_name')})")
    if translator.convert is not None:
        kwargs.update(translator.convert(config))
    if translator.from_layer is not None:
        kwargs.update(translator.from_layer(layer))
    if isinstance(kwargs.get("activation"), str):
        kwargs["activation"] = _ACTIVATIONS.get(kwargs["activation"], kwargs["activation"])
    try:
        return getattr(keras.layers, translator.target)(name=layer.name, **kwargs)
    except (TypeError, ValueError) as exc:
        raise Keras3TranslationError(layer.name, cls, f"tf_keras refuses its config ({exc})") from None


def _set_weights(source: Any, layer: keras.layers.Layer) -> None:
    weights = [np.asarray(w) for w in source.get_weights()]
    translator = TRANSLATORS[type(source).__name__]
    if translator.weights is not None:
        weights = translator.weights(weights)
    try:
        layer.set_weights(weights)
    except ValueError as exc:
        raise Keras3TranslationError(source.name, type(source).__name__, f"weights do not fit ({exc})") from None


__all__ = ["TRANSLATORS", "Keras3TranslationError", "Translator", "is_keras3_model", "keras3_file", "load_keras3",
           "to_tf_keras", "translate_layer"]
