"""The layers beyond the first set (Conv1D, ZeroPadding2D, Concatenate, LeakyReLU), end to end.

Each Keras model goes through the whole pipeline: canonical float model (equal to Keras), a
policy with odd widths (2, 5, 16 bits, unsigned and signed), the fake-quant model, the integer
graph, the exported file, and then the reference interpreter, the C runner on the host and on
the emulated Cortex-M4: all bit for bit the same integers.
"""

from __future__ import annotations

import shutil

import numpy as np
import pytest

import fxpq_keras as fx
from fxpq_keras._tf import keras
from fxpq_keras.keras_model import UnsupportedLayerError, build_float_model, canonicalize

L = keras.layers
HAVE_QEMU = all(shutil.which(t) for t in ("qemu-system-arm", "arm-none-eabi-gcc", "make"))


def _randomize(model: keras.Model, seed: int) -> keras.Model:
    rng = np.random.default_rng(seed)
    for w in model.weights:  # biases and BN statistics too: zeros would hide paths
        if "variance" in w.name:
            w.assign(rng.uniform(0.5, 2, w.shape).astype(np.float32))
        else:
            w.assign(rng.normal(0, 0.5, w.shape).astype(np.float32))
    return model


def conv1d_model() -> keras.Model:
    keras.utils.set_random_seed(3)
    i = keras.Input((20, 3))
    x = L.Conv1D(5, 3, padding="same", use_bias=False)(i)
    x = L.BatchNormalization()(x)
    x = L.ReLU()(x)
    x = L.Conv1D(4, 3, strides=2, padding="valid", activation="relu")(x)
    x = L.Conv1D(4, 2, dilation_rate=2, padding="same")(x)
    x = L.Conv1D(3, 3, dilation_rate=2, padding="causal", name="causal")(x)  # left zero padding
    x = L.Flatten()(x)
    return _randomize(keras.Model(i, L.Dense(3, activation="softmax")(x)), 3)


def zero_pad_model() -> keras.Model:
    """One ZeroPadding2D that folds into a 'valid' conv (same zeros as 'same'), one that cannot
    (odd size, stride 2), one in front of a pool, one at the end of a branch."""
    keras.utils.set_random_seed(4)
    i = keras.Input((9, 10, 2))
    x = L.Conv2D(4, 3, activation="relu")(L.ZeroPadding2D(1, name="folds")(i))
    x = L.DepthwiseConv2D(3, strides=2)(L.ZeroPadding2D(((0, 1), (0, 1)), name="stays")(x))
    x = L.MaxPooling2D()(L.ZeroPadding2D(((2, 0), (1, 3)), name="before_pool")(x))
    x = L.ZeroPadding2D(((0, 1), (1, 0)), name="last")(x)
    return _randomize(keras.Model(i, L.Dense(3)(L.Flatten()(x))), 4)


def leaky_relu_model() -> keras.Model:
    keras.utils.set_random_seed(5)
    i = keras.Input((6, 7, 3))
    x = L.LeakyReLU(alpha=0.125, name="leaky_in")(L.Conv2D(5, 3, padding="same")(i))  # k = 3
    x = L.BatchNormalization()(L.Conv2D(4, 3, strides=2, use_bias=False)(x))
    x = L.ReLU(negative_slope=0.5, name="leaky_relu_layer")(x)  # k = 1, the ReLU spelling
    x = L.LeakyReLU(alpha=2.0**-5, name="leaky_out")(L.Dense(4)(L.Flatten()(x)))
    return _randomize(keras.Model(i, x), 5)


def concat_model() -> keras.Model:
    """Inception-style branches of different formats (unsigned ReLU, signed linear, a pool of the
    input) joined on channels, 3 then 2 inputs, then a Conv1D branch joined on a 3-D tensor."""
    keras.utils.set_random_seed(6)
    i = keras.Input((6, 7, 2))
    a = L.Conv2D(3, 3, padding="same", activation="relu")(i)
    b = L.Conv2D(2, 1)(i)
    c = L.MaxPooling2D(3, strides=1, padding="same")(i)
    x = L.Concatenate(name="join3")([a, b, c])
    x = L.Concatenate(axis=3, name="join2")([L.Conv2D(4, 1, activation="relu")(x), a])
    s = L.Reshape((42, 7))(x)
    s = L.Concatenate(name="join_seq")([s, L.Conv1D(2, 3, padding="same")(s)])
    return _randomize(keras.Model(i, L.Dense(3)(L.Flatten()(s))), 6)


