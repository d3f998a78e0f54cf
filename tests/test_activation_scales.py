"""Target builtin's float activation scales (issue 23): s = min(max|a| / qmax, 2^-frac), one rule
(formats.activation_scale) for the fake-quant, the lowering, the file; TFLM's kernels follow the
float scales bit for bit (the `tflite-micro` wheel against the numpy model)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from long_mode import examples
from test_builtin_target import (  # noqa: F401
    BUDGET,
    _with_float_scales,
    assert_wheel_agrees,
    builtin_blob_or_named_limit,
    builtin_graph,
    digits_builtin,
)
from test_search import digits  # noqa: F401  (the fixture: a tiny CNN on 8x8 digits)

from fxpq_keras.flatbuffer import export_tflite
from fxpq_keras.flatbuffer.errors import ExportError
from fxpq_keras.flatbuffer.reader import read_bytes
from fxpq_keras.flatbuffer.schema import schema as S
from fxpq_keras.formats import Format, FormatError, activation_scale, frac_for_range, scaled_format
from fxpq_keras.policy import Policy, PolicyMismatchError

pytest.importorskip("tflite_micro")


@pytest.mark.parametrize("bits,signed,qmax", [(8, True, 127), (8, False, 255), (16, True, 32767), (15, False, 32767)])
def test_the_scale_is_tflites_at_the_range_derived_frac(bits, signed, qmax):
    m = 3.7
    fmt = Format(bits, frac_for_range(m, bits, signed), signed)
    s = activation_scale(m, fmt)
    assert s == float(np.float32(np.float32(m) / np.float32(qmax)))
    scaled = scaled_format(fmt, m)
    assert scaled.scale == s and scaled.frac == fmt.frac and scaled.step == s  # canonical frac: the range one
    assert 2.0 ** -(fmt.frac + 1) < s < 2.0 ** -fmt.frac
    finer = fmt.with_frac(fmt.frac + 1)  # mechanism 3's larger frac: its power-of-two step, which clips
    assert activation_scale(m, finer) == 2.0 ** -finer.frac and scaled_format(finer, m) == finer
    assert scaled_format(fmt, 0.0) == fmt and scaled_format(fmt, None) == fmt  # silent tensor / no range


def test_a_format_refuses_a_scale_outside_its_frac():
    with pytest.raises(FormatError, match="scale"):
        Format(8, 3, True, 0.3)  # 0.3 is not between 2^-4 and 2^-3
    with pytest.raises(FormatError, match="scale"):
        Format(8, 3, True, 0.125)  # a power of two is a frac, not a scale
    assert str(Format(8, 3, True, 0.1)) .startswith("s8.3@0.1")


def _with_activation_scales(graph, rng: np.random.Generator) -> None:
    """Every activation tensor except the input and the outputs at 2^-frac times a factor in
    (0.5, 1) (the same factor for equal formats, so a pool keeps its input's scale)."""
    factors: dict[Format, float] = {}
    for name, spec in graph.tensors.items():
        if spec.fmt is None or name == graph.input or name in graph.outputs or spec.fmt.scale is not None:
            continue
        if any(n.op == "quantize" and n.output == name for n in graph.nodes):
            continue
        f = spec.fmt
        factor = factors.setdefault(f, float(rng.uniform(0.5, 1.0)))
        scale = float(np.float32(math.ldexp(factor, -f.frac)))
        if math.frexp(scale)[0] != 0.5:
            spec.fmt = Format(f.bits, f.frac, f.signed, scale)


@settings(max_examples=examples(12), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, 2**16))
def test_random_layers_with_float_activation_scales_are_bit_exact_with_tflm(seed):
    """Drawn graphs (int8 and int16 activations, signed and unsigned: u8 is int8 with zero point
    -128; conv, depthwise, fully connected, add, pools) with float32 activation and weight scales:
    the file keeps every scale and runs in the wheel exactly as the numpy model of TFLM's kernels."""
    graph, x = builtin_graph(seed % 1000, n=8)
    rng = np.random.default_rng(seed)
    _with_float_scales(graph, rng)
    _with_activation_scales(graph, rng)
    blob = builtin_blob_or_named_limit(graph)
    if blob is None:
        return
    read, _ = read_bytes(blob)
    for name, spec in graph.tensors.items():
        if spec.fmt is not None and spec.fmt.scale is not None:
            assert read.tensors[name].fmt.scale == spec.fmt.scale, name
    assert_wheel_agrees(blob, x)


