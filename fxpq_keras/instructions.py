"""Instructions per inference of an fxp file on Cortex-M4 (the fxpq kernels), estimated per kernel call.

The search needs speed in its objective (docs/algorithm.md, "Device objective"): a format that
lands a layer on a slow kernel path must cost something. So each FXP_* kernel call is described by
a :class:`KernelCall` (op, shapes, the formats of its inputs, weights and output), :func:`kernel_path`
names the branch of the C dispatcher (tflm_kernels/src/kernels/fxpq_dsp.c) that call takes, and
a linear model per path (:func:`features`) turns it into instructions. The coefficients live in
``instructions.json`` next to this module, written by ``scripts/fit_instructions.py`` from QEMU
mps2-an386 measurements (-icount shift=0) of random layers and of the zoo's layers; refit after any
kernel change with that one command. The file also holds whole-model measurements of zoo files, which
tests/test_instructions.py holds the estimate to.

It is an estimate: data-dependent branches (a channel whose rescale needs the int64 finish) are not
modelled, and QEMU counts instructions, not cycles. Stock TFLite ops are not modelled in the fxp estimate.

The same file holds a second estimate, the **reference** the speed cap compares against (docs/algorithm.md
"Speed cap"): the same model as a stock TFLite int8 file (target int8-builtin) run by real TFLM with
CMSIS-NN on the Cortex-M4 (:func:`int8_path`, :func:`int8_features`, :func:`int8_model_instructions`,
section "int8_cmsis" of the data file). TFLM only reports whole inferences, so its coefficients are
fitted jointly over many one- and few-op int8 files and the zoo's int8 files (same script).
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Iterator
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np

from .formats import accumulator_needs_64
from .integer_graph.ops import conv_output_size, full_windows

DATA_FILE = Path(__file__).with_name("instructions.json")
WEIGHTED = ("conv2d", "depthwise_conv2d", "fully_connected")
# ops the fxp target has a kernel for (graph op names); quantize is FXP_QUANTIZE of a float input
MODELLED = (*WEIGHTED, "add", "max_pool2d", "average_pool2d", "global_average_pool2d", "requantize", "pad",
            "leaky_relu", "concat", "quantize")
PIXELS = 4  # FXPQ_PIXELS of fxpq_dsp.c: output pixels per pass over a weight row (8-bit or 1x1 inputs)
WCHUNK = 64  # FXPQ_WCHUNK of fxpq_internal.h: the longest weight row a depthwise kernel unpacks on the stack
DW_TAPS = 25  # FXPQ_DW_TAPS of fxpq_dsp.c: the largest window of the depthwise four-channel loop
WBUF = 1024  # FXPQ_WBUF of fxpq_dsp.c: bytes of unpacked weight rows a conv call keeps on the stack
WROWS = 32  # FXPQ_WROWS of fxpq_dsp.c: rows of one such block at most

__all__ = ["KernelCall", "MODELLED", "call_instructions", "coefficients", "features", "graph_calls",
           "int8_call_instructions", "int8_features", "int8_model_instructions", "int8_path", "kernel_path", "row_l1",
           "clipped_pixels"]


@dataclass(frozen=True)
class KernelCall:
    """One kernel call of one inference: everything the estimate reads (sizes per sample).

    Widths: ``x_bits`` the (first) input's, 32 for a float input; ``x2_bits`` a second input's
    (add, concat; 0 = none); ``w_bits`` the weights' (0 = none). ``k`` = terms per dot product,
    ``taps`` = kernel positions (kh * kw; 1 for fully connected), ``channels`` = output channels.
    ``w_l1`` = the largest output channel's sum |w| over 2^(w_bits - 1) (:func:`row_l1`; 0 = unknown,
    taken as K): about the same at any weight width, so it carries over when a policy changes w_bits.
    ``clipped`` = output pixels whose window the padding clips (:func:`clipped_pixels`; a KxK conv or
    depthwise): the depthwise loops run those apart from the interior, with the window's bounds per pixel.
    """

    op: str
    x_bits: int
    x_signed: bool
    out_bits: int
    out_signed: bool
    in_elements: int
    out_elements: int
    w_bits: int = 0
    x2_bits: int = 0
    x2_signed: bool = True
    macs: int = 0
    k: int = 0
    taps: int = 1
    channels: int = 0
    depth_multiplier: int = 1
    weights: int = 0
    w_l1: float = 0.0
    clipped: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> KernelCall:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


def _container(bits: int) -> int:
    return 1 if bits <= 8 else 2 if bits <= 16 else 4


def row_l1(op: str, weights: Any, w_bits: int) -> float:
    """max over output channels of sum |w| / 2^(w_bits - 1) of integer weights in TFLite layout: the
    rows' bound the C kernels use to keep an int64-accumulator layer on an int32 path."""
    w = np.abs(np.asarray(weights, dtype=np.int64))
    sums = w.reshape(-1, w.shape[-1]).sum(axis=0) if op == "depthwise_conv2d" else w.reshape(w.shape[0], -1).sum(axis=1)
    return round(float(sums.max()) / 2 ** (int(w_bits) - 1), 4) if sums.size else 0.0


