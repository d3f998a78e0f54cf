"""Device memory accounting: the bytes the chip holds for a model, next to the paper's bit count.

Two accountings exist, with units in every field name (the same names in text and JSON):

- *paper* (:meth:`fxpq_keras.policy.Policy.memory`): bits of weights + biases + activations, each
  data structure at exactly its bit width (reproduces the FxP-QNet paper's figures);
- *device* (this module, :class:`DeviceMemory`): what a microcontroller really holds.
  ``flash_bytes`` is the whole ``.tflite`` (weights bit-packed at their width, numerics.md 9,
  biases as stored int32, plus everything else in the file); ``ram_bytes`` is the arena the user
  reserves: TFLM's ``arena_used_bytes`` on Cortex-M (CMSIS-NN kernels for stock int8 ops, the
  fxpq kernels for FXP_* ops), modelled by :mod:`fxpq_keras.tflm_arena` = ``tflm_planned_bytes``
  (every activation at its container size, 1 byte for 2..8 bits, 2 for 9..16, 4 for a float
  input, and every kernel scratch, placed by TFLM's greedy planner) + ``tflm_persistent_bytes``
  (TFLM's records, OpData, per-channel parameters). The same accounting applies to an fxpq file
  and to a TFLite int8 file. ``runner_planned_bytes`` is the C runner's planned region
  (fxpq_runner.c ``fx_place``: tensors alive at the same time never share bytes, RESHAPE outputs
  alias their input), what the runner allocates besides its per-op bookkeeping.

The search asks a :class:`DeviceModel` (built once per model from its exported file,
fxpq_keras.flatbuffer.memory) for
the device cost of any policy of that model: :meth:`DeviceModel.cost` re-plans the arena in a
few milliseconds (TFLM's persistent bytes do not depend on the policy), and
:meth:`DeviceModel.gain` is the bytes one format change saves. Both capture the two facts the
paper's count misses: an activation saves RAM only when it crosses a container boundary
(9 -> 8 bits) *and* sits on the peak, and a bias width saves nothing (biases are stored as
int32).

Layout of the records (one rule each, shared with the C runner and tested against it):
:func:`plan_arena` is ``fx_place`` (and TFLM's greedy planner with its alignment and tie order);
:func:`scratch_bytes` is the kernels' ``*_get_buffer_size``; :func:`fxpq_keras.formats.packed_row_bytes`
is ``fxpq_packed_row_size``.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from .formats import packed_row_bytes
from .instructions import KernelCall, graph_calls, int8_model_instructions, model_instructions
from .tflm_arena import TFLM_ALIGNMENT, TflmLayout

if TYPE_CHECKING:  # annotations only: reading a file's memory must not import Keras/TensorFlow (fxpq inspect)
    from .policy import Policy

RUNNER_ALIGNMENT = 8  # FXPQ_RUNNER_ALIGNMENT: every planned record starts on this boundary
WEIGHTED_OPS = ("conv2d", "depthwise_conv2d", "fully_connected")

__all__ = ["DeviceGain", "DeviceLayout", "DeviceMemory", "DeviceModel", "LayoutTensor", "LayoutWeights", "layout_calls",
           "container_bytes", "plan_arena", "scratch_bytes"]


def container_bytes(bits: int | None) -> int:
    """Bytes per element of an activation of `bits` (None = float32), numerics.md section 10."""
    if bits is None:
        return 4
    return 1 if bits <= 8 else 2


IM2COL_PIXELS = 4  # FXPQ_PIXELS of fxpq_dsp.c: im2col columns (of 8-bit terms) per pass of a KxK conv


def scratch_bytes(op: str, k: int, taps: int) -> int:
    """Kernel scratch of an op with K terms per dot product over `taps` kernel positions (kh * kw;
    1 for fully connected): the C kernels' *_get_buffer_size, the same in every build so one plan
    fits every target.

    Only a KxK conv (taps > 1) has any: IM2COL_PIXELS im2col columns of K 8-bit terms (the same
    bytes hold one column of K 16-bit terms). Fully connected and 1x1 conv read their columns in
    place, depthwise decodes each channel quad's weights on the stack, and the reference loops
    unpack weights on the stack (docs/kernels.md). tests/test_c_kernels_host.py holds this equal to
    the C.
    """
    if op != "conv2d" or k <= 0 or taps <= 1:
        return 0
    return IM2COL_PIXELS * int(k)


def plan_arena(sizes: list[int], first: list[int], last: list[int], *, alignment: int = RUNNER_ALIGNMENT,
               later_first: bool = False) -> int:
    """Peak bytes of a greedy first-fit plan: the C runner's (fx_place) by default, bit for bit,
    and TFLM's GreedyMemoryPlanner with ``alignment=16, later_first=True``.

    Records are placed by decreasing size (ties: lower index first, or higher with later_first)
    at the lowest `alignment`-aligned offset where they overlap no already placed record whose
    lifetime [first, last] intersects theirs. Records of size 0 take no space. Returns the end of
    the highest placed record.
    """
    tie = -1 if later_first else 1
    order = sorted((i for i, s in enumerate(sizes) if s > 0), key=lambda i: (-sizes[i], tie * i))
    offsets: list[int] = []  # placed records in increasing offset order (ties: insertion order)
    placed: list[tuple[int, int, int, int]] = []  # (offset, aligned size, first, last)
    peak = 0
    for i in order:
        size = -(-int(sizes[i]) // alignment) * alignment
        candidate = 0
        for off, osz, f, lst in placed:
            if f <= last[i] and first[i] <= lst:
                if off >= candidate + size:
                    break
                if off + osz > candidate:
                    candidate = off + osz
        at = bisect.bisect_right(offsets, candidate)
        offsets.insert(at, candidate)
        placed.insert(at, (candidate, size, first[i], last[i]))
        peak = max(peak, candidate + size)
    return peak


@dataclass
class LayoutTensor:
    """An activation tensor as the runner plans it (file order).

    `bits` is the width that sets its container (None: float32); `source` names the policy data
    structure whose format it has ("input" or a layer name), None when no policy describes it.
    """

    name: str
    elements: int
    bits: int | None
    first: int  # index of the op that writes it; -1 for the model input
    last: int  # index of the last op that reads it; num_ops for a model output
    alias: int | None = None  # index (in DeviceLayout.tensors) of the tensor whose bytes it uses
    source: str | None = None
    elem_bytes: int | None = None  # fixed container size (generic files); None: from bits


@dataclass
class LayoutWeights:
    """One weighted op's stored parameters: `rows` output channels of `count` values at `bits`."""

    layer: str
    rows: int
    count: int
    bits: int
    bias_elements: int = 0
    bias_elem_bytes: int = 4
    stored_bytes: int | None = None  # fixed (generic files); None: packed at `bits`

    def weight_bytes(self, bits: int | None = None) -> int:
        if self.stored_bytes is not None and bits is None:
            return self.stored_bytes
        return self.rows * packed_row_bytes(self.bits if bits is None else bits, self.count)


