"""Target `builtin` (issue 23): stock ops only, int8 or int16 activations, int8 or packed int4
weights, QUANTIZE seams where a tensor changes type. The file read back runs through the numpy
model of TFLM's kernels (flatbuffer/stock.py -> integer_graph/tflm_ops.py) and through the real
TFLM interpreter of the `tflite-micro` wheel: the two agree bit for bit.
"""

from __future__ import annotations

import numpy as np
import pytest
from long_mode import LONG
from test_export_graphs import GraphBuilder, calib
from test_search import digits  # noqa: F401  (the fixture: a tiny CNN on 8x8 digits)

from fxpq_keras.flatbuffer import export_tflite
from fxpq_keras.flatbuffer.errors import ExportError
from fxpq_keras.flatbuffer.interpreter import Interpreter
from fxpq_keras.flatbuffer.reader import read_bytes
from fxpq_keras.flatbuffer.schema import schema as S
from fxpq_keras.formats import Format, frac_for_range

pytest.importorskip("tflite_micro")


class _StockWidths(GraphBuilder):
    """Activations of 8 or 16 bits (16 always signed: int16 has no u16), weights of 2..8 bits."""

    max_unsigned_bits = 8

    def bits(self, lo: int = 3) -> int:
        return int(self.rng.choice([8, 16]))


def builtin_graph(seed: int, n: int = 64, logits_bits: int = 8):
    """A CNN of the ops the zoo uses, every activation 8 or 16 bits, weights 2..8 bits."""
    rng = np.random.default_rng(seed)
    x = calib(rng, n, (8, 8, 3))
    in_bits = int(rng.choice([8, 16]))
    b = _StockWidths(rng, (8, 8, 3), x, Format(in_bits, frac_for_range(3.0, in_bits)), 8)
    t = b.conv("x0", 6, activation="relu")
    t = b.depthwise(t, multiplier=2, stride=(2, 2), padding="same", activation="relu6")
    u = b.conv(t, 8, k=(1, 1), per_channel=False)
    v = b.conv(t, 8, k=(3, 3), padding="same", activation=None)
    t = b.add(u, v, activation="relu")
    m = b.pool(t, "max", pool=(2, 2), stride=(1, 1), padding="same")
    a = b.pool(t, "avg", pool=(2, 2), stride=(2, 2), padding="valid")
    g = b.gap(m)
    f = b.flatten(a)
    d1 = b.dense(f, 10, per_channel=bool(rng.integers(0, 2)))
    d2 = b.dense(g, 10, activation=None)
    out = b.add(d1, d2, bits=logits_bits, signed=True)
    return b.finish(out, softmax=True), x


def _types(data: bytes) -> tuple[set[int], set[int]]:
    """(activation tensor types, constant weight types) of a file."""
    model = S.ModelT.InitFromPackedBuf(data, 0)
    acts, weights = set(), set()
    for t in model.subgraphs[0].tensors:
        has_data = model.buffers[t.buffer].data is not None
        (weights if has_data else acts).add(int(t.type))
    return acts, weights


@pytest.mark.parametrize("seed", range(12))
def test_builtin_file_is_bit_exact_with_tflm(tmp_path, seed):
    graph, x = builtin_graph(seed)
    path = tmp_path / "m.tflite"
    try:
        export_tflite(graph, path, target="builtin")
    except ExportError as exc:  # a documented TFLM limit, named
        assert "builtin target" in str(exc)
        pytest.skip(str(exc)[:200])
    ref = Interpreter(path).predict(x, raw=True)
    tflm = Interpreter(path, engine="tflm").predict(x, raw=True)
    np.testing.assert_array_equal(tflm, ref)
    # the stock model computes the fxp graph's function: top-1 mostly agrees
    fxp = graph.run(x)[0]
    assert (np.argmax(fxp, -1) == np.argmax(ref, -1)).mean() >= 0.8


def test_16_bit_logits_leave_the_softmax_to_the_host(tmp_path):
    """TFLM's SOFTMAX here is int8: 16-bit logits are the file's int16 output, and every engine
    applies the Keras model's softmax in float afterwards, as for fxp files."""
    graph, x = builtin_graph(5, logits_bits=16)
    path = tmp_path / "m.tflite"
    export_tflite(graph, path, target="builtin")
    ref = Interpreter(path)
    assert "SOFTMAX" not in ref.info.op_types and ref.graph.output_softmax
    assert ref.output_formats[0].bits == 16
    np.testing.assert_array_equal(Interpreter(path, engine="tflm").predict(x, raw=True), ref.predict(x, raw=True))
    probs = ref.predict(x)
    np.testing.assert_allclose(probs.sum(-1), 1.0, rtol=1e-5)
    assert (np.argmax(probs, -1) == np.argmax(graph.run(x)[0], -1)).mean() >= 0.9