def clipped_pixels(in_hw: Any, kernel_hw: Any, stride: Any, dilation: Any, padding: str) -> int:
    """Output pixels of one image whose window holds a padded tap: all but the interior rows x columns."""
    full, out = 1, 1
    for i in range(2):
        out *= conv_output_size(int(in_hw[i]), int(kernel_hw[i]), int(stride[i]), int(dilation[i]), padding)[0]
        full *= full_windows(int(in_hw[i]), int(kernel_hw[i]), int(stride[i]), int(dilation[i]), padding)
    return out - full


def _x_abs(c: KernelCall) -> int:
    return 2 ** (c.x_bits - 1) if c.x_signed else 2 ** c.x_bits - 1


def _acc_bound(c: KernelCall) -> float:
    """The C kernels' accumulator bound: the width rule's K * max|x| * 2^(w_bits - 1), or when that asks
    for int64, the rows' sum |w| * max|x| (estimated from w_l1 at the call's weight width; unknown
    w_l1: the worst row)."""
    if not accumulator_needs_64(c.x_bits, c.x_signed, c.w_bits, c.k):
        return c.k * 2 ** (c.w_bits - 1) * _x_abs(c)
    return (c.w_l1 if c.w_l1 > 0 else c.k) * 2 ** (c.w_bits - 1) * _x_abs(c)


def _rows_fit_int32(c: KernelCall) -> bool:
    """Every output channel's sum |w| * max|x| below 2^31 proves an int32 accumulator exact."""
    return _acc_bound(c) <= 2**31 - 1


