"""What TensorFlow Lite Micro reserves for a model: the arena a user sizes (``arena_used_bytes``).

TFLM (tflite-micro 90b983c) splits its arena in two (docs/tflm.md section 7):

- the *head*: every activation tensor and every kernel scratch buffer, placed by TFLM's greedy
  planner (``GreedyMemoryPlanner``): buffers sorted by decreasing size (16-byte aligned sizes;
  equal sizes: the later buffer first, because the planner fills its sort array from the back and
  bubble-sorts stably), tensors numbered in file order before the scratch requests in request
  order, each placed at the lowest offset where it overlaps no buffer alive at the same time.
  RESHAPE outputs are buffers of their own (TFLM's reshape copies unless the two happen to share
  bytes), unlike in the C runner, where they alias their input;
- the *tail* (persistent): the interpreter's own objects, one ``TfLiteEvalTensor`` per tensor of
  the file (constants included), one node record per operator, each builtin operator's parsed
  options, each kernel's ``OpData`` (``Init``) and what ``Prepare`` keeps (int8 conv and
  depthwise conv keep a 32-bit output multiplier and shift per output channel: 8 bytes per
  channel), the scratch handles and the ``TfLiteTensor`` records of the model's inputs and
  outputs. Allocations go down from the arena's end, each aligned down to its own alignment
  (16 bytes for everything a kernel asks for), and this module replays them in TFLM's order.

Sizes are those of 32-bit Arm (Cortex-M) builds of TFLM 90b983c with CMSIS-NN 4ab83cc3 and arm-none-eabi-gcc
(``TF_LITE_STATIC_MEMORY``, as TFLM's Makefile builds); ``scripts/tflm_struct_sizes.sh`` prints
them from a TFLM tree; ``tests/test_tflm_engines.py`` holds this model equal to the real
``arena_used_bytes`` on QEMU Cortex-M4 when ``TFLM_DIR`` is set (tests/test_tflm_arena.py checks
the formulas on hand-computed cases). Two kernel sets: ``"cmsis-nn"`` (TFLM's
``OPTIMIZED_KERNEL_DIR=cmsis_nn`` for a core with the DSP extension, Cortex-M4/M7: what users
run) and ``"reference"`` (TFLM's portable kernels). fxpq's ``FXP_*`` ops are the same under both.
"""

from __future__ import annotations

from dataclasses import dataclass, field

TFLM_ALIGNMENT = 16  # MicroArenaBufferAlignment(): planned buffers and kernels' persistent buffers
KERNEL_SETS = ("cmsis-nn", "reference")

# sizeof / alignof on 32-bit Arm, TFLM 90b983c (scripts/tflm_struct_sizes.sh prints them)
SINGLE_ARENA_ALLOCATOR = (36, 4)
GREEDY_PLANNER = (44, 4)
MICRO_ALLOCATOR = (36, 4)
BUILTIN_DATA_ALLOCATOR = (8, 4)
SUBGRAPH_ALLOCATIONS = (8, 4)
EVAL_TENSOR = (12, 4)
NODE_AND_REGISTRATION = (32, 4)
SCRATCH_HANDLE = (4, 4)
TFLITE_TENSOR = (32, 4)
AFFINE_QUANTIZATION = (12, 4)
POINTER = 4

