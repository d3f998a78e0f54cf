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