def test_the_fxp_target_refuses_float_activation_scales():
    graph, _ = builtin_graph(3, n=4)
    _with_activation_scales(graph, np.random.default_rng(0))
    with pytest.raises(ExportError, match="float activation scales"):
        export_tflite(graph, target="fxp")


# ---------------------------------------------------------------------------------- the search

def test_searched_activation_scales_are_one_rule_from_policy_to_file(digits_builtin):  # noqa: F811
    """The search's policy carries the calibration ranges; the fake-quant's scale variables, the
    lowered graph and the file's tensors all hold formats.activation_scale of them."""
    from fxpq_keras.fakequant.model import describe, quantizer_variables
    from fxpq_keras.integer_graph.lower import lower_model

    _, result, _ = digits_builtin
    qmodel, policy = result.model, result.policy
    assert policy.activation_ranges, "the builtin search uses float activation scales by default"
    assert describe(qmodel)[1].activation_ranges == policy.activation_ranges
    qvars = quantizer_variables(qmodel)
    graph = lower_model(qmodel)
    blob = export_tflite(qmodel, target="builtin")
    sub = S.ModelT.InitFromPackedBuf(blob, 0).subgraphs[0]
    file_scales = {t.name.decode(): float(t.quantization.scale[0]) for t in sub.tensors
                   if t.name is not None and t.quantization is not None and t.quantization.scale is not None
                   and len(t.quantization.scale)}
    scaled = 0
    for layer, m in policy.activation_ranges.items():
        fmt = policy.tensor_format(layer)
        assert fmt.step == activation_scale(m, policy.get(layer, "output").fmt)
        assert float(qvars[(layer, "output")]["scale"].numpy()) == np.float32(fmt.step)
        assert graph.tensors[layer].fmt == fmt
        assert file_scales[layer] == np.float32(fmt.step)
        scaled += fmt.scale is not None
    assert scaled > 0


def test_activation_ranges_travel_with_the_policy(digits_builtin):  # noqa: F811
    _, result, _ = digits_builtin
    policy = result.policy
    text = policy.to_json()
    assert '"activation_scales": "float"' in text
    again = Policy.from_json(text)
    assert again.activation_ranges == policy.activation_ranges and again.to_json() == text
    d = json.loads(text)
    d.pop("activation_scales"), d.pop("activation_ranges"), d.pop("activation_bounds")  # (the default: asymmetric)
    pow2 = Policy.from_dict(d)
    assert not pow2.activation_ranges and "activation_" not in pow2.to_json()
    bad = json.loads(text)
    bad["activation_ranges"][next(iter(bad["activation_ranges"]))] = -1.0
    with pytest.raises(PolicyMismatchError, match="activation_ranges"):
        Policy.from_dict(bad)
    bad = json.loads(text)
    bad["activation_ranges"]["no_such_layer"] = 1.0
    with pytest.raises(PolicyMismatchError, match="no_such_layer"):
        Policy.from_dict(bad)


def test_power_of_two_activation_scales_stay_available(digits):  # noqa: F811 (the imported fixture)
    """SearchOptions(activation_scales="pow2"): the start has no ranges, its JSON no new keys."""
    from fxpq_keras.calibration import Calibration
    from fxpq_keras.search import SearchOptions, space

    calib = Calibration(digits["model"], digits["x_train"][:64])
    pow2 = space.start_policy(calib, SearchOptions(target="builtin", activation_scales="pow2"))
    assert not pow2.activation_ranges and "activation_" not in pow2.to_json()
    scaled = space.start_policy(calib, SearchOptions(target="builtin"))
    assert scaled.activation_ranges and all(m >= 0 for m in scaled.activation_ranges.values())
    with pytest.raises(ValueError, match="activation_scales"):
        SearchOptions(target="builtin", activation_scales="float16").validate()


def test_inspect_shows_the_float_activation_scales(digits_builtin, tmp_path):  # noqa: F811
    """`fxpq inspect` of a searched builtin file: a float-scaled tensor reads `s8.5@0.0234`-style."""
    from fxpq_keras.flatbuffer.inspect import format_report, inspect_tflite

    _, result, _ = digits_builtin
    path = tmp_path / "m.tflite"
    export_tflite(result.model, path, target="builtin")
    text = format_report(inspect_tflite(path))
    scaled = [layer for layer in result.policy.activation_ranges if result.policy.tensor_format(layer).scale]
    assert scaled and f"@{result.policy.tensor_format(scaled[0]).scale:.6g}" in text