# builtin options each parser allocates (bytes, alignment); ops absent here allocate none
BUILTIN_DATA = {
    "CONV_2D": (28, 4), "DEPTHWISE_CONV_2D": (28, 4), "FULLY_CONNECTED": (5, 1), "MAX_POOL_2D": (40, 4),
    "AVERAGE_POOL_2D": (40, 4), "ADD": (2, 1), "SOFTMAX": (4, 4), "RESHAPE": (36, 4), "MEAN": (1, 1),
    "CONCATENATION": (8, 4), "LEAKY_RELU": (4, 4), "MUL": (1, 1), "SUB": (2, 1), "RESIZE_NEAREST_NEIGHBOR": (2, 1),
}
# each kernel's Init: bytes of its OpData (kernel set -> op -> bytes); 0 = no Init
OP_DATA = {
    "cmsis-nn": {"CONV_2D": 60, "DEPTHWISE_CONV_2D": 60, "FULLY_CONNECTED": 72, "MAX_POOL_2D": 36,
                 "AVERAGE_POOL_2D": 36, "ADD": 60, "SOFTMAX": 64, "PAD": 56},
    "reference": {"CONV_2D": 56, "DEPTHWISE_CONV_2D": 56, "FULLY_CONNECTED": 48, "MAX_POOL_2D": 32,
                  "AVERAGE_POOL_2D": 32, "ADD": 60, "SOFTMAX": 56, "PAD": 56},
    "common": {"RESHAPE": 0, "MEAN": 44, "QUANTIZE": 32, "DEQUANTIZE": 32, "CONCATENATION": 24, "LEAKY_RELU": 24,
               # the stock ops of hybrid fxp files (docs/format.md section 8); RESIZE_NEAREST_NEIGHBOR and
               # TRANSPOSE have no Init
               "MUL": 36, "SUB": 52, "LOGISTIC": 16, "TANH": 16, "HARD_SWISH": 20, "RESIZE_NEAREST_NEIGHBOR": 0,
               "TRANSPOSE": 0},
}
# FXP_* ops through the glue: Init allocates sizeof(fxpq::Record<op>) of tflm_kernels/tflm/fxpq_tflm_ops.cc (only
# what Eval cannot read from the tensors: kernel parameters, 3-byte formats, the weighted ops' weight bits, bias frac
# and scratch handle); the arena rounds each to 16 bytes. scripts/tflm_struct_sizes.py --check measures them.
FXPQ_GLUE_RECORD = {
    "FXP_QUANTIZE": 3, "FXP_CONV_2D": 52, "FXP_DEPTHWISE_CONV_2D": 56, "FXP_FULLY_CONNECTED": 28, "FXP_ADD": 10,
    "FXP_MAX_POOL_2D": 28, "FXP_AVERAGE_POOL_2D": 28, "FXP_GLOBAL_AVERAGE_POOL_2D": 6, "FXP_REQUANTIZE": 7,
    "FXP_PAD": 24, "FXP_LEAKY_RELU": 12, "FXP_CONCATENATION": 9,
}
UNKNOWN_OP_DATA = 64  # an op this model does not know: a typical OpData (the figure is then an estimate)
# What AllocateTensors holds in the head for a moment while it plans (MicroAllocator::
# CommitStaticMemoryPlan): the scratch requests' resizable buffer (room for kMaxScratchBuffersPerOp
# more), the subgraph offsets, one AllocationInfo per tensor of the file and per scratch request, then
# the GreedyMemoryPlanner's per-buffer arrays (BufferRequirements + two sorted ints + ListEntry + an
# offset) for every planned buffer. 32-bit Arm sizes of TFLM 90b983c.
ALLOCATION_INFO = 24
PLANNER_PER_BUFFER = 40
SCRATCH_REQUEST = 8
MAX_SCRATCH_PER_OP = 12

__all__ = ["KERNEL_SETS", "TflmCharge", "TflmLayout", "TflmOp", "cmsis_avgpool_s8_scratch", "cmsis_conv_s8_scratch",
           "cmsis_depthwise_s8_scratch", "cmsis_fully_connected_s8_scratch", "stock_op_charge",
           "fxp_op_charge"]


@dataclass(frozen=True)
class TflmCharge:
    """What one operator costs TFLM: parsed options, OpData, Prepare's persistent buffers, scratch."""

    builtin_data: tuple[int, int] | None = None  # (bytes, alignment)
    op_data: int = 0
    prepare: tuple[int, ...] = ()  # persistent buffers (16-byte aligned), in allocation order
    scratch: tuple[int, ...] = ()  # scratch requests (planned in the head for this op only)
    known: bool = True  # False: an op this model does not describe (default charges)


@dataclass
class TflmOp:
    """One operator of the file, as TFLM charges it under each kernel set."""

    code: str
    charges: dict[str, TflmCharge]


