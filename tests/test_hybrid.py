"""Hybrid fxp files: stock TFLite ops (MUL, SUB, LOGISTIC, TANH, HARD_SWISH, RESIZE_NEAREST_NEIGHBOR,
TRANSPOSE, QUANTIZE) inside fxp files, on the same tensors as the FXP_* ops (docs/format.md
section 8). The numpy reference follows TFLM's kernels (tests/test_tflm_ops.py holds each op to
the tflite-micro wheel); here the whole pipeline is checked: policy rules, fake-quant model,
lowering with its seams, writer, reader, the real TFLM interpreter on all-stock files, and the
C runner on the host and on QEMU."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

import fxpq_keras as fx
from fxpq_keras._tf import keras
from fxpq_keras.flatbuffer import read_tflite
from fxpq_keras.flatbuffer.errors import ExportError
from fxpq_keras.formats import Format
from fxpq_keras.integer_graph import IntegerGraph, Node, TensorSpec
from fxpq_keras.stock_layers import hard_swish

L = keras.layers


def _digits(n: int = 600) -> np.ndarray:
    from sklearn.datasets import load_digits

    return (load_digits().images[:n, ..., None] / 16.0).astype(np.float32)


def _se_model(seed: int = 0) -> keras.Model:
    """A squeeze-and-excitation block, tanh, subtract, hard-swish, maximum, upsampling and a
    transpose: the stock kinds of stock_layers.py (ELU aside), with fxp convs between."""
    keras.utils.set_random_seed(seed)
    inp = keras.Input((8, 8, 1))
    h = L.Conv2D(8, 3, padding="same", activation="relu")(inp)
    s = L.GlobalAveragePooling2D()(h)
    s = L.Reshape((1, 1, 8))(s)
    s = L.Conv2D(8, 1)(s)
    s = L.Activation("sigmoid")(s)
    h = L.Multiply()([h, s])
    h = L.Conv2D(8, 3, padding="same")(h)
    h = L.Activation("tanh")(h)
    d = L.Conv2D(8, 1)(h)
    h = L.Subtract()([h, d])
    h = L.Activation(hard_swish)(h)
    h = L.Maximum()([h, L.Conv2D(8, 1)(h)])
    h = L.MaxPooling2D(2)(h)
    h = L.UpSampling2D(2)(h)
    h = L.Permute((2, 1, 3))(h)
    h = L.Conv2D(4, 3, strides=2)(h)
    f = L.Flatten()(h)
    out = L.Dense(10)(f)
    model = keras.Model(inp, out)
    from sklearn.datasets import load_digits

    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(_digits(1000), load_digits().target[:1000], epochs=4, batch_size=64, verbose=0)
    return model


@pytest.fixture(scope="module")
def hybrid(tmp_path_factory):
    """(float model, digits, fake-quant model, graph, path) of the SE model at uniform 8 bits."""
    model, x = _se_model(), _digits()
    policy = fx.Policy.uniform(model, 8, x[:256])
    qmodel = fx.quantize_model(model, policy)
    graph = fx.lower_model(qmodel)
    path = tmp_path_factory.mktemp("hybrid") / "se.tflite"
    fx.export_tflite(graph, path)
    return model, x, qmodel, graph, path


def test_stock_layers_become_builtin_ops_in_the_fxp_file(hybrid):
    _, _, _, _, path = hybrid
    _, info = read_tflite(path)
    assert info.target == "fxp"
    for op in ("MUL", "SUB", "LOGISTIC", "TANH", "HARD_SWISH", "MAXIMUM", "RESIZE_NEAREST_NEIGHBOR", "TRANSPOSE"):
        assert op in info.op_types, op
    assert "FXP_CONV_2D" in info.op_types


def test_policy_rules_around_stock_ops(hybrid):
    """Outputs a stock op reads are signed and at most 8 bits; stock outputs are 8 bits, and
    LOGISTIC/TANH are in the one format TFLM's kernels write."""
    _, _, qmodel, graph, _ = hybrid
    t = graph.tensors
    for node in graph.nodes:
        if node.op in ("mul", "sub", "logistic", "tanh", "hard_swish", "upsample_nearest", "transpose"):
            for i in node.inputs:
                assert t[i].fmt.bits <= 8
            assert t[node.output].fmt.bits == 8
    by_op = {n.op: n for n in graph.nodes}
    assert t[by_op["logistic"].output].fmt == Format(8, 8, False)
    assert t[by_op["tanh"].output].fmt == Format(8, 7, True)
    # the relu conv feeding the MUL is signed though non-negative: no stock kernel reads uint8
    assert t[by_op["mul"].inputs[0]].fmt.signed
    # a 16-bit policy is cut to 8 bits where stock ops are, keeping the range
    model, x = _se_model(), _digits()
    p16 = fx.Policy.uniform(model, 16, x[:256])
    p8 = fx.Policy.uniform(model, 8, x[:256])
    mul = next(name for name, layer in p16.layers.items() if layer["kind"] == "mul")
    assert p16.get(mul, "output").bits == 8
    assert p16.get(mul, "output").frac == p8.get(mul, "output").frac
    assert p16.get(p16.layers[mul]["inputs"][0], "output").bits == 8


