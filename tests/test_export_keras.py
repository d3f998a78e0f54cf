"""Keras model -> fake-quant -> integer graph -> .tflite -> interpreter, on real tf_keras models."""

from __future__ import annotations

import numpy as np
import pytest

import fxpq_keras as fx
from fxpq_keras._tf import keras

L = keras.layers


def _every_layer_model() -> keras.Model:
    """Every supported layer kind at least once."""
    keras.utils.set_random_seed(7)
    i = keras.Input((12, 12, 1))
    x = L.Conv2D(6, 3, padding="same", use_bias=False, name="stem")(i)
    x = L.BatchNormalization()(x)
    x = L.ReLU()(x)
    y = L.SeparableConv2D(6, 3, padding="same", name="sep")(x)
    y = L.BatchNormalization()(y)
    x = L.ReLU()(L.Add()([x, y]))
    x = L.MaxPooling2D()(x)
    x = L.DepthwiseConv2D(3, depth_multiplier=2, padding="valid", activation="relu6")(x)
    x = L.AveragePooling2D(2, padding="same")(x)
    z = L.GlobalAveragePooling2D()(x)
    x = L.Reshape((4, 2, 6))(L.Flatten()(x))
    x = L.Conv2D(4, 2, dilation_rate=1, activation="relu")(x)
    x = L.Activation("relu")(L.Dense(8, name="fc1")(L.Flatten()(x)))
    x = L.Dropout(0.2)(x)
    o = L.Dense(5, activation="softmax")(L.Add()([x, L.Dense(8)(z)]))
    model = keras.Model(i, o)
    rng = np.random.default_rng(0)
    for layer in model.layers:
        if isinstance(layer, L.BatchNormalization):
            n = layer.get_weights()[0].shape[0]
            layer.set_weights([rng.uniform(0.5, 1.5, n), rng.normal(0, 0.2, n), rng.normal(0, 0.2, n),
                               rng.uniform(0.5, 2, n)])
    return model


@pytest.fixture(scope="module")
def quantized():
    model = _every_layer_model()
    x = np.random.default_rng(1).uniform(0, 1, (48, 12, 12, 1)).astype(np.float32)
    policy = fx.Policy.uniform(model, 8, x, per_channel=True)
    policy.set("stem", "weights", bits=3)
    policy.set("sep", "output", bits=12)
    policy.set("fc1", "weights", bits=5)
    policy.constrain_biases()
    qmodel = fx.quantize_model(model, policy)
    return model, qmodel, policy, x


@pytest.mark.parametrize("float_input", [True, False])
def test_exported_file_is_bit_exact_with_the_keras_side(tmp_path, quantized, float_input):
    _, qmodel, policy, x = quantized
    graph = fx.lower_model(qmodel)
    path = tmp_path / "m.tflite"
    data = fx.export_tflite(qmodel, str(path), float_input=float_input)
    assert path.read_bytes() == data
    interp = fx.Interpreter(str(path))
    if float_input:
        feed = x
    else:
        feed = fx.formats.quantize(x, policy.input.fmt).astype(policy.input.fmt.storage_dtype)
    np.testing.assert_array_equal(interp.predict(feed, raw=True), graph.run(x, raw=True)[0])
    # and close to the fake-quant model: same predictions except at rounding ties
    probs = interp.predict(feed)
    fq = qmodel.predict(x, verbose=0)
    assert np.mean(probs.argmax(-1) == fq.argmax(-1)) >= 0.97
    np.testing.assert_allclose(probs, fq, atol=0.05)


def test_file_holds_the_policy_and_packed_weights(tmp_path, quantized):
    _, qmodel, policy, _ = quantized
    path = tmp_path / "m.tflite"
    fx.export_tflite(qmodel, str(path))
    from fxpq_keras.flatbuffer.inspect import inspect_tflite

    report = inspect_tflite(str(path))
    totals = report["totals"]
    assert totals["weight_bits"] == policy.memory().weight_bits
    assert totals["file_bytes"] == path.stat().st_size
    graph, _ = fx.flatbuffer.read_tflite(str(path))
    assert fx.Policy.from_dict(graph.metadata["policy"]).to_dict() == fx.describe(qmodel)[1].to_dict()


