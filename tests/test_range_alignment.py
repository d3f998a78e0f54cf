"""Range alignment (keras_model.align_channel_ranges): the same float function, fuller formats."""

from __future__ import annotations

import numpy as np
import pytest

from fxpq_keras._tf import keras
from fxpq_keras.calibration import Calibration
from fxpq_keras.keras_model import alignable, canonicalize


def _model() -> keras.Model:
    """Every case of the rule: ReLU and linear producers, a depthwise between, a residual add (its
    inputs have two users or feed an add: not alignable), a ReLU6 (capped: not alignable), a
    pool + flatten into a dense layer (alignable through them)."""
    keras.utils.set_random_seed(3)
    inp = keras.Input((12, 12, 3))
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="stem")(inp)
    y = keras.layers.DepthwiseConv2D(3, padding="same", name="dw")(x)
    y = keras.layers.Conv2D(8, 1, name="pw")(y)
    x = keras.layers.Add(name="add")([x, y])
    x = keras.layers.ReLU(name="add_relu")(x)
    x = keras.layers.Conv2D(6, 3, activation="relu6", name="capped")(x)
    x = keras.layers.Conv2D(5, 3, activation="relu", name="last_conv")(x)
    x = keras.layers.MaxPooling2D(2, name="pool")(x)
    x = keras.layers.Flatten(name="flat")(x)
    out = keras.layers.Dense(4, name="head")(x)
    model = keras.Model(inp, out)
    # uneven channel scales, as trained networks have
    for layer in model.layers:
        if layer.weights:
            k, b = layer.get_weights()
            k = k * np.random.default_rng(len(layer.name)).uniform(0.05, 1.5, k.shape[-1]).astype(np.float32)
            layer.set_weights([k, b + 0.1])
    return model


def test_alignable_follows_the_rule() -> None:
    pairs = alignable(canonicalize(_model()))
    # stem feeds the add too (two users); pw feeds the add; capped is ReLU6; head is the output
    assert pairs == {"dw": "pw", "last_conv": "head"}


@pytest.fixture(scope="module")
def calibrations() -> tuple[Calibration, Calibration, np.ndarray]:
    x = np.random.default_rng(0).normal(size=(64, 12, 12, 3)).astype(np.float32)
    model = _model()
    return Calibration(model, x), Calibration(model, x, align_ranges=True), x


def test_alignment_keeps_the_function_and_fills_the_format(calibrations) -> None:
    plain, aligned, x = calibrations
    scales = aligned.channel_scales
    assert set(scales) == {"dw", "last_conv"} and all(max(s) > 1 and min(s) >= 1 for s in scales.values())
    unseen = np.random.default_rng(1).normal(size=(32, 12, 12, 3)).astype(np.float32)
    a = plain.float_model.predict(unseen, verbose=0)
    b = aligned.float_model.predict(unseen, verbose=0)
    np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-5 * np.abs(a).max())
    for name in scales:
        p0, p1 = plain.node(name), aligned.node(name)
        # a producer's weight range never widens (its weights keep their frac)
        assert np.abs(p1.kernel).max() <= np.abs(p0.kernel).max() * (1 + 1e-6)
        probe = keras.Model(aligned.float_model.input, aligned.float_model.get_layer(name).output)
        before = keras.Model(plain.float_model.input, plain.float_model.get_layer(name).output)
        used = [float(np.mean(np.abs(m.predict(x, verbose=0)).reshape(-1, p0.kernel.shape[-1]).max(0)))
                for m in (before, probe)]
        assert used[1] > used[0] * 1.1, name  # the channels' ranges moved toward the tensor's top
        assert aligned.max_abs[name] < 2.0 ** np.ceil(np.log2(plain.max_abs[name]))  # same power of two


def test_alignment_off_by_default_and_switchable_in_the_search(calibrations) -> None:
    from fxpq_keras.search import SearchOptions

    plain, _, _ = calibrations
    assert plain.channel_scales == {}
    assert SearchOptions().align_ranges == "auto"


def test_policy_carries_the_alignment_to_the_float_model(calibrations, tmp_path) -> None:
    """A policy made on an aligned calibration records its channel scales: quantize_model on the
    user's own float model (what `fxpq export model policy.json` does) rebuilds the same fake-quant
    model, and the .tflite it exports is the same file; the file embeds the formats only."""
    import fxpq_keras as fx
    from fxpq_keras.flatbuffer import export_tflite
    from fxpq_keras.policy import Policy, PolicyMismatchError

    plain, aligned, x = calibrations
    policy = Policy.uniform(aligned, 8, None)
    assert policy.channel_scales == aligned.channel_scales
    path = tmp_path / "policy.json"
    policy.to_json(str(path))
    back = Policy.from_json(str(path))
    assert back.channel_scales == policy.channel_scales
    from_calib = fx.quantize_model(aligned, policy)
    from_model = fx.quantize_model(plain.source_model, back)
    np.testing.assert_array_equal(from_model.predict(x, verbose=0), from_calib.predict(x, verbose=0))
    a, b = export_tflite(from_calib, policy=policy), export_tflite(from_model, policy=back)
    assert a == b and b"channel_scales" not in a
    assert b"channel_scales" not in export_tflite(from_model)  # nor from the lowered graph's own policy
    assert fx.describe(from_model)[1].channel_scales == policy.channel_scales
    with pytest.raises(PolicyMismatchError, match="channel_scales"):
        fx.quantize_model(plain, policy)  # an unaligned calibration cannot take an aligned policy
    bad = policy.to_dict()
    bad["channel_scales"] = {"stem": [1.0] * 8}  # stem feeds an add: not rescalable
    with pytest.raises(PolicyMismatchError, match="cannot rescale"):
        fx.quantize_model(plain.source_model, Policy.from_dict(bad))
