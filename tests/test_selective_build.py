"""Selective kernel builds (docs/kernels.md "Selective build"): the paths a file needs, the kernels
compiled with only those loops, bit-exact runs with the full build's instruction counts, and a
clear refusal of a file that needs a path the build left out."""

from __future__ import annotations

import ctypes
import os
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest
from format_versions import as_format_version_3
from test_export_graphs import cnn_graph

from fxpq_keras.flatbuffer import Interpreter, export_tflite
from fxpq_keras.integer_graph.ops import quantize_input
from fxpq_keras.kernels import runner
from fxpq_keras.kernels._build import ARM_LOCK, HOST_LOCK, kernel_build, make_or_raise
from fxpq_keras.kernels.paths import model_paths, paths_header
from fxpq_keras.kernels.runner import KERNELS_DIR, HostRunner, RunnerModelError

ARM = any(shutil.which(t) is None for t in ("arm-none-eabi-gcc", "arm-none-eabi-nm", "make"))
QEMU = ARM or shutil.which("qemu-system-arm") is None
WEIGHTED = {"conv2d": "CONV", "fully_connected": "CONV", "depthwise_conv2d": "DEPTHWISE"}
KINDS = ("s8", "u8", "16", "u16")  # fxpq_dsp.c's conv copies: fxpq_mm_<kind>_w<bits>


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """Two fxp files whose paths differ (cnn_graph seeds 0 and 1: 16-bit lanes, 8-bit inputs)."""
    d = tmp_path_factory.mktemp("selective")
    out = []
    for seed in (0, 1):
        graph, x = cnn_graph(seed, n=3)
        path = d / f"m{seed}.tflite"
        export_tflite(graph, path, float_input=False)
        out.append((path, quantize_input(x, graph.tensors[graph.nodes[0].output].fmt)))
    return out


def _expected(path, engine: str, version: int = 4) -> dict:
    """The paths from the reference graph: each weighted node's input format and weight bits (the TFLM
    glue runs a narrow uint16 input on the int16 lanes from format version 4 on: its in_bits)."""
    graph = Interpreter(path).graph
    want: dict = {}
    for node in graph.nodes:
        if node.op not in WEIGHTED:
            continue
        fmt = graph.tensors[node.inputs[0]].fmt
        storage = fmt.storage_dtype.name.upper()
        kinds = [storage]
        if storage == "UINT16" and fmt.bits < 16 and (engine == "runner" or version >= 4):
            kinds = ["UINT16_NARROW"]
        for kind in kinds:
            want.setdefault((WEIGHTED[node.op], kind), set()).add(node.weight_bits)
    return want


@pytest.mark.parametrize("engine", ["runner", "tflm"])
def test_paths_are_each_weighted_ops_input_kind_and_weight_width(files, engine):
    for path, _ in files:
        got = model_paths(path.read_bytes(), engine)
        long_rows = got["CONV", "UINT16_LONG"]  # the cnn_graph files' rows are all short
        assert not long_rows
        assert {k: set(v) for k, v in got.items() if v} == _expected(path, engine)
        old = model_paths(as_format_version_3(path.read_bytes()), engine)
        assert {k: set(v) for k, v in old.items() if v} == _expected(path, engine, version=3)
        header = paths_header(got, path.name)
        masks = dict(re.findall(r"#define FXPQ_PATHS_(\w+) 0x([0-9A-F]{4})u", header))
        assert len(masks) == 11  # 2 groups x (4 storage types + narrow uint16) + long 16-bit unsigned rows
        for (group, kind), widths in got.items():
            assert int(masks[f"{group}_{kind}"], 16) == sum(1 << (w - 2) for w in widths)
    a, b = (model_paths(p.read_bytes(), "runner") for p, _ in files)
    assert a != b  # the refusal test below needs a path that one file has and the other lacks


def test_model_paths_refuses_an_unknown_engine(files):
    with pytest.raises(ValueError, match="engine must be one of"):
        model_paths(files[0][0].read_bytes(), "qemu")


def _symbols(obj) -> dict[str, int]:
    out = subprocess.run(["arm-none-eabi-nm", "-S", "-t", "d", str(obj)], capture_output=True, text=True,
                         check=True).stdout
    return {parts[3]: int(parts[1]) for parts in (line.split() for line in out.splitlines()) if len(parts) == 4}


