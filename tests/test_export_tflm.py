"""int8-builtin: real TFLM and LiteRT's reference kernels == our reference interpreter, bit for bit."""

from __future__ import annotations

import numpy as np
import pytest
from test_export_graphs import cnn_graph

from fxpq_keras.flatbuffer import ExportError, Interpreter, export_tflite

pytest.importorskip("tflite_micro")


@pytest.fixture(scope="module", params=[0, 1, 6, 8])
def builtin_file(request, tmp_path_factory):
    graph, x = cnn_graph(request.param, int8=True, n=300)
    path = tmp_path_factory.mktemp("int8") / "m.tflite"
    export_tflite(graph, path, target="int8-builtin")
    return path, graph, x


def test_tflm_equals_reference(builtin_file):
    path, _, x = builtin_file
    ref = Interpreter(path).predict(x, raw=True)
    tflm = Interpreter(path, engine="tflm").predict(x, raw=True)
    assert ref.shape == (300, 10)
    np.testing.assert_array_equal(tflm, ref)


def test_litert_reference_kernels_equal_reference_except_fc(builtin_file):
    """Op by op on LiteRT's own inputs: every op bit-exact except FULLY_CONNECTED, where LiteRT's
    int8 kernel rounds once and TFLM's twice (<= 1 LSB, docs/format.md section 7)."""
    import dataclasses

    from fxpq_keras.flatbuffer.stock import run_stock

    litert = pytest.importorskip("ai_edge_litert.interpreter")
    path, _, x = builtin_file
    ref = Interpreter(path)
    li = litert.Interpreter(model_path=str(path), experimental_op_resolver_type=litert.OpResolverType.BUILTIN_REF,
                            experimental_preserve_all_tensors=True)
    inp = li.get_input_details()[0]
    li.resize_tensor_input(inp["index"], list(x.shape))
    li.allocate_tensors()
    li.set_tensor(inp["index"], x)
    li.invoke()
    index = {d["name"]: d["index"] for d in li.get_tensor_details()}
    g = ref.graph
    fc_diff = 0
    for node in g.nodes:
        ins = [li.get_tensor(index[i]) for i in node.inputs]
        one = dataclasses.replace(g, nodes=[node], outputs=[node.output])
        values = dict(zip(node.inputs, ins))
        one.input = node.inputs[0]
        if len(ins) == 2:  # run_stock takes one input: feed the second through a tiny graph walk
            from fxpq_keras.flatbuffer.stock import _add

            mine = _add(g, node, ins[0].astype(np.int64), ins[1].astype(np.int64))
        else:
            mine = run_stock(one, values[node.inputs[0]])[0]
        theirs = li.get_tensor(index[node.output])
        mine = mine.reshape(theirs.shape)
        if node.op == "fully_connected":
            assert np.abs(mine - theirs).max() <= 1, node.name
            fc_diff += int((mine != theirs).sum())
        else:
            np.testing.assert_array_equal(theirs, mine, err_msg=node.name)


def test_builtin_is_close_to_fxp_rounding(builtin_file):
    path, graph, x = builtin_file
    stock = Interpreter(path).predict(x, raw=True).astype(float)
    ours = graph.run(x, raw=True)[0].astype(float)
    assert np.corrcoef(stock.ravel(), ours.ravel())[0, 1] > 0.5  # stock rounding + int8 saturation drift from our rule through low-bit layers


def test_int8_builtin_names_layers_that_do_not_fit():
    graph, _ = cnn_graph(0)  # up to 16 bits, unsigned 8-bit, standalone ReLU
    with pytest.raises(ExportError) as err:
        export_tflite(graph, target="int8-builtin")
    msg = str(err.value)
    assert "int8-builtin" in msg and "requantize" in msg


def test_tflm_engine_refuses_custom_ops(tmp_path):
    graph, _ = cnn_graph(0)
    p = tmp_path / "fxp.tflite"
    export_tflite(graph, p)
    with pytest.raises(ValueError, match="stock ops only"):
        Interpreter(p, engine="tflm")
