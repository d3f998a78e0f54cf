"""The TFLM glue's Init/Prepare/Eval at run time, on every machine: tflm/fxpq_tflm_ops.cc driven
through the functional stand-in of the TFLM calls it makes (tflm/test_stubs/glue_harness.cc), bit
for bit against the numpy reference, on randomized graphs with non-square filters and pools,
unequal strides and dilations, and on a graph with every op. (Real TFLM runs the same glue in
tests/test_tflm_engines.py when a TFLM tree is available.)"""

from __future__ import annotations

import numpy as np
import pytest
from format_versions import as_format_version_3
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_export_graphs import GraphBuilder, calib, cnn_graph, narrow_u16_graph

from fxpq_keras.flatbuffer import Interpreter, export_tflite
from fxpq_keras.formats import Format, frac_for_range
from fxpq_keras.kernels.glue_harness import GlueError, GlueHarness


def _same(path, x) -> None:
    ref = Interpreter(path)
    got = GlueHarness(path, ref.graph).run(x)
    want = ref.predict(x, raw=True)
    want = want if isinstance(want, list) else [want]
    assert len(got) == len(want)
    for g, w in zip(got, want):
        np.testing.assert_array_equal(g, w)


@pytest.mark.parametrize("seed,kw", [(0, {}), (1, {"max_bits": 8}), (2, {"signed_only": True, "bias": False}),
                                     (3, {"int8": True})])
def test_every_op_equals_reference(tmp_path, seed, kw):
    graph, x = cnn_graph(seed, n=8, **kw)
    path = tmp_path / "cnn.tflite"
    export_tflite(graph, path)
    _same(path, x)


pair = st.tuples(st.integers(1, 3), st.integers(1, 3))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 2**31 - 1), kernel=st.tuples(st.integers(1, 4), st.integers(1, 4)), stride=pair,
       dilation=pair, padding=st.sampled_from(["same", "valid"]), depthwise=st.booleans(),
       multiplier=st.integers(1, 2), per_channel=st.booleans(), bias=st.booleans(),
       activation=st.sampled_from([None, "relu", "relu6"]), max_bits=st.sampled_from([2, 4, 8, 12, 16]),
       pool=st.tuples(st.integers(1, 3), st.integers(1, 3)), pool_kind=st.sampled_from(["max", "avg"]))
def test_conv_shapes_equal_reference(tmp_path, seed, kernel, stride, dilation, padding, depthwise, multiplier,
                                     per_channel, bias, activation, max_bits, pool, pool_kind):
    """Non-square filters, unequal strides and dilations, both paddings: a swapped height/width
    anywhere in the glue changes these outputs."""
    rng = np.random.default_rng(seed)
    h, w = int(rng.integers(7, 12)), int(rng.integers(5, 10))
    c = int(rng.integers(1, 4))
    eff = ((kernel[0] - 1) * dilation[0] + 1, (kernel[1] - 1) * dilation[1] + 1)
    if padding == "valid" and (eff[0] > h or eff[1] > w):
        padding = "same"
    x = calib(rng, 4, (h, w, c))
    b = GraphBuilder(rng, (h, w, c), x, Format(8, frac_for_range(3.0, 8)), max(max_bits, 3))
    if depthwise:
        t = b.depthwise("x0", k=kernel, multiplier=multiplier, stride=stride, padding=padding, dilation=dilation,
                        activation=activation, per_channel=per_channel, bias=bias)
    else:
        t = b.conv("x0", int(rng.integers(2, 5)), k=kernel, stride=stride, padding=padding, dilation=dilation,
                   activation=activation, per_channel=per_channel, bias=bias)
    shape = b.tensors[t].shape
    if pool[0] <= shape[0] and pool[1] <= shape[1]:
        t = b.pool(t, pool_kind, pool=pool, stride=(pool[1], pool[0]), padding="valid")
    path = tmp_path / "conv.tflite"
    export_tflite(b.finish(t), path)
    _same(path, x)


