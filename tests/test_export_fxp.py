"""fxp target: file round trip == IntegerGraph bit for bit; packing; options; bad input; CLI."""

from __future__ import annotations

import json
import re
import zlib
from pathlib import Path

import numpy as np
import pytest
from flatbuffers import flexbuffers
from test_export_graphs import cnn_graph

from fxpq_keras.flatbuffer import (
    ExportError,
    FlatbufferFormatError,
    Interpreter,
    export_c_array,
    export_tflite,
    packing,
    read_bytes,
)
from fxpq_keras.flatbuffer.inspect import inspect_tflite
from fxpq_keras.flatbuffer.options import OPTION_KEYS, decode_options, encode_options
from fxpq_keras.flatbuffer.schema import schema as S
from fxpq_keras.integer_graph.ops import quantize_input

DOC = Path(__file__).resolve().parents[1] / "docs" / "format.md"


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("float_input", [True, False])
def test_reference_interpreter_equals_integer_graph(tmp_path, seed, float_input):
    graph, x = cnn_graph(seed, bias=seed != 3)
    path = tmp_path / "m.tflite"
    export_tflite(graph, path, float_input=float_input)
    interp = Interpreter(path)
    expect = graph.run(x, raw=True)[0]
    if float_input:
        got = interp.predict(x, raw=True)
    else:
        got = interp.predict(quantize_input(x, graph.tensors[graph.nodes[0].output].fmt), raw=True)
    np.testing.assert_array_equal(got, expect)
    probs = interp.predict(x if float_input else quantize_input(x, graph.tensors[graph.nodes[0].output].fmt))
    np.testing.assert_allclose(probs, graph.run(x)[0], rtol=0, atol=1e-6)
    np.testing.assert_allclose(probs.sum(axis=1), 1, atol=1e-5)


def test_graph_round_trip_is_structurally_equal():
    graph, _ = cnn_graph(5)
    back, info = read_bytes(export_tflite(graph))
    assert [n.op for n in back.nodes] == [n.op for n in graph.nodes]
    assert [n.name for n in back.nodes] == [n.name for n in graph.nodes]
    for a, b in zip(graph.nodes, back.nodes):
        assert {k: tuple(v) if isinstance(v, (list, tuple)) else v for k, v in a.attrs.items()} == b.attrs, a.name
        if a.weights is not None:
            np.testing.assert_array_equal(a.weights, b.weights)
            np.testing.assert_array_equal(a.weight_frac, b.weight_frac)
            assert a.weight_bits == b.weight_bits
            assert (a.bias_bits, a.bias_frac) == (b.bias_bits, b.bias_frac)
            np.testing.assert_array_equal(a.bias, b.bias)
    for name, spec in graph.tensors.items():
        assert back.tensors[name].fmt == spec.fmt and back.tensors[name].shape == spec.shape
    assert info.target == "fxp" and back.output_softmax


