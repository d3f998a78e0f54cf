"""Target builtin's asymmetric int8 (`activation_scales="asymmetric"`): a signed 8-bit activation
spends TFLite's 256 codes on its calibration [min, max] with an integer zero point, one rule
(formats.asymmetric_format) for the fake-quant, the lowering and the file; TFLM's kernels take the
zero points bit for bit (the `tflite-micro` wheel against the numpy model)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from long_mode import examples
from test_activation_scales import _with_activation_scales
from test_builtin_target import (
    _with_float_scales,
    assert_wheel_agrees,
    builtin_blob_or_named_limit,
    builtin_graph,
)

from fxpq_keras.flatbuffer import export_tflite
from fxpq_keras.flatbuffer.errors import ExportError
from fxpq_keras.flatbuffer.reader import read_bytes
from fxpq_keras.flatbuffer.schema import schema as S
from fxpq_keras.formats import (
    Format,
    FormatError,
    asymmetric_format,
    frac_for_range,
    scaled_format,
    stored_zero_point,
)
from fxpq_keras.policy import Policy, PolicyMismatchError

pytest.importorskip("tflite_micro")


@settings(max_examples=examples(200), deadline=None)
@given(st.floats(-50, 50, width=32), st.floats(-50, 50, width=32))  # calibration ranges are float32
def test_the_codes_cover_the_range_and_hold_zero(a, b):
    """Over [min(lo, 0), max(hi, 0)] the 256 codes reach both ends within one step, real 0 is code
    0 (zero point stored), the step is no coarser than symmetric int8's, and a range of one sign
    uses every code: a non-negative one is the unsigned 8-bit format."""
    lo, hi = min(a, b), max(a, b)
    m = max(abs(lo), abs(hi))
    base = Format(8, frac_for_range(m, 8, True), True)
    fmt = asymmetric_format(base, lo, hi)
    lo0, hi0 = min(lo, 0.0), max(hi, 0.0)
    if fmt == base:  # a silent tensor, or one too narrow for any frac: the format's own
        assert hi0 - lo0 < 1e-6
        return
    s = fmt.step
    assert fmt.bits == 8 and fmt.hi - fmt.lo == 255
    assert fmt.lo * s <= lo0 + s and fmt.hi * s >= hi0 - s
    assert s <= float(np.float32(m / 127)) * (1 + 1e-6)
    assert fmt.lo <= 0 <= fmt.hi
    assert fmt.signed and stored_zero_point(fmt) == fmt.zero_point == -128 - fmt.lo
    if lo0 == 0:  # every code on [0, hi]: stored as the unsigned 8-bit format is
        assert fmt.zero_point == -128


def test_at_the_full_range_the_zero_point_is_tflites():
    """TFLite: scale (max - min) / 255, zero point round(-128 - min / scale)."""
    # (no ties among them: TFLite rounds those away from zero)
    for lo, hi in [(-1.0, 3.0), (-0.375, 6.0), (-2.5, 0.75), (-3.0, 5.0)]:
        fmt = asymmetric_format(Format(8, frac_for_range(max(-lo, hi), 8, True), True), lo, hi)
        s = float(np.float32((hi - lo) / 255))
        assert fmt.step == pytest.approx(s, rel=1e-7)
        assert fmt.zero_point == round(-128 - lo / s)


def test_a_finer_frac_keeps_its_step_and_centres_the_range():
    """Mechanism 3's larger frac: its power-of-two step, the clipped codes split around the range's
    middle."""
    base = Format(8, frac_for_range(3.0, 8, True), True)
    finer = base.with_frac(base.frac + 2)
    fmt = asymmetric_format(finer, -1.0, 3.0)
    assert fmt.step == 2.0 ** -finer.frac and fmt.scale is None
    middle = (fmt.lo + fmt.hi) / 2 * fmt.step
    assert abs(middle - 1.0) <= fmt.step


def test_only_a_signed_8_bit_format_takes_a_zero_point():
    f = Format(8, 4, True, 0.05, -17)
    assert (f.lo, f.hi) == (-111, 144) and str(f).endswith("z-17")
    assert Format.from_dict(f.to_dict()) == f
    for bad in (dict(bits=16, frac=4, signed=True), dict(bits=8, frac=4, signed=False),
                dict(bits=6, frac=4, signed=True)):
        with pytest.raises(FormatError, match="zero point"):
            Format(**bad, zero_point=3)
    with pytest.raises(FormatError, match="zero point"):
        Format(8, 4, True, None, 128)
    assert (Format(8, 4, True, None, -128).lo, Format(8, 4, True, None, -128).hi) == (0, 255)  # u8's integers
    assert scaled_format(Format(16, 10, True), 2.0, (-1.0, 2.0)).zero_point == 0  # int16 stays symmetric
    # hybrid fxp files store every unsigned <= 8-bit format with zero point -128, builtin ones u8 only
    assert stored_zero_point(Format(6, 3, False), hybrid=True) == -128 and stored_zero_point(Format(6, 3, False)) == 0


def _with_zero_points(graph, rng: np.random.Generator) -> int:
    """Give drawn s8 activations (not the input or an output) a zero point in -128..127, the ends
    included often (the same for equal formats: a reshape or a pool keeps its input's); the number
    given."""
    n = 0
    zero_points: dict[Format, int] = {}
    for name, spec in graph.tensors.items():
        f = spec.fmt
        if f is None or name == graph.input or name in graph.outputs or f.bits != 8 or not f.signed:
            continue
        zp = zero_points.setdefault(f, int(rng.choice([-128, 127, int(rng.integers(-128, 128))]))
                                    if rng.random() < 0.7 else 0)
        if zp:
            spec.fmt = Format(8, f.frac, True, f.scale, zp)
            n += 1
    return n


@settings(max_examples=examples(12), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, 2**16))
def test_random_layers_with_zero_points_are_bit_exact_with_tflm(seed):
    """Drawn graphs (int8 and int16 activations; conv, depthwise, fully connected, add, pools) with
    float scales and asymmetric int8 activations: the file stores each zero point (the reader gives
    the same format back) and runs in the wheel exactly as the numpy model of TFLM's kernels,
    int16 ops reading an asymmetric tensor through an exact QUANTIZE."""
    graph, x = builtin_graph(seed % 1000, n=8)
    rng = np.random.default_rng(seed)
    _with_float_scales(graph, rng)
    _with_activation_scales(graph, rng)
    if not _with_zero_points(graph, rng):
        return
    blob = builtin_blob_or_named_limit(graph)
    if blob is None:
        return
    read, _ = read_bytes(blob)
    for name, spec in graph.tensors.items():
        if spec.fmt is not None and spec.fmt.zero_point:  # (zero point -128 reads as the u8 format it is)
            got = read.tensors[name].fmt
            assert (got.lo, got.hi, got.step, stored_zero_point(got)) == \
                (spec.fmt.lo, spec.fmt.hi, spec.fmt.step, spec.fmt.zero_point), name
    assert_wheel_agrees(blob, x)


def test_fxp_and_int8_builtin_files_refuse_zero_points():
    graph, _ = builtin_graph(3, n=4)
    assert _with_zero_points(graph, np.random.default_rng(1))
    with pytest.raises(ExportError, match="zero point"):
        export_tflite(graph, target="fxp")
    graph, _ = builtin_graph(3, n=4)
    assert _with_zero_points(graph, np.random.default_rng(1))
    with pytest.raises(ExportError, match="asymmetric int8: target builtin only"):
        export_tflite(graph, target="int8-builtin")


# ------------------------------------------------------------------------- policy to file

def _signed_model(seed: int):
    """A small model whose activations are signed (no ReLU): convs, a depthwise, an Add, a pool."""
    from fxpq_keras._tf import keras
    from fxpq_keras.calibration import Calibration

    keras.utils.set_random_seed(seed)
    inp = keras.Input((8, 8, 2))
    a = keras.layers.Conv2D(6, 3, padding="same", name="a")(inp)
    b = keras.layers.DepthwiseConv2D(3, padding="same", name="dw")(a)
    c = keras.layers.Add(name="sum")([a, b])
    d = keras.layers.AveragePooling2D(2, name="pool")(c)
    e = keras.layers.Conv2D(4, 1, name="pw")(d)
    out = keras.layers.Dense(3, name="head")(keras.layers.Flatten(name="flat")(e))
    rng = np.random.default_rng(seed)
    # shifted inputs: every tensor's range is lopsided, as after a bias or a hard-swish
    x = (rng.normal(size=(64, 8, 8, 2)) + 0.8).astype(np.float32)
    return Calibration(keras.Model(inp, out), x), x


def _asymmetric_policy(calib, seed: int) -> Policy:
    """The builtin start (asymmetric int8: the default rule), every activation but `pw`'s lowered to
    8 bits (`pw` stays int16, symmetric), the weights randomly lowered."""
    from test_builtin_target import _zoo_builtin_policy

    return _zoo_builtin_policy(calib, seed, lambda layer, ds: 0.0 if layer == "pw" else 1.0 if ds == "output" else 0.5)


@pytest.mark.parametrize("seed", [0, 1])
def test_asymmetric_int8_is_one_rule_from_policy_to_file(seed, tmp_path):
    """The policy's bounds give each signed 8-bit output a zero point; the fake-quant's variables
    hold its scale and zero point (its outputs lie on that grid, past -128 or 127 where the zero
    point moves them), the lowered graph and the file the same format, describe() the same bounds
    back; the file runs in the wheel exactly as the numpy model."""
    from fxpq_keras.fakequant import quantize_model
    from fxpq_keras.fakequant.model import describe, quantizer_variables
    from fxpq_keras.flatbuffer import Interpreter
    from fxpq_keras.integer_graph.lower import lower_model

    calib, x = _signed_model(seed)
    policy = _asymmetric_policy(calib, seed)
    assert policy.activation_bounds and set(policy.activation_bounds) <= set(policy.activation_ranges)
    qmodel = quantize_model(calib, policy)
    assert describe(qmodel)[1].activation_bounds == policy.activation_bounds
    qvars = quantizer_variables(qmodel)
    graph = lower_model(qmodel)
    path = tmp_path / "m.tflite"
    export_tflite(qmodel, path, target="builtin", float_input=False)
    read = Interpreter(path).graph
    probe_names = []
    asymmetric = 0
    for layer in policy.activation_bounds:
        fmt = policy.tensor_format(layer)
        # the file's reader sees zero point -128 as the unsigned 8-bit format: the same integers and storage
        same = read.tensors[layer].fmt
        assert graph.tensors[layer].fmt == fmt and (same.lo, same.hi, same.step) == (fmt.lo, fmt.hi, fmt.step)
        assert stored_zero_point(same) == stored_zero_point(fmt)
        v = qvars[(layer, "output")]
        assert float(v["scale"].numpy()) == np.float32(fmt.step)
        if fmt.zero_point:
            assert float(v["zero_point"].numpy()) == fmt.zero_point
            asymmetric += 1
            probe_names.append(layer)
    assert asymmetric >= 2
    from fxpq_keras._tf import keras

    layers = {layer.name: layer for layer in qmodel.layers}
    probe = keras.Model(qmodel.input, [layers[f"quant_{n}"].output for n in probe_names])
    outs = probe.predict(x, verbose=0)
    beyond = False
    for name, out in zip(probe_names, outs if len(probe_names) > 1 else [outs], strict=True):
        fmt = policy.tensor_format(name)
        q = out / np.float32(fmt.step)
        assert np.allclose(q, np.round(q), atol=1e-3), name
        assert q.min() >= fmt.lo - 1e-3 and q.max() <= fmt.hi + 1e-3, name
        beyond |= bool(q.min() < -128.5 or q.max() > 127.5)
    assert beyond, "no fake-quant output used the codes the zero point moves"
    # the file's copy of the policy keeps only the bounds a format uses, and rebuilds the same file
    embedded = Policy.from_dict(Interpreter(path).info.policy)
    assert set(embedded.activation_bounds) == {k for k in policy.activation_bounds
                                              if policy.get(k, "output").bits == 8 and policy.get(k, "output").signed}
    assert set(embedded.activation_bounds) < set(policy.activation_bounds)  # the 16-bit outputs' are dropped
    assert all(embedded.tensor_format(k) == policy.tensor_format(k) for k in policy.activation_ranges)
    xi = Interpreter(path).graph.tensors[read.input].fmt
    from fxpq_keras.formats import quantize

    assert_wheel_agrees(path.read_bytes(), quantize(x[:8], xi))


def test_activation_bounds_travel_with_the_policy():
    calib, _ = _signed_model(0)
    policy = _asymmetric_policy(calib, 0)
    text = policy.to_json()
    again = Policy.from_json(text)
    assert again.activation_bounds == policy.activation_bounds and again.to_json() == text
    d = json.loads(text)
    d.pop("activation_bounds")
    assert not Policy.from_dict(d).activation_bounds  # symmetric float scales, as before
    for bad_value, match in (([1.0], "activation_bounds"), ([2.0, 1.0], "min <= max"),
                             ([0.0, math.inf], "finite")):
        bad = json.loads(text)
        bad["activation_bounds"][next(iter(bad["activation_bounds"]))] = bad_value
        with pytest.raises(PolicyMismatchError, match=match):
            Policy.from_dict(bad)
    bad = json.loads(text)
    layer = next(iter(bad["activation_bounds"]))
    del bad["activation_ranges"][layer]
    with pytest.raises(PolicyMismatchError, match="no 'activation_ranges' entry"):
        Policy.from_dict(bad)


def test_cli_takes_asymmetric():
    import argparse

    from fxpq_keras.commands import quantize

    parser = quantize.register(argparse.ArgumentParser().add_subparsers())
    args = parser.parse_args(["m.keras", "-d", "d.npz", "-o", "out", "--target", "builtin", "--activation-scales",
                              "asymmetric"])
    assert args.activation_scales == "asymmetric"


@pytest.mark.parametrize("dtype,zero_point,target", [(S.TensorType.INT8, 200, "builtin"),
                                                     (S.TensorType.INT16, 5, "builtin"),
                                                     (S.TensorType.INT8, 5, "int8-builtin")])
def test_the_reader_refuses_a_zero_point_outside_the_format(dtype, zero_point, target):
    """An int8 zero point outside int8, any on an int16 activation (TFLM's int16x8 kernels take
    zero point 0) or any on an int8-builtin file's activation: a FlatbufferFormatError naming the
    tensor, as for every malformed file."""
    from test_bad_input import _pack
    from test_export_graphs import cnn_graph

    from fxpq_keras.flatbuffer.errors import FlatbufferFormatError

    if target == "builtin":
        graph, _ = builtin_graph(5, n=4)
        _with_float_scales(graph, np.random.default_rng(0))
    else:
        graph = cnn_graph(0, int8=True)[0]
    model = S.ModelT.InitFromPackedBuf(export_tflite(graph, target=target), 0)
    sub = model.subgraphs[0]
    outputs = set(sub.outputs.tolist())
    victim = next((t for i, t in enumerate(sub.tensors) if t.type == dtype and model.buffers[t.buffer].data is None
                   and i not in outputs and i != sub.inputs[0]), None)
    if victim is None:
        pytest.skip(f"the drawn graph has no {dtype} activation")
    victim.quantization.zeroPoint = [zero_point]
    with pytest.raises(FlatbufferFormatError, match=f"{victim.name.decode()}.*zero_point"):
        read_bytes(_pack(model))
