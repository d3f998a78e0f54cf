"""The C model runner on the host (ctypes): whole files bit for bit against the reference, the
arena planner, the options reader, and malformed files (error status, never a crash)."""

from __future__ import annotations

import ctypes

import numpy as np
import pytest
from flatbuffers import flexbuffers
from test_export_graphs import GraphBuilder, calib, cnn_graph

from fxpq_keras.flatbuffer import Interpreter, export_tflite
from fxpq_keras.flatbuffer.options import CUSTOM_OPS, decode_options, encode_options
from fxpq_keras.flatbuffer.schema import schema as S
from fxpq_keras.formats import Format, frac_for_range
from fxpq_keras.integer_graph.ops import quantize_input
from fxpq_keras.kernels.runner import HostRunner, RunnerError, _aligned, load_runner_library, parse_options


@pytest.fixture(scope="module")
def cnn_file(tmp_path_factory):
    graph, x = cnn_graph(11)
    path = tmp_path_factory.mktemp("runner") / "cnn.tflite"
    export_tflite(graph, path)
    return path, graph, x


@pytest.mark.parametrize("float_input", [True, False])
@pytest.mark.parametrize("seed,kw", [(0, {}), (1, {"max_bits": 8}), (2, {"signed_only": True, "bias": False}),
                                     (3, {"max_bits": 12}), (4, {"int8": True})])
def test_host_engine_equals_reference_bit_for_bit(tmp_path, seed, kw, float_input):
    graph, x = cnn_graph(seed, **kw)
    path = tmp_path / "m.tflite"
    export_tflite(graph, path, float_input=float_input)
    if not float_input:
        x = quantize_input(x, graph.tensors[graph.nodes[0].output].fmt)
    ref = Interpreter(path).predict(x, raw=True)
    got = Interpreter(path, engine="host").predict(x, raw=True)
    np.testing.assert_array_equal(got, ref)
    if float_input:
        np.testing.assert_array_equal(got, graph.run(x, raw=True)[0])
    probs = Interpreter(path, engine="host").predict(x)
    np.testing.assert_allclose(probs, Interpreter(path).predict(x), rtol=0, atol=0)


def _two_output_graph(seed: int):
    rng = np.random.default_rng(seed)
    x = calib(rng, 16, (8, 8, 2))
    b = GraphBuilder(rng, (8, 8, 2), x, Format(8, frac_for_range(3.0, 8)))
    t = b.conv("x0", 4, activation="relu")
    f = b.flatten(t)                       # RESHAPE aliases its input in the runner's plan
    d = b.dense(f, 5)
    g = b.gap(t)
    return b.finish(d, g), x


def test_multiple_outputs_and_reshape_alias(tmp_path):
    graph, x = _two_output_graph(3)
    path = tmp_path / "two.tflite"
    export_tflite(graph, path)
    ref = Interpreter(path).predict(x, raw=True)
    got = Interpreter(path, engine="host").predict(x, raw=True)
    assert len(got) == 2
    for a, b in zip(got, ref):
        np.testing.assert_array_equal(a, b)


def test_arena_plan_and_too_small_arena(cnn_file):
    path, graph, x = cnn_file
    runner = HostRunner(path)
    stats = runner.stats
    need = stats["arena_bytes"]
    # the plan reuses memory: the peak is below the sum of all activation tensors
    total = sum(int(np.prod(s.shape)) * (4 if s.fmt is None else s.fmt.storage_dtype.itemsize)
                for s in graph.tensors.values())
    assert 0 < stats["planned_bytes"] < total
    assert need >= stats["persistent_bytes"] + stats["planned_bytes"]
    exact = HostRunner(path, arena_size=need)
    np.testing.assert_array_equal(exact.run(x[:4])[0], graph.run(x[:4], raw=True)[0])
    with pytest.raises(RunnerError) as err:
        HostRunner(path, arena_size=need - 1)
    assert err.value.status_name == "FXPQ_RUNNER_ERR_ARENA_TOO_SMALL"
    assert f"needs {need}" in err.value.message
    with pytest.raises(RunnerError) as err:
        HostRunner(path, arena_size=64)  # too small even to plan: a lower bound to retry with
    assert err.value.status_name == "FXPQ_RUNNER_ERR_ARENA_TOO_SMALL" and "at least" in err.value.message


def test_runner_refuses_misaligned_model(cnn_file):
    path = cnn_file[0]
    data = path.read_bytes()
    lib = load_runner_library()
    owner, buf = _aligned(len(data) + 1)
    buf[1:] = np.frombuffer(data, dtype=np.uint8)
    from fxpq_keras.kernels.runner import CRunner

    c = CRunner()
    status = lib.fxpq_runner_init(ctypes.byref(c), buf.ctypes.data + 1, len(data), None, 0)
    assert status == -107 and b"aligned" in c.message


