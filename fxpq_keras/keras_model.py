"""Step 1 of the pipeline: read a float tf_keras model into a canonical float model.

Canonical means: every layer either folds exactly into other canonical nodes or becomes one named
node kind; LAYER_TABLE below says which, for every layer (docs/layers.md is generated from it).
BatchNormalization, Rescaling, Normalization and tensor-constant arithmetic are per-channel affines:
folded into the linear conv/dense before them, else into the conv/dense after them when exact, else a
1x1 depthwise conv. SeparableConv2D is split into depthwise + pointwise; Conv1D, 1-D pools and Dense
on a rank-2 input are their 2-D forms between two reshapes; Dropout and friends and linear
activations are removed; ReLU/ReLU6 fuse into the conv/dense/affine that feeds them; ZeroPadding2D
folds into the conv that reads it when that conv's 'same' padding is exactly those zeros; nested
models are flattened; a final softmax is kept as its own (float) layer. Layers with no fixed-point
kernel become the STOCK_KINDS (stock TFLite builtin ops downstream). Every later step (Policy,
fake-quant model, integer graph) sees only these layer kinds.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ._tf import keras
from .stock_layers import (  # noqa: F401 - hard_swish: keras3.py maps Keras 3's hard_silu to it
    STOCK_BINARY,
    STOCK_KINDS,
    STOCK_PASS_THROUGH,
    STOCK_SAME_FORMAT,
    hard_swish,
    make_stock_layer,
)

# How fxpq takes each Keras layer: the one source of SUPPORTED_LAYERS, of the refusal messages and of
# docs/layers.md (scripts/layers_doc.py writes it; tests/test_coverage_frontend.py checks it is current).
EXACT = "exact fold"  # rewritten into other canonical nodes (or removed) computing the same function
FXP = "fxp kernel"  # a fixed-point kernel of fxpq's own, precision searched
STOCK = "stock op"  # a stock TFLite builtin op on fxp tensors (the kinds in STOCK_KINDS)
HOST = "float on the host"
REFUSED = "refused"


@dataclass(frozen=True)
class LayerRow:
    """One row of the layer table: a Keras layer (or a use of one) and how fxpq takes it."""

    layer: str
    qualifier: str
    how: str
    becomes: str


LAYER_TABLE: tuple[LayerRow, ...] = (
    LayerRow("InputLayer", "", FXP, "`input` (its format is searched like any activation)"),
    LayerRow("Conv2D", "", FXP, "`conv2d`; `activation=` as the Activation rows"),
    LayerRow("Conv1D", "", FXP, "`conv2d` of height 1 between two `reshape`s ('causal': a `zero_pad` first)"),
    LayerRow("DepthwiseConv2D", "", FXP, "`depthwise_conv2d`"),
    LayerRow("SeparableConv2D", "", FXP, "`depthwise_conv2d` + 1x1 `conv2d`"),
    LayerRow("Dense", "", FXP, "`dense`; on a rank-2 input a 1x1 `conv2d` between `reshape`s, on rank 3 a 1x1 "
             "`conv2d`"),
    LayerRow("BatchNormalization", "channel axis", EXACT,
             "folded into a linear conv/dense producer, else into the next conv/dense when exact ('valid' "
             "padding or zero shift), else a per-channel affine: a 1x1 `depthwise_conv2d` (between `reshape`s "
             "on rank-1/2 inputs)"),
    LayerRow("Rescaling", "per-channel or scalar", EXACT, "as BatchNormalization"),
    LayerRow("Normalization", "channel axis", EXACT, "as BatchNormalization"),
    LayerRow("Add", "two inputs, equal shapes", FXP, "`add`"),
    LayerRow("Multiply", "two inputs", STOCK, "`mul` (MUL; Keras broadcasting, e.g. squeeze-and-excitation)"),
    LayerRow("Subtract", "", STOCK, "`sub` (SUB)"),
    LayerRow("Maximum", "two inputs", STOCK, "`maximum` (MAXIMUM)"),
    LayerRow("Minimum", "two inputs", STOCK, "`minimum` (MINIMUM)"),
    LayerRow("Concatenate", "channel axis", FXP, "`concat`"),
    LayerRow("Concatenate", "other axes", STOCK, "`concat` with config `axis` (CONCATENATION)"),
    LayerRow("MaxPooling2D", "", FXP, "`max_pool`"),
    LayerRow("AveragePooling2D", "", FXP, "`avg_pool`"),
    LayerRow("MaxPooling1D", "", FXP, "`max_pool` of height 1 between `reshape`s"),
    LayerRow("AveragePooling1D", "", FXP, "`avg_pool` of height 1 between `reshape`s"),
    LayerRow("GlobalAveragePooling2D", "", FXP, "`gap` (keepdims: + `reshape` to [1, 1, C])"),
    LayerRow("GlobalAveragePooling1D", "", FXP, "`reshape` to [1, L, C] + `gap` (keepdims: + `reshape`)"),
    LayerRow("GlobalMaxPooling2D", "", FXP, "`max_pool` over the whole map + `reshape`"),
    LayerRow("GlobalMaxPooling1D", "", FXP, "`max_pool` over the whole sequence between `reshape`s"),
    LayerRow("ZeroPadding2D", "", FXP, "folded into the next conv's 'same' padding when exact, else `zero_pad`"),
    LayerRow("UpSampling2D", "nearest", STOCK, "`upsample_nearest` (RESIZE_NEAREST_NEIGHBOR)"),
    LayerRow("ReLU", "max_value None or 6", FXP, "fused into the conv/dense/affine that feeds it, else `relu`"),
    LayerRow("LeakyReLU", "alpha=2^-k", FXP, "`leaky_relu`"),
    LayerRow("ELU", "alpha=1", STOCK, "`elu` (ELU)"),
    LayerRow("Activation", "relu|relu6|linear", FXP, "fused or `relu`; linear is removed"),
    LayerRow("Activation", "softmax", HOST, "`softmax`, the model's last layer only"),
    LayerRow("Activation", "sigmoid", STOCK, "`logistic` (LOGISTIC)"),
    LayerRow("Activation", "tanh", STOCK, "`tanh` (TANH)"),
    LayerRow("Activation", "elu", STOCK, "`elu` (ELU)"),
    LayerRow("Activation", "swish|silu", STOCK, "`logistic` + `mul(x, logistic(x))` (LOGISTIC, MUL)"),
    LayerRow("Activation", "hard_swish|hard_silu", STOCK, "`hard_swish` (HARD_SWISH); also the composed "
             "x * relu6(x + 3) / 6 of keras.applications MobileNetV3"),
    LayerRow("Activation", "hard_sigmoid", EXACT, "two per-channel affines, the first with a fused relu6 "
             "(Keras 3: relu6(x + 3) / 6; tf_keras: clip(0.2 x + 0.5, 0, 1) = relu6(1.2 x + 3) / 6)"),
    LayerRow("Softmax", "last axis", HOST, "`softmax`, the model's last layer only"),
    LayerRow("Flatten", "", EXACT, "`flatten` (a reshape: no data moves)"),
    LayerRow("Reshape", "", EXACT, "`reshape`"),
    LayerRow("Permute", "", STOCK, "`reshape` when only size-1 axes move, else `transpose` (TRANSPOSE)"),
    LayerRow("Dropout", "", EXACT, "removed (identity at inference)"),
    LayerRow("SpatialDropout1D", "", EXACT, "removed"),
    LayerRow("SpatialDropout2D", "", EXACT, "removed"),
    LayerRow("GaussianNoise", "", EXACT, "removed"),
    LayerRow("GaussianDropout", "", EXACT, "removed"),
    LayerRow("AlphaDropout", "", EXACT, "removed"),
    LayerRow("ActivityRegularization", "", EXACT, "removed"),
    LayerRow("Model", "nested Model or Sequential", EXACT, "flattened into the outer model (layer names must "
             "be unique across both)"),
    LayerRow("TFOpLambda", "tf_keras; Keras 3 ops", EXACT, "x + y, x - y, x * y, tf.math.add/subtract/multiply/"
             "maximum/minimum: as the layer forms; x + c, x - c, c - x, x * c, x / c (c a scalar or per-channel "
             "constant): a per-channel affine, folded like BatchNormalization; tf.nn.relu/relu6/sigmoid/tanh/"
             "silu/swish, tf.math.sigmoid/tanh: as the Activation rows"),
    LayerRow("GRU", "", REFUSED, "recurrent layers need TFLM's UNIDIRECTIONAL_SEQUENCE_LSTM, which fxpq does not "
             "map yet; unroll the recurrence or use Conv1D / Dense layers"),
    LayerRow("LSTM", "", REFUSED, "needs TFLM's UNIDIRECTIONAL_SEQUENCE_LSTM, which fxpq does not map yet; "
             "unroll the recurrence or use Conv1D / Dense layers"),
    LayerRow("SimpleRNN", "", REFUSED, "recurrent layers are not mapped; unroll it into Dense layers"),
    LayerRow("Bidirectional", "", REFUSED, "recurrent layers are not mapped"),
    LayerRow("Conv2DTranspose", "", REFUSED, "needs TFLM's TRANSPOSE_CONV, which fxpq does not map yet; "
             "UpSampling2D + Conv2D is supported"),
    LayerRow("UpSampling2D", "bilinear", REFUSED, "needs TFLM's RESIZE_BILINEAR, which fxpq does not map yet; "
             "use interpolation='nearest'"),
    LayerRow("Activation", "gelu", REFUSED, "TFLM has no GELU kernel (the tflite-micro wheel registers none)"),
    LayerRow("Activation", "softplus|selu|mish|softsign|exponential", REFUSED, "no TFLM int8 kernel mapped"),
    LayerRow("LayerNormalization", "", REFUSED, "needs MEAN, SQUARED_DIFFERENCE and RSQRT, not mapped"),
    LayerRow("MultiHeadAttention", "", REFUSED, "needs BATCH_MATMUL, not mapped"),
    LayerRow("Embedding", "", REFUSED, "needs GATHER on an integer input, not mapped"),
    LayerRow("Lambda", "", REFUSED, "arbitrary Python code cannot be converted; rewrite it with Keras layers"),
)

SUPPORTED_LAYERS = tuple(dict.fromkeys(
    r.layer + (f"({r.qualifier})" if r.qualifier else "") for r in LAYER_TABLE if r.how != REFUSED))
NEEDS = {r.layer: r.becomes for r in LAYER_TABLE if r.how == REFUSED and not r.qualifier}
UNMAPPED = "fxpq maps no TFLite op for this layer type; express it with the supported layers (docs/layers.md)"


def layer_table_markdown() -> str:
    """docs/layers.md: every Keras layer fxpq knows and how it maps (from LAYER_TABLE)."""
    lines = ["# Keras layers and how fxpq takes them", "",
             "Generated from `fxpq_keras/keras_model.py` (`LAYER_TABLE`) by `python scripts/layers_doc.py`; "
             "tests/test_coverage_frontend.py checks it is current. The same in Keras 3 and tf_keras (Keras 3 "
             "models are translated first, fxpq_keras/keras3.py).", "",
             f"- **{EXACT}**: rewritten into other canonical nodes, or removed, computing the same function "
             "(the canonical float model predicts like the original to float rounding).",
             f"- **{FXP}**: an fxpq fixed-point kernel; its precision is searched.",
             f"- **{STOCK}**: a new canonical kind backed by a stock TFLite builtin op (named) on fxp tensors.",
             f"- **{HOST}**: computed in float after the integer network.",
             f"- **{REFUSED}**: canonicalize raises UnsupportedLayerError naming the layer and this reason.",
             "- Any other layer is refused, naming the layer and its class.", "",
             "| Keras layer | use | how | canonical nodes / why refused |", "|---|---|---|---|"]
    for r in LAYER_TABLE:
        lines.append(f"| {r.layer} | {r.qualifier} | {r.how} | {r.becomes} |")
    return "\n".join(lines) + "\n"


WEIGHTED = ("conv2d", "depthwise_conv2d", "dense")
AVERAGE_POOLS = ("avg_pool", "gap")  # kinds a builtin file computes as stock AVERAGE_POOL_2D
FUSABLE_ACTIVATIONS = ("linear", "relu", "relu6")
# Kinds backed by stock TFLite builtin ops (issue 19): mul sub maximum minimum (two inputs, Keras
# broadcasting, config {}), logistic tanh hard_swish elu (config {}), upsample_nearest {"size": (sh, sw)},
# transpose {"perm": axes with batch = 0, as TFLite's TRANSPOSE}; and concat with {"axis": a} (batch = 0)
# when a is not the channel axis.
MULTI_INPUT = ("add", "concat") + STOCK_BINARY + STOCK_SAME_FORMAT  # kinds whose Keras layer takes a list
IDENTITY_LAYERS = ("Dropout", "SpatialDropout1D", "SpatialDropout2D", "SpatialDropout3D", "GaussianNoise",
                   "GaussianDropout", "AlphaDropout", "ActivityRegularization")
# activation name -> canonical kind of one input (Conv/Dense `activation=` and Activation layers)
STOCK_ACTIVATIONS = {"sigmoid": "logistic", "tanh": "tanh", "elu": "elu", "hard_swish": "hard_swish",
                     "hard_silu": "hard_swish"}


class UnsupportedLayerError(ValueError):
    """The model holds a layer (or a use of one) that fxpq cannot quantize."""

    def __init__(self, name: str, what: str, why: str = "") -> None:
        why = why or NEEDS.get(what, "")
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
    #            zero_pad leaky_relu concat, and STOCK_KINDS
    inputs: list[str]
    config: dict[str, Any] = field(default_factory=dict)
    kernel: np.ndarray | None = None
    bias: np.ndarray | None = None


def keras3_hard_sigmoid(x: Any) -> Any:
    """relu6(x + 3) / 6: Keras 3's hard_sigmoid (tf_keras's is clip(0.2 x + 0.5, 0, 1), another function)."""
    from ._tf import tf

    return tf.nn.relu6(x + 3.0) * (1.0 / 6.0)


def _activation_name(act: Any) -> str:
    if isinstance(act, dict) and isinstance(act.get("config"), str):  # a serialized function (hard_swish)
        act = act["config"]
    name = act if isinstance(act, str) else getattr(act, "__name__", str(act))
    return "linear" if name in (None, "linear") else {"silu": "swish"}.get(name, name)


@dataclass
class _Call:
    """One call of a Keras layer in the model: its inbound layer names and, for a tf op layer, its
    operands in order (a layer name, or a constant)."""

    layer: Any
    inbound: list[str]
    operands: list[Any] = field(default_factory=list)


def _parse(model: keras.Model) -> list[_Call]:
    """The layer calls in topological order, nested models flattened; single input and output only."""
    if len(model.inputs or []) != 1 or len(model.outputs or []) != 1:
        raise ValueError("fxpq supports models with exactly one input and one output")
    calls: list[_Call] = []
    _flatten(model, None, calls, set())
    return calls


def _flatten(model: keras.Model, feed: str | None, calls: list[_Call], names: set[str]) -> str:
    """Append the calls of `model` (fed by layer `feed`, or its own input layer when None) to `calls`;
    returns the name of the layer that produces its output."""
    rename: dict[str, str] = {}

    def add(layer: Any, inbound: list[str], operands: list[Any] | None = None) -> str:
        inbound = [rename.get(i, i) for i in inbound]
        operands = [rename.get(o, o) if isinstance(o, str) else o for o in (operands or [])]
        if isinstance(layer, keras.Model):
            if len(inbound) != 1 or len(layer.inputs or []) != 1 or len(layer.outputs or []) != 1:
                raise UnsupportedLayerError(layer.name, type(layer).__name__,
                                            "a nested model must have one input and one output")
            rename[layer.name] = _flatten(layer, inbound[0], calls, names)
            return rename[layer.name]
        if layer.name in names:
            raise UnsupportedLayerError(layer.name, type(layer).__name__, "a layer of a nested model has the same "
                                        "name as another layer; rename one of them")
        names.add(layer.name)
        calls.append(_Call(layer, inbound, operands))
        return layer.name

    if isinstance(model, keras.Sequential):
        # a built Sequential model keeps its InputLayer in _input_layers; otherwise make one
        first = getattr(model, "_input_layers", None) or []
        prev = ""
        if feed is None:
            input_layer = first[0] if first else keras.layers.InputLayer(input_shape=model.input_shape[1:],
                                                                           name="input")
            prev = add(input_layer, [])
        else:
            prev = feed
        for layer in model.layers:
            prev = add(layer, [prev])
        return prev
    config = model.get_config()
    by_name = {layer.name: layer for layer in model.layers}
    for entry in config["layers"]:
        nodes = entry.get("inbound_nodes") or []
        if len(nodes) > 1:
            raise UnsupportedLayerError(entry["name"], entry["class_name"], "shared layers (called more than once)")
        layer = by_name[entry["name"]]
        if isinstance(layer, keras.layers.InputLayer):
            if feed is None:
                add(layer, [])
            else:
                rename[layer.name] = feed
            continue
        if entry["class_name"] == "TFOpLambda":
            operands = _op_operands(entry["name"], nodes[0] if nodes else [])
            add(layer, [o for o in operands if isinstance(o, str)], operands)
            continue
        names_in: list[str] = []
        for node in nodes:
            args = node["args"] if isinstance(node, dict) else node
            names_in.extend(inbound_names(args))
        add(layer, names_in)
    out = config["output_layers"]
    out_name = out[0][0] if isinstance(out[0], (list, tuple)) else out[0]
    return rename.get(out_name, out_name)


def _op_operands(name: str, node: Any) -> list[Any]:
    """Operands of a tf_keras TFOpLambda call, in order: layer names, or numpy constants
    (the config node is [source, node, tensor index or constant, {'y': ..., 'name': ...}])."""
    item = node[0] if isinstance(node, (list, tuple)) and len(node) == 1 else node  # both config forms
    if not isinstance(item, (list, tuple)) or len(item) != 4 or not isinstance(item[3], dict):
        raise UnsupportedLayerError(name, "TFOpLambda", "a tf op with other than one tensor argument and 'y'")
    source, _, value, kwargs = item
    extra = sorted(set(kwargs) - {"y", "name"})
    if extra:
        raise UnsupportedLayerError(name, "TFOpLambda", f"tf op arguments {extra}")

    def operand(v: Any, src: Any = None) -> Any:
        if src is not None:
            return np.asarray(v, np.float32) if src == "_CONSTANT_VALUE" else src
        if isinstance(v, (list, tuple)) and len(v) >= 3 and isinstance(v[0], str) and isinstance(v[1], int):
            return v[0]
        return np.asarray(v, np.float32)

    out = [operand(value, source)]
    if "y" in kwargs:
        out.append(operand(kwargs["y"]))
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


@dataclass
class _Affine:
    """A per-channel affine y = (x + pre) * scale + post (BatchNormalization: pre = -mean, post = beta)."""

    scale: np.ndarray
    pre: np.ndarray
    post: np.ndarray

    def shift(self) -> np.ndarray:
        return self.pre * self.scale + self.post


def _channel_vector(value: Any, channels: int) -> np.ndarray | None:
    """`value` as one float per channel if it broadcasts along the last axis only, else None."""
    arr = np.asarray(value, np.float64)
    if arr.size == 1:
        return np.full(channels, float(arr.reshape(-1)[0]))
    if arr.ndim >= 1 and arr.shape[-1] == channels and arr.size == channels:
        return arr.reshape(channels)
    return None


def _bn_affine(bn: keras.layers.BatchNormalization) -> _Affine:
    weights = {w.name.split("/")[-1].split(":")[0]: w.numpy() for w in bn.weights}
    mean, var = weights["moving_mean"], weights["moving_variance"]
    gamma = weights.get("gamma", np.ones_like(mean))
    beta = weights.get("beta", np.zeros_like(mean))
    return _Affine(gamma / np.sqrt(var + bn.epsilon), -mean, beta)


def _fold_affine(node: CNode, affine: _Affine) -> None:
    """Apply `affine` to the output channels of a conv / depthwise / dense node (exact)."""
    scale = affine.scale
    bias = node.bias if node.bias is not None else np.zeros_like(affine.post)
    if node.kind == "depthwise_conv2d":
        kh, kw, c, m = node.kernel.shape
        node.kernel = (node.kernel.reshape(kh, kw, c * m) * scale).reshape(kh, kw, c, m)
    else:
        node.kernel = node.kernel * scale  # output channels are the last axis for conv and dense
    node.bias = ((bias + affine.pre) * scale + affine.post).astype(np.float32)
    node.kernel = node.kernel.astype(np.float32)
    node.config["use_bias"] = True


def _fold_input_affine(node: CNode, affine: _Affine) -> None:
    """Apply `affine` to the input channels of a conv / depthwise / dense node: exact when no padded
    zero is read (the caller checks 'valid' padding or a zero shift)."""
    s, t = affine.scale.astype(np.float64), affine.shift().astype(np.float64)
    w = node.kernel.astype(np.float64)
    bias = (node.bias if node.bias is not None else np.zeros(w.shape[-1] if node.kind != "depthwise_conv2d"
                                                             else w.shape[2] * w.shape[3])).astype(np.float64)
    if node.kind == "dense":
        bias, w = bias + t @ w, w * s[:, None]
    elif node.kind == "conv2d":
        bias, w = bias + np.einsum("hwco,c->o", w, t), w * s[None, None, :, None]
    else:
        bias, w = bias + np.einsum("hwcm,c->cm", w, t).reshape(-1), w * s[None, None, :, None]
    node.kernel, node.bias = w.astype(np.float32), bias.astype(np.float32)
    node.config["use_bias"] = True


_TF_BINARY = {"__operators__.add": "add", "math.add": "add", "math.multiply": "mul", "math.subtract": "sub",
              "__operators__.sub": "sub", "math.truediv": "div", "math.divide": "div",
              "__operators__.truediv": "div", "math.maximum": "maximum", "math.minimum": "minimum"}
_TF_UNARY = {"nn.relu": "relu", "nn.relu6": "relu6", "math.sigmoid": "sigmoid", "nn.sigmoid": "sigmoid",
             "math.tanh": "tanh", "nn.tanh": "tanh", "nn.silu": "swish", "nn.swish": "swish", "nn.elu": "elu"}


def _shape(layer: Any, attr: str) -> tuple:
    shape = getattr(layer, attr)
    if isinstance(shape, list) and len(shape) == 1:  # an InputLayer's output_shape
        shape = shape[0]
    return tuple(shape[1:]) if isinstance(shape, tuple) else tuple(tuple(s[1:]) for s in shape)


class _Builder:
    """The canonical node list under construction (see canonicalize)."""

    def __init__(self, calls: list[_Call]) -> None:
        self.readers: dict[str, int] = {}
        for c in calls:
            for i in c.inbound:
                self.readers[i] = self.readers.get(i, 0) + 1
        self.nodes: dict[str, CNode] = {}
        self.order: list[str] = []
        self.alias: dict[str, str] = {}  # removed layer -> the canonical node that now produces its output
        # a closing reshape (Conv1D, Dense on rank 2, 1-D pooling, wrapped affine) -> the node it wraps:
        # a BatchNormalization or ReLU after it folds into that node, the reshape stays the producer
        self.closes: dict[str, str] = {}
        self.affines: dict[str, tuple[str | None, str | None]] = {}  # affine node -> (opening, closing reshape)
        self.shapes: dict[str, tuple] = {}  # Keras layer -> its output shape (no batch axis)

    def src(self, name: str) -> str:
        while name in self.alias:
            name = self.alias[name]
        return name

    def emit(self, node: CNode) -> str:
        if node.name in self.nodes:
            raise UnsupportedLayerError(node.name, node.kind, "its name is also the name fxpq gives a node it "
                                        "derives from another layer; rename the layer")
        self.nodes[node.name] = node
        self.order.append(node.name)
        return node.name

    def target(self, name: str) -> CNode | None:
        """The node a following BatchNormalization / ReLU may fold into."""
        return self.nodes.get(self.closes.get(name, name))

    def wrap(self, name: str, x: str, shape: tuple, inner: tuple, node: CNode, out: tuple) -> str:
        """`node` (named `name`, reading x reshaped to `inner`) between reshapes: returns the closing one."""
        if tuple(shape) != tuple(inner):
            x = self.emit(CNode(f"{name}_as_2d", "reshape", [x], {"target_shape": tuple(inner)}))
        node.inputs = [x]
        self.emit(node)
        if tuple(out) == _shape_after(node, inner):
            return name
        close = self.emit(CNode(closes_name(name), "reshape", [name], {"target_shape": tuple(out)}))
        self.closes[close] = name
        return close

    def affine(self, name: str, x: str, affine: _Affine, shape: tuple, single: bool, act: str = "linear") -> str:
        """Apply a per-channel affine (then `act`) to node x: folded backward into a linear conv/dense
        producer used only here, else a 1x1 depthwise conv (forward folds happen in fold_affines)."""
        prev = self.target(x)
        if (single and prev is not None and prev.kind in WEIGHTED and prev.config["activation"] == "linear"):
            _fold_affine(prev, affine)
            prev.config["activation"] = act
            return x
        if len(shape) not in (1, 2, 3) or None in shape:
            raise UnsupportedLayerError(name, "per-channel affine", f"input shape {shape} (needs rank 1-3, fixed)")
        channels = shape[-1]
        inner = {1: (1, 1, channels), 2: (1,) + tuple(shape), 3: tuple(shape)}[len(shape)]
        node = CNode(name, "depthwise_conv2d", [], {
            "strides": (1, 1), "padding": "valid", "dilation_rate": (1, 1), "kernel_size": (1, 1),
            "depth_multiplier": 1, "activation": act, "use_bias": True},
            kernel=affine.scale.reshape(1, 1, channels, 1).astype(np.float32),
            bias=affine.shift().astype(np.float32))
        out = self.wrap(name, x, shape, inner, node, shape)
        self.affines[name] = (node.inputs[0] if node.inputs[0] != x else None, out if out != name else None)
        return out

    def activate(self, name: str, cls: str, x: str, act: str, shape: tuple, single: bool, layer: str = "") -> str:
        """Apply activation `act` to node x (a Conv/Dense `activation=` of `layer`, or an Activation layer)."""
        if act == "linear":
            return x
        if act in ("relu", "relu6"):
            prev = self.target(x)
            if prev is not None and prev.kind in WEIGHTED and prev.config["activation"] == "linear" and single:
                prev.config["activation"] = act
                return x
            return self.emit(CNode(name, "relu", [x], {"activation": act}))
        if act == "softmax":
            return self.emit(CNode(name, "softmax", [x]))
        if act in STOCK_ACTIVATIONS:
            return self.emit(CNode(name, STOCK_ACTIVATIONS[act], [x]))
        if act == "swish":
            sig = self.emit(CNode(f"{name}_sigmoid", "logistic", [x]))
            return self.emit(CNode(name, "mul", [x, sig]))
        if act in ("hard_sigmoid", "keras3_hard_sigmoid"):  # relu6(a x + 3) / 6, exactly
            a = 1.0 if act == "keras3_hard_sigmoid" else 1.2
            c = shape[-1]
            first = self.affine(f"{name}_relu6", x, _Affine(np.full(c, a), np.zeros(c), np.full(c, 3.0)), shape,
                                single, act="relu6")
            return self.affine(name, first, _Affine(np.full(c, 1 / 6), np.zeros(c), np.zeros(c)), shape, True)
        raise UnsupportedLayerError(layer or name, cls, f"activation '{act}'" + (
            " (TFLM has no GELU kernel)" if act == "gelu" else " (no TFLM int8 kernel mapped)"))


def _shape_after(node: CNode, inner: tuple) -> tuple:
    """Output shape of a node that keeps spatial dims (affine, 1x1 conv) on input shape `inner`."""
    if node.kind in WEIGHTED and node.config.get("kernel_size") == (1, 1) and node.config["strides"] == (1, 1):
        return tuple(inner[:-1]) + ((node.kernel.shape[-1] if node.kind == "conv2d" else inner[-1]),)
    return ()


def canonicalize(model: keras.Model) -> list[CNode]:
    """The canonical node list of a float model (see module docstring); raises UnsupportedLayerError.

    A Keras 3 model is first translated into tf_keras (fxpq_keras/keras3.py)."""
    from .keras3 import is_keras3_model, to_tf_keras

    if is_keras3_model(model):
        model = to_tf_keras(model)
    if not isinstance(model, keras.Model):
        raise TypeError(f"fxpq needs a Keras model, got {type(model).__name__} (a SavedModel loaded without its "
                        "Keras metadata, e.g. from Keras 3's model.export(), is not one: save the model with "
                        "model.save('model.keras') and pass that)")
    calls = _parse(model)
    b = _Builder(calls)
    for call in calls:
        layer = call.layer
        cls = type(layer).__name__
        ins = [b.src(i) for i in call.inbound]
        cfg = layer.get_config()
        name = layer.name
        if cfg.get("data_format", "channels_last") not in (None, "channels_last"):
            raise UnsupportedLayerError(name, cls, "only channels_last data format")
        out = _canonical_layer(b, call, cls, cfg, ins)
        if out != name:
            b.alias[name] = out
        b.shapes[name] = _shape(layer, "output_shape")
    last = b.src(calls[-1].layer.name)
    for n in b.order:
        if b.nodes[n].kind == "softmax" and n != last:
            raise UnsupportedLayerError(n, "softmax", "softmax is supported only as the model's last layer")
    cnodes = [b.nodes[n] for n in b.order]
    cnodes = fuse_hard_swish(cnodes, set(b.affines))
    cnodes = fold_affines(cnodes, b.affines)
    return fold_zero_padding(cnodes)


def _canonical_layer(b: _Builder, call: _Call, cls: str, cfg: dict[str, Any], ins: list[str]) -> str:
    """Emit the canonical nodes of one layer call; returns the node that produces its output."""
    layer, name = call.layer, call.layer.name
    single = len(call.inbound) == 1 and b.readers.get(call.inbound[0], 0) == 1
    if isinstance(layer, keras.layers.InputLayer):
        return b.emit(CNode(name, "input", [], {"shape": tuple(layer.get_config()["batch_input_shape"][1:])}))
    if cls in IDENTITY_LAYERS:
        return ins[0]
    if cls in NEEDS:
        raise UnsupportedLayerError(name, cls)
    if cls == "TFOpLambda":
        return _tf_op(b, call, cfg)
    in_shape = _shape(layer, "input_shape")
    out_shape = _shape(layer, "output_shape")
    if isinstance(layer, keras.layers.SeparableConv2D):
        act = _activation_name(cfg["activation"])
        dw, pw = layer.depthwise_kernel.numpy(), layer.pointwise_kernel.numpy()
        common = {"padding": cfg["padding"], "dilation_rate": tuple(cfg["dilation_rate"])}
        b.emit(CNode(f"{name}_depthwise", "depthwise_conv2d", ins,
                     {**common, "strides": tuple(cfg["strides"]), "kernel_size": dw.shape[:2],
                      "depth_multiplier": cfg["depth_multiplier"], "activation": "linear", "use_bias": False},
                     kernel=dw, bias=None))
        b.emit(CNode(name, "conv2d", [f"{name}_depthwise"],
                     {"strides": (1, 1), "padding": "valid", "dilation_rate": (1, 1), "kernel_size": (1, 1),
                      "filters": pw.shape[-1], "activation": "linear",
                      "use_bias": cfg["use_bias"]},
                     kernel=pw, bias=layer.bias.numpy() if cfg["use_bias"] else None))
        return b.activate(f"{name}_{act}", cls, name, act, out_shape, True, name)
    if type(layer) is keras.layers.Conv1D:
        act = _activation_name(cfg["activation"])
        _conv1d(layer, cfg, ins, b.emit, b.closes)
        return b.activate(f"{name}_{act}", cls, closes_name(name), act, out_shape, True, name)
    if isinstance(layer, (keras.layers.Conv2D, keras.layers.DepthwiseConv2D, keras.layers.Dense)):
        if type(layer) not in (keras.layers.Conv2D, keras.layers.DepthwiseConv2D, keras.layers.Dense):
            raise UnsupportedLayerError(name, cls)
        act = _activation_name(cfg["activation"])
        kind = {"Conv2D": "conv2d", "DepthwiseConv2D": "depthwise_conv2d", "Dense": "dense"}[cls]
        if cfg.get("groups", 1) != 1:
            raise UnsupportedLayerError(name, cls, "grouped convolution")
        kernel = (layer.depthwise_kernel if kind == "depthwise_conv2d" else layer.kernel).numpy()
        bias = layer.bias.numpy() if cfg.get("use_bias") else None
        conf: dict[str, Any] = {"activation": "linear", "use_bias": cfg["use_bias"]}  # activate() fuses
        if kind == "dense" and len(in_shape) in (2, 3):  # a 1x1 conv over the leading axes
            conf.update(strides=(1, 1), padding="valid", dilation_rate=(1, 1), kernel_size=(1, 1),
                        filters=kernel.shape[-1])
            node = CNode(name, "conv2d", [], conf, kernel=kernel.reshape((1, 1) + kernel.shape), bias=bias)
            inner = (1,) + in_shape if len(in_shape) == 2 else in_shape
            out = b.wrap(name, ins[0], in_shape, inner, node, out_shape)
            return b.activate(f"{name}_{act}", cls, out, act, out_shape, True, name)
        if kind == "dense" and len(in_shape) != 1:
            raise UnsupportedLayerError(name, cls, f"input shape {in_shape} (Dense takes rank 1 to 3)")
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
        b.emit(CNode(name, kind, ins, conf, kernel=kernel, bias=bias))
        return b.activate(f"{name}_{act}", cls, name, act, out_shape, True, name)
    if isinstance(layer, (keras.layers.BatchNormalization, keras.layers.Rescaling, keras.layers.Normalization)):
        return b.affine(name, ins[0], _layer_affine(layer, cls, cfg, in_shape), in_shape, single)
    if isinstance(layer, keras.layers.ELU):
        if float(cfg.get("alpha", 1.0)) != 1.0:
            raise UnsupportedLayerError(name, cls, f"alpha {cfg['alpha']} (TFLM's ELU has alpha 1)")
        return b.emit(CNode(name, "elu", ins))
    if isinstance(layer, keras.layers.LeakyReLU) or (
            isinstance(layer, keras.layers.ReLU) and cfg.get("negative_slope", 0) not in (0, 0.0)
            and cfg.get("max_value") is None and cfg.get("threshold", 0) in (0, 0.0)):
        alpha = float(cfg["alpha"] if "alpha" in cfg else cfg["negative_slope"])
        if alpha == 1.0:
            return ins[0]
        return b.emit(CNode(name, "leaky_relu", ins, {"alpha_shift": leaky_alpha_shift(name, cls, alpha)}))
    if isinstance(layer, (keras.layers.ReLU, keras.layers.Activation)):
        if isinstance(layer, keras.layers.ReLU):
            if cfg.get("negative_slope", 0) not in (0, 0.0) or cfg.get("threshold", 0) not in (0, 0.0):
                raise UnsupportedLayerError(name, cls, "ReLU with negative_slope or threshold")
            mv = cfg.get("max_value")
            if mv is not None and float(mv) != 6.0:
                raise UnsupportedLayerError(name, cls, f"ReLU max_value {mv} (only None or 6)")
            act = "relu" if mv is None else "relu6"
        else:
            act = _activation_name(cfg["activation"])
        return b.activate(name, cls, ins[0], act, in_shape, single)
    if isinstance(layer, keras.layers.Softmax):
        axis = cfg.get("axis", -1)
        axis = axis[0] if isinstance(axis, (list, tuple)) and len(axis) == 1 else axis
        if axis not in (-1, len(out_shape)):
            raise UnsupportedLayerError(name, cls, f"softmax over axis {cfg.get('axis')} (only the last axis)")
        return b.emit(CNode(name, "softmax", ins))  # the same float softmax as Activation('softmax')
    if isinstance(layer, keras.layers.Concatenate):
        rank = len(out_shape) + 1
        axis = cfg["axis"] % rank
        if len(ins) < 2:
            raise UnsupportedLayerError(name, cls, "Concatenate with fewer than two inputs")
        if axis == 0:
            raise UnsupportedLayerError(name, cls, "concatenation over the batch axis")
        return b.emit(CNode(name, "concat", ins, {} if axis == rank - 1 else {"axis": axis}))
    merge = {"Add": "add", "Multiply": "mul", "Subtract": "sub", "Maximum": "maximum", "Minimum": "minimum"}
    if cls in merge:
        if len(ins) != 2:
            raise UnsupportedLayerError(name, cls, f"{cls} with other than two inputs")
        if cls == "Add" and len(set(in_shape)) != 1:
            raise UnsupportedLayerError(name, cls, f"Add with broadcasting (input shapes {list(in_shape)})")
        return b.emit(CNode(name, merge[cls], ins))
    if isinstance(layer, (keras.layers.MaxPooling2D, keras.layers.AveragePooling2D)):
        kind = "max_pool" if isinstance(layer, keras.layers.MaxPooling2D) else "avg_pool"
        return b.emit(CNode(name, kind, ins, {"pool_size": tuple(cfg["pool_size"]), "strides": tuple(cfg["strides"]),
                                              "padding": cfg["padding"]}))
    if isinstance(layer, (keras.layers.MaxPooling1D, keras.layers.AveragePooling1D)):
        kind = "max_pool" if isinstance(layer, keras.layers.MaxPooling1D) else "avg_pool"
        node = CNode(name, kind, [], {"pool_size": (1, int(cfg["pool_size"][0])),
                                      "strides": (1, int(cfg["strides"][0])), "padding": cfg["padding"]})
        return _wrapped_pool(b, name, ins[0], in_shape, (1,) + in_shape, node, out_shape)
    if isinstance(layer, (keras.layers.GlobalAveragePooling2D, keras.layers.GlobalAveragePooling1D)):
        inner = in_shape if len(in_shape) == 3 else (1,) + in_shape
        return _wrapped_pool(b, name, ins[0], in_shape, inner, CNode(name, "gap", []), out_shape)
    if isinstance(layer, (keras.layers.GlobalMaxPooling2D, keras.layers.GlobalMaxPooling1D)):
        inner = in_shape if len(in_shape) == 3 else (1,) + in_shape
        node = CNode(name, "max_pool", [], {"pool_size": inner[:2], "strides": inner[:2], "padding": "valid"})
        return _wrapped_pool(b, name, ins[0], in_shape, inner, node, out_shape)
    if isinstance(layer, keras.layers.UpSampling2D):
        if cfg.get("interpolation", "nearest") != "nearest":
            raise UnsupportedLayerError(name, cls, next(r.becomes for r in LAYER_TABLE if r.qualifier == "bilinear"))
        return b.emit(CNode(name, "upsample_nearest", ins, {"size": tuple(int(v) for v in cfg["size"])}))
    if isinstance(layer, keras.layers.Permute):
        dims = tuple(int(d) for d in cfg["dims"])
        moved = [d for d in dims if in_shape[d - 1] != 1]
        if moved == sorted(moved):  # only size-1 axes move: the same bytes in the same order
            return b.emit(CNode(name, "reshape", ins, {"target_shape": out_shape}))
        return b.emit(CNode(name, "transpose", ins, {"perm": (0,) + dims}))
    if isinstance(layer, keras.layers.ZeroPadding2D):
        (top, bottom), (left, right) = (tuple(int(v) for v in pair) for pair in cfg["padding"])
        return b.emit(CNode(name, "zero_pad", ins, {"padding": ((top, bottom), (left, right)),
                                                    "input_shape": in_shape}))
    if isinstance(layer, keras.layers.Flatten):
        return b.emit(CNode(name, "flatten", ins))
    if isinstance(layer, keras.layers.Reshape):
        target = tuple(cfg["target_shape"])
        return b.emit(CNode(name, "reshape", ins, {"target_shape": out_shape if -1 in target else target}))
    raise UnsupportedLayerError(name, cls, NEEDS.get(cls) or UNMAPPED)


def _wrapped_pool(b: _Builder, name: str, x: str, shape: tuple, inner: tuple, node: CNode, out: tuple) -> str:
    """A 2-D pool node on x reshaped to `inner`, reshaped to `out` after when its output differs."""
    if tuple(shape) != tuple(inner):
        x = b.emit(CNode(f"{name}_as_2d", "reshape", [x], {"target_shape": tuple(inner)}))
    node.inputs = [x]
    b.emit(node)
    natural = (inner[-1],) if node.kind == "gap" else None
    if natural is not None and tuple(out) == natural:
        return name
    if node.kind != "gap" and len(out) == 3:
        return name
    close = b.emit(CNode(closes_name(name), "reshape", [name], {"target_shape": tuple(out)}))
    b.closes[close] = name
    return close


def _layer_affine(layer: Any, cls: str, cfg: dict[str, Any], shape: tuple) -> _Affine:
    """The per-channel affine a BatchNormalization, Rescaling or Normalization layer computes."""
    name, channels = layer.name, shape[-1]
    if isinstance(layer, keras.layers.BatchNormalization):
        axis = cfg["axis"][0] if isinstance(cfg["axis"], (list, tuple)) else cfg["axis"]
        if axis not in (-1, len(shape)):
            raise UnsupportedLayerError(name, cls, "only the channel (last) axis")
        return _bn_affine(layer)
    zeros = np.zeros(channels)
    if isinstance(layer, keras.layers.Rescaling):
        scale, offset = _channel_vector(cfg["scale"], channels), _channel_vector(cfg["offset"], channels)
        if scale is None or offset is None:
            raise UnsupportedLayerError(name, cls, "scale and offset must be scalars or one value per channel")
        return _Affine(scale, zeros, offset)
    axis = cfg.get("axis")
    axis = tuple(axis) if isinstance(axis, (list, tuple)) else (axis,)
    if axis not in ((-1,), (len(shape),)):
        raise UnsupportedLayerError(name, cls, f"axis {cfg.get('axis')} (only the channel axis)")
    mean = _channel_vector(np.asarray(layer.mean), channels)
    sd = _channel_vector(np.maximum(np.sqrt(np.asarray(layer.variance, np.float64)), keras.backend.epsilon()),
                         channels)
    if mean is None or sd is None:
        raise UnsupportedLayerError(name, cls, "mean and variance must hold one value per channel")
    if cfg.get("invert"):
        return _Affine(sd, zeros, mean)
    return _Affine(1.0 / sd, -mean, zeros)


def _tf_op(b: _Builder, call: _Call, cfg: dict[str, Any]) -> str:
    """A tf_keras TFOpLambda (a tf function applied to Keras tensors) as the node its layer form gives."""
    layer, name, cls = call.layer, call.layer.name, "TFOpLambda"
    fn = cfg.get("function", "")
    operands = [b.src(o) if isinstance(o, str) else o for o in call.operands]
    tensors = [o for o in operands if isinstance(o, str)]
    shape = _shape(layer, "output_shape")
    single = len(call.inbound) == 1 and b.readers.get(call.inbound[0], 0) == 1
    if fn in _TF_UNARY and len(operands) == 1 and tensors:
        return b.activate(name, f"{cls} {fn}", tensors[0], _TF_UNARY[fn], shape, single)
    op = _TF_BINARY.get(fn)
    if op is None or len(operands) != 2 or not tensors:
        raise UnsupportedLayerError(name, f"{cls} tf.{fn}", "only tf ops of the form x + y, x - y, x * y, x / c, "
                                    "tf.math.maximum/minimum and tf.nn activations are mapped")
    if len(tensors) == 2:
        if op == "div":
            raise UnsupportedLayerError(name, f"{cls} tf.{fn}", "division by a tensor")
        if op == "add" and b.shapes[call.inbound[0]] != b.shapes[call.inbound[1]]:
            raise UnsupportedLayerError(name, f"{cls} tf.{fn}", "an add with broadcasting (shapes "
                                        f"{b.shapes[call.inbound[0]]} and {b.shapes[call.inbound[1]]})")
        return b.emit(CNode(name, op, tensors))
    const = next(o for o in operands if not isinstance(o, str))
    c = _channel_vector(const, shape[-1])
    if c is None or op in ("maximum", "minimum") or (op == "div" and isinstance(operands[1], str)):
        raise UnsupportedLayerError(name, f"{cls} tf.{fn}", "a constant operand that is not a scalar or per-channel "
                                    "vector, or an op with a constant that is not +, -, * or / c")
    zeros, ones = np.zeros_like(c), np.ones_like(c)
    if op == "div" and np.any(c == 0):
        raise UnsupportedLayerError(name, f"{cls} tf.{fn}", "division by zero")
    affine = {"add": _Affine(ones, zeros, c), "mul": _Affine(c, zeros, zeros),
              "div": _Affine(1.0 / c if op == "div" else ones, zeros, zeros),
              "sub": _Affine(ones, zeros, -c) if isinstance(operands[0], str) else _Affine(-ones, zeros, c)}[op]
    return b.affine(name, tensors[0], affine, shape, single)


def fuse_hard_swish(cnodes: list[CNode], affines: set[str]) -> list[CNode]:
    """x * (relu6(x + 3) * (1/6)) -> hard_swish(x): MobileNetV3's composed form (tf_keras TFOpLambdas)."""
    by_name = {n.name: n for n in cnodes}
    readers: dict[str, list[CNode]] = {}
    for n in cnodes:
        for i in n.inputs:
            readers.setdefault(i, []).append(n)

    def is_affine(name: str, scale: float, shift: float, act: str) -> bool:
        n = by_name.get(name)
        return (n is not None and name in affines and n.config["activation"] == act and len(readers[name]) == 1
                and np.all(n.kernel == np.float32(scale)) and np.all(n.bias == np.float32(shift)))

    drop: set[str] = set()
    for m in cnodes:
        if m.kind != "mul" or len(m.inputs) != 2:
            continue
        for x, hs in (m.inputs, m.inputs[::-1]):
            if is_affine(hs, 1 / 6, 0.0, "linear") and is_affine(by_name[hs].inputs[0], 1.0, 3.0, "relu6") \
                    and by_name[by_name[hs].inputs[0]].inputs == [x]:
                drop |= {hs, by_name[hs].inputs[0]}
                m.kind, m.inputs, m.config = "hard_swish", [x], {}
                break
    return [n for n in cnodes if n.name not in drop]


