"""Taking a model to firmware: the C array and the deployable package compile as C99 and as
C++11..C++20 (g++, clang++, arm-none-eabi-g++), against the compile-check stub of the TFLM
declarations they use (tflm_kernels/tflm/test_stubs; not TFLM code)."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from test_export_graphs import cnn_graph

from fxpq_keras.flatbuffer import ExportError, Interpreter, export_c_array, export_tflite
from fxpq_keras.flatbuffer.memory import file_memory
from fxpq_keras.formats import quantize
from fxpq_keras.kernels.package import ARENA_MARGIN_BYTES, arena_bytes, input_sample_bytes, write_package
from fxpq_keras.kernels.paths import model_paths, paths_header
from fxpq_keras.kernels.tflm_engines import model_ops

KERNELS = Path(__file__).resolve().parents[1] / "tflm_kernels"
STUBS = KERNELS / "tflm" / "test_stubs"
WARN = ["-Wall", "-Wextra", "-Werror"]
ARM = ["-mcpu=cortex-m4", "-mthumb", "-mfloat-abi=hard", "-mfpu=fpv4-sp-d16"]
# (compiler, language standard, extra flags): the C side and every C++ standard TFLM users build with
C_BUILDS = [("gcc", "c99", ["-pedantic"]), ("clang", "c99", ["-pedantic"])]
CXX_BUILDS = [(cxx, std, []) for cxx in ("g++", "clang++") for std in ("c++11", "c++14", "c++17", "c++20")] + \
    [("arm-none-eabi-g++", std, ARM) for std in ("c++11", "c++17")]


def _compile(compiler: str, std: str, extra: list[str], src: Path, out: Path, includes: list[Path]) -> None:
    if shutil.which(compiler) is None:
        pytest.skip(f"{compiler} missing")
    lang = ["-x", "c++" if "++" in std else "c"]
    proc = subprocess.run([compiler, f"-std={std}", *WARN, *extra, *lang, *(f"-I{p}" for p in includes),
                           "-c", str(src), "-o", str(out)], capture_output=True, text=True)
    assert proc.returncode == 0, f"{compiler} -std={std}: {proc.stderr}"


@pytest.fixture(scope="module")
def model_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("model") / "m.tflite"
    export_tflite(cnn_graph(0)[0], path)
    return path


@pytest.mark.parametrize("compiler, std, extra", C_BUILDS + CXX_BUILDS)
def test_c_array_header_compiles_as_c_and_cpp(model_file, tmp_path, compiler, std, extra):
    """`--c-array` output included from a .cc: `static alignas(16) const` was rejected by every C++ compiler."""
    export_c_array(model_file, tmp_path / "model_data.h")
    src = tmp_path / "use.c"
    # the array keeps its 16-byte alignment (TFLM reads tensors in place) and its bytes
    src.write_text('#include "model_data.h"\n'
                   "typedef char aligned16[(__alignof__(model_data) == 16) ? 1 : -1];\n"
                   "int first_byte(void);\n"
                   "int first_byte(void) { return (int)model_data[0] + (int)(model_data_len & 1u); }\n")
    _compile(compiler, std, extra, src, tmp_path / "use.o", [tmp_path])


# -- the deployable package (fxpq export --package) ----------------------------------------------
@pytest.fixture(scope="module")
def packages(tmp_path_factory) -> dict[str, tuple[Path, Path]]:
    """{kind: (.tflite, package)} for an fxp file and an int8-builtin (stock ops only) file."""
    root = tmp_path_factory.mktemp("packages")
    out = {}
    graph, x = cnn_graph(1)
    export_tflite(graph, root / "fxp.tflite")
    out["fxp"] = (root / "fxp.tflite", write_package(root / "fxp.tflite", root / "fxp", sample=x[0]))
    for seed in range(16):  # a graph that fits stock int8 (docs/format.md section 7)
        try:
            export_tflite(cnn_graph(seed, int8=True)[0], root / "int8.tflite", target="int8-builtin")
            break
        except ExportError:
            continue
    out["int8-builtin"] = (root / "int8.tflite", write_package(root / "int8.tflite", root / "int8"))
    return out


def test_package_holds_exactly_the_models_ops_and_its_arena(packages):
    for kind, (model, pkg) in packages.items():
        data = model.read_bytes()
        ops = model_ops(data)
        source = (pkg / "fxpq_model_ops.cc").read_text()
        assert len(re.findall(r"r\.Add\w+\(", source)) == len(ops)
        assert f"kFxpqModelOpCount = {len(ops)};" in (pkg / "fxpq_model_ops.h").read_text()
        for op in ops:
            assert (f'AddCustom("{op}"' if op.startswith("FXP_") else f"r.Add{_camel(op)}()") in source
        config = (pkg / "fxpq_model_config.h").read_text()
        ram = file_memory(data).ram_bytes
        arena = int(re.search(r"#define FXPQ_MODEL_ARENA_BYTES (\d+)u\n#endif", config).group(1))
        assert f"#define FXPQ_MODEL_RAM_BYTES {ram}u" in config and ram + ARENA_MARGIN_BYTES <= arena
        assert f"#define FXPQ_MODEL_FLASH_BYTES {len(data)}u" in config
        array = bytes(int(v, 16) for v in re.findall(r"0x([0-9a-f]{2})", (pkg / "fxpq_model_data.cc").read_text()))
        assert array == data
        has_fxp = any(op.startswith("FXP_") for op in ops)
        assert (pkg / "fxpq" / "tflm" / "fxpq_tflm_ops.cc").exists() == has_fxp == (kind == "fxp")
        # the kernel paths TFLM's glue runs for this file (docs/kernels.md "Selective build")
        assert (pkg / "fxpq_model_paths.h").exists() == has_fxp
        if has_fxp:
            assert (pkg / "fxpq_model_paths.h").read_text() == paths_header(model_paths(data, "tflm"), model.name)
        for name in ("CMakeLists.txt", "fxpq_model.mk", "main.cc", "fxpq_model_sample.h"):
            assert (pkg / name).stat().st_mode & 0o777 == 0o644


def _camel(op: str) -> str:
    """TFLM's method names, spelled out: the stub declares each, so a wrong spelling fails to compile."""
    return {"CONV_2D": "Conv2D", "DEPTHWISE_CONV_2D": "DepthwiseConv2D", "FULLY_CONNECTED": "FullyConnected",
            "MAX_POOL_2D": "MaxPool2D", "AVERAGE_POOL_2D": "AveragePool2D", "SOFTMAX": "Softmax",
            "RESHAPE": "Reshape", "ADD": "Add", "QUANTIZE": "Quantize", "DEQUANTIZE": "Dequantize", "MEAN": "Mean",
            "PAD": "Pad", "CONCATENATION": "Concatenation", "LEAKY_RELU": "LeakyRelu"}[op]


