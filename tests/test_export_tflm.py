"""int8-builtin: real TFLM (and LiteRT's reference kernels) == our reference interpreter, bit for bit.

Every random seed is exported, none is picked: a seed either exports and then matches TFLM on
hundreds of inputs, or raises an ExportError whose message names one of the documented reasons
(docs/format.md section 7). The files end in a stock SOFTMAX and include weighted layers whose
output frac is above the accumulator frac (TFLM's left-shift requantization path).
"""

from __future__ import annotations

import dataclasses
import re

import numpy as np
import pytest
from test_export_graphs import GraphBuilder, cnn_graph

from fxpq_keras.flatbuffer import ExportError, Interpreter, export_tflite, read_tflite
from fxpq_keras.flatbuffer.inspect import format_report, inspect_tflite
from fxpq_keras.formats import Format
from fxpq_keras.integer_graph import IntegerGraph, Node, TensorSpec

pytest.importorskip("tflite_micro")

SEEDS = range(16)
N_INPUTS = 300
# what the int8-builtin target may legitimately refuse (format.md section 7): nothing else
KNOWN_REASONS = re.compile(r"overflow int32|does not fit int32|stock ADD needs|stock SOFTMAX needs|"
                           r"do not fit stock int8")


def _export_or_reason(graph: IntegerGraph, path, **kw) -> str | None:
    """Export; on ExportError return the message after checking it names a documented reason."""
    try:
        export_tflite(graph, path, target="int8-builtin", **kw)
    except ExportError as exc:
        assert KNOWN_REASONS.search(str(exc)), f"undocumented refusal: {exc}"
        return str(exc)
    return None


def _left_shift_layers(path) -> int:
    """Weighted layers of a file whose output frac is above the accumulator frac (some channel)."""
    graph, _ = read_tflite(path)
    n = 0
    for node in graph.nodes:
        if node.weights is not None:
            facc = graph.tensors[node.inputs[0]].fmt.frac + np.asarray(node.weight_frac)
            n += int((graph.tensors[node.output].fmt.frac > facc).any())
    return n


def _tflm_equals_reference(path, x) -> np.ndarray:
    ref = Interpreter(path).predict(x, raw=True)
    tflm = Interpreter(path, engine="tflm").predict(x, raw=True)
    np.testing.assert_array_equal(tflm, ref)
    return ref


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """Every seed's int8-builtin export: {seed: (path, graph, x)}; refusals are checked here."""
    out, refused = {}, {}
    for seed in SEEDS:
        graph, x = cnn_graph(seed, int8=True, n=N_INPUTS)
        path = tmp_path_factory.mktemp("int8") / f"m{seed}.tflite"
        reason = _export_or_reason(graph, path)
        if reason is None:
            out[seed] = (path, graph, x)
        else:
            refused[seed] = reason
    assert len(out) >= len(SEEDS) * 3 // 4, f"too many refusals: {refused}"
    return out


def test_tflm_equals_reference_on_every_seed(exported):
    left_shift_layers = u8_tensors = 0
    for path, _, x in exported.values():
        ref = _tflm_equals_reference(path, x)
        u8_tensors += len(Interpreter(path).info.zero_points) - 1  # besides the SOFTMAX output
        assert ref.shape == (N_INPUTS, 10)
        assert ref.min() >= 0 and ref.max() <= 255  # probabilities in 1/256 (zero point -128 removed)
        left_shift_layers += _left_shift_layers(path)
    # the suite really covers the output-frac > accumulator-frac path that used to be refused, and
    # unsigned 8-bit activations stored as int8 with zero point -128 (as TFLite does)
    assert left_shift_layers >= 5 and u8_tensors >= 5


def test_file_ends_in_stock_softmax(exported):
    from fxpq_keras.flatbuffer.schema import schema as S

    path, graph, x = next(iter(exported.values()))
    model = S.ModelT.InitFromObj(S.Model.GetRootAs(path.read_bytes(), 0))
    sub = model.subgraphs[0]
    last = sub.operators[-1]
    assert model.operatorCodes[last.opcodeIndex].builtinCode == S.BuiltinOperator.SOFTMAX
    out = sub.tensors[sub.outputs[0]]
    assert out.type == S.TensorType.INT8
    assert list(out.quantization.scale) == [1 / 256] and list(out.quantization.zeroPoint) == [-128]
    interp = Interpreter(path)
    assert not interp.graph.output_softmax  # the file applies softmax; the host must not do it again
    probs = interp.predict(x)
    np.testing.assert_allclose(probs.sum(-1), 1.0, atol=0.06)  # 10 classes, each within 1/256
    report = inspect_tflite(path)
    assert report["layers"][-1]["op"] == "softmax" and "zero point -128" in report["layers"][-1]["output"]


