"""Canonicalization, Policy, memory accounting, save/load and bad input on the Keras side."""

from __future__ import annotations

import json

import numpy as np
import pytest

import fxpq_keras as fx
from fxpq_keras._tf import keras
from fxpq_keras.keras_model import canonicalize

L = keras.layers


def _randomize_bn(model: keras.Model, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, L.BatchNormalization):
            n = layer.get_weights()[0].shape[0]
            layer.set_weights([rng.uniform(0.5, 1.5, n), rng.normal(0, 0.3, n), rng.normal(0, 0.3, n),
                               rng.uniform(0.3, 2, n)])


@pytest.mark.parametrize("use_bias", [True, False])
@pytest.mark.parametrize("layer", ["conv", "depthwise", "dense", "separable"])
def test_batchnorm_folding_preserves_the_function(layer, use_bias):
    keras.utils.set_random_seed(0)
    shape = (8,) if layer == "dense" else (6, 6, 3)
    i = keras.Input(shape)
    make = {"conv": lambda: L.Conv2D(4, 3, use_bias=use_bias), "dense": lambda: L.Dense(5, use_bias=use_bias),
            "depthwise": lambda: L.DepthwiseConv2D(3, depth_multiplier=2, use_bias=use_bias),
            "separable": lambda: L.SeparableConv2D(4, 3, use_bias=use_bias)}[layer]
    o = L.ReLU()(L.BatchNormalization()(make()(i)))
    model = keras.Model(i, o)
    _randomize_bn(model)
    x = np.random.default_rng(1).normal(size=(8,) + shape).astype(np.float32)
    calib = fx.Calibration(model, x)
    kinds = [n.kind for n in calib.cnodes]
    assert "batch_normalization" not in " ".join(n.name for n in calib.cnodes)
    assert calib.cnodes[-1].config["activation"] == "relu"  # the ReLU after the BN is fused
    if layer == "separable":
        assert kinds == ["input", "depthwise_conv2d", "conv2d"]
    np.testing.assert_allclose(calib.float_model.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-5)


def test_sequential_model_and_dropout_are_supported():
    model = keras.Sequential([keras.Input((4, 4, 1)), L.Conv2D(2, 3, activation="relu"), L.Flatten(),
                              L.Dropout(0.5), L.Dense(3), L.Activation("softmax")])
    kinds = [n.kind for n in canonicalize(model)]
    assert kinds == ["input", "conv2d", "flatten", "dense", "softmax"]