MODELS = {"conv1d": conv1d_model, "zero_pad": zero_pad_model, "leaky_relu": leaky_relu_model,
          "concat": concat_model}


def _policy(model: keras.Model, x: np.ndarray, seed: int) -> fx.Policy:
    """Uniform 8-bit, then edge widths: one data structure at 2 bits, one at 16, odd ones at 5."""
    policy = fx.Policy.uniform(model, 8, x, per_channel=seed % 2 == 1)
    entries = [(layer, ds) for layer, ds, _ in policy.data_structures() if ds != "bias" and layer != "input"]
    rng = np.random.default_rng(seed)
    for index, bits in zip(rng.permutation(len(entries)).tolist(), [2, 16, 5, 5, 12]):
        name, dsn = entries[index]
        d = policy.get(name, dsn)
        shift = bits - d.bits
        frac = tuple(f + shift for f in d.frac) if d.per_channel else d.frac + shift
        policy.set(name, dsn, bits=bits, frac=frac)
    policy.constrain_biases()
    return policy


@pytest.fixture(scope="module", params=sorted(MODELS))
def exported(request, tmp_path_factory):
    model = MODELS[request.param]()
    rng = np.random.default_rng(5)
    x = rng.normal(0, 1.5, (40,) + model.input_shape[1:]).astype(np.float32)
    path = tmp_path_factory.mktemp(request.param) / "m.tflite"
    qmodel = fx.quantize_model(model, _policy(model, x, 1))
    fx.export_tflite(qmodel, str(path))
    return request.param, model, qmodel, x, path


def test_canonical_float_model_equals_keras(exported):
    _, model, _, x, _ = exported
    canonical = build_float_model(canonicalize(model))
    np.testing.assert_allclose(canonical.predict(x, verbose=0), model.predict(x, verbose=0), atol=2e-5)


def test_file_reference_host_and_fake_quant_agree(exported):
    _, _, qmodel, x, path = exported
    graph = fx.lower_model(qmodel)
    want = graph.run(x, raw=True)[0]
    np.testing.assert_array_equal(fx.Interpreter(str(path)).predict(x, raw=True), want)
    np.testing.assert_array_equal(fx.Interpreter(str(path), engine="host").predict(x, raw=True), want)
    # fake-quant: the same up to 1 LSB of the logits at rounding ties
    logits = keras.Model(qmodel.input, qmodel.get_layer(f"quant_{graph.outputs[0]}").output).predict(x, verbose=0)
    frac = graph.tensors[graph.outputs[0]].fmt.frac
    assert np.abs(logits.reshape(want.shape) * 2.0**frac - want).max() <= 1


@pytest.mark.skipif(not HAVE_QEMU, reason="needs qemu-system-arm and arm-none-eabi-gcc")
def test_cortex_m4_equals_reference(exported):
    _, _, _, x, path = exported
    ref = fx.Interpreter(str(path)).predict(x[:6], raw=True)
    np.testing.assert_array_equal(fx.Interpreter(str(path), engine="qemu-m4").predict(x[:6], raw=True), ref)


def test_conv1d_is_a_height_one_conv2d():
    graph = fx.lower_model(fx.quantize_model(conv1d_model(), calibration_data=np.ones((2, 20, 3), np.float32)))
    convs = [n for n in graph.nodes if n.op == "conv2d"]
    assert [n.weights.shape[1] for n in convs] == [1, 1, 1, 1]
    assert [n.attrs["pads"] for n in graph.nodes if n.op == "pad"] == [((0, 0), (4, 0))]  # causal: (3 - 1) * 2
    assert convs[0].attrs["activation"] == "relu"  # BN folded and ReLU fused through the reshape


