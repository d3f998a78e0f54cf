"""Step 1 of the pipeline: read a float tf_keras model into a canonical float model.

Canonical means: BatchNormalization folded into the preceding conv/dense, SeparableConv2D split
into depthwise + pointwise, Conv1D rewritten as a Conv2D of height 1 between two reshapes,
Dropout and linear activations removed, ReLU/ReLU6 fused into the conv/dense that feeds it,
ZeroPadding2D folded into the conv that reads it when that conv's 'same' padding is exactly those
zeros (otherwise it stays a zero-pad layer of its own), a final softmax kept as its own (float)
layer. Every later step (Policy, fake-quant model, integer graph) sees only these layer kinds.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ._tf import keras
from .stock_layers import STOCK_BINARY, STOCK_KINDS, STOCK_MOVE, make_stock_layer

SUPPORTED_LAYERS = (
    "InputLayer", "Conv1D", "Conv2D", "DepthwiseConv2D", "SeparableConv2D", "Dense", "BatchNormalization", "Add",
    "MaxPooling2D", "AveragePooling2D", "GlobalAveragePooling2D", "ZeroPadding2D", "ReLU",
    "LeakyReLU(alpha=2^-k)", "Concatenate(channel axis)",
    "Activation(relu|relu6|linear|softmax)", "Softmax", "Flatten", "Reshape", "Dropout",
)

WEIGHTED = ("conv2d", "depthwise_conv2d", "dense")
FUSABLE_ACTIVATIONS = ("linear", "relu", "relu6")
MULTI_INPUT = ("add", "concat") + STOCK_BINARY  # kinds whose Keras layer takes a list of tensors


class UnsupportedLayerError(ValueError):
    """The model holds a layer (or a use of one) that fxpq cannot quantize."""

    def __init__(self, name: str, what: str, why: str = "") -> None:
        reason = f": {why}" if why else ""
        super().__init__(
            f"layer '{name}' ({what}) is not supported{reason}. Supported layers: {', '.join(SUPPORTED_LAYERS)}"
        )
        self.layer_name = name


@dataclass
class CNode:
    """One layer of the canonical model."""

    name: str
    kind: str  # input conv2d depthwise_conv2d dense add max_pool avg_pool gap relu flatten reshape softmax
    #            zero_pad leaky_relu concat
    inputs: list[str]
    config: dict[str, Any] = field(default_factory=dict)
    kernel: np.ndarray | None = None
    bias: np.ndarray | None = None


def _activation_name(act: Any) -> str:
    name = act if isinstance(act, str) else getattr(act, "__name__", str(act))
    return "linear" if name in (None, "linear") else name


def _parse(model: keras.Model) -> list[tuple[keras.layers.Layer, list[str]]]:
    """(layer, inbound layer names) in topological order; single input and output only."""
    if len(model.inputs or []) != 1 or len(model.outputs or []) != 1:
        raise ValueError("fxpq supports models with exactly one input and one output")
    if isinstance(model, keras.Sequential):
        # a built Sequential model keeps its InputLayer in _input_layers; otherwise make one
        first = getattr(model, "_input_layers", None) or []
        input_layer = first[0] if first else keras.layers.InputLayer(input_shape=model.input_shape[1:], name="input")
        out = [(input_layer, [])]
        prev = input_layer.name
        for layer in model.layers:
            out.append((layer, [prev]))
            prev = layer.name
        return out
    config = model.get_config()
    by_name = {layer.name: layer for layer in model.layers}
    out = []
    for entry in config["layers"]:
        nodes = entry.get("inbound_nodes") or []
        if len(nodes) > 1:
            raise UnsupportedLayerError(entry["name"], entry["class_name"], "shared layers (called more than once)")
        names = []
        for node in nodes:
            args = node["args"] if isinstance(node, dict) else node
            for item in inbound_names(args):
                names.append(item)
        out.append((by_name[entry["name"]], names))
    return out


def inbound_names(args: Any) -> list[str]:
    """Inbound layer names from a tf_keras functional config node (old list or new dict form)."""
    names: list[str] = []
    if isinstance(args, dict) and "config" in args and "keras_history" in args["config"]:
        names.append(args["config"]["keras_history"][0])
    elif isinstance(args, (list, tuple)):
        if len(args) >= 3 and isinstance(args[0], str) and isinstance(args[1], int):
            names.append(args[0])
        else:
            for a in args:
                names.extend(inbound_names(a))
    return names


def _fold_bn(node: CNode, bn: keras.layers.BatchNormalization) -> None:
    gamma, beta, mean, var = (None, None, None, None)
    weights = {w.name.split("/")[-1].split(":")[0]: w.numpy() for w in bn.weights}
    mean, var = weights["moving_mean"], weights["moving_variance"]
    gamma = weights.get("gamma", np.ones_like(mean))
    beta = weights.get("beta", np.zeros_like(mean))
    scale = gamma / np.sqrt(var + bn.epsilon)
    bias = node.bias if node.bias is not None else np.zeros_like(mean)
    if node.kind == "depthwise_conv2d":
        kh, kw, c, m = node.kernel.shape
        node.kernel = (node.kernel.reshape(kh, kw, c * m) * scale).reshape(kh, kw, c, m)
    else:
        node.kernel = node.kernel * scale  # output channels are the last axis for conv and dense
    node.bias = ((bias - mean) * scale + beta).astype(np.float32)
    node.kernel = node.kernel.astype(np.float32)
    node.config["use_bias"] = True


def canonicalize(model: keras.Model) -> list[CNode]:
    """The canonical node list of a float model (see module docstring); raises UnsupportedLayerError.

    A Keras 3 model is first translated into tf_keras (fxpq_keras/keras3.py)."""
    from .keras3 import is_keras3_model, to_tf_keras

    if is_keras3_model(model):
        model = to_tf_keras(model)
    parsed = _parse(model)
    consumers: dict[str, int] = {}
    for _, ins in parsed:
        for i in ins:
            consumers[i] = consumers.get(i, 0) + 1
    nodes: dict[str, CNode] = {}
    alias: dict[str, str] = {}  # removed layer -> the canonical node that now produces its output
    order: list[str] = []

    def src(name: str) -> str:
        while name in alias:
            name = alias[name]
        return name

    def emit(node: CNode) -> None:
        nodes[node.name] = node
        order.append(node.name)

    # the reshape that closes a Conv1D -> that Conv1D's conv2d node: a BatchNormalization or ReLU
    # after a Conv1D folds into the conv2d, and the reshape stays the producer of the output
    closes: dict[str, str] = {}

    def fusion_target(name: str) -> CNode | None:
        return nodes.get(closes.get(name, name))

    for layer, inbound in parsed:
        cls = type(layer).__name__
        ins = [src(i) for i in inbound]
        cfg = layer.get_config()
        name = layer.name
        if cfg.get("data_format", "channels_last") not in (None, "channels_last"):
            raise UnsupportedLayerError(name, cls, "only channels_last data format")
        if isinstance(layer, keras.layers.InputLayer):
            emit(CNode(name, "input", [], {"shape": tuple(layer.get_config()["batch_input_shape"][1:])}))
        elif isinstance(layer, keras.layers.Dropout):
            alias[name] = ins[0]
        elif isinstance(layer, keras.layers.SeparableConv2D):
            act = _activation_name(cfg["activation"])
            if act not in FUSABLE_ACTIVATIONS:
                raise UnsupportedLayerError(name, cls, f"activation '{act}'")
            dw, pw = layer.depthwise_kernel.numpy(), layer.pointwise_kernel.numpy()
            common = {"padding": cfg["padding"], "dilation_rate": tuple(cfg["dilation_rate"])}
            emit(CNode(f"{name}_depthwise", "depthwise_conv2d", ins,
                       {**common, "strides": tuple(cfg["strides"]), "kernel_size": dw.shape[:2],
                        "depth_multiplier": cfg["depth_multiplier"], "activation": "linear", "use_bias": False},
                       kernel=dw, bias=None))
            emit(CNode(name, "conv2d", [f"{name}_depthwise"],
                       {"strides": (1, 1), "padding": "valid", "dilation_rate": (1, 1), "kernel_size": (1, 1),
                        "filters": pw.shape[-1], "activation": act, "use_bias": cfg["use_bias"]},
                       kernel=pw, bias=layer.bias.numpy() if cfg["use_bias"] else None))
        elif type(layer) is keras.layers.Conv1D:
            _conv1d(layer, cfg, ins, emit, closes)
            alias[name] = closes_name(name)
        elif isinstance(layer, (keras.layers.Conv2D, keras.layers.DepthwiseConv2D, keras.layers.Dense)):
            if type(layer) not in (keras.layers.Conv2D, keras.layers.DepthwiseConv2D, keras.layers.Dense):
                raise UnsupportedLayerError(name, cls)
            act = _activation_name(cfg["activation"])
            kind = {"Conv2D": "conv2d", "DepthwiseConv2D": "depthwise_conv2d", "Dense": "dense"}[cls]
            if cfg.get("groups", 1) != 1:
                raise UnsupportedLayerError(name, cls, "grouped convolution")
            kernel = (layer.depthwise_kernel if kind == "depthwise_conv2d" else layer.kernel).numpy()
            bias = layer.bias.numpy() if cfg.get("use_bias") else None
            conf: dict[str, Any] = {"activation": "linear" if act == "softmax" else act, "use_bias": cfg["use_bias"]}
            if act not in FUSABLE_ACTIVATIONS + ("softmax",):
                raise UnsupportedLayerError(name, cls, f"activation '{act}'")
            if kind != "dense":
                conf.update(strides=tuple(cfg["strides"]), padding=cfg["padding"],
                            dilation_rate=tuple(cfg["dilation_rate"]), kernel_size=kernel.shape[:2])
                if kind == "depthwise_conv2d":
                    conf["depth_multiplier"] = cfg["depth_multiplier"]
                else:
                    conf["filters"] = kernel.shape[-1]
            else:
                conf["units"] = kernel.shape[-1]
            if cfg.get("padding") not in (None, "same", "valid"):
                raise UnsupportedLayerError(name, cls, f"padding '{cfg.get('padding')}'")
            emit(CNode(name, kind, ins, conf, kernel=kernel, bias=bias))
            if act == "softmax":
                emit(CNode(f"{name}_softmax", "softmax", [name]))
                alias[name] = f"{name}_softmax"
        elif isinstance(layer, keras.layers.BatchNormalization):
            prev = fusion_target(ins[0]) if len(ins) == 1 else None
            axis = cfg["axis"][0] if isinstance(cfg["axis"], (list, tuple)) else cfg["axis"]
            if axis not in (-1, len(layer.input_shape) - 1):
                raise UnsupportedLayerError(name, cls, "only the channel (last) axis")
            if (prev is None or prev.kind not in WEIGHTED or prev.config["activation"] != "linear"
                    or consumers.get(inbound[0], 0) != 1):
                raise UnsupportedLayerError(
                    name, cls, "BatchNormalization must directly follow a Conv2D, DepthwiseConv2D or Dense with a "
                    "linear activation whose output feeds nothing else (it is folded into that layer)")
            _fold_bn(prev, layer)
            alias[name] = ins[0]
        elif isinstance(layer, keras.layers.LeakyReLU) or (
                isinstance(layer, keras.layers.ReLU) and cfg.get("negative_slope", 0) not in (0, 0.0)
                and cfg.get("max_value") is None and cfg.get("threshold", 0) in (0, 0.0)):
            alpha = float(cfg["alpha"] if "alpha" in cfg else cfg["negative_slope"])
            if alpha == 1.0:
                alias[name] = ins[0]
            else:
                emit(CNode(name, "leaky_relu", ins, {"alpha_shift": leaky_alpha_shift(name, cls, alpha)}))
        elif isinstance(layer, (keras.layers.ReLU, keras.layers.Activation)):
            if isinstance(layer, keras.layers.ReLU):
                if cfg.get("negative_slope", 0) not in (0, 0.0) or cfg.get("threshold", 0) not in (0, 0.0):
                    raise UnsupportedLayerError(name, cls, "ReLU with negative_slope or threshold")
                mv = cfg.get("max_value")
                if mv is None:
                    act = "relu"
                elif float(mv) == 6.0:
                    act = "relu6"
                else:
                    raise UnsupportedLayerError(name, cls, f"ReLU max_value {mv} (only None or 6)")
            else:
                act = _activation_name(cfg["activation"])
            if act == "linear":
                alias[name] = ins[0]
                continue
            if act == "softmax":
                emit(CNode(name, "softmax", ins))
                continue
            if act in ("sigmoid", "tanh"):
                emit(CNode(name, "logistic" if act == "sigmoid" else "tanh", ins))
                continue
            if act not in ("relu", "relu6"):
                raise UnsupportedLayerError(name, cls, f"activation '{act}'")
            prev = fusion_target(ins[0])
            if (prev is not None and prev.kind in WEIGHTED and prev.config["activation"] == "linear"
                    and consumers.get(inbound[0], 0) == 1):
                prev.config["activation"] = act
                alias[name] = ins[0]
            else:
                emit(CNode(name, "relu", ins, {"activation": act}))
        elif isinstance(layer, keras.layers.Softmax):
            axis = cfg.get("axis", -1)
            axis = axis[0] if isinstance(axis, (list, tuple)) and len(axis) == 1 else axis
            if axis not in (-1, len(layer.output_shape) - 1):
                raise UnsupportedLayerError(name, cls, f"softmax over axis {cfg.get('axis')} (only the last axis)")
            emit(CNode(name, "softmax", ins))  # the same float softmax as Activation('softmax')
        elif isinstance(layer, keras.layers.Concatenate):
            rank = len(layer.output_shape)
            if cfg["axis"] not in (-1, rank - 1):
                raise UnsupportedLayerError(name, cls, f"axis {cfg['axis']} (only the channel axis, -1)")
            if len(ins) < 2:
                raise UnsupportedLayerError(name, cls, "Concatenate with fewer than two inputs")
            emit(CNode(name, "concat", ins))
        elif isinstance(layer, (keras.layers.Multiply, keras.layers.Subtract)):
            if len(ins) != 2:
                raise UnsupportedLayerError(name, cls, f"{cls} with other than two inputs")
            emit(CNode(name, "mul" if isinstance(layer, keras.layers.Multiply) else "sub", ins))
        elif isinstance(layer, keras.layers.UpSampling2D):
            if cfg.get("interpolation", "nearest") != "nearest":
                raise UnsupportedLayerError(name, cls, f"interpolation '{cfg['interpolation']}' (only 'nearest')")
            emit(CNode(name, "upsample_nearest", ins, {"size": tuple(int(s) for s in cfg["size"])}))
        elif isinstance(layer, keras.layers.Permute):
            emit(CNode(name, "transpose", ins, {"perm": tuple(int(d) for d in cfg["dims"])}))
        elif isinstance(layer, keras.layers.Add):
            if len(ins) != 2:
                raise UnsupportedLayerError(name, cls, "Add with other than two inputs")
            emit(CNode(name, "add", ins))
        elif isinstance(layer, (keras.layers.MaxPooling2D, keras.layers.AveragePooling2D)):
            kind = "max_pool" if isinstance(layer, keras.layers.MaxPooling2D) else "avg_pool"
            emit(CNode(name, kind, ins, {"pool_size": tuple(cfg["pool_size"]), "strides": tuple(cfg["strides"]),
                                         "padding": cfg["padding"]}))
        elif isinstance(layer, keras.layers.GlobalAveragePooling2D):
            if cfg.get("keepdims"):
                raise UnsupportedLayerError(name, cls, "keepdims=True")
            emit(CNode(name, "gap", ins))
        elif isinstance(layer, keras.layers.ZeroPadding2D):
            (top, bottom), (left, right) = (tuple(int(v) for v in pair) for pair in cfg["padding"])
            emit(CNode(name, "zero_pad", ins, {"padding": ((top, bottom), (left, right)),
                                               "input_shape": tuple(layer.input_shape[1:])}))
        elif isinstance(layer, keras.layers.Flatten):
            emit(CNode(name, "flatten", ins))
        elif isinstance(layer, keras.layers.Reshape):
            emit(CNode(name, "reshape", ins, {"target_shape": tuple(cfg["target_shape"])}))
        else:
            raise UnsupportedLayerError(name, cls)
    for n in order:
        if nodes[n].kind == "softmax" and n != src(parsed[-1][0].name):
            raise UnsupportedLayerError(n, "softmax", "softmax is supported only as the model's last layer")
    return fold_zero_padding([nodes[n] for n in order])


def fold_zero_padding(cnodes: list[CNode]) -> list[CNode]:
    """Drop each zero_pad whose only reader is a 'valid' conv2d / depthwise_conv2d for which
    TensorFlow's 'same' padding adds exactly these zeros: that conv becomes 'same' on the unpadded
    input (the same sums: padded taps contribute 0 in both). Pools are never folded: max pool
    ignores padded positions and average pool does not count them, where zeros would count."""
    from .integer_graph.ops import conv_output_size  # numpy only; the one padding rule

    out = list(cnodes)
    for z in [n for n in cnodes if n.kind == "zero_pad"]:
        readers = [n for n in out if z.name in n.inputs]
        if len(readers) != 1 or z is out[-1]:
            continue
        conv = readers[0]
        if conv.kind not in ("conv2d", "depthwise_conv2d") or conv.config["padding"] != "valid":
            continue
        exact = True
        for axis in (0, 1):
            size = z.config["input_shape"][axis]
            k, stride = conv.kernel.shape[axis], conv.config["strides"][axis]
            dilation = conv.config["dilation_rate"][axis]
            same, before, after = conv_output_size(size, k, stride, dilation, "same")
            padded = size + sum(z.config["padding"][axis])
            valid = (padded - (k - 1) * dilation - 1) // stride + 1
            exact = exact and (before, after) == z.config["padding"][axis] and valid == same
        if exact:
            conv.config["padding"] = "same"
            conv.inputs = [z.inputs[0] if i == z.name else i for i in conv.inputs]
            out.remove(z)
    return out


MAX_LEAKY_SHIFT = 31


def leaky_alpha_shift(name: str, cls: str, alpha: float) -> int:
    """k of a LeakyReLU slope alpha = 2^-k; anything else is refused (requantization is shifts
    only: the negative side is the input read at frac + k, numerics.md section 8)."""
    mant, exp = np.frexp(alpha) if alpha > 0 else (0.0, 0)
    k = 1 - int(exp)
    if mant != 0.5 or not 1 <= k <= MAX_LEAKY_SHIFT:
        raise UnsupportedLayerError(
            name, cls, f"alpha {alpha:g} is not a power of two 2^-k with k in 1..{MAX_LEAKY_SHIFT}: fxpq requantizes "
            "with shifts only (no multipliers), so the negative slope must be a shift, e.g. alpha=0.25 or 0.125")
    return k


def closes_name(name: str) -> str:
    """Name of the reshape that turns a Conv1D's height-1 conv2d output back into [L, F]."""
    return f"{name}_as_1d"