def test_file_reference_equals_graph_and_fake_quant(hybrid):
    model, x, qmodel, graph, path = hybrid
    ref = fx.Interpreter(path).predict(x[:200], raw=True)
    np.testing.assert_array_equal(ref, graph.run(x[:200], raw=True)[0])
    fq = qmodel.predict(x[:200], verbose=0)
    out = graph.run(x[:200])[0]
    # stock ops' fake-quant is the float op and an 8-bit output: close, not bit-exact
    assert np.mean(np.argmax(fq, -1) == np.argmax(out, -1)) >= 0.95
    assert np.mean(np.argmax(model.predict(x[:200], verbose=0), -1) == np.argmax(out, -1)) >= 0.9


def test_a_stock_output_read_by_our_kernel_gets_a_quantize_seam(hybrid):
    """LOGISTIC writes u8.8 stored with zero point -128; an FXP op reading it would misread the
    bytes, so lowering puts a stock QUANTIZE to s8.7 in between."""
    keras.utils.set_random_seed(1)
    inp = keras.Input((6, 6, 2))
    h = L.Activation("sigmoid")(L.Conv2D(4, 3)(inp))
    out = L.Conv2D(3, 1)(h)
    model = keras.Model(inp, out)
    x = np.random.default_rng(0).normal(size=(64, 6, 6, 2)).astype(np.float32)
    graph = fx.lower_model(fx.quantize_model(model, fx.Policy.uniform(model, 8, x)))
    ops = [n.op for n in graph.nodes]
    i = ops.index("logistic")
    assert ops[i + 1] == "stock_quantize"
    seam = graph.nodes[i + 1]
    assert graph.tensors[seam.output].fmt == Format(8, 7, True)
    assert graph.nodes[i + 2].inputs == [seam.output]


def _stock_only_graph() -> tuple[IntegerGraph, np.ndarray]:
    """Integer input s8.5 -> LOGISTIC -> MUL(x, logistic) (a swish) -> TANH -> SUB -> HARD_SWISH
    -> TRANSPOSE -> QUANTIZE."""
    t = {"x": TensorSpec("x", (4, 5, 3), Format(8, 5, True)),
         "sig": TensorSpec("sig", (4, 5, 3), Format(8, 8, False)),
         "sw": TensorSpec("sw", (4, 5, 3), Format(8, 5, True)),
         "th": TensorSpec("th", (4, 5, 3), Format(8, 7, True)),
         "d": TensorSpec("d", (4, 5, 3), Format(8, 6, True)),
         "hs": TensorSpec("hs", (4, 5, 3), Format(8, 5, True)),
         "tr": TensorSpec("tr", (5, 4, 3), Format(8, 5, True)),
         "q": TensorSpec("q", (5, 4, 3), Format(8, 4, True))}
    nodes = [Node("logistic", "sig", ["x"], "sig"), Node("mul", "sw", ["x", "sig"], "sw"),
             Node("tanh", "th", ["sw"], "th"), Node("sub", "d", ["th", "x"], "d"),
             Node("hard_swish", "hs", ["d"], "hs"), Node("transpose", "tr", ["hs"], "tr", {"perm": (0, 2, 1, 3)}),
             Node("stock_quantize", "q", ["tr"], "q")]
    x = np.random.default_rng(0).integers(-128, 128, size=(16, 4, 5, 3))
    return IntegerGraph("x", ["q"], t, nodes), x


def test_all_stock_fxp_file_runs_bit_exact_in_real_tflm(tmp_path):
    """An fxp file whose every op is stock runs in the tflite-micro wheel (real TFLM kernels):
    the reference interpreter's numbers are TFLM's."""
    pytest.importorskip("tflite_micro")
    graph, x = _stock_only_graph()
    path = tmp_path / "stock.tflite"
    fx.export_tflite(graph, path, float_input=False)
    ref = fx.Interpreter(path).predict(x, raw=True)
    tflm = fx.Interpreter(path, engine="tflm").predict(x, raw=True)
    np.testing.assert_array_equal(tflm, ref)
    assert len(np.unique(ref)) > 20  # not a saturated or constant output


def test_tflm_wheel_engine_refuses_files_with_fxp_ops_naming_them(hybrid):
    pytest.importorskip("tflite_micro")
    with pytest.raises(ValueError, match="FXP_CONV_2D.*qemu-m4"):
        fx.Interpreter(hybrid[4], engine="tflm")