def _x16_block_rows(k: int) -> int:
    """Rows of one stack block of natural-order int16 rows (fxpq_conv_x16: K rounded up to 4, at most
    FXPQ_WROWS rows; 0 = a row does not fit the block)."""
    return min(WROWS, WBUF // (2 * (-(-k // 4) * 4)))


def _lane_block_rows(c: KernelCall) -> int:
    """Rows of one block of int16 lane rows (fxpq_conv_matrix, 8-bit columns: 16 bytes a group of 8)."""
    return min(WBUF // (16 * -(-c.k // 8)), max(c.channels, 1))


def _fc1_takes(c: KernelCall, u16: bool, acc64: bool) -> bool:
    """The one-pixel loop (fxpq_conv_fc1) takes an int64 accumulator by the width rule as exact int32
    partial sums of whole groups of 8 terms: at least one group must fit int32 (x - 2^15 lanes: |lane| <=
    2^15), and with x - 2^15 lanes the rows' weight sums must be exact in int32; x - 2^15 lanes have no
    copy with 14-bit and wider weights (fxpq_dsp.c FXPQ_FC1_U16_FN: only K = 1 would fit)."""
    if u16 and c.w_bits >= 14:
        return False
    if not acc64:
        return True
    lane = 2**15 if u16 else _x_abs(c)
    if (2**31 - 1) // (8 * lane * 2 ** (c.w_bits - 1)) == 0:
        return False
    return not u16 or c.k * 2 ** (c.w_bits - 1) <= 2**31 - 1


def kernel_path(c: KernelCall) -> str:
    """The C dispatcher's branch for this call (fxpq_dsp.c as of the coefficients' fit): one kernel loop
    per path.

    conv2d / fully connected (fxpq_dsp_conv2d): a 1x1 kernel or fully connected reads its columns in
    place (``1x1``), a KxK kernel builds im2col columns (``kxk``). With 1..3 output pixels a 1x1 kernel or
    fully connected first takes the one-pixel loop (``fc1``: each column load meets 4 rows, 2 for full
    16-bit unsigned inputs; int64 by the width rule as int32 partial sums, :func:`_fc1_takes`). 16-bit
    inputs then try the block
    of unpacked int16 rows (fxpq_conv_x16; rows of round4(K) halfwords, at most 32 a block, K <= 512):
    taken by every int64 accumulator and every full 16-bit unsigned input (x - 2^15 lanes), and by
    signed int32 sums with 4+ pixels, K >= 16 and (KxK) every row in one block; inside it ``x16b`` /
    ``xu16b`` (SMLAD, int32) or ``smlald`` (int64 sums over 2 columns: the width rule asks for int64 and
    the rows' bound does not prove int32, or fewer than 4 pixels). Otherwise the decoder's matrix loop
    by input container, ``x8``, ``x16`` (signed or up to 15 bits), ``xu16`` (needs 4+ pixels, else
    ``ref``); 8-bit inputs with weights other than 8-bit, 4+ pixels and an int32 accumulator take lane
    rows unpacked once per block (``x8l``: 1x1 / fully connected when a row fits the 1 KB block, KxK when
    the block holds 4 rows or all of them). An int64 accumulator on the decoder's loop stays on the
    int32 path when the rows' bound proves it (and 4+ pixels), else chunked int32 partial sums
    (``chunked``), or the reference loop (``ref``) when not even 8 terms fit int32.
    Depthwise: rows longer than WCHUNK or an int64 accumulator the rows' bound does not prove int32 ->
    ``ref``; multiplier 1, at least four channels, window <= DW_TAPS, an accumulator bound at most 2^30
    (room for the int32 finish) -> the four-channel loop by input kind (``quad.x8/x16/xu16``); else the
    per-channel loop by container. Other ops: by input container.
    """
    xc = _container(c.x_bits)
    if c.op in ("conv2d", "fully_connected"):
        geometry = "" if c.op == "fully_connected" else ".1x1" if c.taps == 1 else ".kxk"
        u16 = xc == 2 and not c.x_signed and c.x_bits > 15
        pixels = c.out_elements / max(c.channels, 1)
        acc64 = accumulator_needs_64(c.x_bits, c.x_signed, c.w_bits, c.k)
        if c.taps == 1 and pixels < PIXELS and _fc1_takes(c, u16, acc64):
            return f"{c.op}{geometry}.fc1"
        if xc == 2:
            per = _x16_block_rows(c.k)
            if per > 0 and (acc64 or u16 or (pixels >= PIXELS and c.k >= 16 and (c.taps == 1 or per >= c.channels))):
                if acc64 and (pixels < PIXELS or not _rows_fit_int32(c)):
                    return f"{c.op}{geometry}.smlald"
                return f"{c.op}{geometry}.{'xu16b' if u16 else 'x16b'}"
        if u16 and pixels < PIXELS:
            return f"{c.op}{geometry}.ref"
        if not acc64 or (pixels >= PIXELS and _rows_fit_int32(c)):
            if (xc == 1 and c.w_bits != 8 and pixels >= PIXELS and 16 * -(-c.k // 8) <= WBUF
                    and (c.taps == 1 or _lane_block_rows(c) >= min(4, c.channels))):
                return f"{c.op}{geometry}.x8l"
            return f"{c.op}{geometry}.{'xu16' if u16 else f'x{8 * xc}'}"
        lane = 2**15 if u16 else _x_abs(c)
        if (2**31 - 1) // (8 * lane * 2 ** (c.w_bits - 1)) == 0:
            return f"{c.op}{geometry}.ref"
        return f"{c.op}{geometry}.chunked"
    if c.op == "depthwise_conv2d":
        if c.k > WCHUNK or (accumulator_needs_64(c.x_bits, c.x_signed, c.w_bits, c.k) and not _rows_fit_int32(c)):
            return "depthwise_conv2d.ref"
        # the quads need every channel's int32 finish (bias + rounding + bound below 2^31): a bound
        # within a factor 2 of 2^31 is taken to leave no room for them (the bias is not modelled)
        if c.depth_multiplier == 1 and c.channels >= 4 and c.taps <= DW_TAPS and _acc_bound(c) <= 2**30:
            # full 16-bit unsigned inputs run x - 2^15 lanes, and the border adds back the valid taps' sums
            u16 = xc == 2 and not c.x_signed and c.x_bits > 15
            return f"depthwise_conv2d.quad.{'xu16' if u16 else f'x{8 * xc}'}"
        return f"depthwise_conv2d.channel.x{8 * xc}"
    if c.op == "quantize":
        return "quantize"
    return f"{c.op}.x{8 * xc}"


_BLOCK_PATHS = (".x8l", ".x16b", ".xu16b", ".smlald")


def features(path: str, c: KernelCall) -> list[float]:
    """The linear model's features of a call on `path` (per inference; the last one is 1).

    Decoder paths (``x8``, ``x16``, ``xu16``, ``chunked``): MACs; per-pass weight decoding, MACs /
    columns per pass (at most the call's pixels: a one-pixel call decodes its rows once per pixel),
    split by weight width (8 bits is a plain load, 16 a halfword, any other width a bit-field
    extraction); im2col copies (pixels x K and pixels x kernel rows, KxK only); pixels when K
    has a tail of less than 8 terms; the finish per output element; passes x channels; weights (their
    sums, ``xu16`` and ``chunked`` only). Block paths (unpacked rows, no decoder): MACs; MACs / columns
    per pass; im2col copies once per block of rows; the tail terms (one at a time for int16 rows, a
    lane group per column and block for lane rows); output elements; passes x channels; weights (the
    unpacking, and the 2^15 sums); MACs of x - 2^15 lanes (their EOR); 1. Depthwise:
    MACs (the quad loop's and the leftover channels' apart), output elements, weights (unpacked once
    per channel), output elements whose window the padding clips (the border loop), and those x the
    window's rows. Reference and per-channel loops: MACs, and MACs with an int64 accumulator, with
    bit-unpacked weights, with 16-bit inputs; output elements x taps (the window's bounds per tap);
    output elements; weights. Other ops: input elements, output elements, output elements x window taps,
    the same for the channels past the last group of four (the four-channel SIMD loops' leftovers).
    """
    op = path.split(".")[0]
    pixels = c.out_elements / max(c.channels, 1)
    if path.endswith(".fc1"):
        # MACs, and those that decode bit fields, read 16-bit weights, read 16-bit inputs (two loads and
        # two PKH per 4 terms), run x - 2^15 lanes (two rows a pass and the weight sums); the finish per
        # output (a separate pass over the tail group when K % 8 != 0); the pixels' column set-up; 1
        u16 = c.x_bits > 15 and not c.x_signed
        return [c.macs, c.macs * (c.w_bits not in (8, 16)), c.macs * (c.w_bits == 16),
                c.macs * (_container(c.x_bits) > 1), c.macs * u16, c.out_elements, c.out_elements * (c.k % 8 != 0),
                pixels, 1.0]
    im2col = pixels * c.k if c.taps > 1 else 0.0
    rows = pixels * math.sqrt(c.taps) if c.taps > 1 else 0.0  # im2col copies one kernel row at a time
    if op in ("conv2d", "fully_connected") and path.endswith(_BLOCK_PATHS):
        lanes8 = path.endswith(".x8l")
        cols = min(2 if path.endswith(".smlald") or (c.taps > 1 and not lanes8) else PIXELS, max(pixels, 1.0))
        per = _lane_block_rows(c) if lanes8 else _x16_block_rows(c.k)
        blocks = -(-max(c.channels, 1) // max(per, 1))
        tail = (pixels * blocks if c.k % 8 else 0.0) if lanes8 else c.out_elements * (c.k % 4)
        u16 = c.macs if (c.x_bits > 15 and not c.x_signed) else 0.0
        packed = c.weights if c.w_bits not in (8, 16) else 0.0  # a bit-field decoder unpacks them
        return [c.macs, c.macs / cols, im2col * blocks, rows * blocks, tail, c.out_elements,
                pixels / cols * c.channels, c.weights, packed, u16, 1.0]
    if op in ("conv2d", "fully_connected") and not path.endswith(".ref"):
        cols = min(PIXELS if (c.taps == 1 or _container(c.x_bits) == 1) else 2,  # 16-bit KxK: 2 columns a pass
                   max(pixels, 1.0))  # fewer pixels than columns: every pass decodes the rows for them
        passes = c.macs / cols
        w8 = passes if c.w_bits == 8 else 0.0
        w16 = passes if c.w_bits == 16 else 0.0
        wpacked = passes if c.w_bits not in (8, 16) else 0.0
        tail = pixels if c.k % 8 else 0.0  # the tail lanes of a K that is not a multiple of 8, per pixel
        # the x - 2^15 lanes' weight sums (once per channel and call) and the chunked int64 sums
        sums = c.weights if path.endswith((".xu16", ".chunked")) else 0.0
        return [c.macs, w8, w16, wpacked, im2col, rows, tail, c.out_elements, pixels / cols * c.channels, sums, 1.0]
    if path.startswith("depthwise_conv2d.quad"):
        quad_share = (c.channels // 4 * 4) / max(c.channels, 1)
        clipped = c.clipped * c.channels  # output elements of the border loop (the window's bounds per pixel)
        return [c.macs * quad_share, c.macs * (1 - quad_share), c.out_elements, c.weights, clipped,
                clipped * math.sqrt(c.taps), 1.0]
    if op in WEIGHTED:  # reference and per-channel loops: per MAC, per tap, per output
        acc64 = accumulator_needs_64(c.x_bits, c.x_signed, c.w_bits, c.k)
        packed = c.w_bits not in (8, 16)
        return [c.macs, c.macs * acc64, c.macs * packed, c.macs * (_container(c.x_bits) > 1), c.out_elements * c.taps,
                c.out_elements, c.weights, 1.0]
    leftover = (c.channels % 4) / c.channels if c.channels else 0.0  # channels past the last group of four
    return [c.in_elements, c.out_elements, c.out_elements * c.taps, c.out_elements * c.taps * leftover, 1.0]


@functools.lru_cache(maxsize=1)
def _data() -> dict[str, Any]:
    if not DATA_FILE.exists():
        raise FileNotFoundError(f"{DATA_FILE} is missing: run scripts/fit_instructions.py")
    return json.loads(DATA_FILE.read_text())


def coefficients() -> dict[str, Any]:
    """The fitted data (instructions.json): per path its coefficients and fit error, the runner's
    per-op cost, and the whole-model checks."""
    return _data()


def call_instructions(c: KernelCall, data: dict[str, Any] | None = None) -> float | None:
    """Estimated instructions of one kernel call (None: an op the estimate does not model).

    A path the fit never measured takes its op's reference-loop coefficients (the slowest), so a
    search never mistakes an unmeasured path for a fast one.
    """
    if c.op not in MODELLED:
        return None
    data = data if data is not None else _data()
    path = kernel_path(c)
    if path not in data["paths"]:  # the op's reference loop (the slowest) stands in
        refs = sorted(p for p in data["paths"] if p.split(".")[0] == c.op and p.endswith(".ref"))
        if not refs:
            raise KeyError(f"{DATA_FILE.name} has no coefficients for kernel path {path!r}; rerun "
                           "scripts/fit_instructions.py")
        path = refs[-1]
    entry = data["paths"][path]
    return max(0.0, sum(a * b for a, b in zip(entry["coefficients"], features(path, c))))


def model_instructions(calls: list[KernelCall], data: dict[str, Any] | None = None) -> float:
    """Estimated instructions of one inference in the C runner: each modelled call plus the runner's
    per-op cost (stock ops and reshapes count only that)."""
    data = data if data is not None else _data()
    runner = data["runner"]
    total = runner["per_model"]
    for c in calls:
        est = call_instructions(c, data)
        total += runner["per_op"] + (est or 0.0)
    return total


def int8_path(c: KernelCall) -> str | None:
    """The TFLM + CMSIS-NN kernel a call of the fxp graph becomes in the stock int8 file (None: an op
    with no kernel there, e.g. a reshape; it costs the runner's per-op share only).

    CMSIS-NN's wrappers pick by geometry alone: a 1x1 convolution (and fully connected) runs one
    matrix product over the pixels, a KxK one builds im2col columns; a depthwise 3x3 with multiplier 1
    has its own kernel, other multiplier-1 depthwise the ``opt`` one, the rest the generic loop.
    An fxp requantize (a format change between 8-bit tensors) is a stock QUANTIZE int8 -> int8; a
    float-input quantize is QUANTIZE float -> int8.
    """
    if c.op not in MODELLED:
        return None
    if c.op == "conv2d":
        return "int8.conv2d.1x1" if c.taps == 1 else "int8.conv2d.kxk"
    if c.op == "depthwise_conv2d":
        if c.depth_multiplier != 1:
            return "int8.depthwise_conv2d.generic"
        return "int8.depthwise_conv2d.3x3" if c.taps == 9 else "int8.depthwise_conv2d.opt"
    return f"int8.{c.op}"


def int8_features(path: str, c: KernelCall) -> list[float]:
    """The int8 estimate's features of a call on `path` (the last one is 1). Weighted ops: MACs, output
    elements (the requantization), output pixels (one pass over the weights per pixel group) and, for
    KxK convolutions, the im2col copies (pixels x K, and pixels x taps: one copy call per kernel tap,
    which dominates a stem with one input channel). Other ops: input elements, output elements,
    output elements x window taps."""
    pixels = c.out_elements / max(c.channels, 1)
    if path.startswith("int8.conv2d"):
        kxk = c.taps > 1
        return [c.macs, c.out_elements, pixels, pixels * c.k if kxk else 0.0, pixels * c.taps if kxk else 0.0, 1.0]
    if path.startswith(("int8.depthwise_conv2d", "int8.fully_connected")):
        return [c.macs, c.out_elements, pixels, 1.0]
    return [c.in_elements, c.out_elements, c.out_elements * c.taps, 1.0]


def int8_model_instructions(calls: list[KernelCall], data: dict[str, Any] | None = None) -> float:
    """Estimated instructions of one inference of the same model as a stock int8 file in TFLM with
    CMSIS-NN on Cortex-M4 (the speed cap's reference). Formats are ignored: every tensor is int8 there.
    A path the fit never measured costs nothing beyond the per-op share (a low reference: the cap
    errs on the strict side)."""
    part = (data if data is not None else _data())["int8_cmsis"]
    return part["runner"]["per_model"] + sum(part["runner"]["per_op"] + int8_call_instructions(c, data) for c in calls)


def int8_call_instructions(c: KernelCall, data: dict[str, Any] | None = None) -> float:
    """One call's share of :func:`int8_model_instructions` without the runner's per-op cost."""
    path = int8_path(c)
    entry = (data if data is not None else _data())["int8_cmsis"]["paths"].get(path) if path is not None else None
    if entry is None:
        return 0.0
    return max(0.0, sum(a * b for a, b in zip(entry["coefficients"], int8_features(path, c))))


def _prod(shape: Any) -> int:
    return int(math.prod(int(d) for d in shape))


def graph_calls(graph: Any) -> Iterator[tuple[Any, KernelCall, dict[str, Any]]]:
    """(node, KernelCall, sources) for every node of an IntegerGraph, with the graph's formats.

    `sources` says which tensor or layer sets each width, for a policy to replace it: "x", "x2",
    "out" name tensors (their policy data structure follows :func:`fxpq_keras.memory` 's rule),
    "w" the layer whose weights these are.
    """
    t = graph.tensors
    for node in graph.nodes:
        xs = [t[i] for i in node.inputs]
        out = t[node.output]
        x_fmt = xs[0].fmt
        x2 = xs[1].fmt if node.op in ("add", "concat") and len(xs) > 1 else None
        o_fmt = out.fmt
        kw: dict[str, Any] = dict(
            op=node.op, x_bits=32 if x_fmt is None else int(x_fmt.bits),
            x_signed=True if x_fmt is None else bool(x_fmt.signed),
            out_bits=32 if o_fmt is None else int(o_fmt.bits), out_signed=True if o_fmt is None else bool(o_fmt.signed),
            in_elements=sum(_prod(x.shape) for x in xs), out_elements=_prod(out.shape))
        if x2 is not None:
            kw.update(x2_bits=int(x2.bits), x2_signed=bool(x2.signed))
        sources = {"x": node.inputs[0], "out": node.output}
        if x2 is not None:
            sources["x2"] = node.inputs[1]
        w = node.weights
        if node.op in WEIGHTED and w is not None:
            if node.op == "conv2d":
                taps, k, channels = int(w.shape[1] * w.shape[2]), _prod(w.shape[1:]), int(w.shape[0])
            elif node.op == "depthwise_conv2d":
                taps = k = int(w.shape[1] * w.shape[2])
                channels = int(w.shape[3])
            else:
                taps, k, channels = 1, int(w.shape[1]), int(w.shape[0])
            kw.update(w_bits=int(node.weight_bits), macs=kw["out_elements"] * k, k=k, taps=taps, channels=channels,
                      depth_multiplier=int(node.attrs.get("depth_multiplier", 1)), weights=int(w.size),
                      w_l1=row_l1(node.op, w, int(node.weight_bits)))
            if node.op != "fully_connected" and taps > 1:
                a = node.attrs
                kw["clipped"] = clipped_pixels(xs[0].shape[:2], w.shape[1:3], a["stride"], a.get("dilation", (1, 1)),
                                               a["padding"])
            sources["w"] = node.name
        elif node.op in ("max_pool2d", "average_pool2d"):
            pool = node.attrs.get("pool", (1, 1))
            kw.update(taps=int(pool[0]) * int(pool[1]), channels=int(out.shape[-1]))
        elif node.op == "global_average_pool2d":
            kw.update(taps=_prod(xs[0].shape[:-1]), channels=int(out.shape[-1]))
        yield node, KernelCall(**kw), sources