def _softmax_graph(frac: int, depth: int) -> IntegerGraph:
    """int8 logits at `frac` straight into softmax (exported with an integer input)."""
    tensors = {"x": TensorSpec("x", (depth,), None), "q": TensorSpec("q", (depth,), Format(8, frac))}
    return IntegerGraph("x", ["q"], tensors, [Node("quantize", "quantize", ["x"], "q")], output_softmax=True)


def _logit_rows(rng: np.random.Generator, n: int, depth: int) -> np.ndarray:
    rows = [rng.integers(-128, 128, size=(n, depth)),  # wide spread
            rng.integers(-6, 7, size=(n // 2, depth)) + rng.integers(-100, 100, size=(n // 2, 1)),  # close logits
            np.full((1, depth), -128), np.full((1, depth), 127), np.full((1, depth), 5)]
    one_hot = np.full((2, depth), -128)
    one_hot[0, 0], one_hot[1, -1] = 127, -127
    rows.append(one_hot)
    return np.concatenate(rows).astype(np.int8)


@pytest.mark.parametrize("frac", range(-3, 26))
def test_softmax_bit_exact_for_every_logit_frac(tmp_path, frac):
    """TFLM's Prepare-time input_multiplier/input_left_shift/diff_min and its fixed-point exp and
    reciprocal, for every frac the exporter accepts (diff_min cuts rows at small fracs)."""
    depth = 10
    path = tmp_path / "sm.tflite"
    export_tflite(_softmax_graph(frac, depth), path, target="int8-builtin", float_input=False)
    x = _logit_rows(np.random.default_rng(frac + 100), 200, depth)
    ref = _tflm_equals_reference(path, x)
    z = np.ldexp(x.astype(np.float64), -frac)
    p = np.exp(z - z.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    assert np.abs(ref / 256 - p).max() <= 3 / 256


@pytest.mark.parametrize("depth", [1, 3, 100])
def test_softmax_bit_exact_for_other_depths(tmp_path, depth):
    for frac in (0, 4, 9):
        path = tmp_path / f"sm{frac}.tflite"
        export_tflite(_softmax_graph(frac, depth), path, target="int8-builtin", float_input=False)
        _tflm_equals_reference(path, _logit_rows(np.random.default_rng(depth), 60, depth))


@pytest.mark.parametrize("frac", [-4, 26])
def test_softmax_frac_outside_tflm_range_is_refused(frac):
    with pytest.raises(ExportError, match="stock SOFTMAX needs the logits' frac in -3..25"):
        export_tflite(_softmax_graph(frac, 10), target="int8-builtin", float_input=False)


def _raise_output_fracs(graph: IntegerGraph, rng: np.random.Generator, max_k: int,
                        skip_first: bool = False) -> tuple[IntegerGraph, int]:
    """The same graph with weighted layers' output fracs set 1..max_k above their largest
    accumulator frac (TFLM's left-shift path on every channel), and how many were raised.

    A layer reading a raised tensor keeps its format (its accumulator frac is already high and
    chains would leave the frac range), as does a layer a reshape reads; skip_first leaves the
    first weighted layer alone so that the second one (the depthwise conv) gets raised.
    """
    tensors = dict(graph.tensors)
    reshaped = {i for n in graph.nodes if n.op == "reshape" for i in n.inputs}
    raised: set[str] = set()
    first = True
    for node in graph.nodes:
        if node.weights is None:
            continue
        facc = tensors[node.inputs[0]].fmt.frac + int(np.max(node.weight_frac))
        frac = facc + int(rng.integers(1, max_k + 1))
        skip = first and skip_first
        first = False
        if skip or node.inputs[0] in raised or node.output in reshaped or frac > 32:
            continue
        spec = tensors[node.output]
        tensors[node.output] = TensorSpec(spec.name, spec.shape, Format(spec.fmt.bits, frac, spec.fmt.signed))
        raised.add(node.output)
    return dataclasses.replace(graph, tensors=tensors, nodes=list(graph.nodes)), len(raised)


@pytest.mark.parametrize("seed", range(6))
def test_output_frac_above_accumulator_frac_is_bit_exact(tmp_path, seed):
    """Conv, depthwise and per-channel FC with left shifts 2..9: exact or a named overflow."""
    graph, x = cnn_graph(seed, int8=True, n=N_INPUTS)
    graph, n_raised = _raise_output_fracs(graph, np.random.default_rng(seed), 8, skip_first=seed % 2 == 1)
    assert n_raised >= 3  # conv1 or the depthwise conv, then the convs or FCs that do not read it
    path = tmp_path / "raised.tflite"
    reason = _export_or_reason(graph, path)
    if reason is not None:
        assert "overflow int32" in reason
        return
    assert _left_shift_layers(path) >= n_raised
    _tflm_equals_reference(path, x)


def test_per_tensor_fully_connected_with_left_shift(tmp_path):
    """A 1-unit FC has one weight scale: TFLM takes its per-tensor FC path (GetQuantizedConvolution-
    Multipler), which must agree with the per-channel one, left shifts included."""
    rng = np.random.default_rng(5)
    x = rng.normal(0, 1, size=(N_INPUTS, 6, 6, 2)).astype(np.float32)
    for k in range(-2, 9):
        b = GraphBuilder(rng, (6, 6, 2), x, Format(8, 5), max_bits=8, signed_only=True)
        t = b.conv("x0", 4, activation="relu", signed=True)
        f = b.flatten(t)
        d = b.dense(f, 1, bits=8)
        graph = b.finish(d)
        spec = graph.tensors[d]
        graph.tensors[d] = TensorSpec(d, spec.shape, Format(8, spec.fmt.frac + k, True))
        path = tmp_path / f"fc{k}.tflite"
        assert _export_or_reason(graph, path) is None
        _tflm_equals_reference(path, x)


def _one_conv_graph(weights_value: int, out_frac: int) -> IntegerGraph:
    w = np.full((2, 3, 3, 3), weights_value, dtype=np.int64)
    tensors = {"x": TensorSpec("x", (5, 5, 3), None), "q": TensorSpec("q", (5, 5, 3), Format(8, 0)),
               "y": TensorSpec("y", (5, 5, 2), Format(8, out_frac))}
    conv = Node("conv2d", "big_conv", ["q"], "y", {"stride": (1, 1), "padding": "same", "dilation": (1, 1),
                                                   "activation": None}, w, 8, np.zeros(2, dtype=np.int64))
    return IntegerGraph("x", ["y"], tensors, [Node("quantize", "quantize", ["x"], "q"), conv])


def test_left_shift_that_could_overflow_int32_is_refused_with_the_layer_name(tmp_path):
    # worst case |acc| = 27 * 127 * 128 ~ 2^18.7; a left shift of 12 fits, 13 does not
    assert _export_or_reason(_one_conv_graph(127, 11), tmp_path / "ok.tflite") is None
    _tflm_equals_reference(tmp_path / "ok.tflite", np.random.default_rng(0).normal(0, 40, (50, 5, 5, 3)))
    with pytest.raises(ExportError, match=r"'big_conv'.*overflow int32"):
        export_tflite(_one_conv_graph(127, 12), target="int8-builtin")


def test_other_stock_limits_are_named():
    """ADD's output multiplier must stay below 1 and QUANTIZE's left shift inside int32 (TFLM's
    Prepare / int32 arithmetic), so these are refused with the reason."""
    s8 = Format(8, 0)
    tensors = {"x": TensorSpec("x", (4,), None), "a": TensorSpec("a", (4,), s8),
               "s": TensorSpec("s", (4,), Format(8, 19)), "r": TensorSpec("r", (4,), Format(8, 24))}
    nodes = [Node("quantize", "quantize", ["x"], "a"), Node("add", "wide_add", ["a", "a"], "s", {"activation": None}),
             Node("requantize", "big_requant", ["a"], "r", {"activation": None})]
    with pytest.raises(ExportError) as err:
        export_tflite(IntegerGraph("x", ["s", "r"], tensors, nodes), target="int8-builtin")
    msg = str(err.value)
    assert "'wide_add'" in msg and "stock ADD needs" in msg
    assert "'big_requant'" in msg and "overflow int32" in msg


def test_litert_reference_kernels_equal_reference_except_fc(exported):
    """Op by op on LiteRT's own inputs: every op bit-exact (SOFTMAX included) except
    FULLY_CONNECTED, where LiteRT's int8 kernel rounds once and TFLM's twice (<= 1 LSB, and
    never with a left shift, which is exact in both; docs/format.md section 7)."""
    from fxpq_keras.flatbuffer.stock import _add, run_stock

    litert = pytest.importorskip("ai_edge_litert.interpreter")
    for path, _, x in list(exported.values())[:4]:
        ref = Interpreter(path)
        zero_points = ref.info.zero_points
        li = litert.Interpreter(model_path=str(path), experimental_op_resolver_type=litert.OpResolverType.BUILTIN_REF,
                                experimental_preserve_all_tensors=True)
        inp = li.get_input_details()[0]
        li.resize_tensor_input(inp["index"], list(x.shape))
        li.allocate_tensors()
        li.set_tensor(inp["index"], x)
        li.invoke()
        index = {d["name"]: d["index"] for d in li.get_tensor_details()}
        g = ref.graph
        for node in g.nodes:
            ins = [li.get_tensor(index[i]) for i in node.inputs]
            if node.op == "add":  # run_stock takes one input: call the add model directly (stored values)
                mine = _add(g, node, ins[0].astype(np.int64), ins[1].astype(np.int64)) \
                    - zero_points.get(node.output, 0)
            elif node.op == "concat":  # inputs in the output's scale and zero point: a copy
                mine = np.concatenate([i.astype(np.int64) for i in ins], axis=-1) - zero_points.get(node.output, 0)
            else:  # run_stock takes and returns format integers (stored - zero point)
                one = dataclasses.replace(g, nodes=[node], outputs=[node.output], input=node.inputs[0])
                feed = ins[0] if ins[0].dtype == np.float32 else ins[0].astype(np.int64) - zero_points.get(
                    node.inputs[0], 0)
                mine = run_stock(one, feed)[0]
            theirs = li.get_tensor(index[node.output]).astype(np.int64) - zero_points.get(node.output, 0)
            mine = mine.reshape(theirs.shape)
            if node.op == "fully_connected":
                assert np.abs(mine - theirs).max() <= 1, node.name
            else:
                np.testing.assert_array_equal(theirs, mine, err_msg=f"{path.name} {node.name}")


def test_builtin_logits_are_close_to_fxp_rounding(exported):
    """The stock logits (input of SOFTMAX) follow the fxp graph's logits: only stock rounding and
    int8 saturation separate them."""
    for path, graph, x in list(exported.values())[:4]:
        g = Interpreter(path).graph
        logits = g.nodes[-1].inputs[0]
        stock = dataclasses.replace(g, outputs=[logits]).run(x, raw=True)[0].astype(float)
        ours = graph.run(x, raw=True)[0].astype(float)
        # stock rounding + int8 saturation drift from our rule through low-bit layers
        assert np.corrcoef(stock.ravel(), ours.ravel())[0, 1] > 0.5


def test_inspect_reshape_rows_share_memory(exported):
    path = next(iter(exported.values()))[0]
    report = inspect_tflite(path)
    reshapes = [r for r in report["layers"] if r["op"] == "reshape"]
    assert reshapes and all("activation_bits" not in r for r in reshapes)
    graph, _ = read_tflite(path)
    rows = sum(r.get("activation_bits", 0) for r in report["layers"])
    inp = graph.tensors[graph.input]
    in_bits = 0 if inp.fmt is None else int(np.prod(inp.shape)) * inp.fmt.bits
    assert report["totals"]["activation_bits"] == rows + in_bits
    table = format_report(report)
    for r in reshapes:
        line = next(line for line in table.splitlines() if line.startswith(r["name"] + " "))
        assert line.rstrip().endswith("-") and "0.00" not in line.split()[-1]


def test_int8_builtin_names_layers_that_do_not_fit():
    graph, _ = cnn_graph(0)  # up to 16 bits, unsigned 8-bit, standalone ReLU
    with pytest.raises(ExportError) as err:
        export_tflite(graph, target="int8-builtin")
    msg = str(err.value)
    assert "int8-builtin" in msg and "requantize" in msg


def test_fxp_target_keeps_softmax_on_the_host(tmp_path):
    graph, x = cnn_graph(1, int8=True, n=20)
    p = tmp_path / "fxp.tflite"
    export_tflite(graph, p)
    interp = Interpreter(p)
    assert interp.graph.output_softmax and interp.info.op_types[-1] != "SOFTMAX"
    np.testing.assert_array_equal(interp.predict(x, raw=True), graph.run(x, raw=True)[0])


def test_tflm_engine_refuses_custom_ops(tmp_path):
    graph, _ = cnn_graph(0)
    p = tmp_path / "fxp.tflite"
    export_tflite(graph, p)
    with pytest.raises(ValueError, match="stock ops only"):
        Interpreter(p, engine="tflm")
