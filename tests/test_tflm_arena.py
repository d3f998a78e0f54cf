"""What TFLM reserves (fxpq_keras.tflm_arena): the CMSIS-NN scratch formulas, the per-channel
parameters, TFLM's planner order and the persistent replay, on hand-checked cases (fast). The
real ``arena_used_bytes`` of TFLM on Cortex-M4 is compared in tests/test_tflm_engines.py."""

from __future__ import annotations

import pytest
from test_export_graphs import cnn_graph

from fxpq_keras import tflm_arena as T
from fxpq_keras.flatbuffer import export_tflite
from fxpq_keras.flatbuffer.memory import device_model_from_tflite, file_memory, layout_from_tflite, tflm_padding
from fxpq_keras.flatbuffer.options import CUSTOM_OPS
from fxpq_keras.memory import plan_arena


def test_cmsis_conv_scratch_is_two_im2col_columns_except_unpadded_1x1():
    # 3x3 over 1 channel: K = 9 rounded up to 12, two int16 columns
    assert T.cmsis_conv_s8_scratch(3, 3, 1, (1, 1), (1, 1)) == 2 * 12 * 2
    # LeNet's 5x5 over 6 channels: K = 150 -> 152
    assert T.cmsis_conv_s8_scratch(5, 5, 6, (0, 0), (1, 1)) == 2 * 152 * 2
    # a pointwise conv without padding needs none, strided or not (GCC builds have no fast-1x1 buffer)
    assert T.cmsis_conv_s8_scratch(1, 1, 24, (0, 0), (1, 1)) == 0
    assert T.cmsis_conv_s8_scratch(1, 1, 24, (0, 0), (2, 2)) == 0
    # a padded 1x1 goes through im2col: K = 24
    assert T.cmsis_conv_s8_scratch(1, 1, 24, (1, 0), (1, 1)) == 2 * 24 * 2


def test_cmsis_depthwise_scratch():
    # 3x3 with padding <= 1 has a path of its own without scratch
    assert T.cmsis_depthwise_s8_scratch(3, 3, 24, 24, (1, 1)) == 0
    assert T.cmsis_depthwise_s8_scratch(3, 3, 24, 24, (0, 0)) == 0
    # other kernels: cin * kh * kw int16
    assert T.cmsis_depthwise_s8_scratch(5, 5, 8, 8, (2, 2)) == 8 * 25 * 2
    assert T.cmsis_depthwise_s8_scratch(3, 1, 8, 8, (1, 0)) == 8 * 3 * 2
    # a channel multiplier or a dilation takes the generic kernel: none
    assert T.cmsis_depthwise_s8_scratch(5, 5, 8, 16, (2, 2)) == 0
    assert T.cmsis_depthwise_s8_scratch(5, 5, 8, 8, (2, 2), dilation=(2, 1)) == 0


def test_cmsis_fully_connected_and_avgpool_scratch():
    assert T.cmsis_fully_connected_s8_scratch(2, 400, 120, per_channel=False) == 0
    # rank-3 output with accum_depth % 4 == 0 runs as a 1x1 conv: per-tensor needs faked per-channel params
    assert T.cmsis_fully_connected_s8_scratch(3, 64, 10, per_channel=False) == 80
    assert T.cmsis_fully_connected_s8_scratch(3, 64, 10, per_channel=True) == 0
    assert T.cmsis_fully_connected_s8_scratch(3, 63, 10, per_channel=False) == 0
    assert T.cmsis_avgpool_s8_scratch(48) == 192


def test_tflm_padding_rounds_half_down():
    assert tflm_padding(28, 3, 2, 1, "same") == 0  # total 1
    assert tflm_padding(14, 5, 1, 1, "same") == 2
    assert tflm_padding(7, 3, 1, 2, "same") == 2  # dilated 3x3 spans 5
    assert tflm_padding(14, 5, 1, 1, "valid") == 0