def test_truncated_files_fail_with_status(cnn_file):
    path, graph, x = cnn_file
    data = path.read_bytes()
    expect = graph.run(x[:2], raw=True)[0]
    cuts = sorted(set(np.linspace(0, len(data) - 1, 200).astype(int).tolist()) | set(range(0, 64)))
    errors = 0
    for n in cuts:
        try:
            runner = HostRunner(data[:n])
        except RunnerError:
            errors += 1
            continue
        # only bytes the runner does not need were cut (e.g. the tail of the vtables): a valid run
        np.testing.assert_array_equal(runner.run(x[:2])[0], expect)
    assert errors >= len(cuts) - 3


def test_random_byte_flips_error_or_run(cnn_file):
    path, graph, x = cnn_file
    data = bytearray(path.read_bytes())
    rng = np.random.default_rng(0)
    outcomes = {"error": 0, "ran": 0}
    statuses = set()
    for _ in range(400):
        bad = bytearray(data)
        for pos in rng.integers(0, len(bad), size=int(rng.integers(1, 4))):
            bad[pos] ^= int(rng.integers(1, 256))
        try:
            runner = HostRunner(bytes(bad))
        except RunnerError as exc:
            outcomes["error"] += 1
            statuses.add(exc.status_name)
            continue
        try:
            runner.run(x[:1])
            outcomes["ran"] += 1
        except RunnerError as exc:  # a kernel may still refuse a flipped value at run time
            outcomes["error"] += 1
            statuses.add(exc.status_name)
    assert outcomes["error"] > 0 and outcomes["ran"] > 0
    assert "FXPQ_RUNNER_ERR_MALFORMED" in statuses


def test_int8_builtin_files_are_checked_not_run(tmp_path):
    """The runner reads an int8-builtin file with the Python reader's rules (issue 24) and says a
    valid one is for TFLM; a stock op the format does not have is named."""
    graph, _ = cnn_graph(4, int8=True)
    path = tmp_path / "int8.tflite"
    export_tflite(graph, path, target="int8-builtin")
    with pytest.raises(RunnerError) as err:
        HostRunner(path)
    assert err.value.status_name == "FXPQ_RUNNER_ERR_STOCK_FILE"
    assert "valid int8-builtin file" in err.value.message and "TFLM" in err.value.message

    def foreign_op(m):
        for code in m.operatorCodes:
            if code.builtinCode == S.BuiltinOperator.ADD:
                code.builtinCode = code.deprecatedBuiltinCode = S.BuiltinOperator.MUL

    with pytest.raises(RunnerError) as err:
        HostRunner(_rewrite(path.read_bytes(), foreign_op))
    assert err.value.status_name == "FXPQ_RUNNER_ERR_UNSUPPORTED"
    assert "op 18 is not part of the int8-builtin format" in err.value.message


def _rewrite(data: bytes, edit) -> bytes:
    model = S.ModelT.InitFromObj(S.Model.GetRootAsModel(data, 0))
    edit(model)
    import flatbuffers

    b = flatbuffers.Builder(1024)
    b.Finish(model.Pack(b), file_identifier=b"TFL3")
    return bytes(b.Output())


def test_bad_options_and_tensors_are_reported(cnn_file):
    data = cnn_file[0].read_bytes()

    def drop_key(model):
        op = model.subgraphs[0].operators[1]
        opts = decode_options("FXP_CONV_2D", bytes(op.customOptions), "test")
        opts.pop("stride_h")
        fb = flexbuffers.Builder()
        with fb.Map():
            for k in sorted(opts):
                fb.Int(k, opts[k])
        op.customOptions = list(fb.Finish())

    with pytest.raises(RunnerError) as err:
        HostRunner(_rewrite(data, drop_key))
    assert err.value.status_name == "FXPQ_RUNNER_ERR_BAD_OPTIONS" and err.value.op == 1
    assert "op 1 (FXP_CONV_2D)" in err.value.message

    def wrong_clamp(model):
        op = model.subgraphs[0].operators[1]
        opts = decode_options("FXP_CONV_2D", bytes(op.customOptions), "test")
        opts["act_max"] -= 1
        op.customOptions = list(encode_options("FXP_CONV_2D", opts))

    with pytest.raises(RunnerError) as err:
        HostRunner(_rewrite(data, wrong_clamp))
    assert "act_min/act_max" in err.value.message

    def weight_shape(model):
        sub = model.subgraphs[0]
        t = sub.tensors[sub.operators[1].inputs[1]]
        t.shape = [int(t.shape[0]), int(t.shape[1]) + 1]

    with pytest.raises(RunnerError) as err:
        HostRunner(_rewrite(data, weight_shape))
    assert err.value.status_name == "FXPQ_RUNNER_ERR_BAD_TENSOR" and "weights" in err.value.message

    def out_of_order(model):
        ops = model.subgraphs[0].operators
        ops[1], ops[2] = ops[2], ops[1]

    with pytest.raises(RunnerError) as err:
        HostRunner(_rewrite(data, out_of_order))
    assert "execution order" in err.value.message