@dataclass
class DeviceLayout:
    """What the device accounting needs of a model: activation tensors with lifetimes, kernel
    scratch per op, weighted ops' parameter shapes, and the rest of the file's bytes."""

    tensors: list[LayoutTensor]
    scratch: list[int]  # per op, in execution order: the C runner's kernel scratch
    weights: list[LayoutWeights]
    other_flash_bytes: int | None = None  # file bytes besides weights and biases (None: unknown)
    tflm: TflmLayout | None = None  # what TFLM charges besides the tensors (None: not known)
    macs: list[int] = field(default_factory=list)  # per op: multiply-accumulates of one inference
    # per op of an fxp file: its kernel call (the file's formats) and which tensor / layer sets each width
    # (fxpq_keras.instructions.graph_calls); empty when unknown (stock files)
    calls: list[tuple[KernelCall, dict[str, str]]] = field(default_factory=list)

    def lifetimes(self) -> tuple[list[int], list[int]]:
        """Per tensor then per op scratch: (first, last) with aliases folded into their root."""
        first = [t.first for t in self.tensors]
        last = [t.last for t in self.tensors]
        for i, t in enumerate(self.tensors):
            if t.alias is not None:
                root = self._root(i)
                last[root] = max(last[root], t.last)
        n_ops = len(self.scratch)
        return first + list(range(n_ops)), last + list(range(n_ops))

    def _root(self, i: int) -> int:
        while self.tensors[i].alias is not None:
            i = self.tensors[i].alias
        return i


