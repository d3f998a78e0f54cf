"""Bad input of every kind ends in one clear error and nothing half-written (issue 12).

Integer inputs out of range, files the readers must refuse alike, CLI exit statuses.
"""

from __future__ import annotations

import numpy as np
import pytest
from test_export_graphs import cnn_graph

from fxpq_keras.flatbuffer import Interpreter, export_tflite
from fxpq_keras.integer_graph.ops import quantize_input
from fxpq_keras.kernels.runner import HostRunner


@pytest.fixture(scope="module")
def int_input_file(tmp_path_factory):
    graph, x = cnn_graph(1, max_bits=8)
    path = tmp_path_factory.mktemp("bad_input") / "int_in.tflite"
    export_tflite(graph, path, float_input=False)
    fmt = graph.tensors[graph.nodes[0].output].fmt
    return path, graph, quantize_input(x[:2], fmt), fmt


@pytest.mark.parametrize("engine", ["reference", "host"])
@pytest.mark.parametrize("bad", ["huge", "below", "fraction", "nan"])
def test_integer_input_outside_its_format_is_refused(int_input_file, engine, bad):
    """x = 2^40 used to give logits on the reference and zeros (int16 wrap) on the C engines."""
    path, graph, q, fmt = int_input_file
    x = q.astype(np.float64)
    x[1, 0, 0, 0] = {"huge": 2.0**40, "below": fmt.lo - 1, "fraction": 0.5, "nan": np.nan}[bad]
    with pytest.raises(ValueError, match=r"input .*(outside|not an integer).*" + str(fmt).replace(".", r"\.")):
        Interpreter(path, engine=engine).predict(x)
    Interpreter(path, engine=engine).predict(q)  # the in-range integers run


def test_integer_input_checked_by_graph_and_runner(int_input_file):
    path, graph, q, fmt = int_input_file
    x = q.copy()
    x[0, 1, 1, 0] = 2**40
    with pytest.raises(ValueError, match="outside"):
        Interpreter(path).graph.run(x)  # the graph read from an integer-input file
    with pytest.raises(ValueError, match="outside"):
        HostRunner(path.read_bytes()).invoke(x[0])


# -------------------------------------------------------------- adversarial files ----------
# One set of validity rules for both readers (issue 12 item 5): every file below is refused by the
# Python reader (FlatbufferFormatError naming the problem) AND by the C runner (an error status).

def _model(graph=None, float_input: bool = True):
    from fxpq_keras.flatbuffer.schema import schema as S

    graph = graph if graph is not None else cnn_graph(0)[0]
    return S.ModelT.InitFromObj(S.Model.GetRootAs(export_tflite(graph, float_input=float_input), 0))


def _pack(model) -> bytes:
    import flatbuffers

    b = flatbuffers.Builder(0)
    b.Finish(model.Pack(b), file_identifier=b"TFL3")
    return bytes(b.Output())


def _op(model, code: str):
    """(operator, its index) of the first operator with custom code `code`."""
    codes = model.operatorCodes
    for i, op in enumerate(model.subgraphs[0].operators):
        if (codes[op.opcodeIndex].customCode or b"").decode() == code:
            return op, i
    raise LookupError(code)


def _set_option(model, code: str, key: str, value: int) -> None:
    from fxpq_keras.flatbuffer.options import decode_options, encode_options

    op, _ = _op(model, code)
    opts = decode_options(code, bytes(op.customOptions), "test")
    opts[key] = value
    op.customOptions = list(encode_options(code, opts))