@pytest.mark.skipif(ARM, reason="needs arm-none-eabi-gcc")
def test_selective_kernels_compile_only_the_loops_of_the_files_paths(files):
    data = files[0][0].read_bytes()
    build, make_vars = kernel_build("selective", data, "runner")
    make_or_raise([*make_vars, f"{build}/m4/libfxpq_kernels.a"], ARM_LOCK, 600, "the selective M4 kernels")
    make_or_raise(["build/m4/libfxpq_kernels.a"], ARM_LOCK, 600, "the M4 kernels")
    sel = _symbols(KERNELS_DIR / build / "m4" / "obj" / "src" / "kernels" / "fxpq_dsp.o")
    full = _symbols(KERNELS_DIR / "build" / "m4" / "obj" / "src" / "kernels" / "fxpq_dsp.o")
    paths = model_paths(data, "runner")
    masks = {"s8": paths["CONV", "INT8"], "u8": paths["CONV", "UINT8"],
             "16": paths["CONV", "INT16"] | paths["CONV", "UINT16_NARROW"], "u16": paths["CONV", "UINT16_LONG"]}
    # the one-pixel fully connected copies: every 16-bit unsigned width up to 13 bits (any row length;
    # from 14 bits there is no such copy: fxpq_dsp.c FXPQ_FC1_U16_FN)
    one_pixel = dict(masks, u16={b for b in paths["CONV", "UINT16"] if b <= 13})
    for kind in KINDS:
        for bits in range(2, 17):
            for family, built in (("mm", masks), ("fc1", one_pixel)):
                name = f"fxpq_{family}_{kind}_w{bits}"
                assert (name in full) == (family == "mm" or kind != "u16" or bits <= 13), name
                assert (name in sel) == (bits in built[kind]), name
    # the copies built are the full build's functions, byte for byte in size (noinline: not folded
    # into their caller, so the instruction counts do not move)
    # (a 16-bit unsigned one-pixel copy keeps its loop for rows longer than the lanes' buffer only when
    # the file has such rows: FXPQ_PATHS_CONV_UINT16_LONG)
    for name, size in sel.items():
        if name.startswith("fxpq_fc1_u16_w") and int(name.rsplit("w", 1)[1]) not in paths["CONV", "UINT16_LONG"]:
            assert size < full[name], name
        elif name.startswith(("fxpq_mm_", "fxpq_fc1_")) and not name.startswith("fxpq_fc1_store"):
            assert size == full[name], name
    assert sum(sel.values()) < 0.4 * sum(full.values())


@pytest.mark.skipif(QEMU, reason="needs qemu-system-arm and arm-none-eabi-gcc")
def test_selective_firmware_is_bit_exact_with_the_full_builds_instructions(files):
    from fxpq_keras.kernels.engines import QemuEngine

    for path, x in files:
        ref = Interpreter(path).predict(x, raw=True)
        graph = Interpreter(path).graph
        full = QemuEngine(path, graph, None, cpu="m4", link_model=True)
        sel = QemuEngine(path, graph, None, cpu="m4", link_model=True, kernels="selective")
        np.testing.assert_array_equal(sel.run(x)[0], ref)
        np.testing.assert_array_equal(full.run(x)[0], ref)
        # the same loops run; only the dispatcher around them is compiled with fewer branches
        assert abs(sel.instructions.mean() / full.instructions.mean() - 1) < 0.01
        assert sel.elf.stat().st_size < full.elf.stat().st_size


def _own_symbols(path, signatures: dict) -> ctypes.CDLL:
    """A second build of the same library in this process, resolving its own calls to its own
    functions (RTLD_DEEPBIND: else they may bind to the first build's fxpq_* symbols)."""
    lib = ctypes.CDLL(str(path), mode=os.RTLD_LOCAL | os.RTLD_DEEPBIND)
    for name, (restype, argtypes) in signatures.items():
        getattr(lib, name).restype, getattr(lib, name).argtypes = restype, argtypes
    return lib


def test_a_build_for_other_paths_refuses_the_file_naming_the_path(files, monkeypatch):
    """The host runner built for file A's paths runs A bit-exact and refuses B at init, naming the
    op, the input type and the weight width; the weighted kernels answer FXPQ_ERR_NOT_BUILT."""
    (path_a, x_a), (path_b, _) = files
    build, make_vars = kernel_build("selective", path_a.read_bytes(), "runner")
    make_or_raise([*make_vars, "runner-host"], HOST_LOCK, 600, "the selective host runner")
    runner.load_runner_library()  # the default build loaded first: the other must not bind to its symbols
    monkeypatch.setattr(runner, "_lib", _own_symbols(KERNELS_DIR / build / "host" / "libfxpq_runner.so",
                                                     runner._SIGNATURES))
    got = HostRunner(path_a).run(x_a)
    np.testing.assert_array_equal(got[0], Interpreter(path_a).predict(x_a, raw=True))
    with pytest.raises(RunnerModelError, match=r"op \d+ \(FXP_\w+\): u?int(8|16) inputs \(\d+-bit format\) "
                                               r"with \d+-bit weights: .*not in this build's kernel paths"):
        HostRunner(path_b)