def test_seam_rules_refuse_bad_graphs_at_export(tmp_path):
    t = {"x": TensorSpec("x", (4,), Format(8, 4, False)), "y": TensorSpec("y", (4,), Format(8, 8, False))}
    graph = IntegerGraph("x", ["y"], t, [Node("logistic", "y", ["x"], "y")])
    with pytest.raises(ExportError, match="unsigned tensor of an fxp kernel"):
        fx.export_tflite(graph, tmp_path / "a.tflite", float_input=False)
    t = {"x": TensorSpec("x", (4,), Format(8, 4, True)), "y": TensorSpec("y", (4,), Format(8, 8, False))}
    graph = IntegerGraph("x", ["y"], t, [Node("logistic", "y", ["x"], "y")])
    with pytest.raises(ExportError, match="zero point -128"):
        fx.export_tflite(graph, tmp_path / "b.tflite", float_input=False)
    assert not (tmp_path / "a.tflite").exists() and not (tmp_path / "b.tflite").exists()


def test_search_keeps_stock_outputs_fixed_and_meets_the_budget(tmp_path):
    model, x = _se_model(), _digits()
    result = fx.FxPQNet(0.02).quantize(model, x[:256])
    graph = fx.lower_model(result.model)
    for node in graph.nodes:
        if node.op in ("logistic", "tanh", "mul", "sub"):
            assert graph.tensors[node.output].fmt.bits == 8
    path = tmp_path / "searched.tflite"
    fx.export_tflite(result.model, path)
    np.testing.assert_array_equal(fx.Interpreter(path).predict(x[256:], raw=True), graph.run(x[256:], raw=True)[0])


@pytest.mark.parametrize("engine", ["host", "qemu-m4"])
def test_c_runner_equals_reference_on_hybrid_files(hybrid, tmp_path, engine):
    """The C runner executes the stock ops of hybrid files bit for bit like the reference, on the
    host and on the emulated Cortex-M4."""
    _, x, _, _, path = hybrid
    n = 64 if engine == "host" else 8
    ref = fx.Interpreter(path).predict(x[:n], raw=True)
    np.testing.assert_array_equal(fx.Interpreter(path, engine=engine).predict(x[:n], raw=True), ref)
    graph, _ = _stock_only_graph()
    stock = tmp_path / "stock.tflite"
    fx.export_tflite(graph, stock, float_input=False)
    xi = np.random.default_rng(1).integers(-128, 128, size=(n, 4, 5, 3))
    np.testing.assert_array_equal(fx.Interpreter(stock, engine=engine).predict(xi, raw=True),
                                  fx.Interpreter(stock).predict(xi, raw=True))


@pytest.mark.parametrize("engine", ["tflm-host", "tflm-m4"])
def test_real_tflm_with_fxpq_glue_runs_hybrid_files_bit_exact(hybrid, engine):
    """Real TFLM built from source (TFLM_DIR) with the fxpq glue: the FXP_* ops through the glue,
    the stock ops through TFLM's own kernels (CMSIS-NN on the M4)."""
    from fxpq_keras.kernels.tflm import HOW_TO_ENABLE, tflm_available

    if not tflm_available():
        pytest.skip(f"no TFLM tree; {HOW_TO_ENABLE}")
    _, x, _, _, path = hybrid
    n = 16 if engine == "tflm-host" else 4
    np.testing.assert_array_equal(fx.Interpreter(path, engine=engine).predict(x[:n], raw=True),
                                  fx.Interpreter(path).predict(x[:n], raw=True))


def test_elu_runs_in_the_reference_and_is_refused_by_the_runner_naming_who_runs_it(tmp_path):
    t = {"x": TensorSpec("x", (3, 4, 2), Format(8, 5, True)), "y": TensorSpec("y", (3, 4, 2), Format(8, 5, True))}
    graph = IntegerGraph("x", ["y"], t, [Node("elu", "y", ["x"], "y")])
    path = tmp_path / "elu.tflite"
    fx.export_tflite(graph, path, float_input=False)
    x = np.arange(-128, 128).reshape(-1, 1, 1, 1)[:, :, :1, :1] * np.ones((1, 3, 4, 2), dtype=np.int64)
    y = fx.Interpreter(path).predict(x, raw=True)
    assert y.min() < 0 and y.max() == 127  # ELU saturates the s8.5 range on top, stays above -1 below
    if importlib.util.find_spec("tflite_micro"):
        np.testing.assert_array_equal(fx.Interpreter(path, engine="tflm").predict(x, raw=True), y)
    with pytest.raises(Exception, match="ELU runs in the reference interpreter and in TFLM"):  # STOCK_FILE
        fx.Interpreter(path, engine="host").predict(x[:2], raw=True)
