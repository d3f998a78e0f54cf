"""The Keras front end of issue 19 (fxpq_keras/keras_model.py, keras3.py): every layer either folds
exactly into the canonical model or becomes a named canonical node; the rest is refused by name.

Each model is built in tf_keras and in Keras 3. A fold is exact when the canonical float model
(build_float_model of the CNode list) predicts like the original Keras model to 1e-5; that is also
the contract for the stock-op kinds (mul, logistic, ...), whose make_layer builds a float Keras layer.
Models that use only kinds with fixed-point kernels also go through quantize -> export -> the
reference interpreter, which must equal the lowered integer graph bit for bit.
"""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
from long_mode import LONG

import fxpq_keras as fx
from fxpq_keras._tf import keras as tf_keras
from fxpq_keras.keras_model import (
    LAYER_TABLE,
    STOCK_KINDS,
    SUPPORTED_LAYERS,
    UnsupportedLayerError,
    build_float_model,
    canonicalize,
    layer_table_markdown,
)

try:
    import keras as keras3

    HAVE_KERAS3 = keras3.__version__.startswith("3")
except ImportError:  # pragma: no cover - Keras 3 ships with TensorFlow 2.21
    HAVE_KERAS3 = False

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FLAVOURS = ["tf_keras", pytest.param("keras3", marks=pytest.mark.skipif(not HAVE_KERAS3, reason="no Keras 3"))]
FIXED_POINT_KINDS = {"input", "conv2d", "depthwise_conv2d", "dense", "add", "max_pool", "avg_pool", "gap", "relu",
                     "flatten", "reshape", "softmax", "zero_pad", "leaky_relu", "concat"}


def K(flavour: str):
    return tf_keras if flavour == "tf_keras" else keras3


def _randomize(model, seed: int) -> None:
    """Non-trivial weights everywhere (BatchNormalization statistics too), nested models included."""
    rng = np.random.default_rng(seed)

    def visit(layers):
        for layer in layers:
            if hasattr(layer, "layers") and hasattr(layer, "inputs"):
                visit(layer.layers)
                continue
            if type(layer).__name__ in ("Normalization",):
                continue  # adapted statistics
            weights = layer.get_weights()
            if type(layer).__name__ == "BatchNormalization":
                weights = [rng.uniform(0.5, 1.5, w.shape) if i in (0, 3) else rng.normal(0, 0.3, w.shape)
                           for i, w in enumerate(weights)]
            else:
                weights = [rng.normal(0, 0.4, w.shape) for w in weights]
            layer.set_weights([w.astype(np.float32) for w in weights])

    visit(model.layers)


def _x(model, n: int = 24, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).normal(0, 1.5, (n,) + tuple(model.input_shape[1:])).astype(np.float32)


def exact(model, x: np.ndarray | None = None):
    """The canonical nodes of `model`, after checking the canonical float model predicts like it."""
    x = _x(model) if x is None else x
    cnodes = canonicalize(model)
    want = np.asarray(model.predict(x, verbose=0))
    got = build_float_model(cnodes).predict(x, verbose=0)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    return cnodes


def kinds(cnodes) -> list[str]:
    return [n.kind for n in cnodes]


# ---------------------------------------------------------------- A: exact rewrites into existing kinds


def conv_relu_bn(k, padding: str):
    """Conv2D(activation='relu') -> BatchNormalization -> Conv2D: the BN cannot fold backward."""
    L = k.layers
    i = k.Input((8, 8, 3))
    x = L.Conv2D(4, 3, activation="relu", name="c1")(i)
    x = L.BatchNormalization(name="bn")(x)
    x = L.Conv2D(5, 3, padding=padding, name="c2")(x)
    return k.Model(i, L.Dense(3, name="out")(L.Flatten(name="flat")(x)))


def bn_first(k, padding: str):
    L = k.layers
    i = k.Input((7, 7, 2))
    x = L.BatchNormalization(name="bn_in")(i)
    x = L.Conv2D(4, 3, padding=padding, activation="relu", name="c1")(x)
    return k.Model(i, L.Dense(3, name="out")(L.GlobalAveragePooling2D(name="gap")(x)))


