"""The CMSIS-NN route of conv 2D and fully connected (docs/kernels.md "CMSIS-NN route") == numpy.

Kernels built with FXPQ_CMSIS_NN=all (kernels="cmsis-all") call CMSIS-NN for conv and fully
connected layers with 8-bit weights and 8-bit activations whose bound holds, and fxpq's own
kernels otherwise (kernels="cmsis", the default rule, only fully connected with 1-3 rows); every
result must equal the numpy reference bit for bit either way. Hypothesis draws of the "cmsis-all"
build on QEMU M4 and M7 and on the host (its host library in a child process): signed and
unsigned 8-bit inputs and outputs (unsigned 8-bit: the XOR 0x80 trick), unsigned 7-bit and
narrower formats, per-channel fracs, padding, strides, dilations, odd sizes, fully connected over
several blocks of 64 channels (convs of more than 64 fall back), 1x1 / 1xN / KxK kernels (KxK
with K mod 4 != 0 needs more scratch than fxpq's and falls back), other weight widths and 32-bit
biases (fall back); and the bound's edge: a layer whose accumulators reach
2^30 - 1 takes the route, one that reaches 2^30 (where CMSIS-NN's doubling would overflow) does
not ("cmsis" build); and both builds inside real TFLM. Skipped without a CMSIS-NN tree
(CMSIS_NN_DIR or TFLM_DIR).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from long_mode import examples

from fxpq_keras.formats import Format
from fxpq_keras.kernels import qemu
from fxpq_keras.kernels._build import HOST_LOCK, KERNELS_DIR, cmsis_nn_dir, kernel_build, make_or_raise
from fxpq_keras.kernels.cases import OpCase, random_case

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.skipif(cmsis_nn_dir() is None,
                                reason="needs a CMSIS-NN tree: set CMSIS_NN_DIR or TFLM_DIR (docs/kernels.md)")
_missing = qemu.missing_tools()
needs_qemu = pytest.mark.skipif(bool(_missing), reason=f"needs {', '.join(_missing)} (scripts/setup.sh)")


def _route_constraints():
    """Layers the route takes (8-bit weights, 8-bit containers) and their neighbours that it
    declines (other weight widths, 16-bit activations)."""
    return st.fixed_dictionaries({
        "op": st.sampled_from(["conv2d", "conv2d", "fully_connected"]),
        "kernel": st.sampled_from([(1, 1), (1, 1), (3, 3), (1, 3), (2, 2), (5, 5), (3, 1)]),
        "cin": st.sampled_from([1, 3, 4, 5, 8, 13, 16]),
        "x": st.sampled_from([(8, True), (8, False), (8, False), (7, False), (5, True), (16, True)]),
        "out": st.sampled_from([(8, True), (8, False), (8, False), (7, False), (4, True)]),
        "w_bits": st.sampled_from([8, 8, 8, 8, 6]),
        "per_channel": st.booleans(),
        "padding": st.sampled_from(["same", "valid"]),
        "activation": st.sampled_from([None, "relu", "relu6"]),
        "in_features": st.sampled_from([1, 7, 64, 130]),
        "out_ch": st.sampled_from([1, 2, 3, 5, 8, 13, 20, 64, 65, 130]),  # fully connected: blocks of 64
    })


def route_case(seed: int, c: dict) -> OpCase:
    """One case of the draws above (also run by the host child process)."""
    c = dict(c)
    op = c.pop("op")
    c["x_bits"], c["x_signed"] = c.pop("x")
    c["out_bits"], c["out_signed"] = c.pop("out")
    if op == "fully_connected":
        c.pop("kernel")
    else:
        c.pop("in_features")
    return random_case(op, np.random.default_rng(seed), **c)


def _check(cases, results):
    for case, res in zip(cases, results):
        ref = case.reference()
        assert res.status == 0, f"{res.status_name}: {case.describe()}"
        assert np.array_equal(res.output, ref), \
            f"{case.describe()}\nref {ref.ravel()[:16]}\ngot {res.output.ravel()[:16]}"


@needs_qemu
@pytest.mark.parametrize("cpu", ["m4", "m7"])
@settings(max_examples=examples(2), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(draws=st.lists(st.tuples(st.integers(0, 2**32 - 1), _route_constraints()), min_size=60, max_size=60))
def test_route_matches_numpy_on_qemu(cpu, draws):
    """One firmware session per draw of 60 layers; the route's build against numpy."""
    cases = [route_case(seed, c) for seed, c in draws]
    _check(cases, qemu.run_cases(cases, cpu=cpu, kernels="cmsis-all", timeout=240))


_HOST_CHILD = """
import json, sys
import numpy as np
sys.path.insert(0, {tests!r})
from test_cmsis_route import route_case
bad = []
for seed, c in json.loads(sys.stdin.read()):
    case = route_case(seed, {{k: tuple(v) if isinstance(v, list) else v for k, v in c.items()}})
    if not np.array_equal(case.run_host(), case.reference()):
        bad.append(case.describe())
print(json.dumps(bad))
"""


def _host_library() -> Path:
    build, make_vars = kernel_build("cmsis-all")
    make_or_raise([*make_vars, "host"], HOST_LOCK, 600, "the host kernels with the CMSIS-NN route")
    return KERNELS_DIR / build / "host" / "libfxpq_kernels.so"