@dataclass(frozen=True)
class DeviceMemory:
    """The device accounting of one model (all integers, bytes).

    ``ram_bytes`` is what the user reserves: TFLM's ``arena_used_bytes`` on Cortex-M with
    CMSIS-NN for the stock ops (tflm_planned_bytes + tflm_persistent_bytes, modelled by
    fxpq_keras.tflm_arena). ``runner_planned_bytes`` is the C runner's planned region (fx_place),
    which the runner really allocates (plus its per-op bookkeeping).
    """

    weight_bytes: int  # weights as stored (bit-packed at their width)
    bias_bytes: int  # biases as stored (int32)
    ram_bytes: int  # TFLM arena: tflm_planned_bytes + tflm_persistent_bytes
    other_flash_bytes: int | None = None  # the rest of the .tflite; None when not measured
    runner_planned_bytes: int = 0  # the C runner's planned activations + scratch
    tflm_planned_bytes: int = 0  # TFLM's head: activations + scratch as its greedy planner places them
    tflm_persistent_bytes: int = 0  # TFLM's tail: interpreter records, OpData, per-channel parameters

    @property
    def parameter_bytes(self) -> int:
        """Weights + biases as stored."""
        return self.weight_bytes + self.bias_bytes

    @property
    def flash_bytes(self) -> int:
        """The whole .tflite (parameters + the rest); the parameters alone when the rest is unknown."""
        return self.parameter_bytes + (self.other_flash_bytes or 0)

    @property
    def total_bytes(self) -> int:
        """flash_bytes + ram_bytes: the single figure the device-objective search lowers."""
        return self.flash_bytes + self.ram_bytes

    def to_dict(self) -> dict[str, int | None]:
        """The figures by their names (docs/format.md section 9); flash_bytes is None when the file's
        other bytes are not counted (it is the whole file or nothing)."""
        return {"weight_bytes": self.weight_bytes, "bias_bytes": self.bias_bytes,
                "parameter_bytes": self.parameter_bytes, "other_flash_bytes": self.other_flash_bytes,
                "flash_bytes": None if self.other_flash_bytes is None else self.flash_bytes,
                "ram_bytes": self.ram_bytes,
                "tflm_planned_bytes": self.tflm_planned_bytes, "tflm_persistent_bytes": self.tflm_persistent_bytes,
                "runner_planned_bytes": self.runner_planned_bytes}

    def summary(self) -> str:
        """One line with the same names as to_dict (docs/format.md section 9). Without the file's
        other bytes the figure is parameter_bytes, never called flash_bytes."""
        params = f"weight_bytes {self.weight_bytes:,}, bias_bytes {self.bias_bytes:,}"
        flash = (f"parameter_bytes {self.parameter_bytes:,} ({params}; the file's other bytes not counted)"
                 if self.other_flash_bytes is None else
                 f"flash_bytes {self.flash_bytes:,} ({params}, other_flash_bytes {self.other_flash_bytes:,})")
        return (f"{flash}, ram_bytes {self.ram_bytes:,} (TFLM arena: tflm_planned_bytes {self.tflm_planned_bytes:,} "
                f"+ tflm_persistent_bytes {self.tflm_persistent_bytes:,}), runner_planned_bytes "
                f"{self.runner_planned_bytes:,}")


@dataclass(frozen=True)
class DeviceGain:
    """Bytes a format change saves on the device (positive = smaller; negative = it costs)."""

    flash_bytes: int
    ram_bytes: int

    @property
    def total_bytes(self) -> int:
        return self.flash_bytes + self.ram_bytes


Changes = Mapping[tuple[str, str], int]


