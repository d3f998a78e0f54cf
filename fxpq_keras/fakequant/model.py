"""Step 3 of the pipeline: the fake-quant tf_keras model of a Policy.

`quantize_model` wraps every canonical layer in tfmot's QuantizeWrapperV2 with an
FxpQuantizeConfig; `set_policy` writes formats into the quantizers' variables (no rebuild, no
retrace); `describe` reads a fake-quant model (also one loaded from a file) back into canonical
nodes and its current Policy, which is what the integer graph is lowered from.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import numpy as np

from .._tf import keras, tf, tfmot
from ..calibration import Calibration, unsigned_outputs
from ..formats import Format, stored_zero_point
from ..keras_model import (
    AVERAGE_POOLS,
    MULTI_INPUT,
    WEIGHTED,
    CNode,
    UnsupportedLayerError,
    apply_channel_scales,
    canonicalize,
    inbound_names,
    leaky_alpha_shift,
    make_layer,
)
from ..policy import DataStructure, Policy, PolicyMismatchError, channels, quantized_output
from ..stock_layers import hard_swish, stock_kind_of
from .configs import FxpQuantizeConfig
from .quantizers import (
    AccumulatorBiasQuantizer,
    AveragePoolOutputQuantizer,
    FloatScaleQuantizer,
    FxpQuantizer,
    InputQuantizer,
    RequantizedOutputQuantizer,
    ScaledActivationQuantizer,
    float_scale_quantize,
)

WRAPPER_PREFIX = "quant_"


def _config_for(cnodes: list[CNode], n: CNode, nonneg: dict[str, bool],
                weight_scales: str = "pow2", activation_scales: str = "pow2") -> FxpQuantizeConfig:
    extra = {"activation_scales": activation_scales} if activation_scales != "pow2" else {}
    if n.kind in WEIGHTED:
        attrs = ["depthwise_kernel" if n.kind == "depthwise_conv2d" else "kernel"]
        if n.bias is not None:
            attrs.append("bias")
        shape = tuple(n.kernel.shape[-2:]) if n.kind == "depthwise_conv2d" else (n.kernel.shape[-1],)
        if weight_scales != "pow2":  # float scales: fully connected per tensor (TFLM's int4 FC rule)
            return FxpQuantizeConfig(attrs, shape, True, not nonneg[n.name], weight_scales, n.kind == "dense",
                                     **extra)
        return FxpQuantizeConfig(attrs, shape, True, not nonneg[n.name], **extra)
    if n.kind in AVERAGE_POOLS and activation_scales != "pow2":
        extra["stock_average"] = True  # target builtin: TFLM's AVERAGE_POOL_2D rounding
    return FxpQuantizeConfig([], None, quantized_output(cnodes, n), not nonneg[n.name], **extra)


def build_fake_quant_model(cnodes: list[CNode], input_signed: bool = True,
                           name: str = "fxpq_fake_quant", weight_scales: str = "pow2",
                           activation_scales: str = "pow2") -> keras.Model:
    """A functional model: InputQuantizer, then every canonical layer in a QuantizeWrapperV2;
    weight_scales "float": weights with TFLite's float scales (target builtin, FloatScaleQuantizer);
    activation_scales "float": outputs with float activation scales (ScaledActivationQuantizer)."""
    for n in cnodes:
        if n.kind == "concat" and "axis" in n.config:
            raise UnsupportedLayerError(n.name, "Concatenate", f"axis {n.config['axis']}: joining on another axis than "
                                        "the channels needs one format for every input (a stock CONCATENATION), "
                                        "which the search does not tie yet; concatenate on the last axis")
    nonneg = unsigned_outputs(cnodes, not input_signed)
    tensors: dict[str, Any] = {}
    inp = None
    for n in cnodes:
        if n.kind == "input":
            inp = keras.Input(shape=n.config["shape"], name=n.name)
            tensors[n.name] = InputQuantizer(signed=input_signed, name=f"{n.name}_quantizer")(inp)
            continue
        layer = make_layer(n)
        if n.kind == "softmax":
            tensors[n.name] = layer(tensors[n.inputs[0]])
            continue
        # the wrapper builds the layer itself, as it does when a saved model is loaded: a layer built
        # before wrapping is listed twice among the wrapper's trainable weights, and such a model cannot
        # be saved after training (.keras: "expected 15 variables, but received 17"; .h5: "name already
        # exists"). The float weights go into the wrapper's variables after the build.
        wrapper = tfmot.quantization.keras.QuantizeWrapperV2(layer, _config_for(cnodes, n, nonneg, weight_scales,
                                                                                     activation_scales),
                                                             name=f"{WRAPPER_PREFIX}{n.name}")
        x = [tensors[i] for i in n.inputs]
        tensors[n.name] = wrapper(x if n.kind in MULTI_INPUT else x[0])
        if n.kind in WEIGHTED:
            floats = [n.kernel] + ([n.bias] if n.bias is not None else [])
            for (variable, _, _), value in zip(wrapper._weight_vars, floats, strict=True):
                variable.assign(value)
    return keras.Model(inp, tensors[cnodes[-1].name], name=name)


def quantize_model(model: keras.Model, policy: Policy | None = None, calibration_data: Any = None) -> keras.Model:
    """Return the fake-quant tf_keras model of a float model under `policy`.

    Without a policy, calibration data is required and a uniform 16-bit policy is used (the start
    of the FxP-QNet search).

    Quantization-aware fine-tuning is this model trained with `fit` (docs/algorithm.md). Example::

        qmodel = quantize_model(model, Policy.uniform(model, 6, x_calib))
        qmodel.compile("adam", "sparse_categorical_crossentropy")
        qmodel.fit(x_train, y_train, epochs=3)
        export_tflite(qmodel, "model.tflite")
    """
    if isinstance(model, Calibration):
        cnodes = model.cnodes
    else:
        cnodes = canonicalize(model)
    if policy is None:
        if calibration_data is None and not isinstance(model, Calibration):
            raise ValueError("quantize_model needs a policy or calibration_data")
        calib = model if isinstance(model, Calibration) else Calibration(model, calibration_data)
        policy = Policy.uniform(calib, 16, None)
    policy.check_matches(cnodes)
    if isinstance(model, Calibration):
        if policy.channel_scales != model.channel_scales:
            raise PolicyMismatchError("the policy's channel_scales (range alignment) differ from the calibration's; "
                                      "pass the float Keras model (the policy's scales are applied to it) or the "
                                      "calibration the policy was made from")
    elif policy.channel_scales:
        try:
            apply_channel_scales(cnodes, policy.channel_scales)
        except ValueError as exc:
            raise PolicyMismatchError(f"policy does not match the model: {exc}") from None
    qmodel = build_fake_quant_model(cnodes, input_signed=policy.input.signed, weight_scales=policy.weight_scales,
                                    activation_scales="float" if policy.activation_ranges else "pow2")
    qmodel._fxpq_channel_scales = dict(policy.channel_scales)  # describe() returns them with the formats
    set_policy(qmodel, policy)
    return qmodel


def _quantizer_vars(qmodel: keras.Model) -> Iterator[tuple[str, str, dict[str, tf.Variable]]]:
    """(layer, data structure, variables) of every quantizer in a fake-quant model."""
    for layer in qmodel.layers:
        if isinstance(layer, InputQuantizer):
            yield "input", "output", layer.quantizer_vars
        elif isinstance(layer, tfmot.quantization.keras.QuantizeWrapperV2):
            name = layer.layer.name
            for weight, _, qvars in layer._weight_vars:
                yield name, ("bias" if "bias" in weight.name.split("/")[-1] else "weights"), qvars
            if layer._output_quantizers:
                yield name, "output", layer._output_quantizer_vars


def set_policy(qmodel: keras.Model, policy: Policy) -> None:
    """Write every format of `policy` into the fake-quant model's variables (no retrace).

    The whole policy is checked against the model first (layers, element counts, per-channel
    frac counts, formats): on any mismatch a PolicyMismatchError names the data structure and no
    variable has changed.

    Example::

        policy.set("fc", "output", bits=5)
        set_policy(qmodel, policy)   # the next predict uses 5 bits there
    """
    policy.validate()
    cnodes, current = describe(qmodel)
    policy.check_matches(cnodes)
    known = getattr(qmodel, "_fxpq_channel_scales", None)  # unknown for a model loaded from a file
    if known is not None and known != policy.channel_scales:
        raise PolicyMismatchError("the policy's channel_scales (range alignment) differ from the ones this model "
                                  "was built with; build the model with quantize_model(float_model, policy)")
    if policy.weight_scales != current.weight_scales:
        raise PolicyMismatchError(f"the policy's weight scales are {policy.weight_scales!r}, the model's "
                                  f"{current.weight_scales!r}; build the model with "
                                  "quantize_model(float_model, policy)")
    if policy.input.elements != current.input.elements:
        raise PolicyMismatchError(f"policy data structure 'input' does not match the model (elements "
                                  f"{policy.input.elements} vs {current.input.elements})")
    scaled = any("scale" in qvars for _, _, qvars in _quantizer_vars(qmodel))
    if bool(policy.activation_ranges) and not scaled:
        raise PolicyMismatchError("the policy has float activation scales, the model has none; build the model "
                                  "with quantize_model(float_model, policy)")
    writes = [(qvars, layer, ds) for layer, ds, qvars in _quantizer_vars(qmodel)]
    nodes = {n.name: n for n in cnodes}
    for qvars, layer, ds in writes:
        write_data_structure(qvars, policy.get(layer, ds), activation_format_of(policy, layer, ds))
        if "range" in qvars:
            qvars["range"].assign(policy.activation_ranges.get(layer, -1.0))
            qvars["bounds"].assign(policy.activation_bounds.get(layer, (1.0, -1.0)))
        if "step" in qvars or "pre_round" in qvars:
            write_requantization(qvars, policy, nodes[layer])


def float_weights(kernel: np.ndarray, kind: str, d: DataStructure) -> tuple[np.ndarray, np.ndarray]:
    """(q, float32 scale per output channel; one for fully connected) of a layer's float kernel in
    the weights data structure `d` with TFLite's float scales (float_scale_quantize over the layer's
    channel axes): the exporter's weights and the bias quantizer's step both come from here."""
    channel_dims = 0 if kind == "dense" else 2 if kind == "depthwise_conv2d" else 1
    channels = int(np.prod(kernel.shape[-channel_dims:])) if channel_dims else 1
    q, scale = float_scale_quantize(kernel, d.bits, channel_dims, d.fracs(channels).astype(np.float32))
    return q.numpy(), np.asarray(scale.numpy(), dtype=np.float32).reshape(-1)


def bias_scale(s_in: float, weight_scale: np.ndarray) -> np.ndarray:
    """TFLite's bias scale s_in * s_w per output channel, in float32 as its converter writes it."""
    return np.float32(s_in) * np.asarray(weight_scale, dtype=np.float32)


