"""The instruction estimate (fxpq_keras.instructions): the C dispatcher's paths, a policy's estimate equal
to its exported file's, and whole zoo models within a stated error of their QEMU Cortex-M4 count."""

from __future__ import annotations

import re

import numpy as np
import pytest
from test_export_keras import _every_layer_model
from test_search import digits  # noqa: F401  (the fixture: a tiny CNN on 8x8 digits)

import fxpq_keras as fx
from fxpq_keras.flatbuffer import export_tflite
from fxpq_keras.flatbuffer.memory import device_model_from_graph, device_model_from_tflite
from fxpq_keras.instructions import (
    KernelCall,
    call_instructions,
    coefficients,
    int8_model_instructions,
    int8_path,
    kernel_path,
    model_instructions,
)

# docs/kernels.md "Instruction estimate": every stored zoo measurement within this of its estimate
ZOO_ERROR = 0.08
# docs/algorithm.md "Speed cap": every zoo model's int8 file in TFLM + CMSIS-NN within this of the reference
INT8_ERROR = 0.05


def _conv(**kw) -> KernelCall:
    base = dict(op="conv2d", x_bits=8, x_signed=True, out_bits=8, out_signed=True, in_elements=8 * 8 * 16,
                out_elements=8 * 8 * 32, w_bits=8, macs=8 * 8 * 32 * 9 * 16, k=9 * 16, taps=9, channels=32,
                weights=32 * 9 * 16)
    return KernelCall(**{**base, **kw})


def test_paths_follow_the_c_dispatcher():
    """The branches of fxpq_dsp.c: 16-bit inputs on the block of unpacked int16 rows (K <= 512) when
    the sums need int64 or the input is full 16-bit unsigned, or with 4+ pixels, K >= 16 and (KxK)
    every row in one block; int64 sums there run SMLALD unless the rows' bound proves int32; 8-bit
    inputs with weights other than 8-bit on lane rows (4+ pixels, KxK: 4 rows or all in the block);
    on the decoder's loop an int64 accumulator stays int32 when the rows' bound proves it, else chunked
    int32 partial sums, or the reference loop when not even 8 terms fit; depthwise needs multiplier 1
    and four channels for its four-channel loop (8- and 16-bit inputs)."""
    assert kernel_path(_conv()) == "conv2d.kxk.x8"
    assert kernel_path(_conv(w_bits=4)) == "conv2d.kxk.x8"  # 3 rows of 144 lanes a block: the decoder
    assert kernel_path(_conv(w_bits=4, k=72)) == "conv2d.kxk.x8l"  # 7 rows a block
    assert kernel_path(_conv(taps=1, k=16)) == "conv2d.1x1.x8"
    assert kernel_path(_conv(taps=1, k=16, w_bits=4)) == "conv2d.1x1.x8l"
    assert kernel_path(_conv(x_bits=12)) == "conv2d.kxk.x16"  # 3 rows a block, 32 channels
    assert kernel_path(_conv(x_bits=12, taps=1)) == "conv2d.1x1.x16b"
    assert kernel_path(_conv(x_bits=12, taps=1, k=8)) == "conv2d.1x1.x16"  # rows under 16 terms
    assert kernel_path(_conv(x_bits=16, x_signed=False)) == "conv2d.kxk.xu16b"  # 144 * 2^7 * (2^16 - 1) < 2^31
    assert kernel_path(_conv(x_bits=16, x_signed=False, taps=1, k=16)) == "conv2d.1x1.xu16b"
    assert kernel_path(_conv(x_bits=16, x_signed=False, taps=1, k=576, w_l1=1.0)) == "conv2d.1x1.xu16"  # over the block
    assert kernel_path(_conv(x_bits=15, x_signed=False, taps=1, k=16)) == "conv2d.1x1.x16b"
    fc = dict(op="fully_connected", taps=1, k=144, out_elements=32, macs=32 * 144, channels=32)
    # one pixel: the one-pixel loop, int64 by the width rule as int32 partial sums of whole groups
    assert kernel_path(_conv(**fc, x_bits=16, x_signed=False)) == "fully_connected.fc1"  # 17 + 8 + 8 > 31
    assert kernel_path(_conv(**{**fc, "k": 576}, x_bits=16, x_signed=False)) == "fully_connected.fc1"
    assert kernel_path(_conv(**{**fc, "k": 64}, x_bits=15, x_signed=False)) == "fully_connected.fc1"
    assert kernel_path(_conv(**fc, x_bits=8, w_bits=3)) == "fully_connected.fc1"
    assert kernel_path(_conv(**{**fc, "out_elements": 96, "macs": 96 * 144})) == "fully_connected.fc1"  # 3 pixels
    assert kernel_path(_conv(**{**fc, "out_elements": 32, "taps": 1, "op": "conv2d"})) == "conv2d.1x1.fc1"
    # not even 8 terms of 2^15 x 2^15 fit int32: the SMLALD block; 4 pixels: the matrix loops
    assert kernel_path(_conv(**fc, x_bits=16, x_signed=False, w_bits=16)) == "fully_connected.smlald"
    assert kernel_path(_conv(**fc, x_bits=16, w_bits=16)) == "fully_connected.smlald"
    fc4 = {**fc, "out_elements": 128, "macs": 128 * 144}
    assert kernel_path(_conv(**fc4, x_bits=15, x_signed=False)) == "fully_connected.x16b"  # rows' bound < 2^31
    assert kernel_path(_conv(**fc4, x_bits=16, w_bits=16)) == "fully_connected.smlald"
    assert kernel_path(_conv(x_bits=16, w_bits=16)) == "conv2d.kxk.smlald"  # 8 terms of 2^15 * 2^15 pass 2^31
    assert kernel_path(_conv(x_bits=16, w_bits=12)) == "conv2d.kxk.smlald"  # the worst row passes 2^31
    assert kernel_path(_conv(x_bits=16, w_bits=12, w_l1=2.0)) == "conv2d.kxk.x16b"  # these rows do not
    assert kernel_path(_conv(x_bits=16, w_bits=12, k=576)) == "conv2d.kxk.chunked"  # rows over the block
    assert kernel_path(_conv(x_bits=16, w_bits=16, k=576)) == "conv2d.kxk.ref"
    assert kernel_path(_conv(x_bits=8, w_bits=16, k=4096, taps=1)) == "conv2d.1x1.chunked"  # 8 + 16 + 12 > 31
    dw = dict(op="depthwise_conv2d", k=9, taps=9, channels=16, macs=9 * 64 * 16, weights=144, out_elements=64 * 16)
    assert kernel_path(_conv(**dw)) == "depthwise_conv2d.quad.x8"
    assert kernel_path(_conv(**{**dw, "x_bits": 16})) == "depthwise_conv2d.quad.x16"
    assert kernel_path(_conv(**{**dw, "x_bits": 16, "w_bits": 16})) == "depthwise_conv2d.ref"
    assert kernel_path(_conv(**{**dw, "x_bits": 16, "w_bits": 16, "w_l1": 1.0})) == "depthwise_conv2d.quad.x16"
    assert kernel_path(_conv(**{**dw, "depth_multiplier": 2})) == "depthwise_conv2d.channel.x8"
    assert kernel_path(_conv(**{**dw, "channels": 3})) == "depthwise_conv2d.channel.x8"