@dataclass
class DeviceModel:
    """Device cost of any policy of one model, cheaply (no export, no Keras).

    Build it once per model (``fxpq_keras.flatbuffer.memory.device_model_from_graph`` on the
    lowered IntegerGraph, or ``device_model_from_tflite`` on an exported file, which also knows
    the file's other bytes exactly), then call :meth:`cost` / :meth:`gain` for each
    candidate policy. A policy only changes bit widths and fracs, never the graph, so the
    layout (tensor order, lifetimes, scratch, weight shapes) is fixed.
    """

    layout: DeviceLayout
    _lifetimes: tuple[list[int], list[int]] = field(init=False, repr=False)
    # per-call instructions for `instructions`: None = the fxp kernels' estimate (fxpq_keras.instructions);
    # target builtin sets search.builtin_space.call_instructions (TFLM's CMSIS-NN kernels)
    call_estimate: Callable[[KernelCall], float] | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        self._lifetimes = self.layout.lifetimes()

    # -- cost -------------------------------------------------------------------------------------
    def _tensor_bytes(self, policy: Policy | None, changes: Changes, alias: bool = True) -> list[int]:
        """Bytes of each layout tensor; with `alias`, a RESHAPE alias takes none (the runner)."""
        sizes = []
        for t in self.layout.tensors:
            key = _output_key(policy, t.source) if policy is not None and t.source is not None else None
            if alias and t.alias is not None:
                sizes.append(0)  # shares its root's bytes
            elif key is None:
                sizes.append(t.elements * (t.elem_bytes if t.elem_bytes is not None else container_bytes(t.bits)))
            else:
                sizes.append(t.elements * container_bytes(changes.get(key, _bits_of(policy, key))))
        return sizes

    def runner_planned_bytes(self, policy: Policy | None = None, changes: Changes | None = None) -> int:
        """The C runner's planned bytes (fx_place) under `policy` (None: the layout's formats)."""
        first, last = self._lifetimes
        sizes = self._tensor_bytes(policy, changes or {}) + list(self.layout.scratch)
        return plan_arena(sizes, first, last)

    def tflm_planned_bytes(self, policy: Policy | None = None, changes: Changes | None = None,
                           kernels: str = "cmsis-nn") -> int:
        """TFLM's head under `policy`: every activation (RESHAPE outputs too) and every scratch
        request, placed by TFLM's greedy planner (fxpq_keras.tflm_arena)."""
        tflm = self._tflm()
        sizes = self._tensor_bytes(policy, changes or {}, alias=False)
        first = [t.first for t in self.layout.tensors]
        last = [t.last for t in self.layout.tensors]
        for i, requests in enumerate(tflm.scratch(kernels)):
            sizes += requests
            first += [i] * len(requests)
            last += [i] * len(requests)
        return plan_arena(sizes, first, last, alignment=TFLM_ALIGNMENT, later_first=True)

    def ram_bytes(self, policy: Policy | None = None, changes: Changes | None = None,
                  kernels: str = "cmsis-nn") -> int:
        """What the user reserves under `policy`: TFLM's arena_used_bytes (planned + persistent)."""
        return self.tflm_planned_bytes(policy, changes, kernels) + self._tflm().persistent_bytes(kernels)

    def tflm_allocation_bytes(self, policy: Policy | None = None, kernels: str = "cmsis-nn") -> int:
        """The smallest arena AllocateTensors succeeds in: the persistent tail plus the larger of the
        plan it keeps (ram_bytes' head) and what it holds for a moment while planning
        (TflmLayout.planning_bytes). At least ram_bytes; more on small models."""
        tflm = self._tflm()
        buffers = len(self.layout.tensors) + sum(len(s) for s in tflm.scratch(kernels))
        head = max(self.tflm_planned_bytes(policy, None, kernels), tflm.planning_bytes(buffers, kernels))
        return head + tflm.persistent_bytes(kernels)

    def _tflm(self) -> TflmLayout:
        if self.layout.tflm is None:
            raise ValueError("this layout does not describe what TFLM charges (build it from a file)")
        return self.layout.tflm

    def weight_bytes(self, policy: Policy | None = None, changes: Changes | None = None) -> int:
        """Weights as stored (bit-packed) under `policy` (None: the layout's widths)."""
        changes = changes or {}
        total = 0
        for w in self.layout.weights:
            bits = None
            if policy is not None and w.layer in policy.layers:
                bits = changes.get((w.layer, "weights"), policy.get(w.layer, "weights").bits)
            total += w.weight_bytes(bits)
        return total

    def cost(self, policy: Policy | None = None, changes: Changes | None = None,
             kernels: str = "cmsis-nn") -> DeviceMemory:
        """The device accounting under `policy` with `changes` {(layer, ds): bits} applied on top.

        Biases are stored as int32 whatever their width, so bias changes cost nothing here.
        """
        bias = sum(w.bias_elements * w.bias_elem_bytes for w in self.layout.weights)
        planned = self.tflm_planned_bytes(policy, changes, kernels)
        persistent = self._tflm().persistent_bytes(kernels)
        return DeviceMemory(self.weight_bytes(policy, changes), bias, planned + persistent,
                            self.layout.other_flash_bytes, self.runner_planned_bytes(policy, changes),
                            planned, persistent)

    def instructions(self, policy: Policy | None = None, changes: Changes | None = None) -> float | None:
        """Estimated Cortex-M4 instructions of one inference in the C runner under `policy` with
        `changes` {(layer, ds): bits} (fxpq_keras.instructions); None when the layout has no kernel
        calls (a stock file). Only widths change with a policy: the kernel path follows them."""
        if not self.layout.calls:
            return None
        calls = [c for c, _ in self.calls_under(policy, changes)]
        if self.call_estimate is not None:
            return float(sum(self.call_estimate(c) for c in calls))
        return model_instructions(calls)

    def calls_under(self, policy: Policy | None = None, changes: Changes | None = None,
                    ) -> list[tuple[KernelCall, dict[str, str]]]:
        """Every kernel call with the widths of `policy` and `changes`, and its sources (the tensors it
        reads and writes, "w": the layer of its weights): where the instruction estimate comes from."""
        changes = changes or {}
        return [(self._call_under(c, src, policy, changes), src) for c, src in self.layout.calls]

    def int8_instructions(self) -> float | None:
        """Estimated Cortex-M4 instructions of one inference of the same model as a stock TFLite int8 file
        in TFLM with CMSIS-NN (fxpq_keras.instructions.int8_model_instructions: the speed cap's default
        reference); None when the layout has no kernel calls. No policy: every tensor is int8 there."""
        if not self.layout.calls:
            return None
        return int8_model_instructions([c for c, _ in self.layout.calls])

    @staticmethod
    def _call_under(call: KernelCall, sources: dict[str, str], policy: Policy | None, changes: Changes) -> KernelCall:
        if policy is None and not changes:
            return call
        new: dict[str, Any] = {}
        for role, prefix in (("x", "x"), ("x2", "x2"), ("out", "out")):
            name = sources.get(role)
            key = _output_key(policy, name) if policy is not None and name is not None else None
            if key is not None:
                ds = policy.input if key[0] == "input" else policy.get(*key)
                new[f"{prefix}_bits"] = int(changes.get(key, ds.bits))
                new[f"{prefix}_signed"] = bool(ds.signed)
        layer = sources.get("w")
        if layer is not None and policy is not None and layer in policy.layers:
            new["w_bits"] = int(changes.get((layer, "weights"), policy.get(layer, "weights").bits))
        return replace(call, **new) if new else call

    def gain(self, policy: Policy, layer: str, ds: str, bits: int, *, base: DeviceMemory | None = None) -> DeviceGain:
        """Bytes saved on the device by setting data structure `layer/ds` to `bits`.

        ds is "weights", "bias" or "output" (layer "input" for the model input). Weights save
        their packed bytes; an activation saves RAM only if its container shrinks and the arena's
        peak falls with it; a bias saves nothing. `base` = cost(policy), to skip recomputing it.
        """
        base = base if base is not None else self.cost(policy)
        if ds == "bias":
            return DeviceGain(0, 0)
        key = ("input", "output") if layer == "input" else (layer, ds)
        new = self.cost(policy, {key: int(bits)})
        return DeviceGain(base.flash_bytes - new.flash_bytes, base.ram_bytes - new.ram_bytes)


