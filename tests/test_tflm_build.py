"""How real TFLM is built (fxpq_keras/kernels/tflm.py), checked without a TFLM tree: the build type
and its place in the cache key, and the core objects compiled once per CPU."""

from __future__ import annotations

import os

import pytest

from fxpq_keras.kernels import tflm


def test_build_type_is_release_with_logs_unless_asked(monkeypatch):
    """Benchmarks need TFLM's release_with_logs build (the default one keeps debug checks that cost
    the reference kernels 3-5x); the default build stays one variable away, and typos are refused."""
    monkeypatch.delenv("FXPQ_TFLM_BUILD_TYPE", raising=False)
    assert tflm.build_type() == "release_with_logs"
    monkeypatch.setenv("FXPQ_TFLM_BUILD_TYPE", "default")
    assert tflm.build_type() == "default" and tflm.build_type("debug") == "debug"
    monkeypatch.setenv("FXPQ_TFLM_BUILD_TYPE", "fast")
    with pytest.raises(ValueError, match="FXPQ_TFLM_BUILD_TYPE.*'fast'"):
        tflm.build_type()
    with pytest.raises(ValueError, match="release_with_logs, default, debug"):
        tflm.build_type("release")  # strips the error strings the engines report
    # the build type is a make argument, so it is in the cache key
    assert tflm._make_args("host", "default") == ["BUILD_TYPE=default"]


def test_core_objects_are_compiled_once_per_cpu(tmp_path, monkeypatch):
    """Before: the reference variant looked for the core under the CMSIS-NN variant's directory
    name with its own key, which never exists, so every core object was compiled by both. Now
    both variants of a CPU link their core objects from one core directory (keyed without the
    kernel choice), whichever is built first."""
    monkeypatch.setenv("FXPQ_TFLM_CACHE", str(tmp_path))
    ref_args = ["TARGET=cortex_m_generic", "TARGET_ARCH=cortex-m4+fp", "BUILD_TYPE=release_with_logs"]
    cmsis_args = [*ref_args, "OPTIMIZED_KERNEL_DIR=cmsis_nn"]
    core = tflm._core_dir("treekey", cmsis_args, "m4-cmsis")
    assert core == tflm._core_dir("treekey", ref_args, "m4-ref") and core.parent == tmp_path
    assert core != tflm._core_dir("treekey", [*ref_args[:2], "BUILD_TYPE=default"], "m4-ref")
    assert core != tflm._core_dir("treekey", ["TARGET=cortex_m_generic", "TARGET_ARCH=cortex-m7+fp",
                                              "BUILD_TYPE=release_with_logs"], "m7-ref")

    def targets(gendir):
        return [f"{gendir}/obj/core/tensorflow/lite/micro/a.o", f"{gendir}/obj/core/tensorflow/lite/b.o",
                f"{gendir}/obj/kernels/tensorflow/lite/micro/kernels/conv.o"]

    first, second = tmp_path / "m4-cmsis-x", tmp_path / "m4-ref-y"
    assert tflm._share_core_objects(first, core, targets(first), after_build=False) == 0  # nothing yet
    for t in targets(first):  # what make compiled for the first variant
        os.makedirs(os.path.dirname(t), exist_ok=True)
        open(t, "w").close()
    assert tflm._share_core_objects(first, core, targets(first), after_build=True) == 2  # kernels stay
    assert tflm._share_core_objects(second, core, targets(second), after_build=False) == 2
    a = [first / "obj/core/tensorflow/lite/micro/a.o", core / "tensorflow/lite/micro/a.o",
         second / "obj/core/tensorflow/lite/micro/a.o"]
    assert all(p.stat().st_nlink == 3 for p in a) and len({p.stat().st_ino for p in a}) == 1
    assert not (second / "obj/kernels").exists()
    # after the second build nothing new is linked, and an existing object is never replaced
    assert tflm._share_core_objects(second, core, targets(second), after_build=True) == 0