def adversarial_files():
    """(label, bytes, the words the Python error must contain): generated, not stored as blobs."""
    def edit(label, fn, words, graph=None, float_input=True):
        model = _model(graph, float_input)
        fn(model)
        return label, _pack(model), words

    def weight_frac(m, value=100):
        op, _ = _op(m, "FXP_CONV_2D")
        t = m.subgraphs[0].tensors[op.inputs[2]]
        m.buffers[t.buffer].data = np.full(len(m.buffers[t.buffer].data), value, np.uint8).astype(np.uint8)

    def tensor_of(m, code, which="out"):
        op, _ = _op(m, code)
        return m.subgraphs[0].tensors[op.outputs[0] if which == "out" else op.inputs[0]]

    def set_attr(obj, name, value):
        setattr(obj, name, value)

    def unbiased_conv_frac(m, value):
        """weight frac `value` on the conv without a bias (no bias-shift rule can refuse it instead)."""
        codes = m.operatorCodes
        for op in m.subgraphs[0].operators:
            if codes[op.opcodeIndex].customCode == b"FXP_CONV_2D" and op.inputs[3] == -1:
                t = m.subgraphs[0].tensors[op.inputs[2]]
                m.buffers[t.buffer].data = np.full(len(m.buffers[t.buffer].data), value & 0xFF, np.uint8)
                return
        raise LookupError("no conv without bias")

    def bias_shift_31(m):
        """frac_acc - bias_frac = 31 on every channel of the first dense layer (the limit is 30)."""
        from fxpq_keras.flatbuffer.options import decode_options

        op, _ = _op(m, "FXP_FULLY_CONNECTED")
        t = m.subgraphs[0].tensors[op.inputs[2]]
        m.buffers[t.buffer].data = np.zeros(len(m.buffers[t.buffer].data), np.uint8)
        in_frac = decode_options("FXP_FULLY_CONNECTED", bytes(op.customOptions), "test")["in_frac"]
        _set_option(m, "FXP_FULLY_CONNECTED", "bias_frac", in_frac - 31)

    sub = lambda m: m.subgraphs[0]  # noqa: E731
    cases = [
        edit("weight-frac-33", lambda m: unbiased_conv_frac(m, 33), "weight frac 33 outside"),
        edit("weight-frac-minus-33", lambda m: unbiased_conv_frac(m, -33), "weight frac -33 outside"),
        edit("bias-shift-31", bias_shift_31, "0 <= frac_acc - frac_b <= 30"),
        edit("weight-frac-100", weight_frac, "weight frac"),
        edit("weight-frac-minus-40", lambda m: weight_frac(m, 216), "weight frac"),
        edit("acc-bits-16", lambda m: _set_option(m, "FXP_CONV_2D", "acc_bits", 16), "acc_bits"),
        edit("stride-70000", lambda m: _set_option(m, "FXP_MAX_POOL_2D", "stride_h", 70000), "stride_h"),
        edit("bias-bits-1", lambda m: _set_option(m, "FXP_FULLY_CONNECTED", "bias_bits", 1), "bias_bits"),
        edit("bias-bits-0-with-bias", lambda m: _set_option(m, "FXP_FULLY_CONNECTED", "bias_bits", 0), "bias"),
        edit("activation-2", lambda m: _set_option(m, "FXP_ADD", "activation", 2), "activation"),
        edit("in-bits-17", lambda m: _set_option(m, "FXP_DEPTHWISE_CONV_2D", "in_bits", 17), "in_bits"),
        edit("in-bits-not-the-tensors", lambda m: _set_option(m, "FXP_FULLY_CONNECTED", "in_bits", 2), "in_bits"),
        edit("options-format-1", lambda m: set_attr(_op(m, "FXP_CONV_2D")[0], "customOptionsFormat", 1),
             "custom_options_format"),
        edit("output-is-input", lambda m: set_attr(sub(m), "outputs", list(sub(m).inputs)), "not written by any op"),
        edit("dimension-2^31-1", lambda m: set_attr(tensor_of(m, "FXP_CONV_2D"), "shape", [1, 2**31 - 1, 4, 4]),
             "dimension"),
        edit("weights-shape-overflow", lambda m: set_attr(
            sub(m).tensors[_op(m, "FXP_CONV_2D")[0].inputs[1]], "shape", [2**30 - 1] * 3), "elements"),
        edit("batch-2", lambda m: set_attr(tensor_of(m, "FXP_ADD"), "shape",
                                           [2] + list(tensor_of(m, "FXP_ADD").shape[1:])), "batch"),
        edit("no-min-max", lambda m: set_attr(tensor_of(m, "FXP_ADD").quantization, "min", None), "min/max"),
        edit("constant-activation", lambda m: set_attr(tensor_of(m, "FXP_ADD"), "buffer",
                                                       _op(m, "FXP_CONV_2D")[0].inputs[1] and
                                                       sub(m).tensors[_op(m, "FXP_CONV_2D")[0].inputs[1]].buffer),
             "constant"),
    ]
    return cases


@pytest.mark.parametrize("case", adversarial_files(), ids=lambda c: c[0])
def test_both_readers_refuse_the_same_adversarial_files(case):
    from fxpq_keras.flatbuffer import FlatbufferFormatError, read_bytes
    from fxpq_keras.kernels.runner import RunnerError

    label, blob, words = case
    with pytest.raises(RunnerError) as c_error:
        HostRunner(blob)
    if label == "dimension-2^31-1":  # issue 12 item 10: was "tensor dimension below 1"
        assert "tensor dimension outside 1..2^30-1" in str(c_error.value)
    with pytest.raises(FlatbufferFormatError, match=words):
        read_bytes(blob)