def test_slow_formats_cost_more():
    """What the search must see: 16-bit activations, the reference loop and chunked int64 sums cost more."""
    int8 = call_instructions(_conv())
    assert call_instructions(_conv(x_bits=16)) > int8
    fc = dict(op="fully_connected", taps=1, k=64, out_elements=32, macs=32 * 64, channels=32)
    assert call_instructions(_conv(**fc, x_bits=16, x_signed=False)) > call_instructions(
        _conv(**fc, x_bits=15, x_signed=False))
    assert call_instructions(_conv(x_bits=16, w_bits=12)) > call_instructions(_conv(x_bits=16, w_bits=12, w_l1=2.0))
    dw = dict(op="depthwise_conv2d", k=9, taps=9, channels=16, macs=9 * 64 * 16, weights=144, out_elements=64 * 16)
    assert call_instructions(_conv(**{**dw, "x_bits": 16})) > call_instructions(_conv(**dw))
    assert call_instructions(KernelCall("reshape", 8, True, 8, True, 4, 4)) is None


def test_zoo_models_within_the_stated_error():
    """Stored QEMU M4 counts of whole zoo files (uniform 8/16-bit and random mixed widths, written by
    scripts/fit_instructions.py with the kernel calls of each file) against the estimate."""
    data = coefficients()
    assert data["checks"], "instructions.json holds no whole-model measurements"
    models = {c["model"] for c in data["checks"]}
    assert {"lenet5", "residual_ds_net", "ds_cnn_seq", "ds_cnn_kws"} <= models
    for check in data["checks"]:
        est = model_instructions([KernelCall.from_dict(c) for c in check["calls"]])
        assert abs(est / check["instructions"] - 1) <= ZOO_ERROR, (check["model"], check["policy"], est,
                                                                   check["instructions"])