def test_int8_conv_keeps_a_multiplier_and_shift_per_channel():
    for kernels in T.KERNEL_SETS:
        c = T.stock_op_charge("CONV_2D", kernels, channels=16, scratch_cmsis=48)
        assert c.prepare == (64, 64) and c.builtin_data == T.BUILTIN_DATA["CONV_2D"]
        assert c.scratch == ((48,) if kernels == "cmsis-nn" else ())
        fc = T.stock_op_charge("FULLY_CONNECTED", kernels, channels=10, per_channel=True)
        assert fc.prepare == (40, 40)
        assert T.stock_op_charge("FULLY_CONNECTED", kernels).prepare == ()
    # the kernels' OpData differ: CMSIS-NN's conv adds a scratch index to the reference OpDataConv
    assert T.stock_op_charge("CONV_2D", "cmsis-nn").op_data == T.stock_op_charge("CONV_2D", "reference").op_data + 4
    # an fxpq op: the glue's record for that op and its kernel's scratch, under any kernel set
    assert T.fxp_op_charge("FXP_CONV_2D", 100) == T.TflmCharge(None, T.FXPQ_GLUE_RECORD["FXP_CONV_2D"], (), (100,))
    # every FXP_* op has its record size, each at most one int8 conv OpData (16-byte rounded)
    assert set(T.FXPQ_GLUE_RECORD) == set(CUSTOM_OPS)
    assert all(0 < -(-b // 16) * 16 <= 64 for b in T.FXPQ_GLUE_RECORD.values())
    assert T.stock_op_charge("SQUARED_DIFFERENCE", "cmsis-nn").known is False


def test_persistent_replay_aligns_each_allocation_down_from_the_end():
    # no operators, 3 tensors, one int8 input and output with one quantization entry each
    layout = T.TflmLayout(tensor_count=3, ops=[], io_channels=[1, 1])
    # 36 + 44 + 36 + 8 (allocators) + 8 (subgraph) + 36 (eval tensors) = 168; per input/output:
    # the pointer array 4 -> aligned to 16 (176), TfLiteTensor 32, quantization 12, zero points 8
    assert layout.persistent_bytes() == 292
    # an OpData after the 4-aligned records is aligned to 16 again
    op = T.TflmOp("X", {k: T.TflmCharge(None, 20) for k in T.KERNEL_SETS})
    two = T.TflmLayout(tensor_count=3, ops=[op], io_channels=[1, 1])
    # node record 32 -> 200, OpData 20 -> 220 -> 224; input pointers 228 -> 240, its records 52 -> 292;
    # output pointers 296 -> 304, its records -> 356
    assert two.persistent_bytes() == 356


def test_tflm_planner_places_equal_sizes_later_first():
    sizes, first, last = [32, 32, 32, 16], [0, 1, 3, 0], [0, 3, 4, 2]
    # the runner (ties: lower index first) fits the 16-byte record in a hole; TFLM's order does not
    assert plan_arena(sizes, first, last, alignment=16) == 64
    assert plan_arena(sizes, first, last, alignment=16, later_first=True) == 80


@pytest.mark.parametrize("seed,kw", [(0, {}), (1, {"max_bits": 8}), (4, {"int8": True})])
def test_file_accounting_parts(seed, kw):
    """ram_bytes = planned + persistent; every weighted FXP op requests its kernel's scratch; the
    persistent part holds a TfLiteEvalTensor per tensor of the file and the glue's record per op."""
    graph, _ = cnn_graph(seed, **kw)
    data = export_tflite(graph, float_input=False)
    mem = file_memory(data)
    layout = layout_from_tflite(data)
    assert mem.ram_bytes == mem.tflm_planned_bytes + mem.tflm_persistent_bytes
    fxp = [op for op in layout.tflm.ops if op.code.startswith("FXP_")]
    assert fxp and all(op.charges["cmsis-nn"].op_data == T.FXPQ_GLUE_RECORD[op.code] for op in fxp)
    assert sorted(s for r in layout.tflm.scratch("cmsis-nn") for s in r) == sorted(s for s in layout.scratch if s)
    assert mem.tflm_persistent_bytes >= sum(-(-T.FXPQ_GLUE_RECORD[op.code] // 16) * 16 for op in fxp) + \
        layout.tflm.tensor_count * 12
    # the planned part holds at least every tensor alive at once at each op (16-byte aligned)
    assert mem.tflm_planned_bytes >= max(16 * -(-t.elements // 16) for t in layout.tensors if t.bits)
    # the same file under TFLM's reference kernels costs the same (no stock weighted op)
    assert device_model_from_tflite(data).cost(kernels="reference") == mem


def test_int8_builtin_file_is_charged_cmsis_scratch_and_per_channel_params():
    graph, _ = cnn_graph(4, int8=True)
    data = export_tflite(graph, target="int8-builtin", float_input=False)
    layout = layout_from_tflite(data)
    convs = [op for op in layout.tflm.ops if op.code in ("CONV_2D", "DEPTHWISE_CONV_2D")]
    assert convs
    for op in convs:
        c = op.charges["cmsis-nn"]
        assert len(c.prepare) == 2 and c.prepare[0] == c.prepare[1] > 0
    cmsis = device_model_from_tflite(data).cost()
    ref = device_model_from_tflite(data).cost(kernels="reference")
    assert cmsis.runner_planned_bytes == ref.runner_planned_bytes
    assert cmsis.tflm_persistent_bytes != ref.tflm_persistent_bytes  # OpData sizes differ
