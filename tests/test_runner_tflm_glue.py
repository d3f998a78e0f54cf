"""The TFLM glue compiles (host g++/clang++ and arm-none-eabi-g++) against the compile-check stub
of the TFLM declarations it uses (tflm_kernels/tflm/test_stubs; not TFLM code), and registers
every FXP_* op of format.md."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from fxpq_keras.flatbuffer.options import CUSTOM_OPS

KERNELS = Path(__file__).resolve().parents[1] / "tflm_kernels"
GLUE = KERNELS / "tflm" / "fxpq_tflm_ops.cc"
FLAGS = ["-std=c++17", "-Wall", "-Wextra", "-Werror", f"-I{KERNELS / 'tflm' / 'test_stubs'}",
         f"-I{KERNELS / 'include'}"]


@pytest.mark.parametrize("cxx", ["g++", "clang++"])
def test_glue_syntax_host(cxx):
    if shutil.which(cxx) is None:
        pytest.skip(f"{cxx} missing")
    proc = subprocess.run([cxx, "-fsyntax-only", "-Wpedantic", *FLAGS, str(GLUE)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_glue_compiles_for_cortex_m4(tmp_path):
    if shutil.which("arm-none-eabi-g++") is None:
        pytest.skip("arm-none-eabi-g++ missing")
    proc = subprocess.run(["arm-none-eabi-g++", "-mcpu=cortex-m4", "-mthumb", "-mfloat-abi=hard", "-mfpu=fpv4-sp-d16",
                           "-fno-exceptions", "-fno-rtti", "-O2", *FLAGS, "-c", str(GLUE), "-o", str(tmp_path / "g.o")],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_glue_registers_every_custom_op():
    header = (KERNELS / "tflm" / "fxpq_tflm_ops.h").read_text()
    registered = set(re.findall(r'\{"(FXP_\w+)", Register_\1\}', header))
    assert registered == set(CUSTOM_OPS)
    for name in CUSTOM_OPS:
        assert f"const TFLMRegistration* Register_{name}()" in header
        assert f"Register_{name}()" in GLUE.read_text()