def _conv1d(layer: keras.layers.Layer, cfg: dict[str, Any], ins: list[str], emit: Any,
            closes: dict[str, str]) -> None:
    """Conv1D as reshape [L, C] -> [1, L, C], a Conv2D with a (1, k) kernel, reshape back.

    Exact: a height-1 conv2d computes the same dot products; the reshapes move no data (RESHAPE
    aliases its input in the runner and in TFLM), so every later step sees only known kinds.
    """
    name = layer.name
    act = _activation_name(cfg["activation"])
    if cfg.get("groups", 1) != 1:
        raise UnsupportedLayerError(name, "Conv1D", "grouped convolution")
    if act not in FUSABLE_ACTIVATIONS:
        raise UnsupportedLayerError(name, "Conv1D", f"activation '{act}'")
    if cfg["padding"] not in ("same", "valid", "causal"):
        raise UnsupportedLayerError(name, "Conv1D", f"padding '{cfg['padding']}' (only 'same', 'valid', 'causal')")
    in_shape, out_shape = tuple(layer.input_shape[1:]), tuple(layer.output_shape[1:])
    if len(in_shape) != 2 or None in in_shape + out_shape:
        raise UnsupportedLayerError(name, "Conv1D", f"input shape {in_shape} (needs a fixed [length, channels])")
    kernel = layer.kernel.numpy()
    opening = f"{name}_as_2d"
    emit(CNode(opening, "reshape", ins, {"target_shape": (1,) + in_shape}))
    padding = cfg["padding"]
    if padding == "causal":  # (k - 1) * dilation zeros on the left, then a 'valid' conv
        left = (kernel.shape[0] - 1) * int(cfg["dilation_rate"][0])
        pad = f"{name}_causal_pad"
        emit(CNode(pad, "zero_pad", [opening], {"padding": ((0, 0), (left, 0)), "input_shape": (1,) + in_shape}))
        opening, padding = pad, "valid"
    emit(CNode(name, "conv2d", [opening],
               {"strides": (1, int(cfg["strides"][0])), "padding": padding,
                "dilation_rate": (1, int(cfg["dilation_rate"][0])), "kernel_size": (1, kernel.shape[0]),
                "filters": kernel.shape[-1], "activation": act, "use_bias": cfg["use_bias"]},
               kernel=kernel.reshape((1,) + kernel.shape), bias=layer.bias.numpy() if cfg["use_bias"] else None))
    emit(CNode(closes_name(name), "reshape", [name], {"target_shape": out_shape}))
    closes[closes_name(name)] = name


