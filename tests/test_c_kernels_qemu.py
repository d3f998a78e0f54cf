"""C kernels on an emulated Cortex-M4 (QEMU mps2-an386) and Cortex-M7 (mps2-an500) == numpy.

A few hundred seeded random cases per op run in ONE firmware session per CPU (the harness reads
a case file through semihosting); every output must equal the numpy reference bit for bit.
Skipped only when qemu-system-arm / arm-none-eabi-gcc are missing (scripts/setup.sh installs them).
"""

from __future__ import annotations

import struct

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from long_mode import FACTOR, LONG, SEED, examples
from test_c_kernels_host import (
    EDGE_FORMATS,
    _scratch_path_constraints,
    _wide_path_constraints,
    block_path_cases,
    one_pixel_cases,
    quantize_draws,
    quantize_edge_floats,
    scratch_path_case,
    wide_path_case,
)

from fxpq_keras.formats import Format
from fxpq_keras.kernels import host, qemu
from fxpq_keras.kernels.cases import OPS, OpCase, random_case

_missing = qemu.missing_tools()
pytestmark = pytest.mark.skipif(bool(_missing), reason=f"needs {', '.join(_missing)} (installed by scripts/setup.sh)")

CASES_PER_OP_M4 = examples(250)
CASES_PER_OP_M7 = examples(40)

# constraint rotation so every feature shows up in every batch
_VARIANTS = [
    {}, {"x_signed": False}, {"x_signed": True}, {"padding": "same"}, {"padding": "valid"},
    {"out_signed": False}, {"x_bits": 16, "w_bits": 16}, {"activation": "relu"}, {"activation": "relu6"},
    {"per_channel": True}, {"dilation": True}, {"x_bits": 9}, {"out_bits": 2},
    {"w_bits": 9}, {"w_bits": 11}, {"w_bits": 13}, {"w_bits": 15},
]
_KEYS = {
    "conv2d": None, "depthwise_conv2d": None, "fully_connected": None,
    "add": {"x_signed", "out_signed", "x_bits", "activation", "out_bits"},
    "max_pool2d": {"x_signed", "out_signed", "x_bits", "activation", "padding", "out_bits"},
    "average_pool2d": {"x_signed", "out_signed", "x_bits", "activation", "padding", "out_bits"},
    "global_average_pool2d": {"x_signed", "out_signed", "x_bits", "out_bits"},
    "quantize_input": {"out_signed", "out_bits"},
    "dequantize_output": {"x_signed", "x_bits"},
    "requantize_op": {"x_signed", "out_signed", "x_bits", "activation", "out_bits"},
    "zero_pad2d": {"x_signed", "out_signed", "x_bits", "out_bits"},
    "leaky_relu": {"x_signed", "out_signed", "x_bits", "out_bits"},
    "concatenate": {"x_signed", "out_signed", "x_bits", "out_bits"},
}


def _cases(per_op: int, salt: int):
    cases = []
    for i, op in enumerate(OPS):
        for s in range(per_op):
            c = _VARIANTS[s % len(_VARIANTS)]
            if _KEYS[op] is not None:
                c = {k: v for k, v in c.items() if k in _KEYS[op]}
            if op == "fully_connected" and s % 7 == 0:
                c = dict(c, in_features=256)
            cases.append(random_case(op, np.random.default_rng([SEED, salt, i, s] if LONG else [salt, i, s]), **c))
    return cases