def weight_scale(policy: Policy, node: CNode) -> np.ndarray:
    """A float-weight-scale layer's weight scales under `policy` (float_weights), what bias_step and
    pre_round take; the search keeps them per weight format, as they depend on nothing else."""
    return float_weights(node.kernel, node.kind, policy.get(node.name, "weights"))[1]


def bias_step(policy: Policy, node: CNode, scale: np.ndarray | None = None) -> np.ndarray:
    """A float-weight-scale layer's accumulator scale under `policy`, one per bias element: the step
    of its AccumulatorBiasQuantizer and of the bias the exporter writes (`scale`: its weight_scale,
    computed when not given)."""
    scale = weight_scale(policy, node) if scale is None else scale
    return np.broadcast_to(bias_scale(policy.input_tensor_format(node.name).step, scale), np.shape(node.bias))


def pre_round(policy: Policy, node: CNode, scale: np.ndarray | None = None) -> np.ndarray:
    """Per output channel of a float-weight-scale layer, 2^r with r the right shift of TFLM's
    multiplier s_in * s_w / s_out (tflm_ops.prepare_weighted, the numpy model's own Prepare) when
    the file computes the layer in int8 (int32 accumulator: MultiplyByQuantizedMultiplier rounds
    twice); 0 when it computes it in int16 (one rounding) or TFLM would refuse the scales
    (`scale`: its weight_scale, computed when not given)."""
    from ..integer_graph import tflm_ops  # the numpy model of TFLM (no TensorFlow, no fxpq import back)

    x, out = policy.input_tensor_format(node.name), policy.tensor_format(node.name)
    shape = np.shape(node.kernel)
    channels = int(shape[-2] * shape[-1]) if node.kind == "depthwise_conv2d" else int(shape[-1])
    if x.bits > 8 or out.bits > 8:
        return np.zeros(channels, np.float32)
    scale = weight_scale(policy, node) if scale is None else scale
    try:
        p = tflm_ops.prepare_weighted("weighted", tflm_ops.format_quant(x), scale.tolist(), tflm_ops.format_quant(out),
                                      channels)
    except ValueError:
        return np.zeros(channels, np.float32)
    return np.ldexp(1.0, np.maximum(-np.asarray(p.shifts), 0)).astype(np.float32)