def test_int8_paths_follow_cmsis_nn():
    """The CMSIS-NN wrappers' choice by geometry: 1x1 vs KxK convolution, depthwise 3x3 / other
    multiplier-1 / generic; formats do not matter (every tensor is int8 there); a reshape has no kernel."""
    assert int8_path(_conv()) == "int8.conv2d.kxk"
    assert int8_path(_conv(taps=1, k=16, x_bits=4, w_bits=3)) == "int8.conv2d.1x1"
    dw = dict(op="depthwise_conv2d", k=9, taps=9, channels=16, macs=9 * 64 * 16, weights=144, out_elements=64 * 16)
    assert int8_path(_conv(**dw)) == "int8.depthwise_conv2d.3x3"
    assert int8_path(_conv(**{**dw, "k": 25, "taps": 25})) == "int8.depthwise_conv2d.opt"
    assert int8_path(_conv(**{**dw, "depth_multiplier": 2})) == "int8.depthwise_conv2d.generic"
    assert int8_path(KernelCall("reshape", 8, True, 8, True, 4, 4)) is None
    assert int8_model_instructions([_conv()]) == int8_model_instructions([_conv(x_bits=16, w_bits=4)])


def test_int8_reference_within_the_stated_error():
    """Stored TFLM + CMSIS-NN M4 counts of every zoo model's int8 file (scripts/fit_instructions.py, with
    the kernel calls of the model's fxp graph, what the search's DeviceModel sees) against the reference."""
    checks = coefficients()["int8_checks"]
    assert {"lenet5", "residual_ds_net", "ds_cnn_seq", "ds_cnn_kws", "fc_autoencoder", "resnet8",
            "mobilenet_v1_025"} <= {c["model"] for c in checks}
    for check in checks:
        est = int8_model_instructions([KernelCall.from_dict(c) for c in check["calls"]])
        assert abs(est / check["instructions"] - 1) <= INT8_ERROR, (check["model"], est, check["instructions"])


@pytest.fixture(scope="module")
def keras_case():
    model = _every_layer_model()
    x = np.random.default_rng(1).uniform(0, 1, (32, 12, 12, 1)).astype(np.float32)
    policy = fx.Policy.uniform(model, 8, x)
    return fx.quantize_model(model, policy), policy


def test_policy_estimate_equals_the_exported_files(keras_case):
    """DeviceModel.instructions(policy, changes) (the search's) == the estimate of the file that policy
    exports: each width reaches the kernel call it belongs to."""
    qmodel, policy = keras_case
    device = device_model_from_graph(fx.lower_model(qmodel))
    rng = np.random.default_rng(5)
    keys = [(layer, ds) for layer, ds, _ in policy.data_structures() if ds in ("output", "weights")]
    try:
        for _ in range(3):
            p = policy.copy()
            for layer, ds in keys:
                p.set(layer, ds, bits=int(rng.choice([4, 8, 12, 16])))
            p.constrain_biases()
            fx.set_policy(qmodel, p)
            from_file = device_model_from_tflite(export_tflite(qmodel)).instructions()
            assert device.instructions(p) == pytest.approx(from_file)
            layer, ds = keys[int(rng.integers(len(keys)))]
            q = p.copy()
            q.set(layer, ds, bits=16)
            assert device.instructions(p, {(layer, ds): 16}) == pytest.approx(device.instructions(q))
    finally:
        fx.set_policy(qmodel, policy)