def test_option_ranges_are_the_c_readers():
    """One table of option ranges: Python's OPTION_RANGES == the K_* macros of fxpq_options.c."""
    import re
    from pathlib import Path

    from fxpq_keras.flatbuffer.options import OPTION_RANGES

    src = (Path(__file__).resolve().parents[1] / "tflm_kernels/src/options/fxpq_options.c").read_text()
    consts = {m[0]: int(m[1]) for m in re.findall(r"#define (FXQ_\w+) \(?(-?\d+)\)?", src)}
    table = {key: (int(consts.get(lo, lo)), int(consts.get(hi, hi)))
             for key, lo, hi in re.findall(r'#define K_\w+ \{"(\w+)", FXQ_FIELD\(\w+\), ([\w-]+), ([\w-]+)\}', src)}
    assert table == OPTION_RANGES


@pytest.mark.parametrize("kind", ["fxp", "int8-builtin", "hybrid"])
def test_random_corruptions_of_every_kind(kind):
    """Byte flips of valid files of every kind (issue 24): the Python reader raises nothing but
    FlatbufferFormatError, a file it accepts runs in the numpy reference, and every fxp file the C
    runner refuses other than structurally (FXPQ_RUNNER_ERR_MALFORMED) Python refuses too. The
    long run (`scripts/fuzz.sh --long`, 10,000 flips per kind) prints the full accept/refuse table;
    docs/format.md section 11 has it and the disagreements still left."""
    from fxpq_keras.kernels.differential import Tally, flips, judge, sample_files

    rng = np.random.default_rng(12)
    tally = Tally(kind)
    for data in sample_files(0)[kind]:
        for blob in flips(data, 150, rng):
            judge(blob, kind, tally, rng)
    assert tally.flips == 450
    assert not tally.counts["python-crash"] and not tally.counts["run-crash"], tally.examples
    # the hybrid sample is small (1.3 KB), so more of its flips land on structure
    assert tally.counts["both-accept"] > (20 if kind == "hybrid" else 50), tally.counts
    assert tally.counts["both-refuse"] > 20, tally.counts
    if kind != "int8-builtin":
        assert not tally.counts["c-refuses-by-rule"], tally.examples


# -------------------------------------------------------------- calibration data -----------

def _tiny_classifier():
    from fxpq_keras._tf import keras

    keras.utils.set_random_seed(3)
    i = keras.Input((4, 4, 1))
    x = keras.layers.Conv2D(2, 3, activation="relu", name="c")(i)
    x = keras.layers.Flatten(name="f")(x)
    return keras.Model(i, keras.layers.Dense(3, name="d")(x))


def _search(samples: int = 32):
    from fxpq_keras.search import FxPQNet

    return FxPQNet(0.05, samples=samples, min_bits=8, max_bits=8, seed=1, verbose=0)


def test_nan_row_is_reported_in_the_callers_numbering():
    """Issue 12 item 9: an inf at row 5 was reported at its place in the shuffled subset."""
    import fxpq_keras as fx

    x = np.random.default_rng(0).uniform(0, 1, (100, 4, 4, 1)).astype(np.float32)
    x[5, 1, 2, 0] = np.inf
    with pytest.raises(fx.CalibrationDataError, match=r"first at sample 5\b"):
        _search(samples=40).quantize(_tiny_classifier(), x)


def test_complex_calibration_data_is_refused():
    import fxpq_keras as fx

    x = np.random.default_rng(0).uniform(0, 1, (8, 4, 4, 1)) * (1 + 1j)
    for run in (lambda: fx.Calibration(_tiny_classifier(), x), lambda: _search().quantize(_tiny_classifier(), x)):
        with pytest.raises(fx.CalibrationDataError, match="complex"):
            run()


def test_degenerate_input_range_warns():
    """1e30 gives input frac -32 and a network that saturates everywhere: say so."""
    import fxpq_keras as fx

    x = np.random.default_rng(0).uniform(0, 1e30, (8, 4, 4, 1)).astype(np.float32)
    with pytest.warns(fx.CalibrationRangeWarning, match=r"input \|x\| up to 9.97e\+29 .*saturate"):
        fx.Calibration(_tiny_classifier(), x)
    tiny = np.random.default_rng(0).uniform(0, 1e-12, (8, 4, 4, 1)).astype(np.float32)
    with pytest.warns(fx.CalibrationRangeWarning, match=r"input \|x\| only up to .*round to 0"):
        fx.Calibration(_tiny_classifier(), tiny)