def layout_root(tensors: list[LayoutTensor], i: int) -> int:
    """The tensor whose bytes tensor i uses (itself unless it is a RESHAPE alias)."""
    while tensors[i].alias is not None:
        i = tensors[i].alias
    return i


def _output_key(policy: Policy, name: str) -> tuple[str, str] | None:
    """The policy data structure that sets a tensor's format (follows pass-through layers back,
    as Policy.output_format does); None when the policy does not know the tensor."""
    if name != "input" and name not in policy.layers:
        return None
    while name != "input" and name in policy.layers and policy.layers[name].get("output") is None:
        name = policy.layers[name]["inputs"][0]
    return ("input", "output") if name not in policy.layers else (name, "output")


def layout_calls(graph: Any) -> list[tuple[KernelCall, dict[str, str]]]:
    """The kernel calls of an IntegerGraph for DeviceLayout.calls, each width's source named as the
    policy names it (the model input's tensor, and the float input's quantize output, are "input")."""
    inputs = {graph.input} | {n.output for n in graph.nodes if n.op == "quantize"}
    out = []
    for _node, call, sources in graph_calls(graph):
        named = {role: ("input" if role != "w" and name in inputs else name) for role, name in sources.items()
                 if not (role == "x" and call.op == "quantize")}  # a quantize reads the float input
        out.append((call, named))
    return out


def _bits_of(policy: Policy, key: tuple[str, str]) -> int:
    return policy.input.bits if key[0] == "input" else policy.get(*key).bits