def build_float_model(cnodes: list[CNode], name: str = "fxpq_canonical") -> keras.Model:
    """A functional tf_keras model of the canonical nodes, with the folded weights set."""
    tensors: dict[str, Any] = {}
    layers: list[tuple[keras.layers.Layer, CNode]] = []
    inp = None
    for n in cnodes:
        if n.kind == "input":
            inp = keras.Input(shape=n.config["shape"], name=n.name)
            tensors[n.name] = inp
            continue
        layer = make_layer(n)
        x = [tensors[i] for i in n.inputs]
        tensors[n.name] = layer(x if n.kind in MULTI_INPUT else x[0])
        layers.append((layer, n))
    model = keras.Model(inp, tensors[cnodes[-1].name], name=name)
    for layer, n in layers:
        if n.kind in WEIGHTED:
            layer.set_weights([n.kernel] + ([n.bias] if n.bias is not None else []))
    return model


def make_layer(n: CNode) -> keras.layers.Layer:
    """The tf_keras layer of one canonical node (weights are set by the caller)."""
    c = n.config
    if n.kind == "conv2d":
        return keras.layers.Conv2D(c["filters"], c["kernel_size"], strides=c["strides"], padding=c["padding"],
                                   dilation_rate=c["dilation_rate"], activation=_keras_act(c["activation"]),
                                   use_bias=n.bias is not None, name=n.name)
    if n.kind == "depthwise_conv2d":
        return keras.layers.DepthwiseConv2D(c["kernel_size"], strides=c["strides"], padding=c["padding"],
                                            depth_multiplier=c["depth_multiplier"],
                                            dilation_rate=c["dilation_rate"],
                                            activation=_keras_act(c["activation"]), use_bias=n.bias is not None,
                                            name=n.name)
    if n.kind == "dense":
        return keras.layers.Dense(c["units"], activation=_keras_act(c["activation"]), use_bias=n.bias is not None,
                                  name=n.name)
    if n.kind == "add":
        return keras.layers.Add(name=n.name)
    if n.kind == "concat":
        return keras.layers.Concatenate(axis=-1, name=n.name)
    if n.kind == "max_pool":
        return keras.layers.MaxPooling2D(c["pool_size"], c["strides"], c["padding"], name=n.name)
    if n.kind == "avg_pool":
        return keras.layers.AveragePooling2D(c["pool_size"], c["strides"], c["padding"], name=n.name)
    if n.kind == "gap":
        return keras.layers.GlobalAveragePooling2D(name=n.name)
    if n.kind == "relu":
        return keras.layers.ReLU(max_value=6.0 if c["activation"] == "relu6" else None, name=n.name)
    if n.kind == "flatten":
        return keras.layers.Flatten(name=n.name)
    if n.kind == "reshape":
        return keras.layers.Reshape(c["target_shape"], name=n.name)
    if n.kind == "softmax":
        return keras.layers.Activation("softmax", name=n.name)
    if n.kind == "zero_pad":
        return keras.layers.ZeroPadding2D(c["padding"], name=n.name)
    if n.kind == "leaky_relu":
        return keras.layers.LeakyReLU(alpha=2.0 ** -c["alpha_shift"], name=n.name)
    if n.kind in STOCK_KINDS:
        return make_stock_layer(n.kind, n.name, c)
    raise AssertionError(n.kind)