def _run(cpu: str, per_op: int, salt: int):
    cases = _cases(per_op, salt)
    chunk = -(-len(cases) // FACTOR)  # long mode: one firmware session per base-sized batch
    results = [r for i in range(0, len(cases), chunk) for r in qemu.run_cases(cases[i:i + chunk], cpu=cpu, timeout=240)]
    by_op: dict[str, list] = {op: [] for op in OPS}
    for case, res in zip(cases, results):
        by_op[case.op].append((case, res))
    return by_op


@pytest.fixture(scope="module")
def m4_results():
    return _run("m4", CASES_PER_OP_M4, 1)


@pytest.fixture(scope="module")
def m7_results():
    return _run("m7", CASES_PER_OP_M7, 2)


def _check(pairs):
    assert pairs
    for case, res in pairs:
        ref = case.reference()
        where = f"{case.describe()} (FXPQ_LONG_SEED={SEED})" if LONG else case.describe()
        assert res.status == 0, f"{res.status_name}: {where}"
        assert res.output.shape == ref.shape, case.describe()
        if ref.dtype.kind == "f":
            assert np.array_equal(res.output.view(np.int32), ref.astype(np.float32).view(np.int32)), case.describe()
        else:
            assert np.array_equal(res.output, ref), \
                f"{where}\nref {ref.ravel()[:16]}\nqemu {res.output.ravel()[:16]}"


@pytest.mark.parametrize("op", OPS)
def test_cortex_m4_matches_numpy(m4_results, op):
    _check(m4_results[op])


@pytest.mark.parametrize("op", OPS)
def test_cortex_m7_matches_numpy(m7_results, op):
    _check(m7_results[op])


def test_every_bit_packed_weight_width_ran_on_m4(m4_results):
    """Weights of every width 2..16 are bit-packed; the M4 run unpacked each width at least once."""
    for op in ("conv2d", "depthwise_conv2d", "fully_connected"):
        seen = {case.extra["w_bits"] for case, _ in m4_results[op]}
        assert seen == set(range(2, 17)), (op, sorted(set(range(2, 17)) - seen))


def test_cortex_m4_matches_host(m4_results):
    """Same kernels, same bits on x86-64 and Thumb-2."""
    for op in ("conv2d", "depthwise_conv2d", "fully_connected"):
        for case, res in m4_results[op][:40]:
            assert np.array_equal(case.run_host(), res.output)


# Every weight width through the optimized (ARMv7E-M DSP) kernels: 8-bit, unsigned 8-bit, int16
# and unsigned 15-bit inputs (the int16-lane limit), channel counts that give whole and half groups
# of 8 terms, several 4-pixel passes plus leftover pixels, and output-channel counts whose last
# rows are shorter than the decoder's reads.
_X_VARIANTS = [dict(x_bits=8, x_signed=True), dict(x_bits=8, x_signed=False), dict(x_bits=12, x_signed=True),
               dict(x_bits=15, x_signed=False), dict(x_bits=4, x_signed=False), dict(x_bits=16, x_signed=False),
               dict(x_bits=16, x_signed=True), {}]


def _width_cases(salt: int) -> list:
    cases = []
    for w_bits in range(2, 17):
        for i, xv in enumerate(_X_VARIANTS):
            rng = np.random.default_rng([salt, w_bits, i])
            cin = int(rng.choice([1, 3, 4, 8, 13, 20, 37]))
            cases.append(random_case("conv2d", rng, w_bits=w_bits, cin=cin, out_ch=int(rng.integers(1, 10)), **xv))
            cases.append(random_case("fully_connected", rng, w_bits=w_bits, in_features=int(rng.integers(1, 90)),
                                     out_ch=int(rng.integers(1, 12)), **xv))
            cases.append(random_case("depthwise_conv2d", rng, w_bits=w_bits, cin=int(rng.integers(1, 9)), **xv))
        # 8-bit inputs, weights other than 8-bit, a KxK kernel whose lane rows do not fit 4 to the block
        # (K = 180): the decoder's matrix loops
        for signed in (True, False):
            rng = np.random.default_rng([salt, w_bits, 94, signed])
            cases.append(random_case("conv2d", rng, w_bits=w_bits, x_bits=8, x_signed=signed, kernel=(3, 3), cin=20,
                                     out_ch=int(rng.integers(4, 9))))
        # 16-bit inputs off the unpacked-row block (fxpq_conv_x16), 4+ rows: the decoder's matrix loops
        # take signed lanes with int32 sums and K < 16, else (uint16 lanes x - 2^15, int64-rule sums)
        # only rows longer than the block (K > 512)
        for signed in (True, False):
            k_range = (2, 16) if signed and w_bits < 14 else (513, 640)
            rng = np.random.default_rng([salt, w_bits, 95, signed])
            c = random_case("fully_connected", rng, w_bits=w_bits, x_bits=16, x_signed=signed,
                            in_features=int(rng.integers(*k_range)), out_ch=int(rng.integers(1, 10)))
            x, w, bias = c.args
            fmt = c.extra["x_fmt"]
            x = rng.integers(fmt.lo, fmt.hi + 1, size=(int(rng.integers(4, 11)), x.shape[1]))
            if w_bits >= 14:  # small weights: each row's sum |w| * max|x| proves the int64-rule sum below 2^31
                w = w >> (w_bits - 6)
            cases.append(OpCase("fully_connected", (x, w, bias), c.kwargs, c.extra))
    # narrow products into 16-bit outputs: output frac above the accumulator's (the left-shift finish)
    for s in range(8):
        rng = np.random.default_rng([salt, 98, s])
        for op in ("conv2d", "depthwise_conv2d", "fully_connected"):
            cases.append(random_case(op, rng, x_bits=3, w_bits=3, out_bits=16, x_signed=bool(s % 2), cin=8))
    # the int64 accumulator rule: 16-bit inputs and weights, many terms
    for s in range(6):
        rng = np.random.default_rng([salt, 99, s])
        cases.append(random_case("conv2d", rng, x_bits=16, w_bits=16, cin=40, x_signed=bool(s % 2)))
        cases.append(random_case("fully_connected", rng, x_bits=16, w_bits=15, in_features=300))
    # worst-case accumulators: every input and weight at an extreme, so each int32 partial sum of
    # the chunked int64 accumulation is at its bound (a chunk one group too long would wrap)
    for s, (x_bits, x_signed, w_bits) in enumerate([(16, True, 8), (16, False, 8), (16, True, 12), (16, False, 11),
                                                    (8, True, 16), (12, True, 14)]):
        rng = np.random.default_rng([salt, 97, s])
        for op, kw in (("fully_connected", dict(in_features=513, out_ch=3)),
                       ("conv2d", dict(cin=64, kernel=(3, 3), out_ch=2, padding="valid"))):
            c = random_case(op, rng, x_bits=x_bits, x_signed=x_signed, w_bits=w_bits, per_channel=False, **kw)
            x, w, bias = c.args
            fmt = c.extra["x_fmt"]
            for x_end, w_end in ((fmt.lo, -(1 << (w_bits - 1))), (fmt.hi, -(1 << (w_bits - 1)))):
                cases.append(OpCase(op, (np.full_like(x, x_end), np.full_like(w, w_end), bias), c.kwargs, c.extra))
    # rows whose sum |w| * max|x| stays just below 2^31 although the width rule asks for int64 (the
    # exact int32 path) or just above it (chunks), with inputs that drive every product to the
    # same sign
    for s, (sign, mag) in enumerate(((1, 127), (-1, 127), (1, 128), (-1, 128))):  # 513 * 128 * 2^15 > 2^31
        rng = np.random.default_rng([salt, 96, s])
        c = random_case("fully_connected", rng, x_bits=16, x_signed=True, w_bits=12, per_channel=False,
                        in_features=513, out_ch=4)
        x, w, bias = c.args
        fmt = c.extra["x_fmt"]
        w = np.where(rng.random(w.shape) < 0.5, -mag, mag)
        x = np.where((w[:1] > 0) == (sign > 0), fmt.hi, fmt.lo).repeat(5, axis=0)  # 5 pixels: the 4-column passes
        cases.append(OpCase("fully_connected", (x, w, bias), c.kwargs, c.extra))
        c = random_case("conv2d", rng, x_bits=16, x_signed=True, w_bits=12, per_channel=False, cin=57,
                        kernel=(3, 3), out_ch=2, padding="valid")
        x, w, bias = c.args
        w = np.where(rng.random(w.shape) < 0.5, -mag, mag)
        w[1] = w[0]
        pat = np.where((w[0] > 0) == (sign > 0), fmt.hi, fmt.lo)
        x = np.tile(pat[None], (x.shape[0], x.shape[1] // 3 + 1, x.shape[2] // 3 + 1, 1))[:, :x.shape[1], :x.shape[2]]
        cases.append(OpCase("conv2d", (x, w, bias), c.kwargs, c.extra))
        # depthwise 3x3 over int16 with 16-bit weights: 9 * 7281 * 2^15 < 2^31 < 9 * 7282 * 2^15
        c = random_case("depthwise_conv2d", rng, x_bits=16, x_signed=True, w_bits=16, per_channel=False,
                        cin=8, kernel=(3, 3), depth_multiplier=1, padding="valid")
        x, w, bias = c.args
        w = np.where(rng.random(w.shape) < 0.5, -1, 1) * (7281 if mag == 127 else 7282)
        pat = np.where((w[0] > 0) == (sign > 0), fmt.hi, fmt.lo)  # (3, 3, 8)
        x = np.tile(pat[None], (x.shape[0], x.shape[1] // 3 + 1, x.shape[2] // 3 + 1, 1))[:, :x.shape[1], :x.shape[2]]
        cases.append(OpCase("depthwise_conv2d", (x, w, bias), c.kwargs, c.extra))
    return cases


@pytest.mark.parametrize("cpu", ["m4", "m7"])
def test_optimized_kernels_every_width(cpu):
    """The DSP kernels (the Cortex-M build's default) == numpy for every weight width 2..16."""
    cases = _width_cases(7 if cpu == "m4" else 8)
    results = qemu.run_cases(cases, cpu=cpu, timeout=240)
    _check(list(zip(cases, results)))


@pytest.mark.parametrize("cpu", ["m4", "m7"])
@settings(max_examples=examples(3), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(draws=st.lists(st.tuples(st.integers(0, 2**32 - 1), _scratch_path_constraints()), min_size=60, max_size=60))
def test_optimized_scratch_free_paths(cpu, draws):
    """The DSP kernels' scratch-free paths == numpy: 1x1 convs (any stride) and fully connected
    reading 8-bit (SXTB16 / UXTB16) or 16-bit (PKHBT / PKHTB) columns in place, KxK convs over
    8-bit or 16-bit im2col columns, the K mod 8 tail lanes, rows decoded from a stack copy near
    the end of the weights, depthwise channel quads decoded on the stack (windows past 25 taps
    and past 64 take the channel loop and the reference loop); one firmware session per draw."""
    cases = [scratch_path_case(seed, c) for seed, c in draws]
    _check(list(zip(cases, qemu.run_cases(cases, cpu=cpu, timeout=240))))


@pytest.mark.parametrize("cpu", ["m4", "m7"])
@settings(max_examples=examples(2), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(draws=st.lists(st.tuples(st.integers(0, 2**32 - 1), _wide_path_constraints()), min_size=50, max_size=50))
def test_optimized_wide_paths(cpu, draws):
    """The DSP kernels' wide paths == numpy: unsigned 16-bit inputs as x - 2^15 lanes (EOR) with
    the weight sums added back, int64 accumulators as exact int32 partial sums, depthwise channel
    quads over 8- and 16-bit inputs (interior and border pixels), more output channels than the
    finish cache; one firmware session per draw."""
    cases = [wide_path_case(seed, c) for seed, c in draws]
    _check(list(zip(cases, qemu.run_cases(cases, cpu=cpu, timeout=240))))


@pytest.mark.parametrize("cpu", ["m4", "m7"])
@settings(max_examples=examples(2), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32 - 1))
def test_optimized_block_paths(cpu, seed):
    """The DSP conv's unpacked-row paths == numpy: 16-bit columns against natural-order int16 rows
    (SMLAD over 4 in-place or 2 im2col columns; SMLALD int64 sums when the width rule asks for
    them, e.g. 16-bit lanes with 14..16-bit weights), 8-bit columns against int16 lane rows for
    weights other than 8-bit, several blocks of rows, K mod 4 / mod 8 tails, rows longer than the
    block, left-shift finishes; one firmware session per example."""
    cases = block_path_cases(seed, 40)
    _check(list(zip(cases, qemu.run_cases(cases, cpu=cpu, timeout=240))))


@pytest.mark.parametrize("cpu", ["m4", "m7"])
@settings(max_examples=examples(2), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32 - 1))
def test_optimized_one_pixel_paths(cpu, seed):
    """The DSP fully connected loop over 1..3 pixels (each column load meets 4 rows, 2 for 16-bit
    unsigned inputs with their weight sums) == numpy: every input kind, weights 2..16 bits, K mod 8
    tails, leftover rows and rows near the end of the weights, int64 accumulators by the width
    rule as exact int32 partial sums; one firmware session per example."""
    cases = one_pixel_cases(seed, 60)
    _check(list(zip(cases, qemu.run_cases(cases, cpu=cpu, timeout=240))))


def _pool_case(seed: int, op: str, x_bits: int, x_signed: bool, d: int, size: tuple, pool: tuple, ch: int,
               out_bits: int) -> OpCase:
    """An average / global average pool with this window, channel count and frac difference."""
    rng = np.random.default_rng(seed)
    in_fmt = Format(x_bits, int(rng.integers(-4, 10)), x_signed)
    out_fmt = Format(out_bits, int(np.clip(in_fmt.frac + d, -32, 32)), bool(rng.integers(2)))
    x = rng.integers(in_fmt.lo, in_fmt.hi + 1, size=(1, *size, ch))
    if rng.random() < 0.3:  # the sums' bounds
        x[:] = in_fmt.lo if rng.random() < 0.5 else in_fmt.hi
    if op == "global_average_pool2d":
        return OpCase(op, (x,), dict(in_frac=in_fmt.frac, out_fmt=out_fmt, keepdims=False), dict(in_fmt=in_fmt))
    return OpCase(op, (x,), dict(pool=pool, stride=tuple(int(v) for v in rng.integers(1, 4, size=2)),
                                 padding=["same", "valid"][int(rng.integers(2))], in_frac=in_fmt.frac,
                                 out_fmt=out_fmt, activation=[None, "relu", "relu6"][int(rng.integers(3))]),
                  dict(in_fmt=in_fmt))


# (seed, op, input (bits, signed), frac difference, input size, window, channels, output bits)
POOL_CHOICES = (range(2**32), ["average_pool2d", "global_average_pool2d"],
                [(8, True), (8, False), (12, True), (16, True), (16, False), (4, False)], range(-14, 15),
                [(5, 7), (12, 12), (25, 5), (17, 16), (6, 5)], [(2, 2), (3, 3), (1, 4), (5, 5)],
                [1, 3, 4, 8, 13, 64], [8, 16])
_POOL_DRAW = st.tuples(*(st.integers(v.start, v.stop - 1) if isinstance(v, range) else st.sampled_from(v)
                         for v in POOL_CHOICES))


def pool_case(draw: tuple) -> OpCase:
    """The pool case of one POOL_CHOICES draw."""
    seed, op, (xb, xs), d, size, pool, ch, ob = draw
    return _pool_case(seed, op, xb, xs, d, size, pool, ch, ob)


@pytest.mark.parametrize("cpu", ["m4", "m7"])
@settings(max_examples=examples(2), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(draws=st.lists(_POOL_DRAW, min_size=40, max_size=40))
def test_optimized_average_pool(cpu, draws):
    """The DSP average pool == numpy: 8-bit inputs summed in SXTAB16 / UXTAB16 lanes (windows up
    to 255 taps; 17x16 = 272 takes the int32 sums), 16-bit inputs two channels a word, the last
    1..3 channels, the int32 floor division for frac differences -14..14 (the widest decline to
    the reference loop), clipped windows at the borders."""
    cases = [pool_case(draw) for draw in draws]
    _check(list(zip(cases, qemu.run_cases(cases, cpu=cpu, timeout=240))))


def test_cortex_m_builds_have_both_kernel_variants():
    """The default Cortex-M harness links the optimized kernels; the reference build does not."""
    import subprocess

    def symbols(kernels):
        elf = qemu.build_firmware("m4", kernels=kernels)
        return subprocess.run(["arm-none-eabi-nm", str(elf)], capture_output=True, text=True, check=True).stdout

    assert "fxpq_mm_s8_w8" in symbols("optimized")
    assert "fxpq_mm_s8_w8" not in symbols("reference")


def test_reference_build_matches_numpy():
    """The portable reference loops, built for the M4 without the DSP kernels, stay exact."""
    cases = _width_cases(9)[::3]
    _check(list(zip(cases, qemu.run_cases(cases, cpu="m4", kernels="reference", timeout=240))))


def test_ticks_are_deterministic_and_scale_with_work():
    """-icount shift=0: the same case costs the same ticks every run; more MACs cost more."""
    small = random_case("fully_connected", np.random.default_rng(5), in_features=8, w_bits=8, x_bits=8)
    large = random_case("fully_connected", np.random.default_rng(5), in_features=256, w_bits=8, x_bits=8)
    a = qemu.run_cases([small, large], cpu="m4")
    b = qemu.run_cases([small, large], cpu="m4")
    assert [r.ticks for r in a] == [r.ticks for r in b]
    macs = [c.args[1].size * c.args[0].shape[0] for c in (small, large)]
    assert macs[1] > macs[0] and a[1].ticks > a[0].ticks > 0


def test_function_profile_accounts_for_the_timed_instructions():
    """bench/estimate_layers.py's --profile (QEMU's block trace, attributed by the ELF's symbols): the
    kernel functions hold what the harness timed for the call (within 5 %: the timer reads and the
    case's bookkeeping around them), and a one-pixel fully connected call spends it in its loop and finish."""
    case = random_case("fully_connected", np.random.default_rng(3), in_features=64, out_ch=32, w_bits=8, x_bits=8,
                       x_signed=False, per_channel=False)
    case.args = (case.args[0][:1],) + tuple(case.args[1:])
    timed = qemu.run_cases([case], cpu="m4")[0].instructions
    profile = qemu.function_profile([case], cpu="m4")
    kernels = {name: n for name, n in profile.items() if name.startswith("fxpq_")}
    assert abs(sum(kernels.values()) / timed - 1) < 0.05, (sum(kernels.values()), timed)
    assert max(kernels, key=kernels.get).startswith("fxpq_fc1_")  # the loop's copy or its finish (fxpq_fc1_store)


def test_protocol_constants_match_the_c_header():
    consts = qemu.protocol_from_header()
    for i, name in enumerate(qemu.PARAMS):
        assert consts[f"FXPQ_P_{name}"] == i, name
    assert consts["FXPQ_P_COUNT"] == len(qemu.PARAMS)
    hop = {"conv2d": "CONV2D", "depthwise_conv2d": "DEPTHWISE_CONV2D", "fully_connected": "FULLY_CONNECTED",
           "add": "ADD", "max_pool2d": "MAX_POOL2D", "average_pool2d": "AVERAGE_POOL2D",
           "global_average_pool2d": "GLOBAL_AVERAGE_POOL2D", "quantize_input": "QUANTIZE",
           "dequantize_output": "DEQUANTIZE", "requantize_op": "REQUANTIZE", "zero_pad2d": "ZERO_PAD2D",
           "leaky_relu": "LEAKY_RELU", "concatenate": "CONCATENATION"}
    for op, op_id in qemu.OP_IDS.items():
        assert consts[f"FXPQ_HOP_{hop[op]}"] == op_id


def test_bad_cases_get_statuses_not_crashes():
    """Invalid parameters and malformed records come back as per-case statuses; the run goes on."""
    S = host.STATUS_CODES
    good = random_case("requantize_op", np.random.default_rng(0))
    good_rec, _, _ = qemu.encode_case(good, 0)
    x = np.zeros(16, dtype=np.int8).tobytes()
    fmt = dict(IN_N=1, IN_H=1, IN_W=1, IN_C=16, IN_BITS=8, IN_FRAC=0, IN_SIGNED=1, OUT_BITS=8, OUT_FRAC=0, OUT_SIGNED=1)
    records = [
        good_rec,
        qemu.encode_record(1, qemu.OP_IDS["requantize_op"], dict(fmt, OUT_BITS=17), [x]),
        qemu.encode_record(2, qemu.OP_IDS["requantize_op"], dict(fmt, IN_BITS=1), [x]),
        qemu.encode_record(3, qemu.OP_IDS["requantize_op"], dict(fmt, ACTIVATION=7), [x]),
        qemu.encode_record(4, qemu.OP_IDS["requantize_op"], dict(fmt, IN_C=0), [x]),
        qemu.encode_record(5, qemu.OP_IDS["requantize_op"], fmt, [x[:8]]),  # input blob too short
        qemu.encode_record(6, 99, fmt, [x]),  # unknown op
        qemu.encode_record(7, qemu.OP_IDS["conv2d"], dict(
            fmt, IN_H=4, IN_W=4, IN_C=1, FILTER_N=1, FILTER_H=5, FILTER_W=5, FILTER_C=1, W_BITS=8, STRIDE_H=1,
            STRIDE_W=1, DILATION_H=1, DILATION_W=1, PADDING=0, OUT_N=1, OUT_H=1, OUT_W=1, OUT_C=1),
            [x, bytes(25)]),  # 'valid' 5x5 window on a 4x4 input
        struct.pack("<I", 8) + struct.pack("<2I", 8, 1),  # truncated record
        good_rec[:4] + struct.pack("<I", 9) + good_rec[8:],
    ]
    out = qemu.run_records(records, cpu="m4")
    statuses = {case_id: status for case_id, status, _, _ in out}
    assert out[0][1] == 0 and out[-1][1] == 0 and out[-1][0] == 9
    assert statuses[1] == S["FXPQ_ERR_BAD_FORMAT"]
    assert statuses[2] == S["FXPQ_ERR_BAD_FORMAT"]
    assert statuses[3] == S["FXPQ_ERR_BAD_PARAM"]
    assert statuses[4] == S["FXPQ_ERR_BAD_DIMS"]
    assert statuses[5] == -100  # FXPQ_HARNESS_ERR_BAD_RECORD
    assert statuses[6] == -102  # FXPQ_HARNESS_ERR_BAD_OP
    assert statuses[7] == S["FXPQ_ERR_BAD_PADDING"]
    assert out[8][1] == -100


def test_bad_case_file_fails_the_run():
    with pytest.raises(qemu.QemuError, match="exited with 3"):
        qemu.run_case_file(b"NOPE" + struct.pack("<2I", 1, 0), cpu="m4", timeout=60)
    with pytest.raises(qemu.QemuError, match="exited with 4"):  # announces a case it does not hold
        qemu.run_case_file(struct.pack("<3I", qemu.MAGIC_CASES, qemu.VERSION, 1), cpu="m4", timeout=60)


@pytest.mark.parametrize("cpu", ["m4", "m7"])
@settings(max_examples=examples(2), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(draws=st.lists(quantize_draws(), min_size=20, max_size=20))
def test_quantize_on_cpu(cpu, draws):
    """The bit-level QUANTIZE == numpy on the target (M4: no float64 unit, M7: one): the edge floats
    of every EDGE_FORMATS format, NaN payloads, and hypothesis-drawn arrays, one QEMU session."""
    cases = [OpCase("quantize_input", (quantize_edge_floats(f), f), {}, {}) for f in EDGE_FORMATS]
    cases += [OpCase("quantize_input", (x, f), {}, {}) for x, f in draws]
    records = [qemu.encode_case(c, i)[0] for i, c in enumerate(cases)]
    # NaN payloads (the case encoder refuses NaN, as the numpy reference does): the C rule is NaN -> 0
    nan = np.array([0x7FC00000, 0xFFC00000, 0x7F800001, 0xFFFFFFFF], dtype=np.uint32).view(np.float32)
    params = qemu._prepare(OpCase("quantize_input", (np.zeros(4, np.float32), Format(8, 3, True)), {}, {}))[0]
    records.append(qemu.encode_record(len(cases), qemu.OP_IDS["quantize_input"], params, [nan.astype("<f4").tobytes()]))
    res = qemu.run_records(records, cpu=cpu)
    for c, (_id, status, _ticks, payload) in zip(cases, res):
        got = np.frombuffer(payload, dtype=c.args[1].storage_dtype.newbyteorder("<")).astype(np.int64)
        assert status == 0 and np.array_equal(got, c.reference().ravel()), c.describe()
    assert res[-1][1] == 0 and np.frombuffer(res[-1][3], dtype=np.int8).tolist() == [0] * 4


def test_quantize_special_values_on_m4():
    x = np.array([np.inf, -np.inf, 3e38, -3e38, 0.0625, -0.0625, 0.1875, -0.1875, -0.0, 1e-45], dtype=np.float32)
    for fmt in (Format(8, 3, True), Format(16, -32, False), Format(2, 32, True)):
        case = OpCase("quantize_input", (x, fmt), {}, {})
        res = qemu.run_cases([case], cpu="m4")
        assert np.array_equal(res[0].output, case.reference())