def test_bad_options_are_reported_by_prepare(tmp_path):
    """Init cannot fail: a rejected custom_options blob must surface as Prepare's error, naming the op."""
    from fxpq_keras.flatbuffer.schema import schema as S

    graph, x = cnn_graph(0, n=2)
    path = tmp_path / "cnn.tflite"
    export_tflite(graph, path)
    m = S.ModelT.InitFromObj(S.Model.GetRootAs(path.read_bytes(), 0))
    op = next(o for o in m.subgraphs[0].operators
              if (m.operatorCodes[o.opcodeIndex].customCode or b"") == b"FXP_CONV_2D")
    op.customOptions = list(op.customOptions[:-3]) + [0, 0, 0]  # a FlexBuffers root that is no map
    import flatbuffers
    builder = flatbuffers.Builder(0)
    builder.Finish(m.Pack(builder), file_identifier=b"TFL3")
    bad = tmp_path / "bad.tflite"
    bad.write_bytes(bytes(builder.Output()))
    h = GlueHarness(bad, Interpreter(path).graph)
    with pytest.raises(GlueError, match=r"Prepare failed: FXP_CONV_2D: custom options rejected"):
        h.run(x)


@pytest.mark.parametrize("seed", range(4))
def test_narrow_unsigned_16bit_inputs_in_both_format_versions(tmp_path, seed):
    """Every weighted op over a 9..15-bit unsigned input in uint16: a version-4 file names the width
    (in_bits), so the glue runs the int16 lanes as the runner does; its version-3 twin (no in_bits)
    runs the x - 2^15 lanes. Both equal the reference bit for bit."""
    from fxpq_keras.flatbuffer.options import decode_options
    from fxpq_keras.flatbuffer.schema import schema as S

    graph, x = narrow_u16_graph(seed)
    data = export_tflite(graph)
    m = S.ModelT.InitFromObj(S.Model.GetRootAs(data, 0))
    widths = []
    for op in m.subgraphs[0].operators:
        name = (m.operatorCodes[op.opcodeIndex].customCode or b"").decode()
        if name in ("FXP_CONV_2D", "FXP_DEPTHWISE_CONV_2D", "FXP_FULLY_CONNECTED"):
            opts = decode_options(name, bytes(op.customOptions), name)
            widths.append(opts["in_bits"])
            assert m.subgraphs[0].tensors[op.inputs[0]].type == S.TensorType.UINT16 or opts["in_bits"] <= 8
    assert len(widths) == 5 and all(9 <= b <= 15 for b in widths[1:])
    for label, blob in (("v4", data), ("v3", as_format_version_3(data))):
        path = tmp_path / f"{label}.tflite"
        path.write_bytes(blob)
        _same(path, x)


def test_in_bits_that_do_not_fit_the_input_type_are_refused_by_prepare(tmp_path):
    """in_bits 12 on an int8 input: Prepare names the key, never runs other lanes."""
    from fxpq_keras.flatbuffer.options import decode_options, encode_options
    from fxpq_keras.flatbuffer.schema import schema as S

    graph, x = cnn_graph(1, n=2, max_bits=8)
    path = tmp_path / "cnn.tflite"
    export_tflite(graph, path)
    m = S.ModelT.InitFromObj(S.Model.GetRootAs(path.read_bytes(), 0))
    op = next(o for o in m.subgraphs[0].operators
              if (m.operatorCodes[o.opcodeIndex].customCode or b"") == b"FXP_CONV_2D")
    opts = decode_options("FXP_CONV_2D", bytes(op.customOptions), "test")
    assert opts["in_bits"] <= 8
    opts["in_bits"] = 12
    op.customOptions = list(encode_options("FXP_CONV_2D", opts))
    import flatbuffers
    builder = flatbuffers.Builder(0)
    builder.Finish(m.Pack(builder), file_identifier=b"TFL3")
    bad = tmp_path / "bad.tflite"
    bad.write_bytes(bytes(builder.Output()))
    with pytest.raises(GlueError, match=r"Prepare failed: FXP_CONV_2D: in_bits does not fit the input type"):
        GlueHarness(bad, Interpreter(path).graph).run(x)