def bn_between_dense(k):
    L = k.layers
    i = k.Input((6,))
    x = L.Dense(8, activation="relu", name="d1")(i)
    x = L.BatchNormalization(name="bn")(x)
    return k.Model(i, L.Dense(3, name="out")(x))


def bn_rank2(k):
    """A BatchNormalization on a [L, C] input that feeds a Flatten: the per-channel affine node."""
    L = k.layers
    i = k.Input((6, 4))
    x = L.BatchNormalization(name="bn")(i)
    return k.Model(i, L.Dense(3, name="out")(L.Flatten(name="flat")(x)))


def preprocessing(k, pad: bool):
    """Rescaling -> Normalization -> (ZeroPadding2D, as EfficientNet's stem) -> Conv2D."""
    L = k.layers
    norm = L.Normalization(name="norm")
    norm.adapt(np.random.default_rng(0).uniform(0, 255, (32, 6, 6, 3)).astype(np.float32) / 255.0)
    i = k.Input((6, 6, 3))
    x = norm(L.Rescaling(1.0 / 255.0, name="rescale")(i))
    if pad:
        x = L.ZeroPadding2D(1, name="pad")(x)
    x = L.Conv2D(4, 3, strides=2 if pad else 1, name="stem")(x)
    return k.Model(i, L.Dense(2, name="out")(L.Flatten(name="flat")(x)))


def pools_2d(k):
    L = k.layers
    i = k.Input((8, 8, 3))
    x = L.Conv2D(6, 3, padding="same", activation="relu", name="c1")(i)
    se = L.GlobalAveragePooling2D(keepdims=True, name="gap_keep")(x)
    se = L.Conv2D(6, 1, activation="relu", name="squeeze")(se)
    y = L.GlobalMaxPooling2D(name="gmp")(x)
    z = L.GlobalMaxPooling2D(keepdims=True, name="gmp_keep")(x)
    x = L.Concatenate(name="cat")([L.Flatten(name="f1")(se), y, L.Flatten(name="f2")(z)])
    return k.Model(i, L.Dense(3, name="out")(x))


def pools_1d(k):
    L = k.layers
    i = k.Input((13, 3))
    x = L.Conv1D(6, 3, padding="same", activation="relu", name="c1")(i)
    x = L.MaxPooling1D(2, name="mp")(x)
    x = L.AveragePooling1D(3, strides=2, padding="same", name="ap")(x)
    a = L.GlobalAveragePooling1D(name="gap")(x)
    b = L.Flatten(name="flat")(L.GlobalAveragePooling1D(keepdims=True, name="gap_keep")(x))
    c = L.GlobalMaxPooling1D(name="gmp")(x)
    d = L.Flatten(name="flat2")(L.GlobalMaxPooling1D(keepdims=True, name="gmp_keep")(x))
    return k.Model(i, L.Dense(3, name="out")(L.Concatenate(name="cat")([a, b, c, d])))


def dense_rank3(k):
    L = k.layers
    i = k.Input((5, 4))
    x = L.Dense(6, activation="relu", name="per_step")(i)
    x = L.Dense(3, name="per_step2")(x)
    x = L.Reshape((5, 1, 3), name="to_map")(x)
    x = L.Dense(4, activation="relu6", name="per_pixel")(x)
    return k.Model(i, L.Dense(2, name="out")(L.Flatten(name="flat")(x)))


def identities(k):
    L = k.layers
    i = k.Input((6, 6, 2))
    x = L.GaussianNoise(0.5, name="noise")(i)
    x = L.Conv2D(4, 3, activation="relu", name="c1")(x)
    x = L.SpatialDropout2D(0.5, name="sdrop")(x)
    x = L.GaussianDropout(0.3, name="gdrop")(x)
    x = L.Permute((2, 1, 3), name="swap_hw")(L.Reshape((1, 16, 4), name="row")(x))  # moves a size-1 axis
    x = L.Reshape((16, 4), name="seq")(x)
    x = L.SpatialDropout1D(0.5, name="sdrop1")(x)
    x = L.AlphaDropout(0.2, name="adrop")(L.Flatten(name="flat")(x))
    x = L.ActivityRegularization(0.01, name="reg")(L.Dropout(0.5, name="drop")(x))
    return k.Model(i, L.Dense(3, name="out")(x))