def write_requantization(qvars: dict[str, tf.Variable], policy: Policy, node: CNode,
                         scale: np.ndarray | None = None) -> None:
    """Assign a float-weight-scale layer's bias step or output pre-rounding (whichever `qvars` holds)
    from `policy`; `scale` its weight_scale when the caller has it."""
    scale = weight_scale(policy, node) if scale is None else scale
    if "step" in qvars:
        qvars["step"].assign(bias_step(policy, node, scale))
    if "pre_round" in qvars:
        qvars["pre_round"].assign(pre_round(policy, node, scale))


def requant_signature(policy: Policy, layer: str) -> tuple[Any, ...]:
    """What bias_step and pre_round depend on besides the kernel and the layer's own output format:
    its weight format and its input's (the search rewrites them when this changes)."""
    w = policy.get(layer, "weights")
    return w.bits, w.frac, policy.input_tensor_format(layer)


def activation_format_of(policy: Policy, layer: str, ds: str) -> Format | None:
    """The format whose scale and zero point a ScaledActivationQuantizer holds for this data structure
    (Policy.tensor_format); None for weights, biases and the input."""
    return policy.tensor_format(layer) if ds == "output" and layer != "input" else None


def write_data_structure(qvars: dict[str, tf.Variable], d: DataStructure, fmt: Format | None = None) -> None:
    """Assign a data structure's format to its quantizer's variables; `fmt` (activation_format_of) gives a
    scaled output its float scale and its zero point (asymmetric int8: formats.asymmetric_format)."""
    qvars["bits"].assign(float(d.bits))
    frac = qvars["frac"]
    values = np.broadcast_to(np.asarray(d.frac, dtype=np.float32).reshape(frac.shape if d.per_channel else ()),
                             frac.shape)
    frac.assign(values)
    qvars["signed"].assign(1.0 if d.signed else 0.0)
    qvars["enabled"].assign(1.0)
    if "scale" in qvars:
        qvars["scale"].assign(fmt.step if fmt is not None else 2.0 ** -int(np.min(d.frac)))
        qvars["zero_point"].assign(float(fmt.zero_point) if fmt is not None else 0.0)
    if "stored_zero_point" in qvars:
        qvars["stored_zero_point"].assign(float(stored_zero_point(fmt)) if fmt is not None else 0.0)