def test_format_version_1_files_are_refused_by_name(cnn_file):
    """A file of format version 1 (9..16-bit weights as unpacked INT16) is refused, not misread."""
    import json
    import zlib

    from fxpq_keras.flatbuffer import FlatbufferFormatError, read_bytes

    data = cnn_file[0].read_bytes()

    def version_1(model):
        sub = model.subgraphs[0]
        op = sub.operators[1]
        t = sub.tensors[op.inputs[1]]
        opts = decode_options("FXP_CONV_2D", bytes(op.customOptions), "test")
        opts["weight_bits"] = 12
        op.customOptions = list(encode_options("FXP_CONV_2D", opts))
        k = int(np.prod(cnn_file[1].nodes[1].weights.shape[1:]))
        t.type = S.TensorType.INT16
        t.shape = [int(t.shape[0]), k]
        model.buffers[t.buffer].data = np.zeros(int(t.shape[0]) * k, "<i2").view(np.uint8)
        # a version-1 file had plain-JSON metadata entries
        blob = json.loads(zlib.decompress(bytes(model.buffers[model.metadata[0].buffer].data)))
        blob["format_version"] = 1
        model.metadata[0].name = b"fxpq_graph"
        model.buffers[model.metadata[0].buffer].data = np.frombuffer(json.dumps(blob).encode(), np.uint8)

    old = _rewrite(data, version_1)
    with pytest.raises(RunnerError) as err:
        HostRunner(old)
    assert err.value.status_name == "FXPQ_RUNNER_ERR_BAD_TENSOR"
    assert "format version 1" in err.value.message and "re-export" in err.value.message
    with pytest.raises(FlatbufferFormatError, match="format version 1 .*re-export"):
        read_bytes(old)


def test_format_version_2_metadata_is_still_read(cnn_file):
    """Version 2 differed only in its plain-JSON metadata entries: such files read the same."""
    import json
    import zlib

    from fxpq_keras.flatbuffer import read_bytes

    data = cnn_file[0].read_bytes()

    def version_2(model):
        blob = json.loads(zlib.decompress(bytes(model.buffers[model.metadata[0].buffer].data)))
        policy, version = blob.pop("policy"), blob.pop("version")
        blob["format_version"] = 2
        entries = []
        for name, text in (("fxpq_version", version), ("fxpq_policy", json.dumps(policy)),
                           ("fxpq_graph", json.dumps(blob))):
            meta = S.MetadataT()
            meta.name = name.encode()
            buf = S.BufferT()
            buf.data = np.frombuffer(text.encode(), np.uint8)
            model.buffers.append(buf)
            meta.buffer = len(model.buffers) - 1
            entries.append(meta)
        model.metadata = entries

    graph, info = read_bytes(data)
    old_graph, old_info = read_bytes(_rewrite(data, version_2))
    assert old_info.version == info.version and old_info.policy == info.policy
    assert old_info.op_names == info.op_names
    x = cnn_file[2][:4]
    np.testing.assert_array_equal(old_graph.run(x, raw=True)[0], graph.run(x, raw=True)[0])


def _custom_ops(data: bytes):
    """(custom op name, options blob) of every custom operator of a .tflite file, in order."""
    model = S.Model.GetRootAsModel(data, 0)
    sub = model.Subgraphs(0)
    for i in range(sub.OperatorsLength()):
        op = sub.Operators(i)
        code = model.OperatorCodes(op.OpcodeIndex()).CustomCode()
        if code is not None:
            yield code.decode(), op.CustomOptionsAsNumpy().tobytes()


def test_options_reader_matches_python_on_every_op(cnn_file):
    seen = set()
    for name, blob in _custom_ops(cnn_file[0].read_bytes()):
        status, values = parse_options(name, blob)
        assert status == 0
        assert values == decode_options(name, blob, name)
        seen.add(name)
    assert seen == set(CUSTOM_OPS) - {"FXP_AVERAGE_POOL_2D"} or seen == set(CUSTOM_OPS)