def _keras_act(act: str) -> Any:
    return act  # 'linear', 'relu' and 'relu6' are all tf_keras activation names


# Layers whose output is not a data structure of its own (it keeps its input's format).
PASS_THROUGH = ("flatten", "reshape", "softmax", "input", "zero_pad") + STOCK_MOVE


def quantized_output(cnodes: list[CNode], node: CNode) -> bool:
    """Whether a canonical layer's output is its own data structure (see module docstring)."""
    if node.kind in PASS_THROUGH:
        return node.kind == "input"
    if node.kind == "add":
        users = [n for n in cnodes if node.name in n.inputs]
        return not (len(users) == 1 and users[0].kind == "relu")
    return True


def channels(cnodes: list[CNode], name: str) -> int:
    node = next(n for n in cnodes if n.name == name)
    k = node.kernel
    return int(k.shape[-1] if node.kind != "depthwise_conv2d" else k.shape[-2] * k.shape[-1])


# Range alignment (docs/algorithm.md, "Range alignment"). A power-of-two format holds a tensor's
# range only to within a factor of two, and one frac serves every channel. Scaling a producer's
# output channel c by s_c > 0 and dividing the consumer's input channel c by s_c computes the same
# function in float when everything between them commutes with a positive per-channel scale.
ALIGN_ACTIVATIONS = ("linear", "relu")  # positively homogeneous (a relu6's cap would move)
SCALE_THROUGH = ("relu", "leaky_relu", "zero_pad", "max_pool", "avg_pool", "gap", "flatten")
MAX_ALIGN_SCALE = 16.0  # a channel silent on calibration data is not blown up for unseen data