def quantizer_variables(qmodel: keras.Model) -> dict[tuple[str, str], dict[str, tf.Variable]]:
    """{(layer, data structure): quantizer variables}: lets the search change one format cheaply."""
    return {(layer, ds): qvars for layer, ds, qvars in _quantizer_vars(qmodel)}


class NotFakeQuantModelError(ValueError):
    """A model that is not an fxpq fake-quant model (a float model, or one tfmot quantized itself)
    where one is needed (export, lowering, set_policy)."""


def check_fake_quant_model(model: Any) -> None:
    """NotFakeQuantModelError, saying what to do, unless `model` was built by `quantize_model`
    (its input passes through an InputQuantizer and every other layer is wrapped or a softmax)."""
    layers = getattr(model, "layers", None)
    if layers is None:
        raise NotFakeQuantModelError(f"expected an fxpq fake-quant Keras model, got {type(model).__name__}")
    how = ("quantize it first: fxpq_keras.quantize_model(float_model, policy), or take "
           "FxPQNet(...).quantize(float_model, x).model")
    tfmot_layers = [layer.name for layer in layers
                    if type(layer).__name__ in ("QuantizeAnnotate", "QuantizeLayer")
                    or (isinstance(layer, tfmot.quantization.keras.QuantizeWrapper)
                        and not isinstance(getattr(layer, "quantize_config", None), FxpQuantizeConfig))]
    if tfmot_layers or (any(isinstance(layer, tfmot.quantization.keras.QuantizeWrapper) for layer in layers)
                        and not any(isinstance(layer, InputQuantizer) for layer in layers)):
        where = f" (tfmot layers: {', '.join(tfmot_layers[:4])})" if tfmot_layers else ""
        raise NotFakeQuantModelError(
            f"model '{model.name}' was annotated or quantized by tfmot itself{where}; fxpq reads only the "
            f"fake-quant models it builds, whose formats it knows (input quantizer, FxpQuantizeConfig on every "
            f"layer): {how}")
    if not any(isinstance(layer, InputQuantizer) for layer in layers):
        raise NotFakeQuantModelError(f"model '{model.name}' is a float Keras model, not an fxpq fake-quant model: "
                                     f"{how}")