def test_labels_of_the_wrong_length_are_a_clear_error():
    """Issue 12 item 7: was an IndexError inside the search (exit 1 from the CLI)."""
    x = np.random.default_rng(0).uniform(0, 1, (50, 4, 4, 1)).astype(np.float32)
    with pytest.raises(ValueError, match="49 labels for 50 calibration samples"):
        _search().quantize(_tiny_classifier(), x, labels=np.zeros(49, np.int64))


# -------------------------------------------------------------- CLI: one line, exit 2 ------

def _cli(capsys, *argv: str) -> tuple[int, list[str]]:
    from fxpq_keras.cli import main

    capsys.readouterr()
    status = main(list(argv))
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    return status, err


@pytest.fixture(scope="module")
def many_ops_file(tmp_path_factory):
    """More operators than the C runner's limit (2048): valid for the reference, refused by C."""
    from test_export_graphs import GraphBuilder, calib

    from fxpq_keras.formats import Format

    rng = np.random.default_rng(0)
    x = calib(rng, 2, (2, 2, 1))
    b = GraphBuilder(rng, (2, 2, 1), x, Format(8, 4))
    t = "x0"
    for _ in range(2050):
        t = b.requantize(t)
    path = tmp_path_factory.mktemp("limits") / "many_ops.tflite"
    export_tflite(b.finish(t), path)
    return path, x


def _nested_metadata_file(path):
    import zlib

    from fxpq_keras.flatbuffer.reader import METADATA_NAME

    model = _model()
    for meta in model.metadata:
        if meta.name.decode() == METADATA_NAME:
            nested = zlib.compress(b"[" * 100000 + b"]" * 100000)
            model.buffers[meta.buffer].data = np.frombuffer(nested, np.uint8)
    path.write_bytes(_pack(model))
    return path


def test_every_bad_input_is_one_line_and_exit_2(tmp_path, capsys, int_input_file, many_ops_file):
    """Issue 12 item 7: each of these was exit 1 (or a traceback) before."""
    good = tmp_path / "good.tflite"
    export_tflite(cnn_graph(0)[0], good)
    x = tmp_path / "x.npy"
    np.save(x, cnn_graph(0)[1][:2])
    y = str(tmp_path / "y.npy")

    garbage = tmp_path / "garbage.npz"
    garbage.write_bytes(b"PK\x03\x04" + bytes(range(256)) * 4)
    nested = _nested_metadata_file(tmp_path / "nested.tflite")
    acc16 = tmp_path / "acc16.tflite"
    acc16.write_bytes(dict((c[0], c[1]) for c in adversarial_files())["acc-bits-16"])
    path, _, q, _ = int_input_file
    big = tmp_path / "big.npy"
    q = q.copy()
    q[0, 0, 0, 0] = 2**40
    np.save(big, q)
    many, many_x = many_ops_file
    many_x_path = tmp_path / "many_x.npy"
    np.save(many_x_path, many_x)

    files = dict((c[0], c[1]) for c in adversarial_files())
    for label in ("weight-frac-100", "options-format-1", "output-is-input", "dimension-2^31-1"):
        (tmp_path / f"{label}.tflite").write_bytes(files[label])
    cases = [
        (("run", str(tmp_path / "weight-frac-100.tflite"), "-i", str(x), "-o", y), "weight frac 100 outside"),
        (("run", str(tmp_path / "options-format-1.tflite"), "-i", str(x), "-o", y), "custom_options_format 1"),
        (("run", str(tmp_path / "output-is-input.tflite"), "-i", str(x), "-o", y), "not written by any op"),
        (("inspect", str(tmp_path / "dimension-2^31-1.tflite")), "dimension 2147483647 outside"),
        (("run", str(good), "-i", str(garbage), "-o", y), "garbage.npz"),
        (("run", str(nested), "-i", str(x), "-o", y), "nested.tflite: fxpq metadata"),
        (("inspect", str(nested)), "nested.tflite: fxpq metadata"),
        (("run", str(acc16), "-i", str(x), "-o", y, "--engine", "host"), "acc_bits"),
        (("run", str(path), "-i", str(big), "-o", y, "--engine", "host"), "outside format"),
        (("run", str(many), "-i", str(many_x_path), "-o", y, "--engine", "host"), "many_ops.tflite: "),
    ]
    for argv, words in cases:
        status, err = _cli(capsys, *argv)
        assert (status, len(err)) == (2, 1), (argv, status, err)
        assert words in err[0], (argv, err)
        assert not (tmp_path / "y.npy").exists()
    # the reference runs the many-op file; only the C runner's limit refuses it
    assert _cli(capsys, "run", str(many), "-i", str(many_x_path), "-o", y)[0] == 0