@settings(max_examples=examples(2), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(draws=st.lists(st.tuples(st.integers(0, 2**32 - 1), _route_constraints()), min_size=80, max_size=80))
def test_route_matches_numpy_on_host(draws):
    """The same draws through the route's host library (CMSIS-NN's portable C), in a child
    process that loads it as FXPQ_KERNELS_LIB."""
    env = dict(os.environ, FXPQ_KERNELS_LIB=str(_host_library()), PYTHONPATH=str(ROOT))
    proc = subprocess.run([sys.executable, "-c", _HOST_CHILD.format(tests=str(ROOT / "tests"))],
                          input=json.dumps(draws), capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == []


def _edge_case(total: int, w: int) -> OpCase:
    """Fully connected of K = 4096 inputs -128 and weights w (8-bit, frac 0) into 4 channels
    whose bias makes |bias| + K 128 128 = `total`; the output frac -24 keeps the result (about
    64) unsaturated, so a wrapped doubling would show."""
    k, channels = 4096, 4
    bias = total - k * 128 * 128
    x = np.full((1, k), -128, dtype=np.int64)
    wts = np.full((channels, k), w, dtype=np.int64)
    return OpCase("fully_connected", (x, wts, np.full(channels, bias, dtype=np.int64)),
                  dict(x_frac=0, w_frac=0, bias_frac=0, out_fmt=Format(8, -24, True), activation=None),
                  dict(x_fmt=Format(8, 0, True), w_bits=8))


@needs_qemu
@pytest.mark.parametrize("cpu", ["m4", "m7"])
def test_route_bound_edge(cpu):
    """|bias| + K max|x| max|w| = 2^30 - 1 takes the route, 2^30 falls back (accumulator 2^30:
    CMSIS-NN's 2v would wrap); both exact. Which kernel ran shows in the instruction counts:
    the route's differ from the optimized build's (4 rows of 4,096 terms: about 0.8x), the fallback's
    stay within 2 % of them."""
    inside, outside = _edge_case((1 << 30) - 1, -128), _edge_case(1 << 30, -128)
    assert int(inside.args[0][0, 0] * inside.args[1][0, 0]) * 4096 + int(inside.args[2][0]) == (1 << 30) - 1
    cases = [inside, outside]
    route = qemu.run_cases(cases, cpu=cpu, kernels="cmsis", timeout=240)
    ours = qemu.run_cases(cases, cpu=cpu, timeout=240)
    _check(cases, route)
    _check(cases, ours)
    assert abs(route[0].ticks - ours[0].ticks) > 0.05 * ours[0].ticks, (route[0].ticks, ours[0].ticks)
    assert abs(route[1].ticks - ours[1].ticks) < 0.02 * ours[1].ticks, (route[1].ticks, ours[1].ticks)


@needs_qemu
@pytest.mark.parametrize("variant,seed,kernels", [("m4-cmsis", 11, "cmsis-all"), ("m7-cmsis", 4, "cmsis-all"),
                                                  ("m4-cmsis", 10, "cmsis")])
def test_route_in_tflm(tmp_path, variant, seed, kernels):
    """The TFLM glue on a cmsis_nn TFLM library with the route's kernels (TFLM's CMSIS-NN objects
    serve both): a CNN with every fxp op whose 8-bit-weight layers take the route (seed 11: convs
    from a signed 8-bit input into an unsigned 8-bit output and from an unsigned 8-bit input;
    seed 4: signed 8-bit in and out; seed 10: a fully connected layer) == the reference
    interpreter."""
    from fxpq_keras.kernels.tflm import tflm_available
    if not tflm_available():
        pytest.skip("needs a TFLM tree (TFLM_DIR)")
    sys.path.insert(0, str(ROOT / "tests"))
    from test_export_graphs import cnn_graph

    from fxpq_keras.flatbuffer import Interpreter, export_tflite
    from fxpq_keras.kernels.tflm_engines import TflmEngine

    graph, x = cnn_graph(seed, n=4, int8=True)
    path = tmp_path / "m.tflite"
    export_tflite(graph, path)
    ref = Interpreter(path)
    engine = TflmEngine(path, ref.graph, ref.info, variant=variant, link_model=True, kernels=kernels)
    np.testing.assert_array_equal(engine.run(x)[0], ref.predict(x, raw=True))


@needs_qemu
def test_route_declines_in_a_later_block():
    """Fully connected of 70 channels whose last channel's bias passes the bound: the first block
    of 64 is written by CMSIS-NN, then the route gives the layer back and fxpq's kernels write the
    whole output (unsigned 8-bit in and out, so the input's XOR must be undone too)."""
    rng = np.random.default_rng(7)
    k, channels = 96, 70
    x = rng.integers(0, 256, size=(2, k))
    wts = rng.integers(-128, 128, size=(channels, k))
    bias = rng.integers(-5000, 5000, size=channels)
    bias[-1] = (1 << 30) - k * 255 * 128  # |bias| + K 255 128 = 2^30: outside
    case = OpCase("fully_connected", (x, wts, bias),
                  dict(x_frac=4, w_frac=6, bias_frac=10, out_fmt=Format(8, 0, False), activation="relu"),
                  dict(x_fmt=Format(8, 4, False), w_bits=8))
    _check([case], qemu.run_cases([case], cpu="m4", kernels="cmsis", timeout=240))