def describe(qmodel: keras.Model) -> tuple[list[CNode], Policy]:
    """Canonical nodes (float weights) and current Policy of a fake-quant model.

    Example::

        cnodes, policy = describe(qmodel)   # also for a model loaded in quantize_scope()
    """
    check_fake_quant_model(qmodel)
    config = qmodel.get_config()
    by_name = {layer.name: layer for layer in qmodel.layers}
    cnodes: list[CNode] = []
    rename: dict[str, str] = {}
    for entry in config["layers"]:
        layer = by_name[entry["name"]]
        inbound = [rename.get(n, n) for node in entry.get("inbound_nodes") or []
                   for n in inbound_names(node["args"] if isinstance(node, dict) else node)]
        if isinstance(layer, keras.layers.InputLayer):
            cnodes.append(CNode(layer.name, "input", [], {"shape": tuple(layer.get_config()["batch_input_shape"][1:])}))
        elif isinstance(layer, InputQuantizer):
            rename[layer.name] = inbound[0]
        else:
            wrapped = isinstance(layer, tfmot.quantization.keras.QuantizeWrapperV2)
            inner = layer.layer if wrapped else layer
            # the inner layer's kernel attributes hold quantized tensors; the float variables are here
            floats = [w.numpy() for w, _, _ in layer._weight_vars] if wrapped else []
            rename[layer.name] = inner.name
            cnodes.append(_cnode_of(inner, inbound, floats))
    qvars = quantizer_variables(qmodel)
    shapes = {n.name: tuple(by_name.get(f"{WRAPPER_PREFIX}{n.name}", by_name.get(n.name)).output_shape[1:])
              for n in cnodes[1:]}
    shapes[cnodes[0].name] = tuple(cnodes[0].config["shape"])
    inp = cnodes[0].name

    def ds_of(layer: str, ds: str, elements: int) -> DataStructure:
        v = qvars[(layer, ds)]
        frac = v["frac"].numpy()
        per_channel = frac.ndim > 0 and len(set(frac.ravel().tolist())) > 1
        f = tuple(int(x) for x in frac.ravel()) if per_channel else int(frac.ravel()[0])
        return DataStructure(int(v["bits"].numpy()), f, bool(v["signed"].numpy() > 0.5), elements)

    layers = []
    for n in cnodes[1:]:
        entry = {"name": n.name, "kind": n.kind, "inputs": ["input" if i == inp else i for i in n.inputs],
                 "weights": None, "bias": None, "output": None}
        if n.kind in WEIGHTED:
            entry["weights"] = ds_of(n.name, "weights", int(n.kernel.size))
            if n.bias is not None:
                entry["bias"] = ds_of(n.name, "bias", int(n.bias.size))
        if (n.name, "output") in qvars:
            entry["output"] = ds_of(n.name, "output", int(np.prod(shapes[n.name])))
        layers.append(entry)
    float_scales = any(isinstance(q, FloatScaleQuantizer) for layer in qmodel.layers
                       if isinstance(layer, tfmot.quantization.keras.QuantizeWrapperV2)
                       for _, q, _ in layer._weight_vars)
    ranges = {layer: float(v["range"].numpy()) for (layer, ds), v in qvars.items()
              if ds == "output" and "range" in v and float(v["range"].numpy()) >= 0}
    bounds = {layer: (float(lo), float(hi)) for (layer, ds), v in qvars.items()
              if ds == "output" and "bounds" in v for lo, hi in [v["bounds"].numpy().tolist()] if lo <= hi}
    policy = Policy(ds_of("input", "output", int(np.prod(shapes[inp]))), layers,
                    getattr(qmodel, "_fxpq_channel_scales", None), weight_scales="float" if float_scales else "pow2",
                    activation_ranges=ranges, activation_bounds=bounds)
    return cnodes, policy