@pytest.mark.parametrize("bits", range(2, 17))
def test_packing_round_trip_every_width(bits):
    rng = np.random.default_rng(bits)
    rows = rng.integers(-(1 << (bits - 1)), 1 << (bits - 1), size=(5, 13))
    rows[0, :2] = [-(1 << (bits - 1)), (1 << (bits - 1)) - 1]
    stored = packing.pack_rows(rows, bits)
    # every width is bit-packed: a row of 13 values costs ceil(13 * bits / 8) bytes
    assert stored.dtype == np.uint8 and stored.shape == (5, -(-13 * bits // 8))
    np.testing.assert_array_equal(packing.unpack_rows(stored, bits, 13), rows)


def test_packing_layout_lsb_first():
    # values 1, -1 at 3 bits: stream bits 100 111 -> byte 0b00111001
    assert packing.pack_rows(np.array([[1, -1]]), 3).tolist() == [[0b00111001]]


@pytest.mark.parametrize("bits", [2, 3, 4, 5, 8, 9, 10, 12, 13, 15, 16])
def test_file_bytes_reflect_packed_bits(bits):
    graph, _ = cnn_graph(7)
    for node in graph.nodes:
        if node.weights is not None:
            lim = 1 << (bits - 1)
            node.weights = np.clip(node.weights, -lim, lim - 1)
            node.weight_bits = bits
    data = export_tflite(graph)
    _, info = read_bytes(data)
    packed = sum(info.weight_bytes.values())
    expect = 0
    for node in graph.nodes:
        if node.weights is not None:
            rows = packing.weights_to_rows(node.op, node.weights)
            expect += rows.shape[0] * packing.row_bytes(rows.shape[1], bits)
    assert packed == expect
    n_weights = sum(n.weights.size for n in graph.nodes if n.weights is not None)
    n_rows = sum(len(n.weight_frac) for n in graph.nodes if n.weights is not None)
    assert 0 <= packed * 8 - n_weights * bits < 8 * n_rows  # only the byte padding of each row
    overhead = len(data) - packed
    assert overhead < 10000  # structure, activations' metadata, fracs, biases: independent of weight bits


def test_options_are_sorted_flexbuffer_maps_as_documented():
    graph, _ = cnn_graph(1)
    data = export_tflite(graph)
    model = S.ModelT.InitFromObj(S.Model.GetRootAs(data, 0))
    doc = DOC.read_text()
    seen = set()
    for op in model.subgraphs[0].operators:
        code = model.operatorCodes[op.opcodeIndex]
        if code.builtinCode != S.BuiltinOperator.CUSTOM:
            assert code.builtinCode == S.BuiltinOperator.RESHAPE
            continue
        name = code.customCode.decode()
        seen.add(name)
        assert op.customOptionsFormat == S.CustomOptionsFormat.FLEXBUFFERS
        fmap = flexbuffers.GetRoot(bytes(np.asarray(op.customOptions, dtype=np.uint8))).AsMap
        keys = [k.AsKey for k in fmap.Keys]
        assert keys == sorted(keys) == list(OPTION_KEYS[name])
        assert all(v.IsInt for v in fmap.Values)
    assert seen == set(OPTION_KEYS) - set()  # every custom op appears in the test model
    # the doc lists every key of every op in the documented Pos order
    for name, keys in OPTION_KEYS.items():
        section = doc[doc.index("### 4."):]
        start = section.index(name)
        block = section[start:section.index("###", start + 1) if "###" in section[start + 1:] else None]
        listed = sorted(((int(p), k) for p, k in re.findall(r"\| (\d+) \| `(\w+)`", block)), key=lambda t: t[0])
        assert [k for _, k in listed] == list(keys), name


def test_metadata_policy_and_version():
    graph, _ = cnn_graph(2)
    data = export_tflite(graph, policy={"layers": {"conv_1": {"weights": {"bits": 4}}}})
    _, info = read_bytes(data)
    assert info.policy == {"layers": {"conv_1": {"weights": {"bits": 4}}}}
    assert re.fullmatch(r"\d+\.\d+\.\d+.*", info.version)
    model = S.ModelT.InitFromObj(S.Model.GetRootAs(data, 0))
    # one compact metadata entry: zlib-compressed JSON with the graph facts and the policy
    assert [m.name.decode() for m in model.metadata] == ["fxpq"]
    blob = json.loads(zlib.decompress(bytes(model.buffers[model.metadata[0].buffer].data)))
    assert blob["policy"] == info.policy and blob["format_version"] == 4 and blob["version"] == info.version
    # constants carry no names, activations no shape signature (file overhead, format.md 1)
    for t in model.subgraphs[0].tensors:
        assert t.shapeSignature is None
        assert (t.name is None) == (t.buffer != 0)
    # activation tensors: scale 2^-frac, zero point 0; buffers 16-byte aligned
    for t in model.subgraphs[0].tensors:
        if t.buffer == 0 and t.type != S.TensorType.FLOAT32:
            assert t.quantization.zeroPoint.tolist() == [0]
            m, _ = np.frexp(t.quantization.scale[0])
            assert m == 0.5
    raw = bytes(data)
    root = S.Model.GetRootAs(raw, 0)
    for i in range(root.BuffersLength()):
        buf = root.Buffers(i)
        if buf.DataLength():
            off = buf._tab.Vector(buf._tab.Offset(4))
            assert off % 16 == 0


def test_file_loads_in_litert_analyzer():
    analyzer = pytest.importorskip("tensorflow.lite.python.analyzer")
    graph, _ = cnn_graph(0)
    import contextlib
    import io

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        analyzer.ModelAnalyzer.analyze(model_content=export_tflite(graph))
    text = out.getvalue()
    assert "FXP_CONV_2D" in text and "FXP_DEPTHWISE_CONV_2D" in text and "RESHAPE" in text


def _corrupt_cases(data: bytes):
    yield "empty", b"", "too short"
    yield "text", b"hello world, not a model", "identifier"
    yield "truncated", data[: len(data) // 2], "truncated"
    yield "truncated-head", data[:40], "truncated"
    flipped = bytearray(data)
    flipped[0:4] = (len(data) + 1000).to_bytes(4, "little")
    yield "bad-root", bytes(flipped), "truncated"


def test_bad_files_give_clear_errors(tmp_path):
    graph, _ = cnn_graph(0)
    data = export_tflite(graph)
    for label, blob, word in _corrupt_cases(data):
        with pytest.raises(FlatbufferFormatError, match=word):
            read_bytes(blob)
        p = tmp_path / f"{label}.tflite"
        p.write_bytes(blob)
        with pytest.raises(FlatbufferFormatError):
            Interpreter(p)
        with pytest.raises(FlatbufferFormatError):
            inspect_tflite(p)


def test_random_byte_corruption_never_crashes_uncontrolled():
    graph, x = cnn_graph(0, n=2)
    data = export_tflite(graph)
    rng = np.random.default_rng(0)
    for _ in range(150):
        blob = bytearray(data)
        for i in rng.integers(0, len(blob), size=4):
            blob[i] = int(rng.integers(0, 256))
        try:
            g, _ = read_bytes(bytes(blob))
        except FlatbufferFormatError:
            continue
        try:
            g.run(x)
        except (ValueError, IndexError, KeyError, OverflowError):  # a valid but different graph may not run
            pass


def test_foreign_tflite_is_refused():
    # a stock float TFLite model written with the schema but without fxpq metadata
    graph, _ = cnn_graph(0)
    model = S.ModelT.InitFromObj(S.Model.GetRootAs(export_tflite(graph), 0))
    model.metadata = []
    import flatbuffers

    b = flatbuffers.Builder(0)
    b.Finish(model.Pack(b), file_identifier=b"TFL3")
    with pytest.raises(FlatbufferFormatError, match="not an fxpq file"):
        read_bytes(bytes(b.Output()))


def test_bad_options_are_named():
    graph, _ = cnn_graph(0)
    model = S.ModelT.InitFromObj(S.Model.GetRootAs(export_tflite(graph), 0))
    op = model.subgraphs[0].operators[1]
    fb = flexbuffers.Builder()
    with fb.Map():
        fb.Int("act_max", 1)
    op.customOptions = list(fb.Finish())
    import flatbuffers

    b = flatbuffers.Builder(0)
    b.Finish(model.Pack(b), file_identifier=b"TFL3")
    with pytest.raises(FlatbufferFormatError, match="FXP_CONV_2D option keys"):
        read_bytes(bytes(b.Output()))


def test_export_refuses_what_it_cannot_express():
    graph, _ = cnn_graph(0)
    graph.nodes[1].weight_bits = 1
    with pytest.raises(ExportError, match="conv_1"):
        export_tflite(graph)
    graph, _ = cnn_graph(0)
    with pytest.raises(ValueError, match="target"):
        export_tflite(graph, target="int4")


def test_c_array(tmp_path):
    graph, _ = cnn_graph(0)
    p = tmp_path / "m.tflite"
    data = export_tflite(graph, p)
    h = export_c_array(p, tmp_path / "model_data.h")
    text = h.read_text()
    assert "aligned(16)" in text and f"model_data_len = {len(data)}" in text
    values = [int(v, 16) for v in re.findall(r"0x([0-9a-f]{2})", text)]
    assert bytes(values) == data


def test_cli_run_and_inspect(tmp_path, capsys):
    from fxpq_keras.cli import main

    graph, x = cnn_graph(3)
    p = tmp_path / "m.tflite"
    export_tflite(graph, p)
    np.save(tmp_path / "x.npy", x)
    assert main(["run", str(p), "-i", str(tmp_path / "x.npy"), "-o", str(tmp_path / "y.npy"), "--raw"]) == 0
    np.testing.assert_array_equal(np.load(tmp_path / "y.npy"), graph.run(x, raw=True)[0])
    capsys.readouterr()
    assert main(["inspect", str(p), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert {"layers", "totals"} <= set(report)
    for key in ("weight_bits", "bias_bits", "activation_bits", "total_bits", "float32_bits", "compression_total",
                "compression_weights", "file_bytes", "weight_elements", "bias_elements", "activation_elements",
                "weight_bytes", "bias_bytes", "other_flash_bytes", "flash_bytes", "ram_bytes", "tflm_planned_bytes",
                "tflm_persistent_bytes", "runner_planned_bytes"):
        assert key in report["totals"]
    totals = report["totals"]
    assert totals["file_bytes"] == totals["flash_bytes"] == p.stat().st_size
    from fxpq_keras.kernels.runner import HostRunner

    assert totals["runner_planned_bytes"] == HostRunner(p).stats["planned_bytes"]
    assert totals["ram_bytes"] == totals["tflm_planned_bytes"] + totals["tflm_persistent_bytes"]
    assert totals["weight_bytes"] == sum(r.get("weight_bytes") or 0 for r in report["layers"])
    # the text shows the same names as the JSON
    assert main(["inspect", str(p)]) == 0
    text = capsys.readouterr().out
    assert f"ram_bytes {totals['ram_bytes']:,}" in text and f"flash_bytes {totals['flash_bytes']:,}" in text
    assert f"runner_planned_bytes {totals['runner_planned_bytes']:,}" in text
    assert f"total_bits {totals['total_bits']:,}" in text
    (tmp_path / "bad.tflite").write_bytes(b"TFL3TFL3")
    assert main(["inspect", str(tmp_path / "bad.tflite")]) == 2
    assert "error" in capsys.readouterr().err


def test_options_with_fewer_values_than_keys_are_refused():
    """A corrupted map whose value vector is shorter than its key vector (issue 12, item 6): a
    named format error, never an empty dict (then KeyError 'act_min' downstream)."""
    keys = OPTION_KEYS["FXP_REQUANTIZE"]
    blob = encode_options("FXP_REQUANTIZE", {k: 1 for k in keys})
    short = []
    for pos in range(len(blob)):
        bad = bytearray(blob)
        bad[pos] = 0
        try:
            fmap = flexbuffers.GetRoot(bytes(bad)).AsMap
            if [k.AsKey for k in fmap.Keys] == list(keys) and len(fmap.Values) < len(keys):
                short.append(bytes(bad))
        except Exception:  # noqa: BLE001 - only the blobs that parse this way matter here
            pass
    assert short
    for bad in short:
        with pytest.raises(FlatbufferFormatError, match="op 3: FXP_REQUANTIZE options have 5 keys but"):
            decode_options("FXP_REQUANTIZE", bad, "op 3")