def nested(k):
    """A Sequential and a functional model used as layers (transfer learning's usual shape)."""
    L = k.layers
    base = k.Sequential([k.Input((8, 8, 3)), L.Conv2D(4, 3, name="b_conv"), L.BatchNormalization(name="b_bn"),
                         L.ReLU(name="b_relu")], name="base")
    j = k.Input((6, 6, 4))
    head_in = L.DepthwiseConv2D(3, name="h_dw")(j)
    head = k.Model(j, L.GlobalAveragePooling2D(name="h_gap")(head_in), name="head")
    return k.Sequential([k.Input((8, 8, 3)), base, head, L.Dropout(0.2, name="drop"), L.Dense(3, name="out")])


def tf_ops(k):
    """Python operators on Keras tensors: TFOpLambda in tf_keras, keras.ops nodes in Keras 3."""
    L = k.layers
    i = k.Input((6, 6, 2))
    a = L.Conv2D(4, 3, name="a")(i)
    b = L.Conv2D(4, 3, name="b")(i)
    x = L.ReLU(name="r")(a + b)  # tensor + tensor -> add
    x = x * 0.5  # a scale: an affine (its producer is a ReLU: a depthwise node)
    x = L.Conv2D(4, 1, name="c")(x - 1.0)
    y = (2.0 - x) / 4.0  # folds backward into c
    return k.Model(i, L.Dense(3, name="out")(L.Flatten(name="flat")(y)))


FIXED_POINT_MODELS = {
    "conv_relu_bn_valid": (lambda k: conv_relu_bn(k, "valid"), ["input", "conv2d", "conv2d", "flatten", "dense"]),
    "conv_relu_bn_same": (lambda k: conv_relu_bn(k, "same"),
                          ["input", "conv2d", "depthwise_conv2d", "conv2d", "flatten", "dense"]),
    "bn_first_valid": (lambda k: bn_first(k, "valid"), ["input", "conv2d", "gap", "dense"]),
    "bn_first_same": (lambda k: bn_first(k, "same"), ["input", "depthwise_conv2d", "conv2d", "gap", "dense"]),
    "bn_between_dense": (bn_between_dense, ["input", "dense", "dense"]),
    "bn_rank2": (bn_rank2, ["input", "reshape", "depthwise_conv2d", "reshape", "flatten", "dense"]),
    "preprocessing": (lambda k: preprocessing(k, False), ["input", "conv2d", "flatten", "dense"]),
    "preprocessing_pad": (lambda k: preprocessing(k, True),
                          ["input", "depthwise_conv2d", "zero_pad", "conv2d", "flatten", "dense"]),
    "pools_2d": (pools_2d, None),
    "pools_1d": (pools_1d, None),
    "dense_rank3": (dense_rank3, None),
    "identities": (identities, ["input", "conv2d", "reshape", "reshape", "reshape", "flatten", "dense"]),
    "nested": (nested, ["input", "conv2d", "depthwise_conv2d", "gap", "dense"]),
    "tf_ops": (tf_ops, ["input", "conv2d", "conv2d", "add", "relu", "conv2d", "flatten",
                        "dense"]),
}


@pytest.mark.parametrize("flavour", FLAVOURS)
@pytest.mark.parametrize("case", sorted(FIXED_POINT_MODELS))
def test_exact_rewrites_into_fixed_point_kinds(case: str, flavour: str) -> None:
    build, want = FIXED_POINT_MODELS[case]
    model = build(K(flavour))
    _randomize(model, seed=len(case))
    cnodes = exact(model)
    assert set(kinds(cnodes)) <= FIXED_POINT_KINDS
    if want is not None:
        assert kinds(cnodes) == want


def test_pool_nodes_keep_keras_shapes() -> None:
    """1-D pools are height-1 2-D pools between reshapes; global max pooling pools the whole map."""
    by_name = {n.name: n for n in canonicalize(pools_1d(tf_keras))}
    assert by_name["ap"].config == {"pool_size": (1, 3), "strides": (1, 2), "padding": "same"}
    assert by_name["ap_as_2d"].config["target_shape"] == (1, 6, 6)
    assert by_name["gmp"].kind == "max_pool" and by_name["gmp"].config["pool_size"] == (1, 3)
    by_name = {n.name: n for n in canonicalize(pools_2d(tf_keras))}
    assert by_name["gmp"].config["pool_size"] == (8, 8) and by_name["gmp_as_1d"].config["target_shape"] == (6,)
    assert by_name["gap_keep_as_1d"].config["target_shape"] == (1, 1, 6)
    assert "gmp_keep_as_1d" not in by_name  # a [1, 1, C] max pool is already the keepdims shape