def test_unsupported_conv1d_variants_are_named():
    i = keras.Input((10, 2))
    with pytest.raises(UnsupportedLayerError, match=r"'grp' \(Conv1D\).*grouped"):
        canonicalize(keras.Model(i, L.Conv1D(4, 3, groups=2, name="grp")(i)))


def test_zero_padding_folds_only_when_exact():
    cnodes = canonicalize(zero_pad_model())
    pads = [n.name for n in cnodes if n.kind == "zero_pad"]
    assert pads == ["stays", "before_pool", "last"]
    assert next(n for n in cnodes if n.kind == "conv2d").config["padding"] == "same"
    graph = fx.lower_model(fx.quantize_model(zero_pad_model(), calibration_data=np.ones((2, 9, 10, 2), np.float32)))
    pad_nodes = [n for n in graph.nodes if n.op == "pad"]
    assert len(pad_nodes) == 3
    for n in pad_nodes:  # not a data structure: the padded tensor keeps its input's format
        assert graph.tensors[n.output].fmt == graph.tensors[n.inputs[0]].fmt


def _int8_policy(model: keras.Model, x: np.ndarray) -> fx.Policy:
    """7-bit signed formats everywhere (int8-builtin maps them onto stock int8 directly)."""
    policy = fx.Policy.uniform(model, 7, x)
    for d in [policy.input] + [layer["output"] for layer in policy.layers.values() if layer.get("output")]:
        if not d.signed:
            d.signed, d.frac = True, d.frac - 1
    policy.constrain_biases()
    return policy


@pytest.mark.parametrize("name", sorted(MODELS))
def test_int8_builtin_runs_bit_exact_in_tflm(tmp_path, name):
    """The stock-op file (RESHAPE + CONV_2D for Conv1D, PAD, ...) in the real TFLM interpreter
    equals the reference interpreter's model of TFLM bit for bit."""
    pytest.importorskip("tflite_micro")
    model = MODELS[name]()
    x = np.random.default_rng(6).normal(0, 1.5, (200,) + model.input_shape[1:]).astype(np.float32)
    path = tmp_path / "int8.tflite"
    fx.export_tflite(fx.quantize_model(model, _int8_policy(model, x)), str(path), target="int8-builtin")
    ref = fx.Interpreter(str(path)).predict(x, raw=True)
    np.testing.assert_array_equal(fx.Interpreter(str(path), engine="tflm").predict(x, raw=True), ref)
    assert np.unique(ref).size > 10  # not collapsed by saturation


def test_leaky_relu_alpha_must_be_a_shift():
    i = keras.Input((4,))
    for bad in (0.3, 0.2, 0.1, 0.75, 2.0**-32):
        with pytest.raises(UnsupportedLayerError, match=r"'lr' \(LeakyReLU\).*not a power of two.*shifts only"):
            canonicalize(keras.Model(i, L.LeakyReLU(alpha=bad, name="lr")(i)))
    kinds = [n.kind for n in canonicalize(keras.Model(i, L.LeakyReLU(alpha=1.0)(i)))]
    assert kinds == ["input"]  # alpha 1 is the identity
    leaky = [n for n in canonicalize(leaky_relu_model()) if n.kind == "leaky_relu"]
    assert [n.config["alpha_shift"] for n in leaky] == [3, 1, 5]


def test_concatenate_is_a_chain_of_two_input_joins():
    x = np.random.default_rng(7).normal(size=(8, 6, 7, 2)).astype(np.float32)
    graph = fx.lower_model(fx.quantize_model(concat_model(), calibration_data=x))
    joins = [n for n in graph.nodes if n.op == "concat"]
    assert [n.name for n in joins] == ["join3/part1", "join3", "join2", "join_seq"]
    assert graph.tensors["join3/part1"].fmt == graph.tensors["join3"].fmt  # partial result in the output format
    i = keras.Input((4, 4, 2))  # another axis is the stock-op concat (issue 19), marked by its axis
    spatial = canonicalize(keras.Model(i, L.Concatenate(axis=1, name="spatial")([i, i])))[-1]
    assert (spatial.kind, spatial.config) == ("concat", {"axis": 1})