@dataclass
class TflmLayout:
    """The parts of a file that set TFLM's persistent bytes and its scratch requests."""

    tensor_count: int  # every tensor of the subgraph (a TfLiteEvalTensor each)
    ops: list[TflmOp]
    io_channels: list[int | None]  # per model input then output: quantization entries (None: none)
    inputs: int = 1
    subgraphs: int = 1
    notes: list[str] = field(default_factory=list)

    def planning_bytes(self, planned_buffers: int, kernels: str = "cmsis-nn") -> int:
        """Head bytes AllocateTensors needs for a moment while it plans `planned_buffers` buffers
        (activations and scratch): its arena must hold these plus the persistent tail, even where
        arena_used_bytes (the plan it keeps) is smaller."""
        scratch = sum(len(s) for s in self.scratch(kernels))

        def up(n: int) -> int:
            return -(-n // TFLM_ALIGNMENT) * TFLM_ALIGNMENT

        # each piece rounded up to 16 bytes: an upper bound, 48 bytes above the smallest arena that
        # works on the two models of tests/test_deploy.py (measured on QEMU M4, docs/tflm.md section 8)
        return (up(SCRATCH_REQUEST * (scratch + MAX_SCRATCH_PER_OP)) + up(POINTER)
                + up(ALLOCATION_INFO * (self.tensor_count + scratch)) + up(PLANNER_PER_BUFFER * planned_buffers))

    def scratch(self, kernels: str) -> list[list[int]]:
        """Per op, its scratch requests under `kernels`."""
        return [list(op.charges[kernels].scratch) for op in self.ops]

    def persistent_bytes(self, kernels: str = "cmsis-nn") -> int:
        """Bytes of the arena's tail after AllocateTensors, replaying TFLM's allocations in order
        from a 16-byte aligned arena end."""
        tail = 0

        def alloc(size: int, align: int = TFLM_ALIGNMENT) -> None:
            nonlocal tail
            tail = -(-(tail + int(size)) // align) * align

        for size, align in (SINGLE_ARENA_ALLOCATOR, GREEDY_PLANNER, MICRO_ALLOCATOR, BUILTIN_DATA_ALLOCATOR):
            alloc(size, align)
        alloc(SUBGRAPH_ALLOCATIONS[0] * self.subgraphs, SUBGRAPH_ALLOCATIONS[1])
        alloc(EVAL_TENSOR[0] * self.tensor_count, EVAL_TENSOR[1])
        alloc(NODE_AND_REGISTRATION[0] * len(self.ops), NODE_AND_REGISTRATION[1])
        charges = [op.charges[kernels] for op in self.ops]
        for c in charges:  # PrepareNodeAndRegistrationDataFromFlatbuffer: builtin options
            if c.builtin_data is not None:
                alloc(*c.builtin_data)
        for c in charges:  # InitSubgraphs
            if c.op_data:
                alloc(c.op_data)
        for c in charges:  # PrepareSubgraphs
            for size in c.prepare:
                alloc(size)
        n_scratch = sum(len(c.scratch) for c in charges)
        if n_scratch:
            alloc(SCRATCH_HANDLE[0] * n_scratch, SCRATCH_HANDLE[1])
        outputs = len(self.io_channels) - self.inputs
        for start, count in ((0, self.inputs), (self.inputs, outputs)):
            alloc(POINTER * count)  # input_tensors_ / output_tensors_
            for channels in self.io_channels[start:start + count]:
                alloc(*TFLITE_TENSOR)
                if channels is not None:
                    alloc(*AFFINE_QUANTIZATION)
                    alloc(4 + 4 * channels, 4)  # the zero-point TfLiteIntArray
        return tail


def cmsis_conv_s8_scratch(kh: int, kw: int, cin: int, pad: tuple[int, int], stride: tuple[int, int],
                          dilation: tuple[int, int] = (1, 1)) -> int:
    """arm_convolve_wrapper_s8_get_buffer_size on a DSP core built with GCC (CMSIS-NN 4ab83cc3).

    A 1x1 kernel without padding or dilation takes none (the fast 1x1 path's buffer exists only
    for Arm Compiler 6); every other conv two int16 im2col columns of kh*kw*cin rounded up to 4.
    """
    if (pad == (0, 0) and (kh, kw) == (1, 1) and dilation == (1, 1)):
        return 0
    k = kh * kw * cin
    return 2 * (-(-k // 4) * 4) * 2


def cmsis_depthwise_s8_scratch(kh: int, kw: int, cin: int, cout: int, pad: tuple[int, int],
                               dilation: tuple[int, int] = (1, 1)) -> int:
    """arm_depthwise_conv_wrapper_s8_get_buffer_size on a DSP core (CMSIS-NN 4ab83cc3): the
    optimized kernel (channel multiplier 1, no dilation) needs cin*kh*kw int16 values, except the
    3x3 kernel with padding <= 1 which has its own path without scratch; other shapes none."""
    if cin != cout or dilation != (1, 1):
        return 0
    if (kh, kw) == (3, 3) and pad[0] <= 1 and pad[1] <= 1:
        return 0
    return cin * kh * kw * 2


def cmsis_fully_connected_s8_scratch(output_rank: int, accum_depth: int, out_depth: int,
                                     per_channel: bool) -> int:
    """TFLM's CMSIS-NN FULLY_CONNECTED scratch on a DSP core: arm_fully_connected_s8 needs none;
    an output of rank > 2 with accum_depth % 4 == 0 runs as a 1x1 conv that, per-tensor quantized,
    takes 8 bytes per output channel to fake per-channel parameters."""
    if output_rank > 2 and accum_depth % 4 == 0 and not per_channel:
        return 8 * out_depth
    return 0


def cmsis_avgpool_s8_scratch(channels: int) -> int:
    """arm_avgpool_s8_get_buffer_size on a DSP core: one int32 sum per channel."""
    return 4 * channels


def fxp_op_charge(name: str, scratch: int) -> TflmCharge:
    """An FXP_* op (custom name) through the glue: its record from Init and, for weighted ops, the kernel's scratch."""
    return TflmCharge(None, FXPQ_GLUE_RECORD[name], (), (int(scratch),) if scratch > 0 else ())


def stock_op_charge(code: str, kernels: str, *, int8: bool = True, channels: int = 0, scratch_cmsis: int = 0,
                    scratch_common: tuple[int, ...] = (), per_channel: bool = False,
                    writable_dims: int = 0, scratch_reference: int = 0) -> TflmCharge:
    """A stock TFLM op under `kernels`.

    channels: output channels of a conv / depthwise conv (their per-channel multiplier and shift);
    per_channel: a fully connected with per-channel weight scales (same 8 bytes per channel);
    scratch_cmsis: the CMSIS-NN kernel's scratch request (cmsis_*_scratch; ignored under reference);
    scratch_common: scratch both kernel sets request (MEAN); writable_dims: rank of a RESHAPE
    output whose shape has a -1 (TFLM copies the dims to the arena); scratch_reference: the
    reference kernel's scratch (int4 weights: conv, depthwise and FC unpack the whole filter into
    the arena, one byte per weight; CMSIS-NN's s4 kernels read the packed weights).
    """
    known = code in BUILTIN_DATA or code in OP_DATA[kernels] or code in OP_DATA["common"]
    op_data = OP_DATA[kernels].get(code, OP_DATA["common"].get(code, UNKNOWN_OP_DATA))
    prepare: tuple[int, ...] = ()
    if int8 and (code in ("CONV_2D", "DEPTHWISE_CONV_2D") or (code == "FULLY_CONNECTED" and per_channel)):
        prepare = (4 * channels, 4 * channels)
    if code == "RESHAPE" and writable_dims:
        prepare = (4 + 4 * writable_dims,)
    own = (scratch_cmsis,) if kernels == "cmsis-nn" else (scratch_reference,)
    scratch = tuple(s for s in own + tuple(scratch_common) if s > 0)
    return TflmCharge(BUILTIN_DATA.get(code), op_data, prepare, scratch, known)