@pytest.mark.parametrize("case", ["conv_relu_bn_same", "bn_first_valid", "pools_1d", "pools_2d", "dense_rank3",
                                  "preprocessing_pad", "tf_ops"])
def test_quantize_export_and_reference_run(case: str, tmp_path) -> None:
    """The rewritten models go the whole way: quantize, export, and the reference interpreter
    computes what the lowered integer graph computes, bit for bit."""
    model = FIXED_POINT_MODELS[case][0](tf_keras)
    _randomize(model, seed=3)
    x = _x(model, 32, seed=4)
    qmodel = fx.quantize_model(model, fx.Policy.uniform(model, 8, x))
    path = str(tmp_path / "m.tflite")
    fx.export_tflite(qmodel, path)
    graph = fx.lower_model(qmodel)
    np.testing.assert_array_equal(fx.Interpreter(path).predict(x, raw=True), graph.run(x, raw=True)[0])
    out = fx.Interpreter(path).predict(x)
    want = model.predict(x, verbose=0)
    assert np.abs(out - want).max() <= 0.1 * np.abs(want).max() + 0.05  # 8 bits: close to the float model


# ---------------------------------------------------------------- B: stock-op kinds


def se_block(k):
    """Squeeze-and-excitation: GlobalAveragePooling -> Dense -> sigmoid -> Multiply (broadcast)."""
    L = k.layers
    i = k.Input((6, 6, 4))
    x = L.Conv2D(8, 3, padding="same", activation="relu", name="c1")(i)
    s = L.GlobalAveragePooling2D(name="squeeze")(x)
    s = L.Dense(4, activation="relu", name="fc1")(s)
    s = L.Dense(8, activation="sigmoid", name="fc2")(s)
    s = L.Reshape((1, 1, 8), name="gate")(s)
    x = L.Multiply(name="excite")([x, s])
    return k.Model(i, L.Dense(3, name="out")(L.GlobalAveragePooling2D(name="gap")(x)))


def activations(k, which: str):
    L = k.layers
    i = k.Input((5, 5, 3))
    x = L.Conv2D(4, 3, activation=which, name="conv")(i)
    x = L.Activation(which, name="act")(L.Conv2D(4, 1, name="pw")(x))
    return k.Model(i, L.Dense(2, activation=which, name="out")(L.Flatten(name="flat")(x)))


def merges(k):
    L = k.layers
    i = k.Input((4, 4, 3))
    a = L.Conv2D(3, 1, name="a")(i)
    b = L.Conv2D(3, 1, name="b")(i)
    x = L.Concatenate(name="cat")([L.Subtract(name="sub")([a, b]), L.Maximum(name="max")([a, b]),
                                   L.Minimum(name="min")([a, b]), L.ELU(name="elu")(a)])
    return k.Model(i, L.Flatten(name="flat")(x))


def shapes(k):
    L = k.layers
    i = k.Input((3, 4, 2))
    x = L.UpSampling2D((2, 3), name="up")(i)
    x = L.Permute((2, 1, 3), name="swap")(x)
    y = L.Concatenate(axis=1, name="rows")([x, x])
    return k.Model(i, L.Conv2D(2, 3, name="c")(y))


def composed_hard_swish(k):
    """keras.applications MobileNetV3's x * relu6(x + 3) / 6, written with tensor operators."""
    L = k.layers
    i = k.Input((5, 5, 3))
    x = L.Conv2D(4, 3, padding="same", name="c1")(i)
    x = L.BatchNormalization(name="bn")(x)
    x = L.Multiply(name="hs")([x, L.ReLU(6.0, name="r6")(x + 3.0) * (1.0 / 6.0)])
    return k.Model(i, L.Conv2D(2, 3, name="c2")(x))


