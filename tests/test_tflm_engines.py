"""The fxpq ops and int8-builtin files inside real TensorFlow Lite Micro (engines tflm-host,
tflm-m4, tflm-m7, tflm-m4-ref), bit for bit against the reference interpreter.

These need a TFLM tree (TFLM_DIR, docs/tflm.md section 6) and run whenever one is available; without
it the module is skipped and the test session's summary says how to enable it (conftest.py). The
glue's runtime is tested on every machine by tests/test_tflm_glue_harness.py.
"""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from format_versions import as_format_version_3
from test_export_graphs import GraphBuilder, calib, cnn_graph, narrow_u16_graph

from fxpq_keras.flatbuffer import ExportError, Interpreter, export_tflite
from fxpq_keras.formats import Format, frac_for_range
from fxpq_keras.kernels.tflm import HOW_TO_ENABLE, tflm_available

if not tflm_available():
    pytest.skip(f"real-TFLM tests: no TFLM tree; {HOW_TO_ENABLE}", allow_module_level=True)

from fxpq_keras.kernels.tflm_engines import TflmEngine, TflmError, model_ops, ops_header  # noqa: E402

QEMU = shutil.which("qemu-system-arm") is not None and shutil.which("arm-none-eabi-g++") is not None
needs_qemu = pytest.mark.skipif(not QEMU, reason="qemu-system-arm / arm-none-eabi-g++ missing")


def _same(path, x, engine: str) -> Interpreter:
    ref = Interpreter(path).predict(x, raw=True)
    it = Interpreter(path, engine=engine)
    got = it.predict(x, raw=True)
    ref, got = (ref, got) if isinstance(ref, list) else ([ref], [got])
    for g, r in zip(got, ref):
        np.testing.assert_array_equal(g, r)
    return it


@pytest.mark.parametrize("seed,kw", [(0, {}), (1, {"max_bits": 8}), (2, {"signed_only": True, "bias": False}),
                                     (3, {"max_bits": 12}), (4, {"int8": True})])
def test_fxp_every_op_on_host_tflm(tmp_path, seed, kw):
    graph, x = cnn_graph(seed, n=16, **kw)
    path = tmp_path / "m.tflite"
    export_tflite(graph, path)
    it = _same(path, x, "tflm-host")
    assert it.engine.arena_used_bytes > 0 and it.engine.instructions is None