def test_options_reader_rejects_bad_blobs():
    good = {"act_max": 127, "act_min": -128, "out_frac": 4}
    assert parse_options("FXP_QUANTIZE", encode_options("FXP_QUANTIZE", good)) == (0, good)

    def blob(items, float_key=None):
        fb = flexbuffers.Builder()
        with fb.Map():
            for k, v in sorted(items.items()):
                if k == float_key:
                    fb.Float(k, float(v))
                else:
                    fb.Int(k, v)
        return bytes(fb.Finish())

    bad_options = -104
    assert parse_options("FXP_QUANTIZE", blob({**good, "extra": 1}))[0] == bad_options
    assert parse_options("FXP_QUANTIZE", blob({"act_max": 1, "act_min": 0}))[0] == bad_options
    assert parse_options("FXP_QUANTIZE", blob(good, float_key="out_frac"))[0] == bad_options
    assert parse_options("FXP_QUANTIZE", blob({**good, "out_frac": 40}))[0] == bad_options
    assert parse_options("FXP_QUANTIZE", blob({**good, "act_min": 200}))[0] == bad_options
    big = blob({**good, "act_max": 1 << 40})  # 8-byte values: width-agnostic reading, then range
    assert parse_options("FXP_QUANTIZE", big)[0] == bad_options
    wide = blob({**good, "act_max": 30000, "act_min": -30000})
    assert parse_options("FXP_QUANTIZE", wide) == (0, {"act_max": 30000, "act_min": -30000, "out_frac": 4})
    fb = flexbuffers.Builder()
    fb.Int(3)
    assert parse_options("FXP_QUANTIZE", bytes(fb.Finish()))[0] == bad_options  # not a map
    assert parse_options("FXP_QUANTIZE", b"")[0] == -102
    good_blob = encode_options("FXP_QUANTIZE", good)
    for n in range(len(good_blob)):
        assert parse_options("FXP_QUANTIZE", good_blob[:n])[0] != 0


@pytest.mark.parametrize("seed", range(3))
def test_format_version_3_files_give_the_version_4_outputs(tmp_path, seed):
    """A version-3 file (no in_bits) and its version-4 export: the Python reader and the runner read
    both, with the same outputs (the runner runs the tensors' formats either way)."""
    from format_versions import as_format_version_3
    from test_export_graphs import narrow_u16_graph

    from fxpq_keras.flatbuffer import read_bytes

    graph, x = narrow_u16_graph(seed)
    data = export_tflite(graph)
    old = as_format_version_3(data)
    want = graph.run(x, raw=True)[0]
    for blob in (data, old):
        np.testing.assert_array_equal(read_bytes(blob)[0].run(x, raw=True)[0], want)
        np.testing.assert_array_equal(HostRunner(blob).run(x)[0], want)


def test_in_bits_must_be_the_input_tensors_width(cnn_file):
    """in_bits names the input format the TFLM glue runs on: both readers refuse one that differs
    from the input tensor's, naming the key."""
    from fxpq_keras.flatbuffer import FlatbufferFormatError, read_bytes

    data = cnn_file[0].read_bytes()

    def wrong_in_bits(model):
        op = model.subgraphs[0].operators[1]
        opts = decode_options("FXP_CONV_2D", bytes(op.customOptions), "test")
        opts["in_bits"] = opts["in_bits"] - 1 if opts["in_bits"] not in (2, 9) else opts["in_bits"] + 1
        op.customOptions = list(encode_options("FXP_CONV_2D", opts))

    bad = _rewrite(data, wrong_in_bits)
    with pytest.raises(RunnerError) as err:
        HostRunner(bad)
    assert err.value.status_name == "FXPQ_RUNNER_ERR_BAD_OPTIONS" and "in_bits" in err.value.message
    with pytest.raises(FlatbufferFormatError, match="in_bits .* != input tensor"):
        read_bytes(bad)


def test_options_reader_takes_version_3_blobs_and_checks_in_bits(cnn_file):
    """The C options reader: a weighted op's keys without in_bits (version 3) read as in_bits 0 (absent),
    the same values as the Python reader's; in_bits outside 2..16 or a map missing another key is refused."""
    from fxpq_keras.flatbuffer.options import OPTION_RANGES

    seen = set()
    for name, raw in _custom_ops(cnn_file[0].read_bytes()):
        if name not in ("FXP_CONV_2D", "FXP_DEPTHWISE_CONV_2D", "FXP_FULLY_CONNECTED"):
            continue
        seen.add(name)
        opts = decode_options(name, raw, name)

        def blob(values):
            fb = flexbuffers.Builder()
            with fb.Map():
                for k in sorted(values):
                    fb.Int(k, values[k])
            return bytes(fb.Finish())

        old = {k: v for k, v in opts.items() if k != "in_bits"}
        status, values = parse_options(name, blob(old))
        assert status == 0 and values == old == decode_options(name, blob(old), name)
        assert OPTION_RANGES["in_bits"] == (2, 16)
        for bad in (1, 17):
            assert parse_options(name, blob({**opts, "in_bits": bad}))[0] == -104  # FXPQ_RUNNER_ERR_BAD_OPTIONS
        no_frac = {k: v for k, v in opts.items() if k != "in_frac"}
        assert parse_options(name, blob(no_frac))[0] == -104
    assert seen == {"FXP_CONV_2D", "FXP_DEPTHWISE_CONV_2D", "FXP_FULLY_CONNECTED"}