STOCK_MODELS = {
    "se_block": (se_block, {"mul": 1, "logistic": 1}),
    "sigmoid": (lambda k: activations(k, "sigmoid"), {"logistic": 3}),
    "tanh": (lambda k: activations(k, "tanh"), {"tanh": 3}),
    "elu": (lambda k: activations(k, "elu"), {"elu": 3}),
    "swish": (lambda k: activations(k, "swish"), {"logistic": 3, "mul": 3}),
    "hard_sigmoid": (lambda k: activations(k, "hard_sigmoid"), {}),
    "merges": (merges, {"sub": 1, "maximum": 1, "minimum": 1, "elu": 1}),
    "shapes": (shapes, {"upsample_nearest": 1, "transpose": 1}),
    "composed_hard_swish": (composed_hard_swish, {"hard_swish": 1}),
}


@pytest.mark.parametrize("flavour", FLAVOURS)
@pytest.mark.parametrize("case", sorted(STOCK_MODELS))
def test_stock_op_kinds(case: str, flavour: str) -> None:
    build, counts = STOCK_MODELS[case]
    model = build(K(flavour))
    _randomize(model, seed=len(case) + 1)
    got = kinds(exact(model))
    assert set(got) <= FIXED_POINT_KINDS | set(STOCK_KINDS)
    for kind in STOCK_KINDS:
        assert got.count(kind) == counts.get(kind, 0), (kind, got)


def test_stock_node_configs() -> None:
    by_name = {n.name: n for n in canonicalize(shapes(tf_keras))}
    assert by_name["up"].config == {"size": (2, 3)}
    assert by_name["swap"].config == {"perm": (0, 2, 1, 3)}
    assert by_name["rows"].kind == "concat" and by_name["rows"].config == {"axis": 1}
    assert by_name["up"].inputs == ["input_1"] or by_name["up"].inputs[0].startswith("input")
    se = {n.name: n for n in canonicalize(se_block(tf_keras))}
    assert se["fc2"].config["activation"] == "linear" and se["fc2_sigmoid"].inputs == ["fc2"]
    assert se["excite"].kind == "mul" and se["excite"].inputs == ["c1", "gate"]


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_hard_swish_and_hard_sigmoid_are_the_flavours_own(flavour: str) -> None:
    """Keras 3's hard_sigmoid is relu6(x + 3) / 6, tf_keras's clip(0.2 x + 0.5, 0, 1): each model's
    own function is kept (exact() compares with the original). hard_silu is Keras 3 only."""
    k = K(flavour)
    i = k.Input((4,))
    x = k.layers.Activation("hard_sigmoid", name="hs")(k.layers.Dense(6, name="d")(i))
    model = k.Model(i, x)
    _randomize(model, 2)
    x_in = np.linspace(-6, 6, 48, dtype=np.float32).reshape(12, 4)
    cnodes = exact(model, x_in)
    assert kinds(cnodes) == ["input", "dense", "reshape", "depthwise_conv2d", "reshape"]
    assert cnodes[1].config["activation"] == "relu6"  # relu6(a x + 3) folded into the dense layer
    if flavour == "keras3":
        m = k.Model(i, k.layers.Activation("hard_silu", name="hsw")(k.layers.Dense(6, name="d2")(i)))
        _randomize(m, 3)
        assert kinds(exact(m, x_in)) == ["input", "dense", "hard_swish"]


# ---------------------------------------------------------------- C: refusals and the layer table


@pytest.mark.parametrize("flavour", FLAVOURS)
@pytest.mark.parametrize("layer, fragment", [
    ("GRU", r"'rnn' \(GRU\).*UNIDIRECTIONAL_SEQUENCE_LSTM.*unroll"),
    ("LSTM", r"'rnn' \(LSTM\).*UNIDIRECTIONAL_SEQUENCE_LSTM"),
    ("gelu", r"'rnn'.*activation 'gelu'.*no GELU kernel"),
    ("bilinear", r"'rnn' \(UpSampling2D\).*RESIZE_BILINEAR"),
    ("Conv2DTranspose", r"'rnn' \(Conv2DTranspose\).*TRANSPOSE_CONV"),
    ("Cropping2D", r"'rnn' \(Cropping2D\).*maps no TFLite op for this layer type"),
])
def test_refusals_name_the_layer_and_what_it_needs(layer: str, fragment: str, flavour: str) -> None:
    k = K(flavour)
    L = k.layers
    build = {"GRU": lambda: L.GRU(4, name="rnn"), "LSTM": lambda: L.LSTM(4, name="rnn"),
             "gelu": lambda: L.Dense(4, activation="gelu", name="rnn"),
             "bilinear": lambda: L.UpSampling2D(2, interpolation="bilinear", name="rnn"),
             "Conv2DTranspose": lambda: L.Conv2DTranspose(2, 3, name="rnn"),
             "Cropping2D": lambda: L.Cropping2D(1, name="rnn")}[layer]
    shape = (6, 3) if layer in ("GRU", "LSTM", "gelu") else (4, 4, 2)
    i = k.Input(shape)
    with pytest.raises(UnsupportedLayerError, match=fragment):
        canonicalize(k.Model(i, build()(i)))