def test_search_honors_max_slowdown(digits: dict) -> None:  # noqa: F811 (the imported fixture)
    """A capped search (max_slowdown 1.1) ends at or under 1.1x the reference's estimated instructions, or, where
    even the int8 state of the policy is above it, at or under 1.1x that state's (too_slow's escape: what the budget
    forces is not held against other steps), and says which; the reference is TFLite int8 + CMSIS-NN's by default,
    uniform 8-bit's with speed_reference="uniform8"; a tighter cap refuses more; none (or 0) has no cap."""
    from test_search import FAST

    from fxpq_keras.search import FxPQNet

    x, model = digits["x_train"], digits["model"]
    capped = FxPQNet(0.02, max_slowdown=1.1, **FAST).quantize(model, x)
    assert capped.instruction_cap == pytest.approx(1.1 * capped.device_model.int8_instructions())
    assert capped.instructions() <= max(capped.instruction_cap, 1.1 * capped.speed_reference)
    met = capped.instructions() <= capped.instruction_cap
    assert f"TFLite int8 + CMSIS-NN's (estimated); cap 1.1x (max_slowdown) {'met' if met else 'NOT MET'}" in \
        capped.summary()
    old = FxPQNet(0.02, max_slowdown=1.1, speed_reference="uniform8", **FAST).quantize(model, x)
    eight = {(layer, ds): 8 for layer, ds, _ in old.start_policy.data_structures() if ds != "bias"}
    assert old.instruction_cap == pytest.approx(1.1 * old.device_model.instructions(old.start_policy, eight))
    assert old.instructions() <= old.instruction_cap
    assert "uniform 8-bit's (estimated); cap 1.1x (max_slowdown) met" in old.summary()
    assert old.to_dict()["refused_for_speed"] == old.refused_for_speed
    tight = FxPQNet(0.02, max_slowdown=0.9, speed_reference="uniform8", **FAST).quantize(model, x)
    assert tight.instruction_cap == pytest.approx(0.9 / 1.1 * old.instruction_cap)
    # a cap binds through the steps it refuses, which are steps that raise the estimate: where no step
    # does (since the one-pixel fully connected loop, this net's narrower weights are no slower than
    # 8-bit ones) a cap the budget cannot reach ends where the search without a cap ends
    uncapped = FxPQNet(0.02, max_slowdown=None, **FAST).quantize(model, x)
    assert tight.instructions() <= old.instructions() + 1e-6
    assert (tight.instructions() <= tight.instruction_cap or tight.refused_for_speed > 0
            or tight.instructions() == pytest.approx(uncapped.instructions()))
    assert FxPQNet(0.02).options.max_slowdown == 1.0  # the default "auto": int8 + CMSIS-NN's speed (docs/algorithm.md)
    assert FxPQNet(0.02, target="builtin").options.max_slowdown == 1.1  # builtin_space.MAX_SLOWDOWN
    assert FxPQNet(0.02).options.speed_reference == "int8"
    for off in (None,):
        free = FxPQNet(0.02, max_slowdown=off, **FAST).quantize(model, x)
        assert free.instruction_cap is None and free.refused_for_speed == 0
        assert "no speed cap" in free.summary()


def test_speed_cap_binds_only_where_it_must(digits: dict) -> None:  # noqa: F811 (the imported fixture)
    """A search runs without its cap first (search/speed.py `deferred`): a cap its result already meets costs
    nothing (the uncapped policy, no step refused, one search), a cap the budget's formats alone put out of
    reach neither, and only a result above a cap within reach is searched again under it (both searches
    counted; the result kept is the capped one, or the uncapped one when the capped one is no faster and no
    smaller, and the message says which)."""
    from test_search import FAST

    from fxpq_keras.search import FxPQNet

    x, model = digits["x_train"], digits["model"]
    free = FxPQNet(0.02, max_slowdown=None, **FAST).quantize(model, x)
    ratio = free.instructions() / free.device_model.int8_instructions()
    loose = FxPQNet(0.02, max_slowdown=ratio * 1.001, **FAST).quantize(model, x)
    assert loose.policy.to_dict() == free.policy.to_dict() and loose.evaluations == free.evaluations
    assert loose.refused_for_speed == 0 and loose.message == free.message
    assert "(max_slowdown) met; 0 step(s) refused for speed" in loose.summary()
    tight = FxPQNet(0.02, max_slowdown=ratio * 0.9, **FAST).quantize(model, x)
    if "out of reach under the budget" in tight.message:
        # the formats the budget holds wider alone are above this cap (speed.speed_floor): one search
        floor = float(re.search(r"at best ([0-9.]+)x", tight.message).group(1))
        assert ratio * 0.9 - 0.005 < floor < ratio + 0.005
        assert tight.policy.to_dict() == free.policy.to_dict() and tight.evaluations == free.evaluations
        tight = FxPQNet(0.02, max_slowdown=(floor + ratio) / 2, **FAST).quantize(model, x)  # within reach
    assert f"without the speed cap the result was {ratio:.2f}x the reference" in tight.message
    assert tight.evaluations > free.evaluations  # both searches are counted
    if "kept the uncapped result" in tight.message:
        assert tight.policy.to_dict() == free.policy.to_dict()
    else:
        assert tight.refused_for_speed > 0 and tight.policy.to_dict() != free.policy.to_dict()