def test_cli_takes_the_activation_scales():
    import argparse

    from fxpq_keras.commands import quantize

    parser = quantize.register(argparse.ArgumentParser().add_subparsers())
    assert parser.parse_args(["m.keras", "-d", "d.npz", "-o", "out"]).activation_scales == "asymmetric"
    args = parser.parse_args(["m.keras", "-d", "d.npz", "-o", "out", "--target", "builtin", "--activation-scales",
                              "pow2"])
    assert args.activation_scales == "pow2"
    with pytest.raises(SystemExit):
        parser.parse_args(["m.keras", "-d", "d.npz", "-o", "out", "--activation-scales", "int8"])


@pytest.mark.filterwarnings("ignore::fxpq_keras.calibration.CalibrationRangeWarning")  # untrained: tiny outputs
def test_stock_hard_swish_and_mul_take_float_scales_in_builtin_files():
    """mobilenet_v3_tiny's hard-swish and squeeze-and-excitation gates are stock HARD_SWISH and MUL
    ops. In a builtin file every tensor they read or write has a float activation scale (TFLM derives
    their multipliers from the scales): at 2^-frac these int8 tensors had up to twice TFLite's step,
    which put the trained model's uniform W8A8 builtin file at 6.0 % flips on the first 500 held-out
    inputs, 2.4 % with the float scales.
    The file still runs in the wheel exactly as the numpy model."""
    from test_builtin_target import _same_in, _zoo_builtin_file

    blob, x = _zoo_builtin_file("mobilenet_v3_tiny")
    model = S.ModelT.InitFromPackedBuf(blob, 0)
    sub = model.subgraphs[0]
    codes = [model.operatorCodes[op.opcodeIndex].builtinCode for op in sub.operators]
    stock = [op for op, code in zip(sub.operators, codes, strict=True)
             if code in (S.BuiltinOperator.HARD_SWISH, S.BuiltinOperator.MUL)]
    assert len(stock) >= 10  # a hard-swish after every conv, three SE gates
    for op in stock:
        for i in [*op.inputs, *op.outputs]:
            scale = float(sub.tensors[i].quantization.scale[0])
            assert math.frexp(scale)[0] != 0.5, (sub.tensors[i].name, scale)  # not a power of two
    _same_in("tflm", blob, x[:3], "mobilenet_v3_tiny")


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_stock_sub_and_elu_take_float_scales_in_builtin_files(seed):
    """The other two stock ops of STOCK_FLOAT_SCALED through the whole pipeline (start policy,
    fake-quant, lowering, builtin file): a SUB of two convs and an ELU after it, every tensor they
    touch float-scaled, the file bit-exact in the wheel (randomly lowered to int8 or kept int16
    around them, as _zoo_builtin_policy draws)."""
    from test_builtin_target import _same_in, _zoo_builtin_policy

    from fxpq_keras._tf import keras
    from fxpq_keras.calibration import Calibration
    from fxpq_keras.fakequant import quantize_model

    keras.utils.set_random_seed(seed)
    inp = keras.Input((6, 6, 3))
    a = keras.layers.Conv2D(4, 3, padding="same", name="a")(inp)
    b = keras.layers.Conv2D(4, 1, name="b")(inp)
    d = keras.layers.Subtract(name="diff")([a, b])
    e = keras.layers.ELU(name="elu")(d)
    out = keras.layers.Conv2D(2, 1, name="head")(e)
    x = np.random.default_rng(seed).normal(size=(16, 6, 6, 3)).astype(np.float32)
    calib_ = Calibration(keras.Model(inp, keras.layers.Flatten(name="flat")(out)), x)
    blob = export_tflite(quantize_model(calib_, _zoo_builtin_policy(calib_, seed)), target="builtin")
    model = S.ModelT.InitFromPackedBuf(blob, 0)
    sub = model.subgraphs[0]
    codes = [model.operatorCodes[op.opcodeIndex].builtinCode for op in sub.operators]
    stock = [op for op, code in zip(sub.operators, codes, strict=True)
             if code in (S.BuiltinOperator.SUB, S.BuiltinOperator.ELU)]
    assert len(stock) == 2
    for op in stock:
        for i in [*op.inputs, *op.outputs]:
            scale = float(sub.tensors[i].quantization.scale[0])
            assert math.frexp(scale)[0] != 0.5, (sub.tensors[i].name, scale)
    _same_in("tflm", blob, x[:4], f"sub-elu-{seed}")