def test_layer_table_is_the_one_source() -> None:
    """docs/layers.md is generated from LAYER_TABLE, and SUPPORTED_LAYERS is derived from it."""
    with open(os.path.join(ROOT, "docs", "layers.md")) as f:
        assert f.read() == layer_table_markdown(), "docs/layers.md is stale: run python scripts/layers_doc.py"
    assert all(r.layer.split("(")[0] in " ".join(SUPPORTED_LAYERS) for r in LAYER_TABLE if r.how != "refused")
    assert not any(s.startswith("GRU") or s.startswith("LSTM") for s in SUPPORTED_LAYERS)
    result = subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "layers_doc.py"), "--check"],
                            capture_output=True, text=True, env={**os.environ, "PYTHONPATH": ROOT})
    assert result.returncode == 0, result.stderr


def test_every_keras_layer_class_in_the_table_exists() -> None:
    """A row names a real Keras layer class in both flavours (no typo hides a refusal or support)."""
    special = {"Model", "TFOpLambda", "MultiHeadAttention"}
    for row in LAYER_TABLE:
        if row.layer not in special:
            assert hasattr(tf_keras.layers, row.layer), row.layer
            if HAVE_KERAS3:
                assert hasattr(keras3.layers, row.layer), row.layer


# ---------------------------------------------------------------- E: keras.applications at small inputs

APPLICATIONS = {  # name -> (builder, canonical kinds other than the fixed-point ones)
    "MobileNet": (lambda a: a.MobileNet(input_shape=(32, 32, 3), alpha=0.25, include_top=True, weights=None,
                                        classifier_activation=None, classes=10), set()),
    "MobileNetV2": (lambda a: a.MobileNetV2(input_shape=(32, 32, 3), alpha=0.35, weights=None,
                                            classifier_activation=None, classes=10), set()),
    "MobileNetV3Small": (lambda a: a.MobileNetV3Small(input_shape=(32, 32, 3), weights=None, classes=10,
                                                      classifier_activation=None), {"hard_swish", "mul"}),
    "MobileNetV3Small_minimalistic": (lambda a: a.MobileNetV3Small(
        input_shape=(32, 32, 3), minimalistic=True, weights=None, classes=10, classifier_activation=None), set()),
    "MobileNetV3Large_minimalistic": (lambda a: a.MobileNetV3Large(
        input_shape=(32, 32, 3), minimalistic=True, weights=None, classes=10, classifier_activation=None), set()),
    "EfficientNetB0": (lambda a: a.EfficientNetB0(input_shape=(32, 32, 3), weights=None, classes=10,
                                                  classifier_activation=None), {"logistic", "mul"}),
    "ResNet50": (lambda a: a.ResNet50(input_shape=(32, 32, 3), weights=None, classes=10,
                                      classifier_activation=None), set()),
    "MobileNetV2_in_Sequential": (lambda a: _transfer(a), set()),
}


def _transfer(applications):
    """Transfer learning's usual model: a headless MobileNetV2 inside a Sequential with a new head."""
    k = tf_keras if applications is tf_keras.applications else keras3
    base = applications.MobileNetV2(input_shape=(32, 32, 3), alpha=0.35, include_top=False, weights=None)
    return k.Sequential([k.Input((32, 32, 3)), base, k.layers.GlobalAveragePooling2D(name="pool"),
                         k.layers.Dropout(0.2, name="drop"), k.layers.Dense(4, name="head")])


