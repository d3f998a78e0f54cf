/*
 * fxpq_harness_protocol.h - the op-case file format of the QEMU test harness.
 *
 * Shared with fxpq_keras/kernels/qemu.py (which checks these numbers against this file).
 * All fields are little-endian 32-bit words; blobs are padded to a multiple of 4 bytes.
 *
 * Input file (fxpq_cases.bin):
 *   u32 magic FXPQ_HARNESS_MAGIC_CASES, u32 version, u32 case_count
 *   case_count x { u32 record_bytes (bytes after this word), u32 case_id, u32 op,
 *                  u32 param_count, i32 params[param_count] (indices fxpq_harness_param),
 *                  u32 blob_count, blob_count x { u32 bytes, data, pad to 4 } }
 *   blobs: [0] input (activation storage; float32 for QUANTIZE), [1] second input of ADD or
 *   packed weights, [2] per-channel weight fracs (int8, empty = per-tensor), [3] bias (int32,
 *   empty = none).
 *
 * Output file (fxpq_results.bin):
 *   u32 magic FXPQ_HARNESS_MAGIC_RESULTS, u32 version, u32 case_count
 *   case_count x { u32 case_id, i32 status (fxpq_status or FXPQ_HARNESS_ERR_*), u32 ticks,
 *                  u32 bytes, data (output tensor in its storage type; float32 for
 *                  DEQUANTIZE), pad to 4 }
 *   ticks: CMSDK TIMER0 ticks spent in the kernel call (25 MHz; under -icount shift=0 one tick
 *   is 40 guest instructions).
 *
 * Exit status of the firmware (semihosting SYS_EXIT_EXTENDED): 0 when every case was read and
 * answered (kernel errors are per-case statuses), else an FXPQ_HARNESS_EXIT_* code.
 */
#ifndef FXPQ_HARNESS_PROTOCOL_H
#define FXPQ_HARNESS_PROTOCOL_H

#define FXPQ_HARNESS_MAGIC_CASES 0x31515846u   /* "FXQ1" */
#define FXPQ_HARNESS_MAGIC_RESULTS 0x31525846u /* "FXR1" */
#define FXPQ_HARNESS_VERSION 1u
#define FXPQ_HARNESS_CASES_FILE "fxpq_cases.bin"
#define FXPQ_HARNESS_RESULTS_FILE "fxpq_results.bin"

enum fxpq_harness_op {
    FXPQ_HOP_CONV2D = 1,
    FXPQ_HOP_DEPTHWISE_CONV2D = 2,
    FXPQ_HOP_FULLY_CONNECTED = 3,
    FXPQ_HOP_ADD = 4,
    FXPQ_HOP_MAX_POOL2D = 5,
    FXPQ_HOP_AVERAGE_POOL2D = 6,
    FXPQ_HOP_GLOBAL_AVERAGE_POOL2D = 7,
    FXPQ_HOP_QUANTIZE = 8,
    FXPQ_HOP_DEQUANTIZE = 9,
    FXPQ_HOP_REQUANTIZE = 10,
    FXPQ_HOP_ZERO_PAD2D = 11,
    FXPQ_HOP_LEAKY_RELU = 12,
    FXPQ_HOP_CONCATENATION = 13,
    FXPQ_HOP_STOCK = 14 /* a stock TFLM op (fxpq_stock_*): see fxpq_harness_stock_word below */
};

enum fxpq_harness_param {
    FXPQ_P_IN_N = 0, /* input dims (FC: n = batches, c = in_features; elementwise: size = n*h*w*c) */
    FXPQ_P_IN_H = 1,
    FXPQ_P_IN_W = 2,
    FXPQ_P_IN_C = 3,
    FXPQ_P_IN_BITS = 4,
    FXPQ_P_IN_FRAC = 5,
    FXPQ_P_IN_SIGNED = 6,
    FXPQ_P_IN2_BITS = 7, /* ADD's second input */
    FXPQ_P_IN2_FRAC = 8,
    FXPQ_P_IN2_SIGNED = 9,
    FXPQ_P_FILTER_N = 10,
    FXPQ_P_FILTER_H = 11,
    FXPQ_P_FILTER_W = 12,
    FXPQ_P_FILTER_C = 13,
    FXPQ_P_W_BITS = 14,
    FXPQ_P_W_FRAC = 15,
    FXPQ_P_HAS_BIAS = 16,
    FXPQ_P_BIAS_FRAC = 17,
    FXPQ_P_STRIDE_H = 18,
    FXPQ_P_STRIDE_W = 19,
    FXPQ_P_DILATION_H = 20,
    FXPQ_P_DILATION_W = 21,
    FXPQ_P_PADDING = 22,
    FXPQ_P_ACTIVATION = 23,
    FXPQ_P_DEPTH_MULTIPLIER = 24,
    FXPQ_P_POOL_H = 25,
    FXPQ_P_POOL_W = 26,
    FXPQ_P_OUT_N = 27, /* output dims (FC: n = batches, c = out_features) */
    FXPQ_P_OUT_H = 28,
    FXPQ_P_OUT_W = 29,
    FXPQ_P_OUT_C = 30,
    FXPQ_P_OUT_BITS = 31,
    FXPQ_P_OUT_FRAC = 32,
    FXPQ_P_OUT_SIGNED = 33,
    FXPQ_P_PAD_TOP = 34, /* ZERO_PAD2D */
    FXPQ_P_PAD_BOTTOM = 35,
    FXPQ_P_PAD_LEFT = 36,
    FXPQ_P_PAD_RIGHT = 37,
    FXPQ_P_ALPHA_SHIFT = 38, /* LEAKY_RELU */
    FXPQ_P_IN2_C = 39, /* CONCATENATION: channels of the second input (IN_N = outer, IN_C = first's) */
    FXPQ_P_COUNT = 40
};