def test_quantize_with_labels_of_the_wrong_length_exits_2(tmp_path, capsys):
    model = tmp_path / "m.keras"
    _tiny_classifier().save(model)
    data = tmp_path / "d.npz"
    np.savez(data, x=np.random.default_rng(0).uniform(0, 1, (20, 4, 4, 1)).astype(np.float32), y=np.zeros(19))
    status, err = _cli(capsys, "quantize", str(model), "-d", str(data), "-o", str(tmp_path / "out"), "--quiet")
    assert (status, len(err)) == (2, 1), err
    assert "19 labels for 20 calibration samples" in err[0]
    assert not (tmp_path / "out").exists()


def test_written_files_are_whole_or_untouched(tmp_path, monkeypatch):
    """export_tflite, the C array and Policy.to_json replace a file in one rename: an interrupt
    while writing leaves the previous file as it was and no temporary file behind."""
    import os

    from fxpq_keras.flatbuffer import export_c_array

    path = tmp_path / "m.tflite"
    path.write_bytes(b"previous")
    real_replace = os.replace

    def interrupted(src, dst):
        assert os.path.getsize(src) > 1000  # the whole new file was staged beside the target
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "replace", interrupted)
    with pytest.raises(KeyboardInterrupt):
        export_tflite(cnn_graph(0)[0], path)
    assert path.read_bytes() == b"previous" and sorted(p.name for p in tmp_path.iterdir()) == ["m.tflite"]
    monkeypatch.setattr(os, "replace", real_replace)
    data = export_tflite(cnn_graph(0)[0], path)
    assert path.read_bytes() == data
    monkeypatch.setattr(os, "replace", interrupted)
    with pytest.raises(KeyboardInterrupt):
        export_c_array(path, tmp_path / "model_data.h")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.tflite"]


def test_export_with_a_bad_policy_exits_2(tmp_path, capsys):
    """Policies that were coerced (bits 3.7) or half-applied (a renamed layer): one line, exit 2,
    no file written."""
    import json

    import fxpq_keras as fx

    model = tmp_path / "m.keras"
    _tiny_classifier().save(model)
    x = np.random.default_rng(0).uniform(0, 1, (8, 4, 4, 1)).astype(np.float32)
    good = fx.Policy.uniform(_tiny_classifier(), 8, x).to_dict()
    for edit, words in ((lambda d: d["layers"][0]["weights"].update(bits=3.7), "'bits' must be an integer, got 3.7"),
                        (lambda d: d["layers"][-1].update(name="renamed"), "renamed")):
        d = json.loads(json.dumps(good))
        edit(d)
        policy = tmp_path / "policy.json"
        policy.write_text(json.dumps(d))
        out = tmp_path / "m.tflite"
        status, err = _cli(capsys, "export", str(model), str(policy), "-o", str(out))
        assert (status, len(err)) == (2, 1), err
        assert words in err[0], err
        assert not out.exists()


# -------------------------------------------------------------- issue 24: the audit's files ---

def _builtin_model():
    from fxpq_keras.flatbuffer.schema import schema as S

    data = export_tflite(cnn_graph(0, int8=True)[0], target="int8-builtin")
    return S.ModelT.InitFromObj(S.Model.GetRootAs(data, 0))


def _builtin_op(model, name: str):
    from fxpq_keras.flatbuffer.schema import schema as S

    codes = {v: k for k, v in vars(S.BuiltinOperator).items() if not k.startswith("_")}
    for op in model.subgraphs[0].operators:
        code = model.operatorCodes[op.opcodeIndex]
        if codes.get(max(code.builtinCode, code.deprecatedBuiltinCode)) == name:
            return op
    raise LookupError(name)


def _set_metadata(model, edit) -> None:
    import json
    import zlib

    from fxpq_keras.flatbuffer.reader import METADATA_NAME

    for meta in model.metadata:
        if meta.name.decode() == METADATA_NAME:
            buf = model.buffers[meta.buffer]
            blob = json.loads(zlib.decompress(bytes(np.asarray(buf.data, np.uint8))))
            edit(blob)
            buf.data = np.frombuffer(zlib.compress(json.dumps(blob).encode()), np.uint8)