def test_builtin_files_hold_int4_weights_and_int16_activations(tmp_path):
    seen_acts, seen_weights = set(), set()
    for seed in range(12):
        graph, _ = builtin_graph(seed)
        try:
            data = export_tflite(graph, target="builtin")
        except ExportError:
            continue
        acts, weights = _types(data)
        seen_acts |= acts
        seen_weights |= weights
        g, info = read_bytes(data)
        assert info.target == "builtin"
    assert {S.TensorType.INT8, S.TensorType.INT16} <= seen_acts
    assert {S.TensorType.INT4, S.TensorType.INT8, S.TensorType.INT64} <= seen_weights


def set_weight_bits(graph, bits: int) -> None:
    """Every weighted node of `graph` at `bits` (4: its weights clipped to int4's range first)."""
    for node in graph.nodes:
        if node.weights is not None:
            if bits == 4:
                node.weights = np.clip(node.weights, -8, 7)
            node.weight_bits = bits


def test_int4_weights_take_half_the_bytes():
    graph, _ = builtin_graph(3)
    set_weight_bits(graph, 8)
    eight = len(export_tflite(graph, target="builtin"))
    set_weight_bits(graph, 4)
    blob = export_tflite(graph, target="builtin")
    four = len(blob)
    # the weights stored as int4 (a layer reading int16 keeps int8 weights: TFLM has no int16x4 kernel)
    sub = S.ModelT.InitFromPackedBuf(blob, 0).subgraphs[0]
    weights = sum(int(np.prod(t.shape)) for t in sub.tensors if t.type == S.TensorType.INT4)
    assert weights >= 500
    assert eight - four >= weights // 2 - 16 * 6  # alignment padding of six weight buffers at most


def test_int8_builtin_still_refuses_16_bit_tensors():
    graph, _ = builtin_graph(1)
    if not any(s.fmt is not None and s.fmt.bits > 8 for s in graph.tensors.values()):
        pytest.skip("no 16-bit tensor drawn")
    with pytest.raises(ExportError, match="more than 8 bits"):
        export_tflite(graph, target="int8-builtin")


def test_unsigned_16_bit_is_refused_with_the_tensor_name():
    graph, _ = builtin_graph(0)
    name = next(n for n, s in graph.tensors.items() if s.fmt is not None)
    graph.tensors[name].fmt = Format(16, 4, False)
    with pytest.raises(ExportError, match=f"{name}.*u15"):
        export_tflite(graph, target="builtin")


# ---------------------------------------------------------------------------------- the search

@pytest.fixture(scope="module")
def digits_builtin(digits: dict):  # noqa: F811 (the imported fixture)
    """The search's tiny digits CNN (tests/test_search.py) searched in the builtin format space."""
    from fxpq_keras.search import FxPQNet

    model, x = digits["model"], np.concatenate([digits["x_train"], digits["x_test"]])
    # no speed cap here: these tests are about the format space (the cap: the test after them)
    result = FxPQNet(0.05, target="builtin", samples=600, seed=0, verbose=0, max_slowdown=0).quantize(model, x[:1200])
    return model, result, x[1200:]


def test_builtin_search_stays_in_the_stock_space(digits_builtin):
    _, result, _ = digits_builtin
    widths = {}
    for layer, ds, d in result.policy.data_structures():
        widths[(layer, ds)] = d.bits
        if ds == "weights":
            assert d.bits in (4, 8), (layer, d)
            if layer in ("fc", "out"):
                assert not d.per_channel  # TFLM's int4 FULLY_CONNECTED is per tensor
        elif ds == "output" or layer == "input":
            assert d.bits in (8, 15, 16), (layer, d)
            assert d.bits != 16 or d.signed
    assert widths[("out", "output")] in (8, 16)  # 8: TFLM's int8 SOFTMAX; 16: softmax on the host
    assert 4 in widths.values()  # a budget of 5 % buys int4 weights on this net (2 % does not)


def test_builtin_search_result_is_bit_exact_in_tflm(digits_builtin, tmp_path):
    model, result, x_test = digits_builtin
    path = tmp_path / "digits_builtin.tflite"
    export_tflite(result.model, path, target="builtin")
    ref = Interpreter(path).predict(x_test, raw=True)
    np.testing.assert_array_equal(Interpreter(path, engine="tflm").predict(x_test, raw=True), ref)
    agree = (np.argmax(ref, -1) == np.argmax(model.predict(x_test, verbose=0), -1)).mean()
    assert agree >= 1 - 0.05 - 0.02  # the budget plus ~2 binomial standard errors on 597 held-out digits
    _, weights = _types(path.read_bytes())
    assert S.TensorType.INT4 in weights


