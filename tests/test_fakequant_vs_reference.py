"""Fake-quant Keras model == numpy integer reference (IntegerGraph), per op and for whole blocks.

The model is built once per layer configuration; hypothesis then draws every data structure's
format (2..16 bits, negative frac, per-channel frac, saturating fracs) and writes it with
set_policy, which also checks that formats change without a rebuild. The fake-quant output in
integer units must equal the reference except for 1 LSB where float32 accumulation lands on the
other side of a rounding tie.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from long_mode import examples

import fxpq_keras as fx
from fxpq_keras._tf import keras, tf
from fxpq_keras.formats import Format
from fxpq_keras.policy import DataStructure, Policy


def _model(kind: str) -> keras.Model:
    keras.utils.set_random_seed(1)
    L = keras.layers
    if kind == "conv":
        i = keras.Input((7, 9, 3))
        o = L.Conv2D(5, (3, 2), strides=(2, 1), padding="same", dilation_rate=1, activation="relu")(i)
    elif kind == "conv_dilated":
        i = keras.Input((9, 8, 2))
        o = L.Conv2D(4, 3, padding="valid", dilation_rate=2, use_bias=False)(i)
    elif kind == "depthwise":
        i = keras.Input((7, 7, 3))
        o = L.DepthwiseConv2D(3, strides=2, padding="same", depth_multiplier=2, activation="relu6")(i)
    elif kind == "dense":
        i = keras.Input((13,))
        o = L.Dense(6)(i)
    elif kind == "add_relu":
        i = keras.Input((5, 5, 4))
        a = L.Conv2D(4, 1)(i)
        o = L.ReLU()(L.Add()([i, a]))
    elif kind == "pools":
        i = keras.Input((9, 7, 3))
        x = L.MaxPooling2D(3, strides=2, padding="same")(i)
        x = L.AveragePooling2D(2, strides=1, padding="same")(x)
        o = L.GlobalAveragePooling2D()(x)
    elif kind == "head":
        i = keras.Input((6, 6, 2))
        x = L.AveragePooling2D(3, padding="valid")(i)
        x = L.Flatten()(x)
        o = L.Dense(4, activation="softmax")(x)
    elif kind == "conv1d":
        i = keras.Input((11, 3))
        x = L.Conv1D(4, 3, strides=2, padding="same", activation="relu")(i)
        o = L.Conv1D(3, 2, dilation_rate=2, padding="valid")(x)
    elif kind == "leaky_relu":
        i = keras.Input((4, 5, 3))
        x = L.LeakyReLU(alpha=0.25)(L.Conv2D(4, 3, padding="same")(i))
        o = L.LeakyReLU(alpha=2.0**-7)(L.Conv2D(3, 1)(x))
    elif kind == "concat":
        i = keras.Input((4, 5, 3))
        a = L.Conv2D(2, 3, padding="same", activation="relu")(i)
        o = L.Concatenate()([a, L.Conv2D(3, 1)(i), i])
    elif kind == "zero_pad":
        i = keras.Input((5, 6, 2))
        x = L.Conv2D(3, 3, strides=2)(L.ZeroPadding2D(((0, 1), (1, 1)))(i))
        o = L.ZeroPadding2D(((2, 1), (0, 1)))(x)
    else:
        raise AssertionError(kind)
    model = keras.Model(i, o)
    for w in model.weights:  # biases too: zero biases would hide the bias path
        w.assign(np.random.default_rng(0).normal(0, 0.5, w.shape).astype(np.float32))
    return model


class Case:
    """One layer configuration: the float model, its calibration, fake-quant model and a probe."""

    def __init__(self, kind: str) -> None:
        self.model = _model(kind)
        rng = np.random.default_rng(2)
        self.x = rng.normal(0, 2.5, (16,) + self.model.input_shape[1:]).astype(np.float32)
        self.calib = fx.Calibration(self.model, self.x)
        self.base = Policy.uniform(self.calib, 8, None)
        self.qmodel = fx.quantize_model(self.calib, self.base)
        last = self.calib.cnodes[-1]
        out_layer = self.calib.cnodes[-2].name if last.kind == "softmax" else last.name
        self.probe = keras.Model(self.qmodel.input, self.qmodel.get_layer(f"quant_{out_layer}").output)
        self.fn = tf.function(lambda x: self.probe(x, training=False))


_CASES: dict[str, Case] = {}


def case(kind: str) -> Case:
    if kind not in _CASES:
        _CASES[kind] = Case(kind)
    return _CASES[kind]


@st.composite
def policies(draw, c: Case):
    policy = c.base.copy()
    for layer, ds, d in list(policy.data_structures()):
        if ds == "bias":
            continue
        bits = draw(st.integers(2, 16))
        base_frac = c.calib.activation_frac(layer if layer != "input" else c.calib.input_name, bits) \
            if ds == "output" else int(np.min(c.calib.weight_frac(c.calib.node(layer), bits, False)))
        shift = draw(st.sampled_from([0, 0, -1, 1, 2, -3]))  # +: saturates, -: coarse steps
        if ds == "weights" and draw(st.booleans()):
            chans = len(c.calib.weight_frac(c.calib.node(layer), bits, True))
            frac = tuple(draw(st.lists(st.integers(base_frac - 2, base_frac + 2), min_size=chans, max_size=chans)))
        else:
            frac = max(-32, min(32, base_frac + shift))
        signed = d.signed if ds != "output" else (d.signed or draw(st.booleans()))
        new = DataStructure(bits, frac, signed, d.elements)
        if layer == "input":
            policy.input = new
        else:
            policy.layers[layer][ds] = new
    for layer, ds, _ in list(policy.data_structures()):
        if ds == "bias":
            policy.set(layer, ds, bits=draw(st.integers(8, 32)))
    policy.constrain_biases()
    return policy


def check(c: Case, policy) -> None:
    fx.set_policy(c.qmodel, policy)
    graph = fx.lower_model(c.qmodel)
    ref = graph.run(c.x, raw=True)[0]
    fq = c.fn(tf.constant(c.x)).numpy().reshape(ref.shape)
    frac = graph.tensors[graph.outputs[0]].fmt.frac
    fq_int = np.round(fq.astype(np.float64) * 2.0**frac)
    assert np.array_equal(fq_int, fq.astype(np.float64) * 2.0**frac), "fake-quant output is not on the grid"
    diff = np.abs(fq_int - ref)
    assert diff.max() <= 1, f"fake-quant differs from the reference by {diff.max()} LSB"
    if diff.any():
        # every 1-LSB difference must sit on a rounding tie: re-run the reference with 8 more
        # fractional bits (32-bit, unsaturated) and look at the bits below the output's LSB
        fmt = graph.tensors[graph.outputs[0]].fmt
        graph.tensors[graph.outputs[0]].fmt = Format(32, fmt.frac + 8, True)
        fine = graph.run(c.x, raw=True)[0]
        below = np.mod(fine[diff > 0], 256)
        assert np.all(np.abs(below - 128) <= 16), f"1-LSB differences off a rounding tie: {below[:8]}"


@pytest.mark.parametrize("kind", ["conv", "conv_dilated", "depthwise", "dense", "add_relu", "pools", "head", "conv1d",
                                  "zero_pad", "leaky_relu", "concat"])
def test_fake_quant_matches_integer_reference(kind):
    c = case(kind)
    traces_before = c.fn.experimental_get_tracing_count()

    @settings(max_examples=examples(25))
    @given(policies(c))
    def run(policy):
        check(c, policy)

    run()
    # formats are variables: 25 different policies, at most one trace
    assert c.fn.experimental_get_tracing_count() - traces_before <= 1


def test_uniform_8bit_whole_block_is_exact():
    """conv+BN+ReLU, depthwise separable, residual Add, pools and a dense head, 8-bit."""
    keras.utils.set_random_seed(3)
    L = keras.layers
    i = keras.Input((10, 10, 1))
    x = L.Conv2D(6, 3, padding="same", use_bias=False)(i)
    x = L.BatchNormalization()(x)
    x = L.ReLU()(x)
    y = L.SeparableConv2D(6, 3, padding="same")(x)
    y = L.BatchNormalization()(y)
    x = L.ReLU()(L.Add()([x, y]))
    x = L.MaxPooling2D()(x)
    x = L.AveragePooling2D()(x)
    x = L.GlobalAveragePooling2D()(x)
    o = L.Dense(3, activation="softmax")(x)
    model = keras.Model(i, o)
    rng = np.random.default_rng(4)
    for layer in model.layers:
        if isinstance(layer, L.BatchNormalization):
            layer.set_weights([rng.uniform(0.5, 1.5, 6), rng.normal(0, 0.2, 6), rng.normal(0, 0.2, 6),
                               rng.uniform(0.5, 2, 6)])
    x = rng.uniform(0, 1, (32, 10, 10, 1)).astype(np.float32)
    policy = fx.Policy.uniform(model, 8, x)
    qmodel = fx.quantize_model(model, policy)
    graph = fx.lower_model(qmodel)
    probs = graph.run(x)[0]
    np.testing.assert_allclose(probs, qmodel.predict(x, verbose=0), atol=1e-6)
    assert [n.op for n in graph.nodes] == ["quantize", "conv2d", "depthwise_conv2d", "conv2d", "add", "max_pool2d",
                                           "average_pool2d", "global_average_pool2d", "fully_connected"]


@settings(max_examples=examples(40), deadline=None)
@given(bits=st.integers(2, 16), frac=st.integers(-8, 20), signed=st.booleans(), enabled=st.booleans(),
       scale=st.sampled_from([1e-3, 1.0, 300.0]), per_channel=st.booleans(), ties=st.booleans(),
       seed=st.integers(0, 2**16))
def test_inference_fake_quant_equals_training_forward(bits, frac, signed, enabled, scale, per_channel, ties, seed):
    """The search's inference path (one XLA-fused kernel, no straight-through terms) gives the training
    path's forward values bit for bit, eagerly and inside a traced function: on rounding ties, denormals,
    saturation and per-channel fracs."""
    from fxpq_keras.fakequant.quantizers import fake_quant

    rng = np.random.default_rng(seed)
    x = (rng.normal(size=(3, 7, 6)) * scale).astype(np.float32)
    if ties:  # values on the half-way points of the format
        x = ((np.round(x * 2.0**frac) + 0.5) / 2.0**frac).astype(np.float32)
    x[0, 0, :2] = [1e-40, -1e-40]  # denormals
    fracs = rng.integers(-8, 21, size=6).astype(np.float32) if per_channel else np.float32(frac)
    args = [tf.constant(np.float32(bits)), tf.constant(fracs), tf.constant(np.float32(signed)),
            tf.constant(np.float32(enabled))]
    train = fake_quant(tf.constant(x), *args).numpy()
    infer = fake_quant(tf.constant(x), *args, straight_through=False).numpy()
    traced = tf.function(lambda t: fake_quant(t, *args, straight_through=False))(tf.constant(x)).numpy()
    np.testing.assert_array_equal(infer.view(np.int32), train.view(np.int32))
    np.testing.assert_array_equal(traced.view(np.int32), train.view(np.int32))