def _max_pool_file(size: int, window: int) -> bytes:
    """One max pool, window x window over size x size, 'same': a few hundred bytes."""
    from fxpq_keras.formats import Format
    from fxpq_keras.integer_graph import IntegerGraph, Node, TensorSpec

    fmt = Format(8, 4)
    tensors = {"x": TensorSpec("x", (size, size, 1), fmt), "y": TensorSpec("y", (size, size, 1), fmt)}
    node = Node("max_pool2d", "pool", ["x"], "y", {"pool": (window, window), "stride": (1, 1), "padding": "same",
                                                  "activation": None})
    return export_tflite(IntegerGraph("x", ["y"], tensors, [node]), float_input=False)


def audit_builtin_files():
    """(label, bytes, words of the one-line error): issue 24 item 1's int8-builtin files."""
    def edit(label, fn, words):
        model = _builtin_model()
        fn(model)
        return label, _pack(model), words

    def paddings(m, value):
        op = _builtin_op(m, "PAD")
        t = m.subgraphs[0].tensors[op.inputs[1]]
        pads = np.frombuffer(bytes(np.asarray(m.buffers[t.buffer].data, np.uint8)), np.int32).copy()
        pads[2] = value
        m.buffers[t.buffer].data = np.frombuffer(pads.tobytes(), np.uint8)

    def pool_option(m, key, value):
        setattr(_builtin_op(m, "MAX_POOL_2D").builtinOptions, key, value)

    def no_options(m):
        op = _builtin_op(m, "ADD")
        op.builtinOptions, op.builtinOptionsType = None, 0

    return [
        edit("pad-disagrees-with-shape", lambda m: paddings(m, 3), "padded by"),
        edit("pad-100000000", lambda m: paddings(m, 100_000_000), "padded by"),
        edit("add-without-options", no_options, "ADD needs its AddOptions"),
        edit("pool-stride-0", lambda m: pool_option(m, "strideH", 0), "stride (0, 1) outside"),
        edit("pool-filter-0", lambda m: pool_option(m, "filterWidth", 0), "filter (2, 0) outside"),
        edit("pool-padding-7", lambda m: pool_option(m, "padding", 7), "padding code 7"),
        edit("conv-activation-9", lambda m: setattr(_builtin_op(m, "CONV_2D").builtinOptions,
                                                    "fusedActivationFunction", 9), "activation code 9"),
        edit("builtin-graph-metadata-list", lambda m: _set_metadata(m, lambda d: d.update(graph_metadata=[1])),
             "'graph_metadata' is a list"),
    ]


def audit_fxp_files():
    """(label, bytes, words): issue 24 items 3, 4 and 6 for fxp files; the C runner refuses them too."""
    def edit(label, fn, words):
        model = _model()
        fn(model)
        return label, _pack(model), words

    sub = lambda m: m.subgraphs[0]  # noqa: E731

    def out_of(m, code):
        op, _ = _op(m, code)
        return sub(m).tensors[op.outputs[0]]

    def second_writer(m):
        a, _ = _op(m, "FXP_REQUANTIZE")
        b, _ = _op(m, "FXP_LEAKY_RELU")
        sub(m).tensors[b.outputs[0]].shape = list(sub(m).tensors[a.outputs[0]].shape)
        b.outputs = list(a.outputs)

    def nine_outputs(m):
        sub(m).outputs = list(sub(m).outputs) * 9

    def reshape_index(m):
        for op in sub(m).operators:
            if m.operatorCodes[op.opcodeIndex].builtinCode == 22:
                op.inputs = [op.inputs[0], 10**6]
                return
        raise LookupError("RESHAPE")

    def gap_rank4(m):
        t = out_of(m, "FXP_GLOBAL_AVERAGE_POOL_2D")
        t.shape = [1, 1, 1, t.shape[-1]]

    return [
        edit("pool-output-channels", lambda m: setattr(out_of(m, "FXP_MAX_POOL_2D"), "shape",
                                                       list(out_of(m, "FXP_MAX_POOL_2D").shape[:3]) + [3]),
             "channels"),
        edit("pool-output-rank", lambda m: setattr(out_of(m, "FXP_MAX_POOL_2D"), "shape",
                                                   list(out_of(m, "FXP_MAX_POOL_2D").shape) + [1]), "output shape"),
        edit("leaky-output-shape", lambda m: setattr(out_of(m, "FXP_LEAKY_RELU"), "shape", [1, 100, 100, 24]),
             "no broadcasting"),
        edit("two-writers", second_writer, "already holds"),
        edit("schema-version-2", lambda m: setattr(m, "version", 2), "schema version 2"),
        edit("sparsity", lambda m: setattr(out_of(m, "FXP_ADD"), "sparsity",
                                           __import__("fxpq_keras.flatbuffer.schema", fromlist=["schema"])
                                           .schema.SparsityParametersT()), "sparse"),
        edit("nine-outputs", nine_outputs, "9 outputs"),
        edit("no-zero-point", lambda m: setattr(out_of(m, "FXP_ADD").quantization, "zeroPoint", None),
             "zero_point"),
        edit("gap-rank-4", gap_rank4, "and output"),
        edit("reshape-shape-index-10^6", reshape_index, "refers to tensor 1000000"),
        edit("op-names-integers", lambda m: _set_metadata(m, lambda d: d.update(op_names=[1] * len(d["op_names"]))),
             "'op_names' holds entries"),
        edit("graph-metadata-list", lambda m: _set_metadata(m, lambda d: d.update(graph_metadata=[])),
             "'graph_metadata' is a list"),
        ("max-pool-512-over-511", _max_pool_file(511, 512), "window spans"),
    ]