def test_builtin_speed_estimate_follows_cmsis_nn_kernels():
    """int4 weights and int16 activations run slower CMSIS-NN kernels than int8 on Cortex-M4
    (bench/builtin_speed.py); int4 weights run the s4 kernel (the search repairs their activations
    to 8 bits)."""
    from dataclasses import replace

    from fxpq_keras.instructions import KernelCall, int8_call_instructions
    from fxpq_keras.search import SearchOptions, builtin_space

    est = builtin_space.call_instructions
    conv = KernelCall("conv2d", 8, True, 8, True, 400, 400, w_bits=8, macs=3600, k=9, taps=9, channels=4)
    assert est(replace(conv, w_bits=4)) > 1.5 * est(conv)
    assert est(conv) < est(replace(conv, x_bits=16)) == est(replace(conv, out_bits=15))
    assert est(replace(conv, x_bits=16, w_bits=4)) == est(replace(conv, w_bits=4))
    dw = replace(conv, op="depthwise_conv2d")
    assert est(replace(dw, x_bits=16)) > 3 * est(dw)
    # an int8 layer is the fitted TFLM + CMSIS-NN int8 estimate itself (one model of those kernels)
    assert est(replace(conv, taps=1)) == int8_call_instructions(replace(conv, taps=1)) > 0
    assert est(replace(conv, op="add", macs=0)) == 0.0
    # an int16 op between int8 tensors pays its QUANTIZE seams per element (the file widens/narrows)
    seam = builtin_space.M4_PER_SEAM_ELEMENT
    assert est(replace(conv, x_bits=16, out_bits=16)) + 400 * seam == est(replace(conv, x_bits=16))
    assert est(replace(conv, op="add", macs=0, in_elements=800, x2_bits=16)) == 800 * seam
    assert SearchOptions(target="builtin").max_slowdown == builtin_space.MAX_SLOWDOWN
    assert SearchOptions(target="builtin", max_slowdown=0).max_slowdown == 0  # 0: no cap
    assert SearchOptions().max_slowdown == 1.0  # the fxp target's default (speed.MAX_SLOWDOWN)


def test_builtin_search_holds_its_speed_cap(digits_builtin, digits):  # noqa: F811 (the imported fixture)
    """By default the builtin search refuses int4 steps that would take the estimated CMSIS-NN
    instructions above 1.1x uniform W8A8's: fewer int4 weights than the uncapped search."""
    from fxpq_keras.search import FxPQNet

    model, uncapped, _ = digits_builtin
    x = np.concatenate([digits["x_train"], digits["x_test"]])
    capped = FxPQNet(0.05, target="builtin", samples=600, seed=0, verbose=0).quantize(model, x[:1200])
    assert capped.instruction_cap is not None and capped.instructions() <= capped.instruction_cap
    assert uncapped.instructions() > capped.instruction_cap  # the cap bites on this net

    def int4(result) -> int:
        return sum(d.bits <= 4 for _, ds, d in result.policy.data_structures() if ds == "weights")

    assert int4(capped) < int4(uncapped)
    assert "CMSIS-NN" in capped.speed_line()


def test_reference_kernels_unpack_int4_weights_into_the_arena():
    """TFLM's reference conv/depthwise/FC request a scratch of one byte per int4 weight; CMSIS-NN's
    s4 kernels read them packed (fxpq_keras.tflm_arena, flatbuffer/memory.py)."""
    from fxpq_keras.flatbuffer.memory import device_model_from_tflite

    graph, _ = builtin_graph(3)
    set_weight_bits(graph, 8)
    eight = device_model_from_tflite(export_tflite(graph, target="builtin"))
    set_weight_bits(graph, 4)
    blob = export_tflite(graph, target="builtin")
    model = S.ModelT.InitFromPackedBuf(blob, 0)
    int4 = [int(np.prod(t.shape)) for t in model.subgraphs[0].tensors if t.type == S.TensorType.INT4]
    assert int4
    four = device_model_from_tflite(blob)
    assert four.cost(kernels="reference").tflm_planned_bytes >= max(int4)
    assert four.cost().tflm_planned_bytes == eight.cost().tflm_planned_bytes


# ---------------------------------------------------------------------------------- every zoo architecture

def _zoo_builtin_policy(calib, seed: int):
    """A builtin-space policy (space.start_policy of target builtin), randomly lowered: weights
    8 or 4 bits, activations 16 or 8, each with its range-derived frac."""
    from fxpq_keras.search import SearchOptions, builtin_space, space

    opts = SearchOptions(target="builtin", per_channel=True)
    policy = space.start_policy(calib, opts)
    ranges = space.data_ranges(calib, opts, policy)
    rng = np.random.default_rng(seed)
    for layer, ds in space.changeable_keys(policy, opts):
        d = policy.get(layer, ds)
        low = builtin_space.widths((layer, ds), d.bits)[0]
        if low < d.bits and rng.random() < 0.5:
            policy.set(layer, ds, bits=low, frac=space.range_frac(ranges[(layer, ds)], low, d.signed))
    policy.constrain_biases()
    return policy


