"""The model firmware on QEMU (Cortex-M4 mps2-an386, Cortex-M7 mps2-an500): whole files bit for
bit against the reference and the host runner, instruction counts, the counting method itself."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from test_export_graphs import cnn_graph

from fxpq_keras.flatbuffer import Interpreter, export_tflite
from fxpq_keras.integer_graph.ops import quantize_input

pytestmark = pytest.mark.skipif(
    any(shutil.which(t) is None for t in ("qemu-system-arm", "arm-none-eabi-gcc", "make")),
    reason="needs qemu-system-arm and arm-none-eabi-gcc")


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    d = tmp_path_factory.mktemp("qemu")
    out = []
    for seed, kw, float_input in [(0, {}, True), (1, {"max_bits": 8}, False), (2, {"signed_only": True}, True)]:
        graph, x = cnn_graph(seed, n=12, **kw)
        path = d / f"m{seed}.tflite"
        export_tflite(graph, path, float_input=float_input)
        if not float_input:
            x = quantize_input(x, graph.tensors[graph.nodes[0].output].fmt)
        out.append((path, x))
    return out


@pytest.mark.parametrize("engine", ["qemu-m4", "qemu-m7"])
def test_qemu_engines_equal_reference_and_host(models, engine):
    for path, x in models:
        ref = Interpreter(path).predict(x, raw=True)
        host = Interpreter(path, engine="host").predict(x, raw=True)
        interp = Interpreter(path, engine=engine)
        got = interp.predict(x, raw=True)
        np.testing.assert_array_equal(got, ref)
        np.testing.assert_array_equal(host, ref)
        counts = interp.engine.instructions
        assert counts.shape == (len(x),) and (counts > 10_000).all()
        # data-independent control flow: counts vary by a few percent at most between samples
        assert counts.max() < 1.05 * counts.min()
        assert interp.engine.last.calibration_error == 0.0


def test_linked_model_firmware_matches_runtime_loaded(models):
    from fxpq_keras.kernels.engines import QemuEngine

    path, x = models[0]
    graph = Interpreter(path).graph
    runtime = QemuEngine(path, graph, None, cpu="m4")
    linked = QemuEngine(path, graph, None, cpu="m4", link_model=True)
    a, b = runtime.run(x[:3]), linked.run(x[:3])
    np.testing.assert_array_equal(a[0], b[0])
    # the same code runs on the same data; only the model's address differs
    assert abs(int(linked.instructions.sum()) - int(runtime.instructions.sum())) < 0.01 * runtime.instructions.sum()
    assert linked.last.arena_bytes == runtime.last.arena_bytes > 0


def test_instruction_count_method_on_a_known_loop(models):
    """TIMER0 ticks * 40 == instructions under -icount shift=0: the firmware times a loop of
    exactly 2 instructions per iteration (subs + bne, 100000 iterations) on every run."""
    from fxpq_keras.kernels.engines import QemuEngine, run_firmware

    path, x = models[0]
    for cpu in ("m4", "m7"):
        eng = QemuEngine(path, Interpreter(path).graph, None, cpu=cpu)
        res = run_firmware(eng.elf, cpu, b"", eng.model)
        assert res.status == 0 and res.calibration_error == 0.0 and len(res.outputs) == 0


def test_firmware_reports_bad_model(tmp_path, models):
    from fxpq_keras.kernels.engines import build_model_firmware, run_firmware

    data = bytearray(models[0][0].read_bytes())
    res = run_firmware(build_model_firmware("m4"), "m4", b"", bytes(data[:len(data) // 2]))
    assert res.status == -102 and "out of bounds" in res.message