@pytest.mark.parametrize("case", audit_builtin_files(), ids=lambda c: c[0])
def test_audit_builtin_files_are_refused_by_both_readers(case):
    """Issue 24 item 1: the C runner reads int8-builtin files with the Python reader's rules (it
    does not run them): a valid one ends in FXPQ_RUNNER_ERR_STOCK_FILE, these in a refusal."""
    import re

    from fxpq_keras.flatbuffer import FlatbufferFormatError, read_bytes
    from fxpq_keras.kernels.runner import RunnerError

    label, blob, words = case
    with pytest.raises(FlatbufferFormatError, match=re.escape(words)):
        read_bytes(blob)
    with pytest.raises(RunnerError) as valid:
        HostRunner(_pack(_builtin_model()))
    assert valid.value.status_name == "FXPQ_RUNNER_ERR_STOCK_FILE"
    if "metadata" in label:
        return  # the runner does not read the metadata
    with pytest.raises(RunnerError) as refused:
        HostRunner(blob)
    assert refused.value.status_name not in ("FXPQ_RUNNER_ERR_STOCK_FILE", "FXPQ_RUNNER_ERR_MALFORMED"), refused.value


@pytest.mark.parametrize("case", audit_fxp_files(), ids=lambda c: c[0])
def test_audit_fxp_files_are_refused_by_both_readers(case):
    """Issue 24 items 3, 4, 6: Python accepted these (or raised TypeError/IndexError, or ran for
    minutes); the C runner refused some of them and accepted a missing zero point and a rank-4
    global-average-pool output. Metadata cases are Python's alone (the runner ignores metadata)."""
    from fxpq_keras.flatbuffer import FlatbufferFormatError, read_bytes
    from fxpq_keras.kernels.runner import RunnerError

    label, blob, words = case
    with pytest.raises(FlatbufferFormatError, match=words):
        read_bytes(blob)
    if "metadata" in label or "op-names" in label:
        HostRunner(blob)  # the runner does not read the metadata
    else:
        with pytest.raises(RunnerError):
            HostRunner(blob)


def test_compute_and_size_limits_have_an_override(monkeypatch):
    """Issue 24 item 4: a 944-byte max pool took the C engine 41.5 s per inference; it is refused by
    default, and the FXPQ_MAX_* variables let a user who means it through (both readers)."""
    from fxpq_keras.flatbuffer import FlatbufferFormatError, read_bytes

    blob = _max_pool_file(64, 64)  # 64*64*64*64 = 2^24 taps: the default window limit exactly
    read_bytes(blob)
    HostRunner(blob)
    for var, value, words in (("FXPQ_MAX_WINDOW", 2**24 - 1, "window spans"),
                              ("FXPQ_MAX_TAPS", 2**24 - 1, "window taps")):
        monkeypatch.setenv(var, str(value))
        with pytest.raises(FlatbufferFormatError, match=var):
            read_bytes(blob)
        with pytest.raises(ValueError, match=words):
            HostRunner(blob)
        monkeypatch.setenv(var, str(value + 1))
        read_bytes(blob)
        HostRunner(blob)
    conv = export_tflite(cnn_graph(0)[0])
    macs = sum(op_cost for op_cost in _macs(read_bytes(conv)[0]))
    monkeypatch.setenv("FXPQ_MAX_WORK", str(macs - 1))
    with pytest.raises(FlatbufferFormatError, match="FXPQ_MAX_WORK"):
        read_bytes(conv)
    with pytest.raises(ValueError, match="more MACs than the limit"):
        HostRunner(conv)
    monkeypatch.setenv("FXPQ_MAX_WORK", str(macs))
    read_bytes(conv)
    HostRunner(conv)
    monkeypatch.setenv("FXPQ_MAX_WORK", "lots")
    with pytest.raises(ValueError, match="FXPQ_MAX_WORK='lots' must be a positive integer"):
        read_bytes(blob)


