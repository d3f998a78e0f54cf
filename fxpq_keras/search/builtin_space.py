"""The format space of target `builtin` (issue 23): what stock TFLM runs, searched per layer.

Stock TFLM 90b983c runs CONV_2D, DEPTHWISE_CONV_2D and FULLY_CONNECTED with int8 activations and
int8 or packed int4 weights, or with int16 activations (zero point 0) and int8 weights; ADD and
the pools in int8 or int16; SOFTMAX on int8 logits. So per data structure:

- weights: 8 or 4 bits, symmetric, float scales min(max|w| / (2^(bits-1) - 1), 2^-frac) per output
  channel (conv, depthwise) or per tensor (fully connected: TFLM refuses per-channel int4 there):
  the policy's `weight_scales` "float" (fakequant/quantizers.py float_scale_quantize). At the
  range-derived frac that is TFLite's own scale; mechanism 3 may choose a larger frac, a finer
  power-of-two step that clips the largest weights (space.frac_candidates tries no smaller one);
- activations (and the input): 16 bits (int16; a non-negative one 15 bits unsigned, which int16
  holds exactly, u16 it does not) or 8 bits (u8 is int8 with zero point -128);
- the logits a softmax reads: 8 bits end the file in TFLM's int8 SOFTMAX; 16 bits are the file's
  output and the softmax runs on the host, as in fxp files (the argmax is the logits');
- biases: not searched (int32, or int64 next to int16 activations, at the accumulator's frac).

The search is the fxp one with these widths (PrecisionSearch.widths, _uniform); where an op reads
or writes an int16 tensor the exporter computes it in int16 with exact QUANTIZE seams
(flatbuffer/builtin.py), and an int16 op takes int8 weights (a 4-bit choice there is stored as
int8, exact). The device objective is the fxp file's accounting (weights at 4 or 8 bits, every
activation at its container size), which ranks these steps as the builtin file's bytes do.

Speed: CMSIS-NN's int4 and int16x8 kernels are slower per MAC than its int8 ones on Cortex-M4
(bench/builtin_speed.py: int4 weights 1.65-2.4x, int16 1.08-1.31x, int16 depthwise 4.1x), so the
search's speed cap (search/speed.py) runs on :func:`call_instructions`: the fitted estimate of the
layer as a stock int8 one (fxpq_keras/instructions.py, `int8_call_instructions`, the one model of
CMSIS-NN's int8 kernels) times the measured ratio of its kernel kind, at `MAX_SLOWDOWN` x uniform
W8A8's unless `max_slowdown` says otherwise (0: no cap).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from ..instructions import KernelCall, int8_call_instructions
from ..integer_graph.graph import STOCK_FLOAT_SCALED
from ..keras_model import AVERAGE_POOLS
from ..policy import Policy

Key = tuple[str, str]
WEIGHT_BITS = (4, 8)
ACTIVATION_BITS = (8, 16)
FC_KINDS = ("dense",)
MAX_SLOWDOWN = 1.1  # the default speed cap of target builtin: uniform W8A8's M4 instructions x this
# the start policy, named in a result's message: int8 weights are the widest stock TFLM's weighted
# ops take, so when it breaks the budget no stock file holds it (by the estimate); the fxp target's
# weights go to 16 bits (MobileNetV1 flips 2.50 % of held-out inputs in its builtin start file, 1.00 % in
# its fxp file; bench/stock_limits.py: int8 weights alone 2.75 %, at 16 bits 0.25 %)
START = "the widest policy stock TFLM runs (int8 weights, int16 activations)"
NO_STOCK_FILE = "no stock TFLM file holds this budget by the estimate: --target fxp stores weights up to 16 bits"
# Cortex-M4 instructions per MAC of TFLM 90b983c's CMSIS-NN kernels (a one-layer file each, QEMU
# -icount shift=0): `TFLM_DIR=... .venv/bin/python bench/builtin_speed.py` prints them. Keys: the
# layer class (a conv with a window, a 1x1 conv, depthwise, fully connected) and the kernel kind
# (s8: int8 weights and activations; s4: packed int4 weights; s16: int16 activations, int8 weights).
# Only each kind's ratio to s8 is used: it scales the fitted int8 estimate (call_instructions).
M4_PER_MAC = {
    "conv": {"s8": 2.14, "s4": 3.91, "s16": 2.30},
    "pointwise": {"s8": 2.71, "s4": 4.47, "s16": 3.54},
    "depthwise": {"s8": 8.08, "s4": 16.57, "s16": 32.96},
    "fc": {"s8": 2.12, "s4": 5.08, "s16": 2.61},
}
# a QUANTIZE int8 -> int16 seam (TFLM's reference requantize; CMSIS-NN has none), per element
# (bench/builtin_speed.py's last line; int16 -> int8 costs the same): as much as ~20 int8 MACs
M4_PER_SEAM_ELEMENT = 45.2
WEIGHTED = ("conv2d", "depthwise_conv2d", "fully_connected")


def activation_width(bits: int, signed: bool) -> int:
    """The stored width of a 16-bit activation: 16 signed, 15 unsigned (int16 holds u15)."""
    return bits if bits <= 8 or signed else min(bits, 15)


def snap(key: Key, bits: int, signed: bool) -> int:
    """The builtin width a uniform width `bits` stands for (the next allowed one up)."""
    if key[1] == "weights":
        return 4 if bits <= 4 else 8
    return 8 if bits <= 8 else activation_width(16, signed)


def widths(key: Key, now: int) -> list[int]:
    """The widths of `key` the search may still step to, ascending, ending at the current one."""
    low = 4 if key[1] == "weights" else 8
    return [low, now] if now > low else [now]


def kernel_kind(call: KernelCall) -> str:
    """The CMSIS-NN kernel a weighted call of the searched file runs: s4 for <= 4-bit weights (the
    search's policies are repaired so: their activations go to 8 bits, `repair`), else s16 when it
    reads or writes an int16 tensor (the file computes such an op in int16), else s8."""
    if 0 < call.w_bits <= 4:
        return "s4"
    return "s16" if call.x_bits > 8 or call.out_bits > 8 else "s8"


def _seam_elements(call: KernelCall) -> int:
    """Elements of the QUANTIZE seams the builtin file puts around an op computed in int16: each
    int8 input widened, an int8 output narrowed (docs/format.md 7.1); 0 for an int8 or int4 op."""
    if (call.op in WEIGHTED and 0 < call.w_bits <= 4) or max(call.x_bits, call.x2_bits, call.out_bits) <= 8:
        return 0
    x_elements = call.in_elements // 2 if call.x2_bits else call.in_elements
    n = x_elements if call.x_bits <= 8 else 0
    n += call.in_elements - x_elements if 0 < call.x2_bits <= 8 else 0
    return n + (call.out_elements if call.out_bits <= 8 else 0)


def call_instructions(call: KernelCall) -> float:
    """Estimated Cortex-M4 instructions of one call of the builtin file under TFLM with CMSIS-NN:
    a weighted op's int8 estimate (`int8_call_instructions`, fitted to TFLM + CMSIS-NN) times its
    kernel kind's per-MAC ratio to s8 in M4_PER_MAC, plus M4_PER_SEAM_ELEMENT per element of its
    QUANTIZE seams (an int16 op between int8 tensors); the other ops' own cost, which the search's
    steps barely move, is not counted."""
    seams = _seam_elements(call) * M4_PER_SEAM_ELEMENT
    if call.op == "fully_connected":
        kind = "fc"
    elif call.op == "depthwise_conv2d":
        kind = "depthwise"
    elif call.op == "conv2d":
        kind = "pointwise" if call.taps == 1 else "conv"
    else:
        return float(seams)
    per_mac = M4_PER_MAC[kind]
    return int8_call_instructions(call) * per_mac[kernel_kind(call)] / per_mac["s8"] + seams


def int16_depthwise(device: Any, policy: Policy) -> list[tuple[str, float]]:
    """(layer, estimated instructions) of the depthwise layers the file computes in int16 under
    `policy`: TFLM 90b983c's CMSIS-NN glue runs them in the generic `arm_depthwise_conv_s16`, 4.1x
    int8's per MAC (M4_PER_MAC; docs/tflm.md section 6 has the three-edit change to a TFLM build)."""
    return [(src.get("w", "?"), call_instructions(call)) for call, src in device.calls_under(policy)
            if call.op == "depthwise_conv2d" and kernel_kind(call) == "s16"]


def _owner(policy: Policy, name: str) -> str:
    """The layer (or "input") whose output data structure a tensor has (through pass-through layers)."""
    layers = policy.layers
    while name in layers and layers[name].get("output") is None:
        name = layers[name]["inputs"][0]
    return name if name in layers else "input"


def neighbours(policy: Policy, layer: str) -> list[Key]:
    """The activations a weighted layer reads and writes (what int4 weights need at 8 bits)."""
    entry = policy.layers[layer]
    keys = [(_owner(policy, entry["inputs"][0]), "output")]
    if entry.get("output") is not None:
        keys.append((layer, "output"))
    return keys


def repair(policy: Policy, frac_for: Callable[[Key, int, bool], Any]) -> None:
    """Make the policy one the builtin file stores as measured (range-derived fracs from
    frac_for(key, bits, signed)): TFLM has no int16 activations with int4 weights, so a layer with
    <= 4-bit weights gets its input and output activations at 8 bits; then the average pools
    (tie_pools)."""
    for layer, ds, d in policy.data_structures():
        if ds != "weights" or d.bits > 4:
            continue
        for key in neighbours(policy, layer):
            a = policy.get(*key)
            if a.bits > 8:
                policy.set(*key, bits=8, frac=frac_for(key, 8, a.signed))
    tie_pools(policy, frac_for)


def tie_pools(policy: Policy, frac_for: Callable[[Key, int, bool], Any]) -> None:
    """Stock AVERAGE_POOL_2D keeps its input's scale and zero point (the file pools in the input's
    format and a QUANTIZE would move the result to another: rounded twice, and a finer output frac
    than the input's gains nothing), so an average pool's output takes its input's format, which
    the fake-quant then measures. An output the int4 rule put at 8 bits over a wider input brings
    that input to 8 bits too (range-derived frac)."""
    changed = True
    while changed:
        changed = False
        for layer, entry in policy.layers.items():
            if entry.get("kind") not in AVERAGE_POOLS or entry.get("output") is None:
                continue
            src_key = (_owner(policy, entry["inputs"][0]), "output")
            src, out = policy.get(*src_key) if src_key[0] != "input" else policy.input, policy.get(layer, "output")
            if out.bits <= 8 < src.bits and src_key[0] != "input":
                policy.set(*src_key, bits=8, frac=frac_for(src_key, 8, src.signed))
                changed = True
            if (out.bits, out.frac, out.signed) != (src.bits, src.frac, src.signed):
                out.signed = src.signed
                policy.set(layer, "output", bits=src.bits, frac=src.frac)
                changed = True


# layer kinds whose output may take a float activation scale (their stock op, and every op that reads
# them, follows TFLite's scales through tflm_ops): the weighted ops, ADD (and a ReLU fused into it),
# the pools, CONCATENATION, and the stock ops of section 8 whose TFLM kernels derive their multipliers
# from the scales (MUL, SUB, HARD_SWISH, ELU: STOCK_FLOAT_SCALED); readers may also be the reshapes.
# Everything else (the softmax's logits, LEAKY_RELU, LOGISTIC and TANH with their fixed output formats,
# MAXIMUM / MINIMUM and the moves, which compare or copy stored values, the model's outputs) keeps 2^-frac.
SCALED_KINDS = ("conv2d", "depthwise_conv2d", "dense", "add", "relu", "max_pool", "avg_pool", "gap",
                "concat") + STOCK_FLOAT_SCALED
_SCALED_READERS = SCALED_KINDS + ("flatten", "reshape", "zero_pad")
_PASS = ("flatten", "reshape", "zero_pad", "add", "softmax")  # kinds that may carry no output of their own


def float_scale_layers(policy: Policy) -> list[str]:
    """The layers whose output takes a float activation scale (SCALED_KINDS, read only by
    _SCALED_READERS through pass-through layers, not a model output)."""
    readers: dict[str, list[str]] = {}
    for name, entry in policy.layers.items():
        for i in entry["inputs"]:
            readers.setdefault(i, []).append(name)

    def ok(name: str) -> bool:
        users = readers.get(name, [])
        if not users:
            return False  # a model output: engines dequantize it at 2^-frac
        for user in users:
            entry = policy.layers[user]
            if entry["kind"] not in _SCALED_READERS:
                return False
            if entry.get("output") is None and (entry["kind"] not in _PASS or not ok(user)):
                return False
        return True

    return [name for name, entry in policy.layers.items()
            if entry.get("output") is not None and entry["kind"] in SCALED_KINDS and ok(name)]


def start_policy(policy: Policy, frac_for: Callable[[Key, int, bool, bool], Any],
                 activation_ranges: dict[str, float] | None = None,
                 activation_bounds: dict[str, tuple[float, float]] | None = None) -> Policy:
    """The builtin start: weights at 8 bits with TFLite's float scales (at the range-derived frac,
    fully connected per tensor), activations at 16 (15 unsigned). frac_for(key, bits, signed,
    per_channel) gives the range-derived frac. activation_ranges ({layer: calibration max|a|}):
    float activation scales for the float_scale_layers (a pool keeps its input's range, as TFLite
    keeps a pool's scale, so no QUANTIZE follows it); None: every activation 2^-frac.
    activation_bounds ({layer: calibration (min, max)}, with activation_ranges): the same layers'
    signed 8-bit formats are asymmetric int8 (formats.asymmetric_format), a pool's its input's."""
    policy = policy.copy()
    policy.weight_scales = "float"
    if activation_ranges is not None:
        chosen = float_scale_layers(policy)
        ranges: dict[str, float] = {}
        bounds: dict[str, tuple[float, float]] = {}
        for name in chosen:
            entry = policy.layers[name]
            source = _owner(policy, entry["inputs"][0]) if entry["kind"] in ("max_pool", "avg_pool", "gap") else name
            if entry["kind"] in ("max_pool", "avg_pool", "gap") and source not in ranges:
                continue  # its input keeps 2^-frac: so does the pool
            ranges[name] = float(np.float32(ranges[source] if source != name else activation_ranges[name]))
            if activation_bounds is not None:
                lo, hi = bounds[source] if source != name else activation_bounds[name]
                bounds[name] = (float(np.float32(lo)), float(np.float32(hi)))
        policy.activation_ranges = ranges
        policy.activation_bounds = bounds
    for layer, ds, d in policy.data_structures():
        key = (layer, ds)
        if ds == "weights":
            per_channel = policy.layers[layer].get("kind") not in FC_KINDS
            policy.set(layer, ds, bits=8, frac=frac_for(key, 8, True, per_channel))
        elif ds == "output":
            bits = activation_width(16, d.signed)
            policy.set(layer, ds, bits=bits, frac=frac_for(key, bits, d.signed, False))
    tie_pools(policy, lambda key, bits, signed: frac_for(key, bits, signed, False))
    policy.constrain_biases()
    return policy
