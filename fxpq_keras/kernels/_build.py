"""Building and loading the C code from Python: ``make -C tflm_kernels <targets>`` under a file
lock, and ctypes library loading with declared signatures.

Two lock files serialize builds across processes: ``build/.host-build.lock`` for everything under
``build/host`` (kernels and runner share its object files) and ``build/.arm-build.lock`` for the
Cortex-M builds (harness and model firmware share the static libraries).
"""

from __future__ import annotations

import ctypes
import fcntl
import os
import subprocess
from collections.abc import Callable
from pathlib import Path

KERNELS_DIR = Path(__file__).resolve().parents[2] / "tflm_kernels"
HOST_LOCK = ".host-build.lock"
#: Cortex-M kernel variants -> (build directory under tflm_kernels/, extra make variables).
#: "optimized": the ARMv7E-M DSP kernels, the Cortex-M default; "reference": the portable loops;
#: "cmsis": the optimized kernels plus the CMSIS-NN route where it measured faster (fully connected
#: with 1-3 rows); "cmsis-all": the route for conv 2D too (docs/kernels.md "CMSIS-NN route"; both
#: need a CMSIS-NN tree, :func:`cmsis_nn_dir`); "coverage": the optimized kernels instrumented by
#: gcc's --coverage, each run writing its .gcda files (tflm_kernels/mk/coverage.mk, qemu.path_coverage).
#: "selective" (not in the table: one build per set of paths) is the optimized kernels with only the
#: paths of one model compiled in
#: (:func:`fxpq_keras.kernels.paths.selective_build`, docs/kernels.md "Selective build").
KERNEL_BUILDS = {"optimized": ("build", []),
                 "reference": ("build/ref", ["BUILD=build/ref", "ARM_DEFS=-DFXPQ_REFERENCE_KERNELS"]),
                 "cmsis": ("build/cmsis", ["BUILD=build/cmsis", "FXPQ_CMSIS_NN=1"]),
                 "cmsis-all": ("build/cmsis-all", ["BUILD=build/cmsis-all", "FXPQ_CMSIS_NN=all"]),
                 "coverage": ("build/cov", ["BUILD=build/cov", "FXPQ_COVERAGE=1"])}
ARM_LOCK = ".arm-build.lock"
CMSIS_NN_IN_TFLM = "tensorflow/lite/micro/tools/make/downloads/cmsis_nn"


def cmsis_nn_dir() -> Path | None:
    """The CMSIS-NN source tree of the "cmsis" kernels: $CMSIS_NN_DIR, else $TFLM_DIR's downloaded
    cmsis_nn (the version TFLM's cmsis_nn libraries are built from), else None."""
    candidates = [Path(os.environ["CMSIS_NN_DIR"])] if os.environ.get("CMSIS_NN_DIR") else []
    if os.environ.get("TFLM_DIR"):
        candidates.append(Path(os.environ["TFLM_DIR"]) / CMSIS_NN_IN_TFLM)
    return next((c for c in candidates if (c / "Include" / "arm_nnfunctions.h").is_file()), None)


def kernel_build(kernels: str, model: bytes | None = None, engine: str = "any",
                 paths: dict | None = None) -> tuple[str, list[str]]:
    """Build directory and make variables of a Cortex-M kernel variant (see KERNEL_BUILDS;
    "selective" needs the `model` whose paths it compiles, as `engine` runs them: "tflm",
    "runner" or "any", or the `paths` themselves: fxpq_keras.kernels.paths)."""
    if kernels == "selective":
        if model is None and paths is None:
            raise ValueError('kernels="selective" builds the paths of one model: pass the model')
        from .paths import selective_build

        return selective_build(KERNELS_DIR, model, engine, paths)
    if kernels not in KERNEL_BUILDS:
        raise ValueError(f"kernels must be one of {sorted(KERNEL_BUILDS) + ['selective']}, got {kernels!r}")
    build, make_vars = KERNEL_BUILDS[kernels]
    if kernels.startswith("cmsis"):
        tree = cmsis_nn_dir()
        if tree is None:
            raise RuntimeError(f'kernels="{kernels}" needs a CMSIS-NN source tree: set CMSIS_NN_DIR or TFLM_DIR')
        make_vars = [*make_vars, f"CMSIS_NN_DIR={tree}"]
    return build, make_vars


def locked_make(args: list[str], lock_name: str, timeout: float) -> subprocess.CompletedProcess:
    """``make -C tflm_kernels *args`` while holding ``build/<lock_name>``; the finished process
    (the caller decides what a failure means)."""
    build_dir = KERNELS_DIR / "build"
    build_dir.mkdir(parents=True, exist_ok=True)
    with open(build_dir / lock_name, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            return subprocess.run(["make", "-C", str(KERNELS_DIR), *args], capture_output=True, text=True,
                                  timeout=timeout)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def make_or_raise(args: list[str], lock_name: str, timeout: float, what: str,
                  error: type[Exception] = RuntimeError) -> None:
    """:func:`locked_make`, raising ``error("building <what> failed: ...")`` on failure."""
    proc = locked_make(args, lock_name, timeout)
    if proc.returncode != 0:
        raise error(f"building {what} failed:\n{proc.stdout}\n{proc.stderr}")


def open_library(env_var: str, build: Callable[[], Path],
                 signatures: dict[str, tuple[object, list]]) -> ctypes.CDLL:
    """The library named by ``$env_var`` if set, else the one ``build()`` returns, with the
    restype/argtypes of ``signatures`` ({function: (restype, argtypes)}) declared."""
    override = os.environ.get(env_var)
    lib = ctypes.CDLL(str(Path(override) if override else build()))
    for name, (restype, argtypes) in signatures.items():
        fn = getattr(lib, name)
        fn.restype = restype
        fn.argtypes = argtypes
    return lib