def test_softmax_layer_is_the_same_as_activation_softmax(tmp_path):
    """A model ending in keras.layers.Softmax quantizes, exports and runs exactly like one ending
    in Activation('softmax') (the float softmax on the host, docs/format.md)."""
    keras.utils.set_random_seed(3)
    x = np.random.default_rng(3).uniform(0, 1, (64, 6, 6, 1)).astype(np.float32)
    body = keras.Sequential([keras.Input((6, 6, 1)), L.Conv2D(3, 3, activation="relu"), L.Flatten(), L.Dense(5)])
    outputs = {}
    for name, last in (("layer", L.Softmax(name="probs")), ("activation", L.Activation("softmax", name="probs"))):
        model = keras.Model(body.input, last(body.output))
        assert [n.kind for n in canonicalize(model)][-1] == "softmax"
        qmodel = fx.quantize_model(model, fx.Policy.uniform(model, 8, x))
        fx.export_tflite(qmodel, str(tmp_path / f"{name}.tflite"))
        outputs[name] = fx.Interpreter(str(tmp_path / f"{name}.tflite")).predict(x)
    np.testing.assert_allclose(outputs["layer"].sum(-1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(outputs["layer"], outputs["activation"])


def test_softmax_layer_only_last_and_on_the_last_axis():
    i = keras.Input((4,))
    o = L.Dense(3)(L.Softmax(name="mid")(L.Dense(4)(i)))
    with pytest.raises(fx.UnsupportedLayerError, match="only as the model's last layer"):
        canonicalize(keras.Model(i, o))
    i = keras.Input((4, 4, 2))
    o = L.Softmax(axis=1, name="rows")(L.Conv2D(2, 1)(i))
    with pytest.raises(fx.UnsupportedLayerError, match=r"'rows' \(Softmax\).*last axis"):
        canonicalize(keras.Model(i, o))


def test_unsupported_layer_names_the_layer_and_lists_supported():
    i = keras.Input((8,))
    o = L.Dense(4, activation="softplus", name="my_dense")(i)
    with pytest.raises(fx.UnsupportedLayerError, match=r"'my_dense'.*softplus.*Supported layers: .*Conv2D"):
        canonicalize(keras.Model(i, o))
    i = keras.Input((8, 8, 1))
    o = L.Conv2DTranspose(2, 3, name="up")(i)
    with pytest.raises(fx.UnsupportedLayerError, match=r"'up' \(Conv2DTranspose\)"):
        canonicalize(keras.Model(i, o))


def test_batchnorm_that_cannot_be_folded_is_rejected():
    i = keras.Input((4, 4, 2))  # on the channel axis it is a per-channel affine (tests/test_coverage_frontend.py)
    o = L.BatchNormalization(axis=1, name="bn_in")(i)
    with pytest.raises(fx.UnsupportedLayerError, match="bn_in.*channel"):
        canonicalize(keras.Model(i, o))


def _small_model() -> keras.Model:
    keras.utils.set_random_seed(5)
    i = keras.Input((6, 6, 1))
    x = L.Conv2D(4, 3, activation="relu", name="c1")(i)  # 3*3*1*4 = 36 weights, 4 biases, 4*4*4 = 64 out
    x = L.MaxPooling2D(name="p")(x)  # 2*2*4 = 16
    x = L.Flatten(name="f")(x)
    o = L.Dense(3, name="d")(x)  # 16*3 = 48 weights, 3 biases, 3 out
    return keras.Model(i, o)


def test_memory_accounting_matches_a_hand_count():
    model = _small_model()
    x = np.random.default_rng(0).uniform(0, 1, (10, 6, 6, 1)).astype(np.float32)
    policy = fx.Policy.uniform(model, 8, x, bias_bits=16)
    policy.set("c1", "weights", bits=4)
    policy.set("p", "output", bits=5)
    mem = policy.memory()
    assert mem.weight_bits == 36 * 4 + 48 * 8
    assert mem.bias_bits == (4 + 3) * 16
    assert mem.activation_bits == 36 * 8 + 64 * 8 + 16 * 5 + 3 * 8  # input, c1, p, d (flatten passes through)
    assert mem.float32_bits == 32 * (36 + 48 + 7 + 36 + 64 + 16 + 3)
    assert mem.compression_weights == pytest.approx(32 * 84 / (36 * 4 + 48 * 8))
    assert "compression vs float32" in policy.summary()
    assert policy.input.signed is False  # non-negative calibration data -> unsigned input
    assert policy.get("c1", "output").signed is False  # post-ReLU


def test_policy_json_round_trip_and_mismatch(tmp_path):
    model = _small_model()
    x = np.random.default_rng(0).uniform(0, 1, (10, 6, 6, 1)).astype(np.float32)
    policy = fx.Policy.uniform(model, 6, x, per_channel=True)
    path = tmp_path / "policy.json"
    policy.to_json(str(path))
    back = fx.Policy.from_json(str(path))
    assert back.to_dict() == policy.to_dict()
    assert isinstance(back.get("c1", "weights").frac, tuple)
    qmodel = fx.quantize_model(model, back)
    _, described = fx.describe(qmodel)
    assert described.to_dict() == policy.to_dict()

    other = keras.Sequential([keras.Input((6, 6, 1)), L.Conv2D(4, 3, name="c1"), L.Flatten(), L.Dense(2, name="d")])
    with pytest.raises(fx.PolicyMismatchError, match="missing layers|does not match"):
        fx.quantize_model(other, back)
    broken = json.loads(path.read_text())
    broken["layers"][0]["weights"]["bits"] = 17
    with pytest.raises(fx.FormatError, match="2..16"):
        fx.Policy.from_dict(broken)
    with pytest.raises(fx.PolicyMismatchError, match="not an fxpq policy"):
        fx.Policy.from_dict({"layers": []})


@pytest.mark.parametrize("bad, message", [
    (np.zeros((0, 6, 6, 1), np.float32), "empty"),
    (np.full((4, 6, 6, 1), np.nan, np.float32), "NaN/inf"),
    (np.full((4, 6, 6, 1), np.inf, np.float32), "NaN/inf"),
    (np.zeros((4, 5, 5, 1), np.float32), "shape"),
])
def test_bad_calibration_data(bad, message):
    with pytest.raises(fx.CalibrationDataError, match=message):
        fx.Policy.uniform(_small_model(), 8, bad)


@pytest.mark.parametrize("bits", [1, 17, 0])
def test_bits_out_of_range(bits):
    x = np.random.default_rng(0).uniform(0, 1, (4, 6, 6, 1)).astype(np.float32)
    with pytest.raises(fx.FormatError, match="2..16"):
        fx.Policy.uniform(_small_model(), bits, x)
    policy = fx.Policy.uniform(_small_model(), 8, x)
    with pytest.raises(fx.FormatError, match="2..16"):
        policy.set("c1", "weights", bits=bits)


def test_save_and_load_in_quantize_scope(tmp_path):
    model = _small_model()
    x = np.random.default_rng(0).uniform(0, 1, (10, 6, 6, 1)).astype(np.float32)
    policy = fx.Policy.uniform(model, 5, x)
    qmodel = fx.quantize_model(model, policy)
    path = str(tmp_path / "q.h5")
    qmodel.save(path)
    with fx.quantize_scope():
        loaded = keras.models.load_model(path)
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), qmodel.predict(x, verbose=0))
    assert fx.describe(loaded)[1].to_dict() == policy.to_dict()
    a, b = fx.lower_model(loaded).run(x, raw=True)[0], fx.lower_model(qmodel).run(x, raw=True)[0]
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("field, value, message", [
    ("bits", 3.7, r"c1/weights: 'bits' must be an integer, got 3.7"),
    ("bits", True, r"c1/weights: 'bits' must be an integer, got True"),
    ("bits", "8", r"c1/weights: 'bits' must be an integer, got '8'"),
    ("signed", "false", r"c1/weights: 'signed' must be true or false, got 'false'"),
    ("signed", 0, r"c1/weights: 'signed' must be true or false, got 0"),
    ("frac", 2.5, r"c1/weights: 'frac' must be an integer or a list of integers, got 2.5"),
    ("frac", [1, "2"], r"c1/weights: 'frac' must be an integer or a list of integers"),
    ("elements", 36.0, r"c1/weights: 'elements' must be an integer, got 36.0"),
])
def test_policy_from_dict_refuses_wrong_types(field, value, message):
    """Issue 12 item 8: no silent coercion (3.7 -> 3, "false" -> True); the field is named."""
    x = np.random.default_rng(0).uniform(0, 1, (4, 6, 6, 1)).astype(np.float32)
    d = fx.Policy.uniform(_small_model(), 8, x).to_dict()
    d["layers"][0]["weights"][field] = value
    with pytest.raises(fx.PolicyMismatchError, match=message):
        fx.Policy.from_dict(d)