@pytest.mark.parametrize("kind", ["fxp", "int8-builtin"])
@pytest.mark.parametrize("compiler, std, extra", C_BUILDS + CXX_BUILDS)
def test_package_array_compiles_as_c_and_cpp(packages, tmp_path, kind, compiler, std, extra):
    pkg = packages[kind][1]
    _compile(compiler, std, extra, pkg / "fxpq_model_data.cc", tmp_path / "data.o", [pkg])


@pytest.mark.parametrize("kind", ["fxp", "int8-builtin"])
@pytest.mark.parametrize("compiler, std, extra", CXX_BUILDS)
def test_package_resolver_and_main_compile_as_cpp(packages, tmp_path, kind, compiler, std, extra):
    """The generated resolver and main.cc against the compile-check stub of TFLM's declarations."""
    pkg = packages[kind][1]
    includes = [pkg, pkg / "fxpq" / "tflm", pkg / "fxpq" / "include", STUBS]
    for src in ("fxpq_model_ops.cc", "main.cc"):
        _compile(compiler, std, [*extra, "-fno-rtti", "-fno-exceptions"], pkg / src, tmp_path / f"{src}.o", includes)


def test_package_cmake_builds_the_library(packages, tmp_path):
    """The package's CMakeLists.txt configures and builds `fxpq_model` (kernels, glue, array, resolver)."""
    if shutil.which("cmake") is None or shutil.which("g++") is None:
        pytest.skip("cmake or g++ missing")
    pkg = packages["fxp"][1]
    build = tmp_path / "build"
    proc = subprocess.run(["cmake", "-S", str(pkg), "-B", str(build), f"-DTFLM_INCLUDE_DIRS={STUBS}",
                           "-DTFLM_CXX_FLAGS=-Wall;-Wextra;-Werror;-fno-rtti", "-DCMAKE_C_FLAGS=-Wall -Wextra -Werror"],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    proc = subprocess.run(["cmake", "--build", str(build), "-j", "2"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lib = build / "libfxpq_model.a"
    symbols = subprocess.run(["nm", "-C", str(lib)], capture_output=True, text=True).stdout
    for symbol in ("fxpq_model_data", "FxpqModelAddOps", "fxpq::Register_FXP_CONV_2D", "fxpq_conv2d"):
        assert symbol in symbols, symbol


def test_package_makefile_fragment_lists_the_sources(packages, tmp_path):
    pkg = packages["fxp"][1]
    (tmp_path / "Makefile").write_text(f"FXPQ_MODEL_DIR := {pkg}\ninclude $(FXPQ_MODEL_DIR)/fxpq_model.mk\n"
                                       "show:\n\t@echo $(FXPQ_MODEL_C_SRCS) '|' $(FXPQ_MODEL_CC_SRCS) '|' "
                                       "$(FXPQ_MODEL_INCLUDES)\n")
    out = subprocess.run(["make", "-s", "-C", str(tmp_path), "show"], capture_output=True, text=True, check=True).stdout
    c_srcs, cc_srcs, includes = (part.split() for part in out.split("|"))
    assert "-DFXPQ_SELECTIVE_PATHS" in includes  # only the model's kernel paths, unless asked for all
    every = subprocess.run(["make", "-s", "-C", str(tmp_path), "show", "FXPQ_ALL_PATHS=1"], capture_output=True,
                           text=True, check=True).stdout
    assert "-DFXPQ_SELECTIVE_PATHS" not in every
    assert {Path(p).name for p in c_srcs} == {p.name for p in (KERNELS / "src" / "kernels").glob("*.c")} | {
        p.name for p in (KERNELS / "src" / "options").glob("*.c")}
    assert {Path(p).name for p in cc_srcs} == {"fxpq_model_data.cc", "fxpq_model_ops.cc", "fxpq_tflm_ops.cc"}
    assert f"-I{pkg}" in includes


def test_deploy_cli_writes_a_package_and_refuses_bad_input(packages, tmp_path, capsys):
    from fxpq_keras.cli import main

    model = packages["int8-builtin"][0]
    assert main(["deploy", str(model), "--package", str(tmp_path / "pkg")]) == 0
    assert (tmp_path / "pkg" / "fxpq_model_ops.cc").exists() and "wrote" in capsys.readouterr().out
    assert main(["--quiet", "deploy", str(model), "--package", str(tmp_path / "pkg")]) == 0  # replaced whole
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    np.save(tmp_path / "short.npy", np.zeros((2, 7), np.float32))
    cases = [
        (["deploy", str(model), "--package", str(tmp_path / "other")], "not an fxpq package"),
        (["deploy", str(model), "--package", str(tmp_path / "nowhere" / "pkg")], "folder of the package does not"),
        (["deploy", str(tmp_path / "other" / "notes.txt"), "--package", str(tmp_path / "p2")],
         "to be a TFLite flatbuffer"),
        (["deploy", str(model), "--package", str(tmp_path / "p3"), "--sample", str(tmp_path / "short.npy")],
         "the sample has 14 values, the model input"),
        (["deploy", str(model)], "--package DIR is required"),
    ]
    for argv, fragment in cases:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and fragment in err[0], (argv, err)
    assert (tmp_path / "other" / "notes.txt").read_text() == "mine"
    assert not any((tmp_path / n).exists() for n in ("p2", "p3")) and not list(tmp_path.glob(".fxpq-package-*"))


def test_package_sample_is_the_input_as_stored(packages):
    """A float sample of an integer-input file is quantized as TFLite does (scale, zero point, round half up)."""
    from fxpq_keras.flatbuffer import Interpreter

    model = packages["int8-builtin"][0]
    data = model.read_bytes()
    interp = Interpreter(model)
    shape = interp.graph.tensors[interp.graph.input].shape
    x = np.random.default_rng(0).uniform(-1, 1, (3, *shape)).astype(np.float32)
    raw = np.frombuffer(input_sample_bytes(data, x), np.int8 if not interp.info.float_input else np.float32)
    if interp.info.float_input:
        np.testing.assert_array_equal(raw, x[0].reshape(-1))
    else:
        fmt = interp.graph.tensors[interp.graph.input].fmt
        np.testing.assert_array_equal(raw, quantize(x[0], fmt).reshape(-1))


ARM_GCC = ["arm-none-eabi-gcc", "-std=c99", *WARN, *ARM, "-O2"]


def test_package_qemu_board_compiles_for_cortex_m4(packages, tmp_path):
    """The QEMU Cortex-M4 board files (start-up, hooks) compile for the M4 as C99."""
    if shutil.which("arm-none-eabi-gcc") is None:
        pytest.skip("arm-none-eabi-gcc missing")
    board = packages["fxp"][1] / "boards" / "qemu_mps2_an386"
    assert (board / "mps2_an386.ld").exists()
    for src in ("board.c", "startup.c"):
        proc = subprocess.run([*ARM_GCC, "-Wmissing-prototypes", f"-I{board}", "-c", str(board / src), "-o",
                               str(tmp_path / f"{src}.o")], capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr


def _flags(flags_mk: Path) -> dict[str, str]:
    """`NAME := value` lines of a TFLM library's flags.mk (fxpq_keras.kernels.tflm.build_library)."""
    return dict(line.split(" := ", 1) for line in flags_mk.read_text().splitlines() if " := " in line)


def _stored_output(model: Path, sample: np.ndarray | None) -> bytes:
    """The numpy reference's output bytes for the package's sample, as the output tensor stores them."""
    from fxpq_keras.flatbuffer import Interpreter

    interp = Interpreter(model)
    spec = interp.graph.tensors[interp.graph.input]
    raw = np.frombuffer(input_sample_bytes(model.read_bytes(), sample),
                        np.float32 if spec.fmt is None else spec.fmt.storage_dtype).reshape(1, *spec.shape)
    out = interp.predict(raw, raw=True)
    out = out[0] if isinstance(out, list) else out
    name = interp.graph.outputs[0]
    fmt = interp.graph.tensors[name].fmt
    stored = out[0] + interp.info.zero_points.get(name, 0)
    dtype = np.int8 if interp.info.zero_points.get(name) else (np.float32 if fmt is None else fmt.storage_dtype)
    return np.asarray(stored, dtype).tobytes()


@pytest.mark.parametrize("kind", ["fxp", "int8-builtin"])
def test_package_runs_bit_exact_on_qemu_m4_under_real_tflm(packages, tmp_path, kind):
    """With TFLM_DIR: the package builds from its own CMakeLists.txt against TFLM (CMSIS-NN, Cortex-M4),
    runs on QEMU mps2-an386, and prints the numpy reference's output bytes, its top class, an
    arena_used_bytes equal to the modelled ram_bytes, and an instruction count."""
    from fxpq_keras.kernels.tflm import HOW_TO_ENABLE, build_library, tflm_available

    if not tflm_available():
        pytest.skip(f"needs a TFLM tree: {HOW_TO_ENABLE}")
    missing = [t for t in ("cmake", "arm-none-eabi-g++", "qemu-system-arm") if shutil.which(t) is None]
    if missing:
        pytest.skip(f"missing {missing}")
    model, pkg = packages[kind]
    flags = _flags(build_library("m4-cmsis", log=lambda *_: None).flags_mk)
    # the flags as make's shell reads them (TFLM's Makefile quotes the CMSIS device header define)
    cxxflags = [f for f in shlex.split(flags["TFLM_CXXFLAGS"]) if not f.startswith(("-Werror", "-std="))]
    tokens = flags["TFLM_INCLUDES"].split()
    includes = [tokens[i + 1] for i, t in enumerate(tokens) if t == "-isystem"] + \
        [t[2:] for t in tokens if t.startswith("-I")]
    arch = " ".join(ARM + ["-O2"])
    build = tmp_path / "build"
    configure = ["cmake", "-S", str(pkg), "-B", str(build), "-DCMAKE_SYSTEM_NAME=Generic",
                 "-DCMAKE_TRY_COMPILE_TARGET_TYPE=STATIC_LIBRARY", "-DCMAKE_C_COMPILER=arm-none-eabi-gcc",
                 f"-DCMAKE_CXX_COMPILER={flags['TFLM_CXX']}", f"-DCMAKE_C_FLAGS={arch}", f"-DCMAKE_CXX_FLAGS={arch}",
                 f"-DTFLM_INCLUDE_DIRS={';'.join(includes)}", f"-DTFLM_CXX_FLAGS={';'.join(cxxflags)}",
                 f"-DTFLM_LIBRARY={flags['TFLM_LIB']}", "-DFXPQ_BOARD=qemu_mps2_an386"]
    for cmd in (configure, ["cmake", "--build", str(build), "-j", "2"]):
        proc = subprocess.run(cmd, capture_output=True, text=True)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    proc = subprocess.run(["qemu-system-arm", "-M", "mps2-an386", "-nographic", "-semihosting-config",
                           "enable=on,target=native", "-icount", "shift=0", "-kernel", str(build / "fxpq_model_main")],
                          capture_output=True, text=True, timeout=600, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = {line.split(" ", 2)[1]: line for line in proc.stdout.splitlines() if line.startswith("fxpq: ")}
    want = _stored_output(model, _sample(packages, kind))
    assert bytes(int(v, 16) for v in lines["output"].split()[2:]) == want
    used = int(re.search(r"arena_used_bytes (\d+)", lines["arena_used_bytes"]).group(1))
    assert used == file_memory(model.read_bytes()).ram_bytes
    assert int(lines["cycles"].split()[2]) > 1000


def _sample(packages, kind: str) -> np.ndarray | None:
    return cnn_graph(1)[1][0] if kind == "fxp" else None


def test_export_package_from_a_keras_model(tmp_path, capsys):
    """`fxpq export MODEL POLICY -o F --package DIR --sample X`: the package of the file just written;
    a non-package folder is refused before the model is even loaded."""
    import fxpq_keras
    from fxpq_keras._tf import keras
    from fxpq_keras.cli import main

    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((16,)), keras.layers.Dense(8, activation="relu"),
                              keras.layers.Dense(4, activation="softmax")])
    x = np.random.default_rng(0).uniform(0, 1, (64, 16)).astype(np.float32)
    model.save(tmp_path / "m.h5")
    fxpq_keras.Policy.uniform(model, 8, x).to_json(tmp_path / "p.json")
    np.save(tmp_path / "x.npy", x[:3])
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "main.c").write_text("int main(void) { return 0; }\n")
    base = ["export", str(tmp_path / "m.h5"), str(tmp_path / "p.json"), "-o", str(tmp_path / "m.tflite")]
    assert main([*base, "--package", str(tmp_path / "busy")]) == 2
    assert "not an fxpq package" in capsys.readouterr().err and not (tmp_path / "m.tflite").exists()
    assert main([*base, "--sample", str(tmp_path / "x.npy")]) == 2
    assert "give --package DIR too" in capsys.readouterr().err
    assert main([*base, "--package", str(tmp_path / "pkg"), "--sample", str(tmp_path / "x.npy")]) == 0
    data = (tmp_path / "m.tflite").read_bytes()
    pkg = tmp_path / "pkg"
    array = bytes(int(v, 16) for v in re.findall(r"0x([0-9a-f]{2})", (pkg / "fxpq_model_data.cc").read_text()))
    assert array == data
    sample = bytes(int(v, 16) for v in re.findall(r"0x([0-9a-f]{2})", (pkg / "fxpq_model_sample.h").read_text()))
    assert sample == x[0].tobytes()  # float input: the first sample as is
    assert 'AddCustom("FXP_FULLY_CONNECTED"' in (pkg / "fxpq_model_ops.cc").read_text()


# Definitions for the compile-check stub's interpreter declarations that refuse every model (not TFLM):
# enough to link a package's main.cc and run its board code on QEMU without a TFLM tree.
REFUSING_INTERPRETER = """\
#include "tensorflow/lite/micro/micro_interpreter.h"
#include "tensorflow/lite/schema/schema_generated.h"
namespace tflite {
uint32_t Model::version() const { return TFLITE_SCHEMA_VERSION; }
const Model* GetModel(const void* buf) { return static_cast<const Model*>(buf); }
MicroInterpreter::MicroInterpreter(const Model*, const MicroOpResolver&, uint8_t*, size_t) {}
TfLiteStatus MicroInterpreter::AllocateTensors() { return kTfLiteError; }
TfLiteStatus MicroInterpreter::Invoke() { return kTfLiteError; }
TfLiteTensor* MicroInterpreter::input(size_t) { return nullptr; }
TfLiteTensor* MicroInterpreter::output(size_t) { return nullptr; }
size_t MicroInterpreter::arena_used_bytes() const { return 0; }
}  // namespace tflite
void MicroPrintf(const char*, ...) {}
"""


def test_package_builds_for_qemu_m4_with_cmake_and_its_board_runs(packages, tmp_path):
    """Without TFLM: the package's CMakeLists.txt cross-compiles for the Cortex-M4 with FXPQ_BOARD=qemu_mps2_an386
    (kernels, glue, resolver, main.cc, start-up, linker script) against the compile-check stub linked with an
    interpreter that refuses every model; on QEMU main.cc reports that refusal with the package's arena size
    and exits 1 (semihosting output and exit status work)."""
    tools = ("cmake", "arm-none-eabi-g++", "arm-none-eabi-ar", "qemu-system-arm")
    missing = [t for t in tools if shutil.which(t) is None]
    if missing:
        pytest.skip(f"missing {missing}")
    pkg = packages["fxp"][1]
    arch = [*ARM, "-O2", "-fno-rtti", "-fno-exceptions"]
    (tmp_path / "interp.cc").write_text(REFUSING_INTERPRETER)
    subprocess.run(["arm-none-eabi-g++", "-std=c++17", *WARN, *arch, f"-I{STUBS}", "-c", str(tmp_path / "interp.cc"),
                    "-o", str(tmp_path / "interp.o")], check=True)
    subprocess.run(["arm-none-eabi-ar", "rcs", str(tmp_path / "libinterp.a"), str(tmp_path / "interp.o")], check=True)
    build = tmp_path / "build"
    flags = " ".join(ARM + ["-O2"])
    configure = ["cmake", "-S", str(pkg), "-B", str(build), "-DCMAKE_SYSTEM_NAME=Generic",
                 "-DCMAKE_TRY_COMPILE_TARGET_TYPE=STATIC_LIBRARY", "-DCMAKE_C_COMPILER=arm-none-eabi-gcc",
                 "-DCMAKE_CXX_COMPILER=arm-none-eabi-g++", f"-DCMAKE_C_FLAGS={flags}", f"-DCMAKE_CXX_FLAGS={flags}",
                 f"-DTFLM_INCLUDE_DIRS={STUBS}", "-DTFLM_CXX_FLAGS=-fno-rtti;-fno-exceptions;-Wall;-Wextra;-Werror",
                 f"-DTFLM_LIBRARY={tmp_path / 'libinterp.a'}", "-DFXPQ_BOARD=qemu_mps2_an386"]
    for cmd in (configure, ["cmake", "--build", str(build), "-j", "2"]):
        proc = subprocess.run(cmd, capture_output=True, text=True)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    proc = subprocess.run(["qemu-system-arm", "-M", "mps2-an386", "-nographic", "-semihosting-config",
                           "enable=on,target=native", "-kernel", str(build / "fxpq_model_main")],
                          capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    config = (pkg / "fxpq_model_config.h").read_text()
    arena = re.search(r"#else\n#define FXPQ_MODEL_ARENA_BYTES (\d+)u", config).group(1)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert f"fxpq: error: AllocateTensors failed with an arena of {arena} bytes" in proc.stdout, proc.stdout


@pytest.mark.parametrize("kind", ["fxp", "int8-builtin"])
def test_allocation_arena_covers_what_allocate_tensors_holds_while_planning(tmp_path, kind):
    """On small models TFLM's AllocateTensors needs more than the arena_used_bytes it reports: it plans
    in the head (AllocationInfo per tensor, the planner's per-buffer arrays). A package reserving
    ram_bytes + 256 failed there; tflm_allocation_bytes is at most 48 bytes above the smallest arena that
    works (real TFLM on QEMU M4 with TFLM_DIR: it works, and 64 bytes less does not)."""
    from fxpq_keras.flatbuffer.memory import layout_from_tflite
    from fxpq_keras.memory import DeviceModel

    graph, x = cnn_graph(1, int8=kind != "fxp")
    path = tmp_path / f"{kind}.tflite"
    data = export_tflite(graph, path, target=kind, float_input=True)
    model = DeviceModel(layout_from_tflite(data))
    need = model.tflm_allocation_bytes()
    assert need > model.ram_bytes() + 256  # the old package margin was too small on this model
    assert arena_bytes(data)[1] >= need
    from fxpq_keras.kernels.tflm import tflm_available

    if not tflm_available() or shutil.which("qemu-system-arm") is None:
        return
    from fxpq_keras.kernels.tflm_engines import TflmEngine, TflmError

    interp = Interpreter(path)
    TflmEngine(path, interp.graph, interp.info, link_model=True, arena_bytes=need).run(x[:1].astype(np.float32))
    with pytest.raises(TflmError, match="Too many buffers|arena"):
        TflmEngine(path, interp.graph, interp.info, link_model=True,
                   arena_bytes=need - 64).run(x[:1].astype(np.float32))