def test_tflm_glue_built_for_other_paths_refuses_the_file_in_prepare(files, tmp_path):
    """The TFLM glue (on its functional stand-in of TFLM) with kernels built for file A's TFLM paths
    runs A bit-exact and fails B's Prepare, naming the op, the input type and the weight width. In a
    process of its own: the glue's registrations are C++ function-local statics, which the dynamic
    linker unifies with those of a glue build loaded before (STB_GNU_UNIQUE)."""
    (path_a, x_a), (path_b, x_b) = files
    build, make_vars = kernel_build("selective", path_a.read_bytes(), "tflm")
    make_or_raise([*make_vars, "glue-harness"], HOST_LOCK, 600, "the selective glue harness")
    np.save(tmp_path / "a.npy", x_a)
    np.save(tmp_path / "b.npy", x_b)
    code = f"""
import numpy as np
from fxpq_keras.flatbuffer import Interpreter
from fxpq_keras.kernels.glue_harness import GlueError, GlueHarness
a, b = Interpreter("{path_a}"), Interpreter("{path_b}")
x_a, x_b = np.load("{tmp_path / 'a.npy'}"), np.load("{tmp_path / 'b.npy'}")
assert np.array_equal(GlueHarness("{path_a}", a.graph).run(x_a)[0], a.predict(x_a, raw=True)), "A differs"
try:
    GlueHarness("{path_b}", b.graph).run(x_b)
except GlueError as e:
    print("refused:", e)
"""
    env = {**os.environ, "FXPQ_GLUE_HARNESS_LIB": str(KERNELS_DIR / build / "host" / "libfxpq_glue_harness.so"),
           "PYTHONPATH": str(KERNELS_DIR.parent)}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert re.search(r"refused: op \d+: Prepare failed: FXP_\w+: u?int(8|16) inputs with \d+-bit weights: not in "
                     r"this build's kernel paths", proc.stdout), proc.stdout


# (kind of fxpq_model_paths.h, input format bits, signed): every input kind the kernels specialize on
SINGLE_KINDS = (("INT8", 8, True), ("UINT8", 7, False), ("INT16", 12, True), ("UINT16", 16, False),
                ("UINT16_NARROW", 12, False))


@pytest.mark.skipif(QEMU, reason="needs qemu-system-arm and arm-none-eabi-gcc")
@pytest.mark.parametrize("kind, x_bits, x_signed", SINGLE_KINDS)
def test_a_build_of_one_kind_runs_its_calls_as_the_full_build_and_refuses_the_others(kind, x_bits, x_signed):
    """Kernels built for one input kind and weight width (5 bits): conv (1x1 and 3x3), fully
    connected and depthwise calls of that kind give the full build's bits and instruction counts
    (each kind's gate opens exactly its own loops), and a call with another width is refused."""
    from fxpq_keras.kernels import qemu
    from fxpq_keras.kernels.cases import random_case

    rng = np.random.default_rng(5)
    shapes = {"conv2d": [dict(kernel=(1, 1), cin=16, out_ch=8), dict(kernel=(3, 3), cin=8, out_ch=6)],
              "fully_connected": [dict(in_features=64, out_ch=8)], "depthwise_conv2d": [dict(kernel=(3, 3), cin=8)]}
    cases = [random_case(op, rng, x_bits=x_bits, x_signed=x_signed, w_bits=5, dilation=False, depth_multiplier=1,
                         **shape) for op, group in shapes.items() for shape in group]
    other = random_case("conv2d", rng, x_bits=x_bits, x_signed=x_signed, w_bits=6, kernel=(1, 1), cin=8, out_ch=4)
    paths = {("CONV", kind): frozenset({5}), ("DEPTHWISE", kind): frozenset({5})}
    if kind == "UINT16":  # rows over the unpacked-row block run the decoder loop: a mask of their own
        long_rows = random_case("fully_connected", rng, x_bits=16, x_signed=False, w_bits=5, in_features=600, out_ch=4)
        short_only = qemu.run_cases([long_rows], cpu="m4", kernels="selective", paths=paths)
        assert short_only[0].status_name == "FXPQ_ERR_NOT_BUILT"
        paths["CONV", "UINT16_LONG"] = frozenset({5})
        cases.append(long_rows)
    sel = qemu.run_cases([*cases, other], cpu="m4", kernels="selective", paths=paths)
    full = qemu.run_cases(cases, cpu="m4")
    for case, s, f in zip(cases, sel, full):
        assert s.status == 0 and np.array_equal(s.output, case.reference()), case.describe()
        assert s.instructions == pytest.approx(f.instructions, rel=0.01, abs=200), case.describe()
    assert sel[-1].status_name == "FXPQ_ERR_NOT_BUILT"