def test_policy_from_json_text_that_is_not_an_object():
    for text in ("[1,2,3]", " [] "):
        with pytest.raises(fx.PolicyMismatchError, match="not an fxpq policy"):
            fx.Policy.from_json(text)


def test_set_policy_validates_everything_before_changing_anything():
    """Issue 12 item 4: a bad policy changes no variable and its error names the layer."""
    model = _small_model()
    x = np.random.default_rng(0).uniform(0, 1, (10, 6, 6, 1)).astype(np.float32)
    good = fx.Policy.uniform(model, 16, x, per_channel=True)
    qmodel = fx.quantize_model(model, good)
    before = fx.describe(qmodel)[1].to_dict()

    def bad_policy(edit):
        d = fx.Policy.uniform(model, 3, x, per_channel=True).to_dict()  # every format differs from `good`
        edit(d)
        return fx.Policy.from_dict(d)

    def rename_last(d):
        d["layers"][-1]["name"] = "renamed"

    def wrong_elements(d):
        d["layers"][0]["weights"]["elements"] += 1

    def wrong_channels(d):
        d["layers"][0]["weights"]["frac"] = d["layers"][0]["weights"]["frac"][:-1]

    for edit, message in ((rename_last, r"'renamed'|missing layers \['d'\]"), (wrong_elements, r"'c1/weights'"),
                          (wrong_channels, r"'c1/weights' has 3 channel fracs")):
        with pytest.raises(fx.PolicyMismatchError, match=message):
            fx.set_policy(qmodel, bad_policy(edit))
        assert fx.describe(qmodel)[1].to_dict() == before, edit.__name__