def test_max_slowdown_option_and_flag() -> None:
    import argparse

    from fxpq_keras.commands import slowdown
    from fxpq_keras.search import FxPQNet

    assert slowdown("none") is None and slowdown("0") is None and slowdown("1.25") == 1.25
    assert slowdown("auto") == "auto"
    for bad in ("-1", "fast", "inf"):
        with pytest.raises(argparse.ArgumentTypeError):
            slowdown(bad)
    for bad in (-0.5, "1", True):
        with pytest.raises(ValueError, match="max_slowdown"):
            FxPQNet(0.01, max_slowdown=bad)
    with pytest.raises(ValueError, match="speed_reference must be int8 or uniform8"):
        FxPQNet(0.01, speed_reference="int16")
    from fxpq_keras.commands import quantize

    parser = quantize.register(argparse.ArgumentParser().add_subparsers())
    args = parser.parse_args(["m.keras", "-d", "d.npz", "-o", "out"])
    assert args.max_slowdown == "auto" and args.speed_reference == "int8"  # SearchOptions resolves it (1.0 for fxp)
    args = parser.parse_args(["m.keras", "-d", "d.npz", "-o", "out", "--max-slowdown", "1", "--speed-reference",
                              "uniform8"])
    assert args.max_slowdown == 1.0 and args.speed_reference == "uniform8"


def test_run_search_keeps_which_result(monkeypatch: pytest.MonkeyPatch) -> None:
    """api.run_search's rule on stand-in searches (no network): a result within the cap ends it (one search);
    above it, the search under the cap is kept when it meets the cap or, both above, has the fewer bytes x
    instructions; `again_if` False keeps the first without a second search, and so does a result whose speed
    floor (the fastest estimate with the formats the budget holds wider kept) is above the cap."""
    from types import SimpleNamespace

    from fxpq_keras.search import speed
    from fxpq_keras.search.api import run_search

    monkeypatch.setattr(speed, "speed_floor", lambda search, policy: search.floor)  # tested on a search below

    class Stub:
        """A finished search whose policy is (instructions, bytes); the cap is 100 instructions."""

        def __init__(self, uncapped: tuple[int, int], capped: tuple[int, int], floor: float) -> None:
            self.instruction_cap, self.options = 100.0, SimpleNamespace(target="fxp", max_slowdown=1.0)
            self.uncapped, self.capped, self.start_broke = uncapped, capped, False
            self.device = SimpleNamespace(instructions=lambda policy: float(policy[0]))
            self.floor = floor
            self.evaluations, self.evaluated_samples, self.full_passes = 1, 1, 1.0

        def run(self) -> SimpleNamespace:
            self.state = SimpleNamespace(policy=self.capped if self.instruction_cap else self.uncapped, message="m")
            return self.state

        def cost(self, policy: tuple[int, int]) -> int:
            return policy[1]

        def release(self) -> None:
            pass

        def _say(self, text: str) -> None:
            pass

    def run(uncapped: tuple[int, int], capped: tuple[int, int], again_if=None,
            floor: float = 80.0) -> tuple[tuple[int, int], int, str]:
        made = []

        def make() -> Stub:
            made.append(Stub(uncapped, capped, floor))
            return made[-1]

        search, state, others = run_search(make, again_if)
        assert len(made) == 1 + len(others) and search.instruction_cap == 100.0  # the cap is reported either way
        return state.policy, len(made), state.message

    assert run((90, 1000), (80, 2000))[:2] == ((90, 1000), 1)  # within the cap: the uncapped search alone
    assert run((150, 1000), (95, 1400))[:2] == ((95, 1400), 2)  # the capped one meets it: kept, whatever its bytes
    policy, searches, message = run((400, 1000), (390, 1045))  # both above: 1.4 % faster for 4.5 % more bytes
    assert (policy, searches) == ((400, 1000), 2) and "kept the uncapped result" in message
    assert run((900, 1000), (200, 1900))[:2] == ((200, 1900), 2)  # both above: 4.5x faster for 1.9x the bytes
    assert run((150, 1000), (95, 1400), again_if=lambda s: False)[:2] == ((150, 1000), 1)
    policy, searches, message = run((150, 1000), (95, 1400), floor=103.0)  # the budget's formats alone: 1.03x
    assert (policy, searches) == ((150, 1000), 1) and "out of reach under the budget: 1.50x" in message
    assert "at best 1.03x with the formats the budget holds wider kept" in message