def _macs(graph):
    from fxpq_keras.flatbuffer.reader import op_cost

    return [op_cost(graph, node)[0] for node in graph.nodes]


def test_metadata_inflation_is_capped(monkeypatch):
    """Issue 24 item 2: a 1 MB file whose metadata inflated to 1 GB was read at 2.87 GB of RSS."""
    import zlib

    from fxpq_keras.flatbuffer import FlatbufferFormatError, read_bytes
    from fxpq_keras.flatbuffer.reader import METADATA_NAME

    model = _model()
    for meta in model.metadata:
        if meta.name.decode() == METADATA_NAME:
            model.buffers[meta.buffer].data = np.frombuffer(zlib.compress(b" " * (2**24 + 1), 9), np.uint8)
    blob = _pack(model)
    assert len(blob) < 100_000
    with pytest.raises(FlatbufferFormatError, match=f"inflates to more than {2**24} bytes"):
        read_bytes(blob)
    monkeypatch.setenv("FXPQ_MAX_METADATA", str(2**25))
    with pytest.raises(FlatbufferFormatError, match="not a JSON object|not valid JSON"):
        read_bytes(blob)  # let through the cap, then refused for what it is


def test_audit_files_exit_2_with_one_line(tmp_path, capsys):
    """Issue 24: every audit file, through `inspect` and `run`: exit 2 and one line (never 1, never a
    traceback). The int8-builtin ones raised AttributeError, ZeroDivisionError, KeyError, ValueError
    or tried to allocate 107 GiB before."""
    x = tmp_path / "x.npy"
    np.save(x, cnn_graph(0)[1][:1])
    y = str(tmp_path / "y.npy")
    for label, blob, words in audit_builtin_files() + audit_fxp_files():
        path = tmp_path / f"{label}.tflite"
        path.write_bytes(blob)
        for argv in (("inspect", str(path)), ("run", str(path), "-i", str(x), "-o", y)):
            status, err = _cli(capsys, *argv)
            assert (status, len(err)) == (2, 1), (label, argv, status, err)
            assert words in err[0] or "input batch" in err[0], (label, err)
        assert not (tmp_path / "y.npy").exists()


def test_labels_must_be_classes_of_the_model():
    """Issue 24 item 11: class 7 on a 3-class model and float labels were accepted (1.7 became 1)."""
    x = np.random.default_rng(0).uniform(0, 1, (20, 4, 4, 1)).astype(np.float32)
    for labels, words in ((np.full(20, 7), "label 7 is not a class of this 3-class model"),
                          (np.full(20, 1.7), "labels must be integer class indices, got float64 values such as 1.7"),
                          (np.full(20, -1), "label -1 is not a class")):
        with pytest.raises(ValueError, match=words):
            _search().quantize(_tiny_classifier(), x, labels=labels)


@pytest.mark.parametrize("engine", ["reference", "host"])
def test_predict_refuses_complex_and_empty_batches(engine):
    """Issue 24 item 12: complex input lost its imaginary part; an empty batch failed with internal
    errors that differed by engine."""
    graph, x = cnn_graph(0)
    interp = Interpreter(_write_tmp(export_tflite(graph)), engine=engine)
    with pytest.raises(ValueError, match="real numbers, got dtype complex"):
        interp.predict(x[:2] * (1 + 1j))
    with pytest.raises(ValueError, match="input batch is empty"):
        interp.predict(x[:0])
    assert interp.predict(x[:2]).shape[0] == 2


def _write_tmp(data: bytes):
    import tempfile
    from pathlib import Path

    path = Path(tempfile.mkdtemp()) / "m.tflite"
    path.write_bytes(data)
    return path


def test_disk_full_names_the_file(tmp_path, monkeypatch):
    """Issue 24 item 8: a full disk said "[Errno 28] No space left on device" without the file."""
    import errno
    import os

    real_fdopen = os.fdopen

    class Full:
        def __init__(self, fh):
            self.fh = fh

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.fh.close()

        def write(self, data):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fdopen", lambda fd, mode: Full(real_fdopen(fd, mode)))
    path = tmp_path / "m.tflite"
    with pytest.raises(OSError, match=f"cannot write {path}: No space left on device"):
        export_tflite(cnn_graph(0)[0], path)
    assert list(tmp_path.iterdir()) == []