_HEAVY = pytest.mark.skipif(not LONG, reason="10-25 s each: FXPQ_LONG=2 runs it (bench/builtin.py runs it trained)")


def _zoo_builtin_file(name: str):
    """(builtin file bytes, 16 inputs) of a zoo model (untrained: no training in CI; bench/builtin.py
    runs the trained ones) under a mixed int4/int8, int8/int16 builtin policy; None where the model
    has no builtin file (asserted to be for the known reason)."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from bench import models as M
    from fxpq_keras._tf import keras
    from fxpq_keras.calibration import Calibration
    from fxpq_keras.fakequant import quantize_model

    keras.utils.set_random_seed(0)
    model = M.ZOO[name].build()
    x = np.random.default_rng(1).random((16, *model.input_shape[1:]), dtype=np.float32)
    head = model.layers[-1]
    if getattr(head, "activation", None) is keras.activations.softmax:  # untrained logits are tiny: scale
        head.activation = keras.activations.linear  # them to about 1 (TFLM's SOFTMAX takes fracs -3..25)
        top = float(np.abs(model.predict(x, verbose=0)).max())
        head.activation = keras.activations.softmax
        kernel, *rest = head.get_weights()
        head.set_weights([kernel / max(top, 1e-12), *[r / max(top, 1e-12) for r in rest]])
    calib = Calibration(model, x)
    qmodel = quantize_model(calib, _zoo_builtin_policy(calib, seed=len(name)))
    try:
        return export_tflite(qmodel, target="builtin"), x
    except ExportError as exc:
        if name == "mobilenet_v3_tiny":  # MUL / HARD_SWISH: no builtin file (the fxp target takes it)
            assert "no stock int8 equivalent" in str(exc)
            return None
        # untrained MobileNetV1: features vanish with depth, so the classifier's output frac sits far
        # above its accumulator's, which int32 cannot shift (trained: bench/builtin.py)
        assert name == "mobilenet_v1_025" and "overflow int32" in str(exc), str(exc)
        return None


def _same_in(engine: str, blob: bytes, x: np.ndarray, name: str) -> None:
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"{name}.tflite"
        path.write_bytes(blob)
        ours = Interpreter(path).predict(x, raw=True)
        theirs = Interpreter(path, engine=engine).predict(x, raw=True)
    np.testing.assert_array_equal(theirs, ours)


@pytest.mark.parametrize("name", ["lenet5", "residual_ds_net", "ds_cnn_seq", pytest.param("resnet8", marks=_HEAVY),
                                  "ds_cnn_kws", pytest.param("mobilenet_v1_025", marks=_HEAVY), "fc_autoencoder",
                                  "mobilenet_v3_tiny"])
@pytest.mark.filterwarnings("ignore::fxpq_keras.calibration.CalibrationRangeWarning")  # untrained: tiny outputs
def test_every_zoo_architecture_is_bit_exact_in_the_wheel(name):
    """Every zoo model with a mixed int4/int8, int8/int16 builtin policy: the file runs in real TFLM
    (the wheel: reference kernels) exactly as the numpy model."""
    made = _zoo_builtin_file(name)
    if made is not None:
        _same_in("tflm", made[0], made[1][:3], name)


def _cortex_m_ready() -> bool:
    import shutil

    from fxpq_keras.kernels.tflm import tflm_available

    return tflm_available() and shutil.which("qemu-system-arm") is not None \
        and shutil.which("arm-none-eabi-g++") is not None


@pytest.mark.skipif(not _cortex_m_ready(), reason="needs TFLM_DIR, qemu-system-arm and arm-none-eabi-g++")
@pytest.mark.parametrize("name", ["lenet5", "residual_ds_net", "ds_cnn_kws", "fc_autoencoder"])
@pytest.mark.filterwarnings("ignore::fxpq_keras.calibration.CalibrationRangeWarning")
def test_zoo_builtin_files_are_bit_exact_on_cortex_m4_with_cmsis_nn(name):
    """The same files under TFLM + CMSIS-NN on QEMU Cortex-M4 (arm_*_s4 and *_s16 kernels): equal
    to the numpy model. These four hold int16-input FULLY_CONNECTED layers, which CMSIS-NN's Prepare
    refuses per channel, so the writer stores them per tensor (their channels share one scale)."""
    blob, x = _zoo_builtin_file(name)
    model = S.ModelT.InitFromPackedBuf(blob, 0)
    assert S.TensorType.INT16 in {t.type for t in model.subgraphs[0].tensors}
    _same_in("tflm-m4", blob, x[:2], name)