@pytest.mark.parametrize("seed", range(6))
def test_fxp_conv_shapes_on_host_tflm(tmp_path, seed):
    """Non-square filters, unequal strides, dilations through real TFLM's tensors and arena."""
    rng = np.random.default_rng(100 + seed)
    h, w, c = int(rng.integers(7, 12)), int(rng.integers(6, 10)), int(rng.integers(1, 4))
    x = calib(rng, 6, (h, w, c))
    b = GraphBuilder(rng, (h, w, c), x, Format(8, frac_for_range(3.0, 8)))
    k = (int(rng.integers(1, 4)), int(rng.integers(1, 4)))
    t = b.conv("x0", int(rng.integers(2, 5)), k=k, stride=(1 + seed % 2, 1 + seed // 3), padding="same",
               dilation=(1 + seed // 4, 1 + seed % 3), activation="relu")
    t = b.depthwise(t, k=(k[1], 1 + seed % 3), multiplier=1 + seed % 2, stride=(1, 2), padding="valid")
    path = tmp_path / "conv.tflite"
    export_tflite(b.finish(t), path)
    _same(path, x, "tflm-host")


def _int8_files(tmp_path, seeds, n: int):
    for seed in seeds:
        graph, x = cnn_graph(seed, int8=True, n=n)
        path = tmp_path / f"int8_{seed}.tflite"
        try:
            export_tflite(graph, path, target="int8-builtin")
        except ExportError:  # documented refusals are tested in test_export_tflm.py
            continue
        yield path, x


def test_int8_builtin_on_host_tflm(tmp_path):
    files = list(_int8_files(tmp_path, range(6), 40))
    assert len(files) >= 4
    for path, x in files:
        _same(path, x, "tflm-host")


@needs_qemu
@pytest.mark.parametrize("engine", ["tflm-m4", "tflm-m7"])
def test_fxp_every_op_on_cortex_m(tmp_path, engine):
    graph, x = cnn_graph(5, n=6)
    path = tmp_path / "m.tflite"
    export_tflite(graph, path)
    it = _same(path, x, engine)
    assert it.engine.instructions.shape == (6,) and (it.engine.instructions > 10_000).all()
    assert 0 < it.engine.arena_used_bytes < 64 * 1024


@pytest.mark.parametrize("engine", ["tflm-host", pytest.param("tflm-m4", marks=needs_qemu),
                                    pytest.param("tflm-m7", marks=needs_qemu)])
def test_narrow_unsigned_16bit_inputs_in_both_format_versions(tmp_path, engine):
    """Every weighted op over a 9..15-bit unsigned uint16 input in real TFLM: the version-4 file
    (in_bits) and its version-3 twin (storage width) both equal the reference; on the Cortex-M the
    version-4 file takes the int16 lanes, fewer instructions than the x - 2^15 lanes."""
    graph, x = narrow_u16_graph(1, n=3)
    data = export_tflite(graph)
    runs = {}
    for label, blob in (("v4", data), ("v3", as_format_version_3(data))):
        path = tmp_path / f"{label}.tflite"
        path.write_bytes(blob)
        runs[label] = _same(path, x, engine).engine.instructions
    if engine != "tflm-host":
        assert runs["v4"].mean() < runs["v3"].mean(), runs


@needs_qemu
@pytest.mark.parametrize("engine", ["tflm-m4", "tflm-m4-ref"])
def test_int8_builtin_on_cortex_m(tmp_path, engine):
    """Stock int8 under TFLM + CMSIS-NN and TFLM's reference kernels: both equal the reference."""
    path, x = next(_int8_files(tmp_path, range(4), 8))
    _same(path, x, engine)


@needs_qemu
def test_linked_firmware_with_exact_ops_and_measured_arena(tmp_path):
    """The firmware users flash: model linked in, a resolver with exactly its ops, the arena sized
    from arena_used_bytes; an arena one step too small is refused by TFLM, not overrun."""
    graph, x = cnn_graph(6, n=4)
    path = tmp_path / "m.tflite"
    export_tflite(graph, path)
    ref = Interpreter(path)
    assert model_ops(path.read_bytes()) == list(dict.fromkeys(ref.info.op_types))
    probe = TflmEngine(path, ref.graph, ref.info, variant="m4-cmsis", link_model=True)
    want = ref.predict(x, raw=True)
    np.testing.assert_array_equal(probe.run(x)[0], want)
    used = probe.arena_used_bytes
    # docs/tflm.md: arena_used_bytes + 16, grown in 256-byte steps while TFLM refuses it (its memory
    # planner's bookkeeping is not counted); a few steps at most
    for arena in range(used + 16, used + 16 + 4 * 256 + 1, 256):
        sized = TflmEngine(path, ref.graph, ref.info, variant="m4-cmsis", link_model=True, arena_bytes=arena)
        try:
            got = sized.run(x)[0]
            break
        except TflmError as exc:
            assert "Too many buffers" in str(exc) or "arena" in str(exc).lower(), exc
    else:
        pytest.fail(f"TFLM refused every arena from {used + 16} to {used + 16 + 4 * 256} bytes")
    np.testing.assert_array_equal(got, want)
    small = TflmEngine(path, ref.graph, ref.info, variant="m4-cmsis", link_model=True, arena_bytes=used // 2)
    with pytest.raises(TflmError, match="refused"):
        small.run(x)


def _converter_int8(kind: str) -> bytes:
    """A TFLiteConverter int8 file of a small zoo-like Keras model (LeNet- or DS-CNN-like)."""
    import tensorflow as tf

    from fxpq_keras._tf import keras

    L = keras.layers
    rng = np.random.default_rng(0)
    if kind == "lenet":
        model = keras.Sequential([keras.Input((16, 16, 1)), L.Conv2D(6, 5, padding="same", activation="relu"),
                                  L.MaxPooling2D(2), L.Conv2D(8, 3, activation="relu"), L.MaxPooling2D(2), L.Flatten(),
                                  L.Dense(24, activation="relu"), L.Dense(10, activation="softmax")])
    else:  # DS-CNN-like: strided stem, 3x3 and 5x5 depthwise (CMSIS-NN scratch), pointwise, avg pool, GAP, add
        inp = keras.Input((20, 12, 1))
        x = L.Conv2D(16, (5, 3), strides=2, padding="same", activation="relu")(inp)
        y = L.DepthwiseConv2D(3, padding="same", activation="relu")(x)
        y = L.Conv2D(16, 1, activation="relu")(y)
        x = L.Add()([x, y])
        x = L.DepthwiseConv2D(5, padding="same", activation="relu")(x)
        x = L.Conv2D(24, 1, activation="relu")(x)
        x = L.AveragePooling2D(2)(x)
        x = L.GlobalAveragePooling2D()(x)
        model = keras.Model(inp, L.Dense(12, activation="softmax")(x))
    shape = model.input_shape[1:]
    xs = rng.uniform(0, 1, (16, *shape)).astype(np.float32)
    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = lambda: ([s[None]] for s in xs)
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    conv.inference_input_type = conv.inference_output_type = tf.int8
    return conv.convert()


@needs_qemu
@pytest.mark.parametrize("variant,kernels", [("m4-cmsis", "cmsis-nn"), ("m4-ref", "reference")])
def test_modelled_ram_is_the_tflm_arena_on_cortex_m4(variant, kernels):
    """ram_bytes (fxpq_keras.tflm_arena) is TFLM's arena_used_bytes on Cortex-M4, to the byte (the
    stated tolerance is 0), for fxp files, int8-builtin files and TFLiteConverter int8 files."""
    from fxpq_keras.flatbuffer.memory import device_model_from_tflite
    from fxpq_keras.kernels.tflm_engines import arena_used_bytes

    g0, _ = cnn_graph(0)
    g4, _ = cnn_graph(4, int8=True)
    files = {"fxp float input": export_tflite(g0), "fxp int8": export_tflite(g4, float_input=False),
             "int8-builtin": export_tflite(g4, target="int8-builtin", float_input=False),
             "converter lenet": _converter_int8("lenet"), "converter ds-cnn": _converter_int8("ds-cnn")}
    for name, data in files.items():
        model = device_model_from_tflite(data)
        assert not model.layout.tflm.notes, (name, model.layout.tflm.notes)
        assert model.ram_bytes(kernels=kernels) == arena_used_bytes(data, variant), name


@needs_qemu
def test_tflm_struct_sizes_are_the_charged_ones():
    """The struct sizes fxpq_keras/tflm_arena.py charges are those of this TFLM tree on 32-bit Arm."""
    import importlib.util
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "scripts" / "tflm_struct_sizes.py"
    spec = importlib.util.spec_from_file_location("tflm_struct_sizes", script)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    assert mod.main(["--check"]) == 0


def test_ops_header_registers_by_name():
    text = ops_header(["FXP_CONV_2D", "RESHAPE", "DEPTHWISE_CONV_2D", "MAX_POOL_2D"])
    assert "#define FXPQ_TFLM_OP_COUNT 4" in text
    for call in ('r.AddCustom("FXP_CONV_2D", fxpq::Register_FXP_CONV_2D())', "r.AddReshape()",
                 "r.AddDepthwiseConv2D()", "r.AddMaxPool2D()"):
        assert call in text
    with pytest.raises(ValueError, match="NOT_A_TFLITE_OP"):
        ops_header(["NOT_A_TFLITE_OP"])


@needs_qemu
def test_tflm_firmware_example(tmp_path, capsys):
    """examples/firmware/tflm_on_qemu.py on a user's model: real TFLM firmware, arena sized from
    the measured arena_used_bytes, QEMU output == reference."""
    from sklearn.datasets import load_digits
    from test_examples import load_example

    import fxpq_keras
    from fxpq_keras._tf import keras

    d = load_digits()
    x = (d.images / 16.0).astype(np.float32)[..., None]
    keras.utils.set_random_seed(3)
    model = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Conv2D(6, (3, 2), activation="relu"),
                              keras.layers.MaxPooling2D(2), keras.layers.Flatten(),
                              keras.layers.Dense(10, activation="softmax")])
    model.compile(keras.optimizers.Adam(1e-2), "sparse_categorical_crossentropy")
    model.fit(x[:800], d.target[:800], epochs=3, batch_size=64, verbose=0)
    model.save(tmp_path / "user.h5")
    fxpq_keras.Policy.uniform(model, 6, x[:200]).to_json(str(tmp_path / "policy.json"))
    np.save(tmp_path / "x.npy", x[1500:])
    example = load_example("firmware/tflm_on_qemu.py")
    rc = example.main(["--model", str(tmp_path / "user.h5"), "--policy", str(tmp_path / "policy.json"),
                       "--inputs", str(tmp_path / "x.npy"), "--samples", "8", "--build", str(tmp_path / "fw")])
    out = capsys.readouterr().out
    assert rc == 0, out
    for step in ("$ fxpq export", "r.AddCustom(\"FXP_CONV_2D\"", "$ make -C", "FXPQ_TFLM_ARENA_BYTES=",
                 "qemu-system-arm -M mps2-an386", "identical to the reference interpreter: True"):
        assert step in out
    assert "AddSoftmax" not in out  # exactly the model's ops: the softmax is done on the host


@needs_qemu
@pytest.mark.parametrize("engine,cpu", [("tflm-m4", "Cortex-M4"), ("tflm-m7", "Cortex-M7"), ("tflm-host", "host")])
def test_fxpq_run_prints_tflm_instructions_and_arena(tmp_path, capsys, engine, cpu):
    """`fxpq run --engine tflm-*` prints TFLM's own figures, for fxp and int8-builtin files: instructions
    per inference (mean, min, max; Cortex-M only) and arena_used_bytes (as ram_bytes, its one name);
    the API's engine.measurements() gives the same figures for the same batch."""
    from fxpq_keras.cli import main

    graph, x = cnn_graph(4, int8=True, n=5)
    np.save(tmp_path / "x.npy", x)
    for target in ("fxp", "int8-builtin"):
        path = tmp_path / f"{target}.tflite"
        export_tflite(graph, path, target=target)
        assert main(["--quiet", "run", str(path), "-i", str(tmp_path / "x.npy"), "-o", str(tmp_path / "y.npy"),
                     "--engine", engine]) == 0
        lines = capsys.readouterr().out.splitlines()
        interp = Interpreter(path, engine=engine)
        interp.predict(x)
        m = interp.engine.measurements()
        assert m["ram_bytes"] == interp.engine.arena_used_bytes > 0, target
        ram = f"ram_bytes {m['ram_bytes']:,} (TFLM's arena_used_bytes, measured on the {cpu})"
        if cpu == "host":
            assert "instructions_mean" not in m and lines == [ram], (target, lines)
            continue
        ins = interp.engine.instructions
        assert m["inferences"] == 5 and (m["instructions_min"], m["instructions_max"]) == (ins.min(), ins.max())
        assert m["instructions_min"] > 10_000 and m["instructions_mean"] == pytest.approx(ins.mean())
        assert lines == [f"instructions per inference ({cpu}, 5 inferences): mean {m['instructions_mean']:,.0f}, "
                         f"min {m['instructions_min']:,}, max {m['instructions_max']:,}", ram], (target, lines)