enum fxpq_harness_blob {
    FXPQ_BLOB_INPUT = 0,
    FXPQ_BLOB_INPUT2_OR_WEIGHTS = 1,
    FXPQ_BLOB_WEIGHT_FRACS = 2,
    FXPQ_BLOB_BIAS = 3,
    FXPQ_BLOB_COUNT = 4
};

/* FXPQ_HOP_STOCK cases carry no params; blob 0 is the first input, blob 1 the second (empty for
 * one-input ops), blob 2 a descriptor of FXPQ_SW_COUNT i32 words indexed by fxpq_harness_stock_word.
 * Scales are float32 bit patterns. The output holds out_count elements of the output type. */
enum fxpq_harness_stock_op {
    FXPQ_SOP_REQUANTIZE = 1,
    FXPQ_SOP_MUL = 2,
    FXPQ_SOP_ADD = 3,
    FXPQ_SOP_SUB = 4,
    FXPQ_SOP_LOGISTIC = 5,
    FXPQ_SOP_TANH = 6,
    FXPQ_SOP_HARD_SWISH = 7,
    FXPQ_SOP_MAXIMUM = 8,
    FXPQ_SOP_MINIMUM = 9,
    FXPQ_SOP_MEAN = 10,
    FXPQ_SOP_RESIZE_NEAREST_NEIGHBOR = 11,
    FXPQ_SOP_TRANSPOSE = 12,
    FXPQ_SOP_CONCATENATION = 13,
    FXPQ_SOP_ELU = 14
};

enum fxpq_harness_stock_word {
    FXPQ_SW_OP = 0,
    FXPQ_SW_TYPE1 = 1, /* TFLite type code of input 1, its scale bits and zero point */
    FXPQ_SW_SCALE1 = 2,
    FXPQ_SW_ZP1 = 3,
    FXPQ_SW_TYPE2 = 4,
    FXPQ_SW_SCALE2 = 5,
    FXPQ_SW_ZP2 = 6,
    FXPQ_SW_TYPE_OUT = 7,
    FXPQ_SW_SCALE_OUT = 8,
    FXPQ_SW_ZP_OUT = 9,
    FXPQ_SW_ACTIVATION = 10,
    FXPQ_SW_RANK1 = 11, /* then 6 dims */
    FXPQ_SW_RANK2 = 18, /* then 6 dims */
    FXPQ_SW_OUT_COUNT = 25,
    FXPQ_SW_EXTRA0 = 26, /* MEAN: axes mask; RESIZE: out height; CONCATENATION: outer; TRANSPOSE: perm[0..4] */
    FXPQ_SW_EXTRA1 = 27, /* MEAN: count; RESIZE: out width; CONCATENATION: inner */
    FXPQ_SW_EXTRA2 = 28, /* RESIZE: align_corners; CONCATENATION: axis size of input 1 */
    FXPQ_SW_EXTRA3 = 29, /* RESIZE: half_pixel_centers; CONCATENATION: axis size of input 2 */
    FXPQ_SW_EXTRA4 = 30,
    FXPQ_SW_COUNT = 31
};

/* per-case statuses of the harness itself (below every fxpq_status) */
#define FXPQ_HARNESS_ERR_BAD_RECORD (-100) /* malformed record, blob sizes that do not match */
#define FXPQ_HARNESS_ERR_TOO_LARGE (-101)  /* record or output larger than the harness buffers */
#define FXPQ_HARNESS_ERR_BAD_OP (-102)

/* firmware exit codes */
#define FXPQ_HARNESS_EXIT_OK 0
#define FXPQ_HARNESS_EXIT_NO_INPUT 2
#define FXPQ_HARNESS_EXIT_BAD_HEADER 3
#define FXPQ_HARNESS_EXIT_IO 4
#define FXPQ_HARNESS_EXIT_FAULT 5

#endif /* FXPQ_HARNESS_PROTOCOL_H */