def alignable(cnodes: list[CNode]) -> dict[str, str]:
    """Producers whose output channels can be rescaled exactly -> their one consumer.

    A producer is a conv / depthwise / dense with a linear or ReLU activation whose output reaches
    exactly one weighted layer through single-use layers that commute with a positive per-channel
    scale (ReLU without a cap, leaky ReLU, zero padding, pooling, flatten into a dense layer)."""
    users = {n.name: [u for u in cnodes if n.name in u.inputs] for n in cnodes}
    out: dict[str, str] = {}
    for p in cnodes:
        if p.kind not in WEIGHTED or p.config.get("activation") not in ALIGN_ACTIVATIONS:
            continue
        cur, flat = p, False
        while len(users[cur.name]) == 1:
            u = users[cur.name][0]
            if u.kind in WEIGHTED:
                if not flat or u.kind == "dense":
                    out[p.name] = u.name
                break
            if u.kind not in SCALE_THROUGH or (u.kind == "relu" and u.config.get("activation") != "relu"):
                break
            flat = flat or u.kind == "flatten"
            cur = u
    return out


def _scale_channels(producer: CNode, consumer: CNode, s: np.ndarray) -> None:
    """Producer output channel c times s[c] (weights and bias), consumer input channel c over s[c]."""
    cols = producer.kernel.reshape(-1, s.size)
    producer.kernel = (cols * s).reshape(producer.kernel.shape).astype(np.float32)
    if producer.bias is not None:
        producer.bias = (producer.bias * s).astype(np.float32)
    if consumer.kind == "dense":  # rows of a flattened (..., channels) input: channel = row % channels
        consumer.kernel = (consumer.kernel / np.tile(s, consumer.kernel.shape[0] // s.size)[:, None]).astype(np.float32)
    else:  # conv2d (kh, kw, cin, cout) and depthwise (kh, kw, c, multiplier): input channels on axis 2
        consumer.kernel = (consumer.kernel / s.reshape(1, 1, -1, 1)).astype(np.float32)


def apply_channel_scales(cnodes: list[CNode], scales: dict[str, Any]) -> None:
    """Apply recorded per-channel scales (a policy's `channel_scales`) to canonical nodes, in the
    order `align_channel_ranges` applied them; raises ValueError when they do not fit the model."""
    consumers = alignable(cnodes)
    by_name = {n.name: n for n in cnodes}
    unknown = sorted(set(scales) - set(consumers))
    if unknown:
        raise ValueError(f"channel scales for layers {unknown}, which the model cannot rescale exactly "
                         f"(rescalable: {sorted(consumers)})")
    for p in cnodes:
        if p.name in scales:
            s = np.asarray(scales[p.name], dtype=np.float32)
            n = channels(cnodes, p.name)
            if s.shape != (n,) or not np.all(np.isfinite(s)) or not np.all(s > 0):
                raise ValueError(f"channel scales of '{p.name}' must be {n} positive numbers, got shape {s.shape}")
            _scale_channels(p, by_name[consumers[p.name]], s)


def align_channel_ranges(cnodes: list[CNode], channel_max: dict[str, np.ndarray]) -> dict[str, tuple[float, ...]]:
    """Rescale every producer of `channel_max` (max |output| per channel on calibration data; keys from
    `alignable`) so each channel reaches the top of the power-of-two range its tensor needs, and its
    consumer's input channels by the inverse. A scale is at least 1 and never widens the producer's
    weight range (its weights keep their frac). Returns the scales applied (float32 values), which
    `apply_channel_scales` reproduces exactly."""
    consumers = alignable(cnodes)
    by_name = {n.name: n for n in cnodes}
    scales: dict[str, tuple[float, ...]] = {}
    for p in cnodes:  # topological: a consumer's input scaling is in place before it is a producer
        if p.name not in channel_max or p.name not in consumers:
            continue
        m = np.asarray(channel_max[p.name], dtype=np.float64)
        w = np.abs(p.kernel.reshape(-1, m.size)).max(axis=0)
        top = float(m.max())
        if top <= 0 or not np.isfinite(top):
            continue
        target = 2.0 ** np.ceil(np.log2(top)) * (1.0 - 2.0 ** -9)  # just inside the power-of-two range
        with np.errstate(divide="ignore", invalid="ignore"):
            s = np.where(m > 0, target / m, 1.0)
            s = np.minimum(s, np.where(w > 0, w.max() / w, 1.0))
        s = np.clip(s, 1.0, MAX_ALIGN_SCALE).astype(np.float32)
        if np.all(s == 1.0):
            continue
        _scale_channels(p, by_name[consumers[p.name]], s)
        scales[p.name] = tuple(float(v) for v in s)
    return scales
