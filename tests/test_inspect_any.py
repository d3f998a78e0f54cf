"""`fxpq inspect` reads any .tflite (fxpq files and TFLiteConverter's int8, int16x8 and float files)
without importing TensorFlow, and names every memory figure as docs/format.md section 10 does."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from test_export_graphs import cnn_graph

from fxpq_keras.flatbuffer import ExportError, export_tflite
from fxpq_keras.flatbuffer.inspect import format_report, inspect_tflite
from fxpq_keras.flatbuffer.memory import file_memory

ROOT = Path(__file__).resolve().parents[1]


def _converted(kind: str) -> bytes:
    """A TFLiteConverter file of a small DS-CNN-like model: float, int8, or int16 activations x int8 weights."""
    import tensorflow as tf

    from fxpq_keras._tf import keras

    L = keras.layers
    inp = keras.Input((12, 10, 1))
    x = L.Conv2D(8, 3, strides=2, padding="same", activation="relu")(inp)
    x = L.DepthwiseConv2D(3, padding="same", activation="relu")(x)
    x = L.Conv2D(12, 1, activation="relu")(x)
    x = L.GlobalAveragePooling2D()(x)
    model = keras.Model(inp, L.Dense(5, activation="softmax")(x))
    xs = np.random.default_rng(0).uniform(0, 1, (8, 12, 10, 1)).astype(np.float32)
    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    if kind != "float":
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.representative_dataset = lambda: ([s[None]] for s in xs)
        conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8 if kind == "int8" else
                                          tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8]
        conv.inference_input_type = conv.inference_output_type = tf.int8 if kind == "int8" else tf.int16
    return conv.convert()


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("inspect")
    out = {}
    for kind in ("int8", "int16x8", "float"):
        out[kind] = root / f"{kind}.tflite"
        out[kind].write_bytes(_converted(kind))
    out["fxp"] = root / "fxp.tflite"
    export_tflite(cnn_graph(0)[0], out["fxp"])
    out["int8-builtin"] = root / "builtin.tflite"
    for seed in range(16):  # some random graphs do not fit stock int8 (docs/format.md section 7)
        try:
            export_tflite(cnn_graph(seed, int8=True)[0], out["int8-builtin"], target="int8-builtin")
            break
        except ExportError:
            continue
    return out


@pytest.mark.parametrize("kind, act", [("int8", "int8"), ("int16x8", "int16"), ("float", "float32")])
def test_stock_files_get_the_table_and_the_device_figures(files, kind, act):
    """A TFLiteConverter file used to fail with 'not an fxpq file'."""
    report = inspect_tflite(files[kind])
    data = files[kind].read_bytes()
    assert report["target"].startswith("tflite") and act in report["activation_types"]
    ops = [r["op"] for r in report["layers"]]
    assert {"conv_2d", "depthwise_conv_2d", "fully_connected"} <= set(ops)
    conv = next(r for r in report["layers"] if r["op"] == "conv_2d")
    # the stem: 6x5 outputs x 8 channels, 3x3x1 terms each; int8 weights: one byte per weight, int32 biases
    assert conv["macs"] == 6 * 5 * 8 * 9 and conv["output_shape"] == [6, 5, 8]
    assert conv["weight_bytes"] == 8 * 9 * (4 if kind == "float" else 1) and conv["bias_bytes"] == 8 * (
        8 if kind == "int16x8" else 4)
    assert conv["output_bytes"] == 6 * 5 * 8 * {"int8": 1, "int16": 2, "float32": 4}[act]
    assert conv["output"].startswith(act)
    totals = report["totals"]
    assert totals["flash_bytes"] == totals["file_bytes"] == len(data)
    assert totals == {**totals, **file_memory(data).to_dict()}  # one accounting: the file's
    assert totals["macs"] == sum(r.get("macs", 0) for r in report["layers"])
    text = format_report(report)
    assert f"flash_bytes {len(data):,}" in text and f"ram_bytes {totals['ram_bytes']:,}" in text
    assert "TFLM arena_used_bytes" in text and "?" not in text
    assert "conv_2d" in text and "paper:" not in text  # no bit formats to count in a stock file
    assert "instructions_estimate" not in totals  # the cost model describes fxpq's kernels only
    # the arena model is measured for int8 kernels: an int16x8 file says its ram_bytes is an estimate
    assert any("int16" in n and "estimate" in n for n in report["notes"]) == (kind == "int16x8")
    assert all(f"note: {n}" in text for n in report["notes"])


def test_fxpq_files_keep_formats_and_gain_macs(files):
    for kind in ("fxp", "int8-builtin"):
        report = inspect_tflite(files[kind])
        assert report["target"] == kind and "total_bits" in report["totals"]
        weighted = [r for r in report["layers"] if "weight_bytes" in r]
        assert weighted and all(r["macs"] > 0 for r in weighted)
        assert all(r["output_bytes"] > 0 for r in report["layers"])
        assert report["totals"]["flash_bytes"] == files[kind].stat().st_size


def _cli(*args: str) -> tuple[subprocess.CompletedProcess, float]:
    code = ("import sys, time; t = time.perf_counter(); from fxpq_keras.cli import main; rc = main(sys.argv[1:]); "
            "print('SECONDS', time.perf_counter() - t, file=sys.stderr); "
            "print('HEAVY', sorted(m for m in ('tensorflow', 'keras', 'tf_keras', 'tensorflow_model_optimization') "
            "if m in sys.modules), file=sys.stderr); sys.exit(rc)")
    t = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, cwd=ROOT,
                          env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    return proc, time.perf_counter() - t


@pytest.mark.parametrize("kind", ["int8", "int16x8", "float", "fxp"])
def test_inspect_cli_does_not_import_tensorflow(files, kind):
    """`fxpq inspect` took 12-13 s importing TensorFlow (flatbuffer.memory -> memory -> policy -> keras_model)."""
    proc, seconds = _cli("inspect", str(files[kind]), "--json")
    assert proc.returncode == 0, proc.stderr
    assert "HEAVY []" in proc.stderr, proc.stderr
    report = json.loads(proc.stdout)
    assert report["totals"]["flash_bytes"] == files[kind].stat().st_size
    # the time as a ratio to a bare interpreter importing numpy + flatbuffers in the same run (TF alone is ~10x)
    t = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import numpy, flatbuffers"], check=True)
    base = time.perf_counter() - t
    assert seconds < 6 * base + 0.5, (seconds, base)


@pytest.mark.skipif(any(shutil.which(t) is None for t in ("qemu-system-arm", "arm-none-eabi-gcc", "make")),
                    reason="needs qemu-system-arm, arm-none-eabi-gcc and make")
def test_instruction_estimate_is_near_the_qemu_count(tmp_path):
    """fxp files: per-layer instructions_estimate (fxpq_keras.instructions: the kernel call alone) and a total
    (the calls plus the runner's per-op cost, DeviceModel.instructions) within -30..+40 % of the whole model
    measured on QEMU Cortex-M4 (runner included); stock files get none."""
    from fxpq_keras.flatbuffer import Interpreter
    from fxpq_keras.flatbuffer.memory import device_model_from_tflite

    for seed in (0, 4, 6):
        graph, x = cnn_graph(seed, n=2)
        path = tmp_path / f"estimate-{seed}.tflite"
        export_tflite(graph, path)
        report = inspect_tflite(path)
        layers = [r for r in report["layers"] if r["op"] not in ("reshape",)]
        assert all(r["instructions_estimate"] > 0 for r in layers)
        estimate = report["totals"]["instructions_estimate"]
        # plus the runner's per-op cost, which the fit may find to be nil (nnls) but never negative
        assert estimate >= sum(r["instructions_estimate"] for r in layers)
        assert estimate == round(device_model_from_tflite(path.read_bytes()).instructions())
        interp = Interpreter(path, engine="qemu-m4")
        interp.predict(x)
        measured = interp.engine.measurements()["instructions_mean"]
        # these graphs (dilated and 3-channel KxK convs, concat, pad on 9x9 maps) lie outside the zoo the fit
        # weights (tests/test_instructions.py holds the zoo within 8 %): seed 4 is +35 % since the refit on
        # the block-path kernels (483,463 estimated against 358,380 measured), too high, never too low
        assert -0.3 < estimate / measured - 1 < 0.4, (seed, estimate, measured)
        assert f"instructions_estimate {estimate:,} on Cortex-M4" in format_report(report)


def test_run_prints_each_measured_figure_under_its_name():
    """`fxpq run` printed "arena bytes: 18,167" with nothing saying which arena (docs/format.md section 9)."""
    from fxpq_keras.commands.run import measurement_lines

    runner = {"inferences": 2, "instructions_mean": 1500.0, "instructions_min": 1400, "instructions_max": 1600,
              "runner_arena_bytes": 18167, "runner_planned_bytes": 16000}
    lines = measurement_lines("qemu-m4", runner)
    assert lines[0].startswith("instructions per inference (Cortex-M4, 2 inferences): mean 1,500")
    assert lines[1].startswith("runner_arena_bytes 18,167 (the C runner's arena on the Cortex-M4: "
                               "runner_planned_bytes 16,000") and len(lines) == 2
    tflm = measurement_lines("tflm-m4", {"ram_bytes": 17844, **{k: runner[k] for k in list(runner)[:4]}})
    assert tflm[1] == "ram_bytes 17,844 (TFLM's arena_used_bytes, measured on the Cortex-M4)"
    assert measurement_lines("tflm-host", {"ram_bytes": 20000}) == [
        "ram_bytes 20,000 (TFLM's arena_used_bytes, measured on the host)"]
    assert measurement_lines("reference", {}) == []


def test_policy_summary_names_the_papers_bits():
    """Policy.summary printed the paper's bits / 8 as "biases 116 B" and "activations 4,068 B", next to the
    device's bias_bytes and ram_bytes: now the paper's count is in bits, under its own names."""
    import fxpq_keras
    from fxpq_keras._tf import keras

    model = keras.Sequential([keras.Input((16,)), keras.layers.Dense(8, activation="relu"), keras.layers.Dense(4)])
    policy = fxpq_keras.Policy.uniform(model, 6, np.random.default_rng(0).uniform(0, 1, (32, 16)).astype(np.float32))
    m = policy.memory()
    text = policy.summary()
    assert (f"paper: weight_bits {m.weight_bits:,}, bias_bits {m.bias_bits:,}, activation_bits "
            f"{m.activation_bits:,}, total_bits {m.total_bits:,}") in text
    assert " B " not in text and not text.rstrip().endswith(" B")


def test_parameters_alone_are_never_called_flash_bytes():
    """The search's accounting leaves the file's other bytes out: its figure is parameter_bytes, and
    flash_bytes (the whole file) is absent rather than the parameters under the file's name."""
    from fxpq_keras.flatbuffer.memory import device_model_from_graph

    graph = cnn_graph(0)[0]
    searched = device_model_from_graph(graph).cost()
    d = searched.to_dict()
    assert d["flash_bytes"] is None and d["parameter_bytes"] == d["weight_bytes"] + d["bias_bytes"]
    assert "flash_bytes" not in searched.summary() and "?" not in searched.summary()
    assert f"parameter_bytes {d['parameter_bytes']:,}" in searched.summary()
    whole = file_memory(export_tflite(graph))
    assert whole.to_dict()["flash_bytes"] == whole.flash_bytes > d["parameter_bytes"]
    assert f"flash_bytes {whole.flash_bytes:,}" in whole.summary()