def _cnode_of(layer: keras.layers.Layer, inbound: list[str], floats: list[np.ndarray]) -> CNode:
    """Inverse of keras_model.make_layer for the layers a fake-quant model holds."""
    cfg = layer.get_config()
    k = floats[0] if floats else None
    b = floats[1] if len(floats) > 1 else None
    act = cfg.get("activation")
    if isinstance(act, dict):  # a ReLU(max_value=6) used as activation
        act = "relu6"
    name = layer.name
    if isinstance(layer, keras.layers.DepthwiseConv2D):
        return CNode(name, "depthwise_conv2d", inbound,
                     {"strides": tuple(cfg["strides"]), "padding": cfg["padding"],
                      "dilation_rate": tuple(cfg["dilation_rate"]), "kernel_size": k.shape[:2],
                      "depth_multiplier": cfg["depth_multiplier"], "activation": _act(act),
                      "use_bias": cfg["use_bias"]},
                     kernel=k, bias=b)
    if isinstance(layer, keras.layers.Conv2D):
        return CNode(name, "conv2d", inbound,
                     {"strides": tuple(cfg["strides"]), "padding": cfg["padding"],
                      "dilation_rate": tuple(cfg["dilation_rate"]), "kernel_size": k.shape[:2], "filters": k.shape[-1],
                      "activation": _act(act), "use_bias": cfg["use_bias"]},
                     kernel=k, bias=b)
    if isinstance(layer, keras.layers.Dense):
        return CNode(name, "dense", inbound,
                     {"units": k.shape[-1], "activation": _act(act), "use_bias": cfg["use_bias"]},
                     kernel=k, bias=b)
    stock = stock_kind_of(layer)
    if stock is not None:
        return CNode(name, stock[0], inbound, stock[1])
    simple = {keras.layers.Add: "add", keras.layers.GlobalAveragePooling2D: "gap", keras.layers.Flatten: "flatten",
              keras.layers.Concatenate: "concat"}
    for cls, kind in simple.items():
        if isinstance(layer, cls):
            return CNode(name, kind, inbound)
    if isinstance(layer, (keras.layers.MaxPooling2D, keras.layers.AveragePooling2D)):
        kind = "max_pool" if isinstance(layer, keras.layers.MaxPooling2D) else "avg_pool"
        return CNode(name, kind, inbound, {"pool_size": tuple(cfg["pool_size"]), "strides": tuple(cfg["strides"]),
                                           "padding": cfg["padding"]})
    if isinstance(layer, keras.layers.ReLU):
        return CNode(name, "relu", inbound, {"activation": "relu6" if cfg.get("max_value") else "relu"})
    if isinstance(layer, keras.layers.Reshape):
        return CNode(name, "reshape", inbound, {"target_shape": tuple(cfg["target_shape"])})
    if isinstance(layer, keras.layers.LeakyReLU):
        return CNode(name, "leaky_relu", inbound, {"alpha_shift": leaky_alpha_shift(name, "LeakyReLU", cfg["alpha"])})
    if isinstance(layer, keras.layers.ZeroPadding2D):
        padding = tuple(tuple(int(v) for v in pair) for pair in cfg["padding"])
        return CNode(name, "zero_pad", inbound, {"padding": padding})  # not folded: canonicalize did that
    if isinstance(layer, keras.layers.Activation) and cfg["activation"] == "softmax":
        return CNode(name, "softmax", inbound)
    raise ValueError(f"layer '{name}' ({type(layer).__name__}) is not part of an fxpq fake-quant model")


def _act(act: Any) -> str:
    return "linear" if act in (None, "linear") else str(act)


@contextlib.contextmanager
def quantize_scope() -> Iterator[None]:
    """Scope for loading saved fake-quant models (like tfmot's quantize_scope, plus fxpq classes).

    Example::

        qmodel.save("q.keras")
        with quantize_scope():
            qmodel = keras.models.load_model("q.keras")
    """
    objects = {"FxpQuantizer": FxpQuantizer, "FloatScaleQuantizer": FloatScaleQuantizer,
               "ScaledActivationQuantizer": ScaledActivationQuantizer,
               "AccumulatorBiasQuantizer": AccumulatorBiasQuantizer,
               "RequantizedOutputQuantizer": RequantizedOutputQuantizer,
               "AveragePoolOutputQuantizer": AveragePoolOutputQuantizer,
               "FxpQuantizeConfig": FxpQuantizeConfig, "InputQuantizer": InputQuantizer,
               "hard_swish": hard_swish}
    with tfmot.quantization.keras.quantize_scope(objects):
        yield


__all__ = ["NotFakeQuantModelError", "check_fake_quant_model", "quantize_model", "set_policy", "describe",
           "quantize_scope", "quantizer_variables",
           "build_fake_quant_model", "channels"]