def fold_affines(cnodes: list[CNode], affines: dict[str, tuple[str | None, str | None]]) -> list[CNode]:
    """Fold each linear per-channel affine node forward into its one reader when that is exact: a
    dense layer, or a conv / depthwise conv that reads no padded zero ('valid', or a zero shift)."""
    out = list(cnodes)
    for name, (opening, closing) in affines.items():
        by_name = {n.name: n for n in out}
        a = by_name.get(name)
        if a is None or a.config["activation"] != "linear" or a is out[-1]:
            continue
        last = closing or name
        readers = [n for n in out if last in n.inputs]
        inner = [n for n in out if name in n.inputs]
        if len(readers) != 1 or len(inner) != 1 or readers[0].inputs != [last]:
            continue
        r, reopen = readers[0], None
        if (closing and opening and r.kind == "reshape" and r.config["target_shape"]
                == by_name[opening].config["target_shape"]):  # the reader's own [1, L, C] reshape (Conv1D ...)
            after = [n for n in out if r.name in n.inputs]
            if len(after) != 1:
                continue
            r, reopen = after[0], r
        exact = r.kind == "dense" or (
            r.kind in ("conv2d", "depthwise_conv2d") and (closing is None or reopen is not None)
            and (r.config["padding"] == "valid" or not np.any(a.bias)))
        if not exact or (r.kind == "dense" and (closing is None or len(by_name[closing].config["target_shape"]) != 1)):
            continue
        affine = _Affine(a.kernel.reshape(-1).astype(np.float64), np.zeros(a.bias.size), a.bias.astype(np.float64))
        _fold_input_affine(r, affine)
        source = by_name[opening].inputs[0] if opening else a.inputs[0]
        (reopen or r).inputs = [source]
        out = [n for n in out if n.name not in (opening, name, closing)]
    return out


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
    """Conv1D as reshape [L, C] -> [1, L, C], a Conv2D with a (1, k) kernel, reshape back (its
    activation is applied by the caller, fused into the conv2d where it can be).

    Exact: a height-1 conv2d computes the same dot products; the reshapes move no data (RESHAPE
    aliases its input in the runner and in TFLM), so every later step sees only known kinds.
    """
    name = layer.name
    if cfg.get("groups", 1) != 1:
        raise UnsupportedLayerError(name, "Conv1D", "grouped convolution")
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
                "filters": kernel.shape[-1], "activation": "linear", "use_bias": cfg["use_bias"]},
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
        return keras.layers.Concatenate(axis=c.get("axis", -1), name=n.name)
    if n.kind in STOCK_KINDS:
        return make_stock_layer(n.kind, n.name, c)
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
    raise AssertionError(n.kind)


def _keras_act(act: str) -> Any:
    return act  # 'linear', 'relu' and 'relu6' are all tf_keras activation names


# Layers whose output is not a data structure of its own (it keeps its input's format).
PASS_THROUGH = ("flatten", "reshape", "softmax", "input", "zero_pad") + STOCK_PASS_THROUGH


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