@pytest.mark.parametrize("flavour", FLAVOURS)
@pytest.mark.parametrize("name", sorted(APPLICATIONS))
def test_keras_applications_canonicalize_exactly(name: str, flavour: str) -> None:
    """Random BatchNormalization statistics so every fold shows in the logits (compared to 1e-4 of
    their range: 50-layer float sums differ in the last bits)."""
    build, stock = APPLICATIONS[name]
    model = build(K(flavour).applications)
    _randomize_bn(model)
    x = np.random.default_rng(0).uniform(0, 255, (4, 32, 32, 3)).astype(np.float32)
    cnodes = canonicalize(model)
    want = np.asarray(model.predict(x, verbose=0))
    got = build_float_model(cnodes).predict(x, verbose=0)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * np.abs(want).max())
    assert set(kinds(cnodes)) - FIXED_POINT_KINDS == stock


def _randomize_bn(model) -> None:
    rng = np.random.default_rng(9)
    for layer in [la for m in [model] + [la for la in model.layers if hasattr(la, "layers")] for la in m.layers]:
        if type(layer).__name__ == "BatchNormalization":
            g, b, m, v = layer.get_weights()
            layer.set_weights([rng.uniform(0.5, 1.5, g.shape).astype(np.float32),
                               rng.normal(0, 0.2, b.shape).astype(np.float32),
                               rng.normal(0, 0.2, m.shape).astype(np.float32),
                               rng.uniform(0.5, 1.5, v.shape).astype(np.float32)])


@pytest.mark.parametrize("name", ["MobileNet", "MobileNetV3Small_minimalistic"]
                         + (["MobileNetV2", "MobileNetV3Large_minimalistic", "ResNet50"] if LONG else []))
def test_keras_applications_quantize_and_run(name: str, tmp_path) -> None:
    """The applications with only fixed-point kinds go the whole way (Keras 3, 8 bits uniform)."""
    k = K("keras3") if HAVE_KERAS3 else tf_keras
    model = APPLICATIONS[name][0](k.applications)
    _randomize_bn(model)
    x = np.random.default_rng(1).uniform(0, 255, (8, 32, 32, 3)).astype(np.float32)
    qmodel = fx.quantize_model(model, fx.Policy.uniform(model, 8, x))
    path = str(tmp_path / "m.tflite")
    fx.export_tflite(qmodel, path)
    np.testing.assert_array_equal(fx.Interpreter(path).predict(x[:4], raw=True),
                                  fx.lower_model(qmodel).run(x[:4], raw=True)[0])


# ---------------------------------------------------------------- D: SavedModel folders


