"""Taking a model to firmware: the C array and the deployable package compile as C99 and as
C++11..C++20 (g++, clang++, arm-none-eabi-g++), against the compile-check stub of the TFLM
declarations they use (tflm_kernels/tflm/test_stubs; not TFLM code)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from test_export_graphs import cnn_graph

from fxpq_keras.flatbuffer import export_c_array, export_tflite

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