@pytest.mark.parametrize("float_input", [True, False])
def test_int8_builtin_export_of_a_keras_model_runs_in_tflm(tmp_path, float_input):
    """A ReLU network at 8 bits (unsigned 8-bit activations and input: int8 with zero point -128,
    as TFLite stores them) ending in softmax exports to stock ops ending in SOFTMAX, runs
    bit-exact in real TFLM, and agrees with the fxp file's host-side softmax."""
    pytest.importorskip("tflite_micro")
    model = keras.Sequential([keras.Input((8, 8, 1)), L.Conv2D(4, 3, activation="relu"), L.MaxPooling2D(),
                              L.Flatten(), L.Dense(6, activation="softmax")])
    x = np.random.default_rng(2).uniform(0, 1, (300, 8, 8, 1)).astype(np.float32)
    policy = fx.Policy.uniform(model, 8, x)
    conv = next(iter(policy.layers))  # Keras auto-names depend on test order
    assert not policy.input.signed and not policy.get(conv, "output").signed  # u8: what used to be refused
    qmodel = fx.quantize_model(model, policy)
    path = tmp_path / "int8.tflite"
    fx.export_tflite(qmodel, str(path), target="int8-builtin", float_input=float_input)
    feed = x if float_input else fx.formats.quantize(x, policy.input.fmt)
    ref = fx.Interpreter(str(path)).predict(feed, raw=True)
    tflm = fx.Interpreter(str(path), engine="tflm").predict(feed, raw=True)
    np.testing.assert_array_equal(ref, tflm)
    assert fx.Interpreter(str(path)).info.op_types[-1] == "SOFTMAX"
    if not float_input:
        return
    fxp_path = tmp_path / "fxp.tflite"
    fx.export_tflite(qmodel, str(fxp_path))
    probs, fxp_probs = fx.Interpreter(str(path)).predict(x), fx.Interpreter(str(fxp_path)).predict(x)
    assert np.abs(probs - fxp_probs).max() < 0.05  # stock rounding vs ours, probabilities in 1/256
    assert np.mean(probs.argmax(-1) == fxp_probs.argmax(-1)) >= 0.95


def test_int8_builtin_export_of_a_per_channel_policy_runs_in_tflm(tmp_path):
    """A policy mixing per-channel (conv, depthwise) and per-tensor (dense) weight fracs, as the
    search's per_channel="auto" gives, exports to stock ops with one power-of-two scale per output
    channel (quantized_dimension 0 for CONV_2D, 3 for DEPTHWISE_CONV_2D; bias scale = input scale
    x weight scale) and runs bit-exact in real TFLM."""
    pytest.importorskip("tflite_micro")
    from tensorflow.lite.python import schema_py_generated as S

    keras.utils.set_random_seed(3)
    model = keras.Sequential([keras.Input((8, 8, 1)), L.Conv2D(4, 3, activation="relu", name="conv"),
                              L.DepthwiseConv2D(3, depth_multiplier=2, activation="relu", name="dw"),
                              L.Flatten(), L.Dense(6, activation="softmax", name="fc")])
    k, b = model.get_layer("conv").get_weights()
    k[..., 0] *= 100.0  # one loud channel: per-tensor would leave the others ~7 bits fewer
    model.get_layer("conv").set_weights([k, b])
    dk, db = model.get_layer("dw").get_weights()
    model.get_layer("dw").set_weights([dk * np.array([1, 8, 1 / 8, 1, 30, 1, 1, 1 / 30]).reshape(1, 1, 4, 2), db])
    x = np.random.default_rng(4).uniform(0, 1, (300, 8, 8, 1)).astype(np.float32)
    policy = fx.Policy.uniform(model, 8, x)
    channels = fx.Policy.uniform(model, 8, x, per_channel=True)
    for layer in ("conv", "dw"):
        policy.set(layer, "weights", frac=channels.get(layer, "weights").frac)
        assert len(set(policy.get(layer, "weights").frac)) > 1
    policy.constrain_biases()
    assert not policy.get("fc", "weights").per_channel
    qmodel = fx.quantize_model(model, policy)
    path = tmp_path / "pc.tflite"
    data = fx.export_tflite(qmodel, str(path), target="int8-builtin")
    ref = fx.Interpreter(str(path)).predict(x, raw=True)
    np.testing.assert_array_equal(fx.Interpreter(str(path), engine="tflm").predict(x, raw=True), ref)
    assert np.mean(fx.Interpreter(str(path)).predict(x).argmax(-1) == qmodel.predict(x, verbose=0).argmax(-1)) >= 0.95

    m = S.ModelT.InitFromPackedBuf(data, 0)
    g = m.subgraphs[0]
    seen = {}
    for op in g.operators:
        code = m.operatorCodes[op.opcodeIndex]
        kind = max(code.builtinCode, code.deprecatedBuiltinCode)
        if kind not in (S.BuiltinOperator.CONV_2D, S.BuiltinOperator.DEPTHWISE_CONV_2D,
                        S.BuiltinOperator.FULLY_CONNECTED):
            continue
        x_scale = g.tensors[op.inputs[0]].quantization.scale[0]
        wq, bq = g.tensors[op.inputs[1]].quantization, g.tensors[op.inputs[2]].quantization
        seen[kind] = (wq.quantizedDimension, [-int(np.log2(s)) for s in wq.scale])
        np.testing.assert_array_equal(np.asarray(bq.scale), x_scale * np.asarray(wq.scale))
    assert seen[S.BuiltinOperator.CONV_2D] == (0, list(policy.get("conv", "weights").frac))
    assert seen[S.BuiltinOperator.DEPTHWISE_CONV_2D] == (3, list(policy.get("dw", "weights").frac))
    assert set(seen[S.BuiltinOperator.FULLY_CONNECTED][1]) == {policy.get("fc", "weights").frac}