@pytest.mark.skipif(not HAVE_KERAS3, reason="no Keras 3")
def test_keras3_export_folder_is_refused_in_one_line(tmp_path, capsys) -> None:
    """`fxpq quantize` on a Keras 3 model.export() folder: exit 2, one line naming what to pass
    (was AttributeError: '_UserObject' object has no attribute 'inputs', exit 1)."""
    from fxpq_keras.cli import main

    model = keras3.Sequential([keras3.Input((4,)), keras3.layers.Dense(2)])
    folder = str(tmp_path / "exported")
    model.export(folder, verbose=False)
    data = str(tmp_path / "d.npz")
    np.savez(data, x=np.zeros((4, 4), np.float32))
    assert main(["quantize", folder, "-d", data, "-o", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "SavedModel without Keras metadata" in err and "model.save('model.keras')" in err
    assert not os.path.exists(tmp_path / "out" / "model.tflite")
    with pytest.raises(TypeError, match="_UserObject.*model.save"):  # the API says the same
        canonicalize(tf_keras.models.load_model(folder, compile=False))


# ---------------------------------------------------------------- randomized: folds stay exact

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from long_mode import examples  # noqa: E402


@settings(max_examples=examples(12), deadline=None)
@given(where=st.sampled_from(["first", "after_relu", "after_linear"]),
       layer=st.sampled_from(["Conv2D", "DepthwiseConv2D", "Dense", "Conv1D"]),
       padding=st.sampled_from(["valid", "same"]), stride=st.integers(1, 2), zero_shift=st.booleans(),
       seed=st.integers(0, 2**16))
def test_batchnorm_anywhere_folds_exactly(where: str, layer: str, padding: str, stride: int, zero_shift: bool,
                                          seed: int) -> None:
    """A BatchNormalization before any conv/dense, with random statistics: the canonical model computes
    what Keras computes, and no depthwise node remains when the fold is exact by the rule."""
    L = tf_keras.layers
    one_d = layer in ("Conv1D", "Dense")
    i = tf_keras.Input((7, 3) if one_d else (7, 6, 3))
    x = i
    if where != "first":
        conv = L.Conv1D if one_d else L.Conv2D
        x = conv(3, 2, padding="same", activation="relu" if where == "after_relu" else None, name="prev")(x)
    x = L.BatchNormalization(center=not zero_shift, name="bn")(x)
    kw = {"padding": padding, "strides": stride}
    x = {"Conv2D": lambda: L.Conv2D(4, 3, **kw), "DepthwiseConv2D": lambda: L.DepthwiseConv2D(3, **kw),
         "Conv1D": lambda: L.Conv1D(4, 3, **kw), "Dense": lambda: L.Dense(4)}[layer]()(x)
    model = tf_keras.Model(i, L.Flatten()(x))
    rng = np.random.default_rng(seed)
    bn = model.get_layer("bn")
    stats = [rng.uniform(0.5, 2.0, w.shape) if "gamma" in w.name or "variance" in w.name else
             (np.zeros(w.shape) if zero_shift else rng.normal(0, 1, w.shape)) for w in bn.weights]
    bn.set_weights([s.astype(np.float32) for s in stats])
    cnodes = exact(model, _x(model, 8, seed))
    folded = where == "after_linear" or layer == "Dense" or padding == "valid" or zero_shift
    assert ("depthwise_conv2d" in kinds(cnodes)[:3] and layer != "DepthwiseConv2D") == (not folded) or \
        layer == "DepthwiseConv2D"
    assert sum(k == "depthwise_conv2d" for k in kinds(cnodes)) == (layer == "DepthwiseConv2D") + (not folded)


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_add_with_broadcasting_is_refused(flavour: str) -> None:
    k = K(flavour)
    i = k.Input((4, 4, 3))
    gate = k.layers.GlobalAveragePooling2D(keepdims=True, name="gap")(i)
    with pytest.raises(UnsupportedLayerError, match=r"'plus' \(Add\).*broadcasting"):
        canonicalize(k.Model(i, k.layers.Add(name="plus")([i, gate])))


@pytest.mark.skipif(not HAVE_KERAS3, reason="no Keras 3")
def test_keras3_file_with_bn_after_relu_and_first_quantizes_through_the_cli(tmp_path, capsys) -> None:
    """The issue's rows as a user meets them: a Keras 3 `.keras` CNN with BatchNormalization first and
    after Conv2D(activation='relu') goes through `fxpq quantize` (8 bits fixed: a fast setting), and the
    written file runs in the reference interpreter close to the Keras 3 model."""
    from fxpq_keras.cli import main

    L = keras3.layers
    model = keras3.Sequential([
        keras3.Input((8, 8, 1)), L.BatchNormalization(name="bn_in"), L.Conv2D(8, 3, activation="relu", name="c1"),
        L.BatchNormalization(name="bn1"), L.Conv2D(8, 3, name="c2"), L.BatchNormalization(name="bn2"),
        L.ReLU(name="r2"), L.GlobalAveragePooling2D(name="gap"), L.Dense(5, name="logits"), L.Softmax(name="p")])
    _randomize(model, 4)
    path, data, out = str(tmp_path / "cnn.keras"), str(tmp_path / "calib.npz"), tmp_path / "out"
    model.save(path)
    x = np.random.default_rng(5).uniform(0, 1, (64, 8, 8, 1)).astype(np.float32)
    np.savez(data, x=x)
    rc = main(["--quiet", "quantize", path, "-d", data, "-o", str(out), "--samples", "64", "--min-bits", "8",
               "--max-bits", "8", "--max-drop", "0.5"])
    assert rc == 0, capsys.readouterr().err
    got = fx.Interpreter(str(out / "model.tflite")).predict(x)
    assert np.abs(got - model.predict(x, verbose=0)).max() < 0.05
