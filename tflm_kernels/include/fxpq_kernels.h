/*
 * fxpq_kernels.h - the one public header of the fxpq fixed-point reference kernels.
 *
 * The kernels implement docs/numerics.md (the numerics contract) bit for bit; the numpy
 * reference fxpq_keras/integer_graph/ops.py is the source of truth they are tested against.
 *
 * Conventions
 *  - Portable C99, no heap, no floating point except in fxpq_quantize / fxpq_dequantize.
 *  - Every kernel returns an fxpq_status; on any error nothing is written to the output.
 *  - Activations are NHWC. Their storage type follows the format (numerics.md section 10):
 *      bits 2..8  signed -> int8,   unsigned -> uint8
 *      bits 9..16 signed -> int16,  unsigned -> uint16
 *    int16/uint16 buffers must be 2-byte aligned. Values must lie in their format's range.
 *  - Weights are packed per numerics.md section 9: widths 2..8 as a little-endian, LSB-first bit
 *    stream in which every output channel's run starts on a byte boundary; widths 9..16 as
 *    little-endian int16. Channel order: output channel outermost, then the op's layout
 *    (conv OHWI -> [O][kh][kw][C]; depthwise -> [C*M][kh][kw]; fully connected -> [O][in]).
 *    Weight buffers have no alignment requirement.
 *  - The weighted kernels take caller-owned scratch (fxpq_context) whose size is given by the
 *    matching *_get_buffer_size() function (0 for fully connected, 1x1 conv and depthwise: buf may
 *    then be NULL); it must be 2-byte aligned.
 *  - Outputs must not alias inputs, except for the elementwise kernels (add, requantize) when the
 *    output has the same storage type as the aliased input.
 *  - Requantization uses shifts only (fxpq_rescale); accumulators are int32 only when
 *    fxpq_acc_needs_64() says the dot product provably fits, else int64.
 */
#ifndef FXPQ_KERNELS_H
#define FXPQ_KERNELS_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---------------------------------------------------------------- limits of the contract -- */
#define FXPQ_MIN_BITS 2          /* weights, activations, model input */
#define FXPQ_MAX_BITS 16
#define FXPQ_MIN_FRAC (-32)
#define FXPQ_MAX_FRAC 32
#define FXPQ_MAX_BIAS_SHIFT 30   /* 0 <= frac_acc - frac_bias <= 30 (numerics.md section 4) */
#define FXPQ_MAX_ADD_FRAC_DIFF 32 /* |frac_a - frac_b| <= 32 (section 5) */
#define FXPQ_MAX_AVG_FRAC_DIFF 24 /* |frac_out - frac_in| <= 24 (section 7) */
#define FXPQ_MAX_ALPHA_SHIFT 31  /* LeakyReLU slope 2^-alpha_shift, 1 <= alpha_shift <= 31 */

/* ------------------------------------------------------------------------------ types -- */

/** Status returned by every kernel. FXPQ_OK is 0, errors are negative. */
typedef enum {
    FXPQ_OK = 0,
    FXPQ_ERR_NULL_POINTER = -1,       /**< a required pointer is NULL */
    FXPQ_ERR_BAD_FORMAT = -2,         /**< bits outside 2..16 or frac outside -32..32 */
    FXPQ_ERR_BAD_DIMS = -3,           /**< size <= 0, shapes that do not match, size overflow */
    FXPQ_ERR_BAD_PARAM = -4,          /**< stride/dilation/pool/multiplier < 1, bad activation,
                                           frac distance outside the contract */
    FXPQ_ERR_BAD_PADDING = -5,        /**< unknown padding mode, or 'valid' window larger than input */
    FXPQ_ERR_SCRATCH_TOO_SMALL = -6,  /**< fxpq_context.size < *_get_buffer_size() */
    FXPQ_ERR_BAD_BIAS_FRAC = -7,      /**< frac_acc - frac_bias outside 0..30 */
    FXPQ_ERR_MISALIGNED = -8,         /**< int16 data or scratch not 2-byte aligned */
    FXPQ_ERR_NOT_BUILT = -9           /**< a selective build (FXPQ_SELECTIVE_PATHS) left out this
                                           combination of op, input storage and weight width:
                                           fxpq_kernel_path_built() */
} fxpq_status;

/** A dynamic fixed-point format: integer q means q * 2^-frac. */
typedef struct {
    int32_t bits;      /**< 2..16 */
    int32_t frac;      /**< -32..32 */
    int32_t is_signed; /**< 0: unsigned [0, 2^bits-1]; else signed [-2^(bits-1), 2^(bits-1)-1] */
} fxpq_format;

/** Container type of an activation (numerics.md section 10). */
typedef enum {
    FXPQ_STORAGE_INT8 = 0,
    FXPQ_STORAGE_UINT8 = 1,
    FXPQ_STORAGE_INT16 = 2,
    FXPQ_STORAGE_UINT16 = 3
} fxpq_storage;

/** Fused activation, applied as an integer clamp in the output format. */
typedef enum {
    FXPQ_ACT_NONE = 0,
    FXPQ_ACT_RELU = 1,
    FXPQ_ACT_RELU6 = 2
} fxpq_activation;

/** TensorFlow padding modes (numerics.md section 4). */
typedef enum {
    FXPQ_PADDING_VALID = 0,
    FXPQ_PADDING_SAME = 1
} fxpq_padding;

/** Tensor dimensions. Activations: NHWC. Conv filter: n = out channels, h = kh, w = kw,
 *  c = in channels. Depthwise filter: n = 1, h = kh, w = kw, c = in_ch * depth_multiplier. */
typedef struct {
    int32_t n;
    int32_t h;
    int32_t w;
    int32_t c;
} fxpq_dims;

/** Height / width pair (strides, dilations, pool sizes). */
typedef struct {
    int32_t h;
    int32_t w;
} fxpq_tile;

/** Caller-owned scratch memory. buf may be NULL when size is 0 and none is needed. */
typedef struct {
    void *buf;
    int32_t size; /**< bytes */
} fxpq_context;

/** Packed weights of a conv / depthwise / fully-connected layer. */
typedef struct {
    const void *data;               /**< packed per numerics.md section 9, no alignment needed */
    int32_t bits;                   /**< 2..16 */
    int32_t frac;                   /**< per-tensor frac, used when per_channel_frac is NULL */
    const int8_t *per_channel_frac; /**< NULL, or one frac per output channel */
} fxpq_weights;

/** Bias (int32 values, up to 32 bits). data NULL means no bias. */
typedef struct {
    const int32_t *data; /**< NULL or [out_channels] */
    int32_t frac;        /**< must satisfy 0 <= frac_x + frac_w[o] - frac <= 30 */
} fxpq_bias;

typedef struct {
    fxpq_tile stride;    /**< >= 1 */
    fxpq_tile dilation;  /**< >= 1 */
    fxpq_padding padding;
    fxpq_activation activation;
} fxpq_conv_params;

typedef struct {
    fxpq_tile stride;
    fxpq_tile dilation;
    fxpq_padding padding;
    fxpq_activation activation;
    int32_t depth_multiplier; /**< >= 1; output channel o = c * depth_multiplier + m */
} fxpq_dw_conv_params;

typedef struct {
    fxpq_activation activation;
} fxpq_fc_params;

typedef struct {
    fxpq_tile filter;    /**< pool window, >= 1 */
    fxpq_tile stride;    /**< >= 1 */
    fxpq_padding padding;
    fxpq_activation activation;
} fxpq_pool_params;

typedef struct {
    fxpq_activation activation;
} fxpq_elementwise_params;

/** LeakyReLU slope alpha = 2^-alpha_shift (1..FXPQ_MAX_ALPHA_SHIFT): shifts only. */
typedef struct {
    int32_t alpha_shift;
} fxpq_leaky_relu_params;

/** Zero padding amounts (each >= 0) of the height (top, bottom) and width (left, right) axes. */
typedef struct {
    int32_t top;
    int32_t bottom;
    int32_t left;
    int32_t right;
} fxpq_pad_params;

/* ------------------------------------------------------------ shared helpers (one rule each) -- */

/** Human-readable name of a status (never NULL). */
const char *fxpq_status_str(fxpq_status status);

/** FXPQ_OK when bits in 2..16 and frac in -32..32, else FXPQ_ERR_BAD_FORMAT (or NULL_POINTER). */
fxpq_status fxpq_check_format(const fxpq_format *fmt);

/** Storage type of a (valid) format. */
fxpq_storage fxpq_storage_of(const fxpq_format *fmt);

/** Bytes per element of a storage type (1 or 2). */
int32_t fxpq_storage_size(fxpq_storage storage);

/** Integer range of a format: lo/hi as in numerics.md section 1. */
void fxpq_format_range(const fxpq_format *fmt, int32_t *lo, int32_t *hi);

/** min(max(v, lo), hi). */
int64_t fxpq_saturate(int64_t v, int32_t lo, int32_t hi);

/** Exact round_half_up(v * 2^(to_frac - from_frac)), not saturated (numerics.md section 3).
 *  Right shifts of 63 or more give 0; left shifts whose result would leave +-2^62 return +-2^62
 *  (so that a following saturate gives the contract's answer). Any from/to frac is accepted. */
int64_t fxpq_rescale(int64_t v, int32_t from_frac, int32_t to_frac);

/** saturate(rescale(v, from_frac, out->frac)) into out's range: the path every op uses to
 *  reach its output format. */
int32_t fxpq_requantize_value(int64_t v, int32_t from_frac, const fxpq_format *out);

/** Division rounding toward minus infinity, b > 0 (numerics.md section 7). */
int64_t fxpq_floor_div(int64_t a, int64_t b);

/** Integer clamp [lo, hi] of a fused activation in the output format (numerics.md section 4;
 *  relu6's upper bound is saturate(rescale(6, 0, frac_out))). */
fxpq_status fxpq_activation_bounds(const fxpq_format *out, fxpq_activation act, int32_t *lo,
                                   int32_t *hi);

/** The contract's accumulator width rule: 1 when bits_x (+1 if unsigned) + bits_w +
 *  ceil(log2(terms)) > 31, i.e. the dot product must be accumulated in int64; else 0. */
int32_t fxpq_acc_needs_64(int32_t bits_x, int32_t x_signed, int32_t bits_w, int32_t terms);

/** TensorFlow output size and leading padding of one spatial axis (numerics.md section 4).
 *  FXPQ_ERR_BAD_PADDING when a 'valid' window does not fit. */
fxpq_status fxpq_conv_output_size(int32_t in, int32_t kernel, int32_t stride, int32_t dilation,
                                  fxpq_padding padding, int32_t *out, int32_t *pad_before);

/** Bytes of one byte-aligned packed run of `count` weights of width `bits` (numerics.md
 *  section 9): ceil(count * bits / 8) for every width 2..16; -1 on bad input. */
int32_t fxpq_packed_row_size(int32_t bits, int32_t count);

/** Unpack `count` weights of width `bits` (2..16) from a packed run (a little-endian, LSB-first
 *  bit stream) that starts on a byte boundary into int16 values (sign-extended). Reads at most
 *  fxpq_packed_row_size(bits, count) bytes; `src` needs no alignment. */
fxpq_status fxpq_unpack_weights(const uint8_t *src, int32_t bits, int32_t count, int16_t *dst);

/* ----------------------------------------------------------------------------- kernels -- */

/**
 * Conv 2D. input [N,H,W,C] in input_fmt storage; filter OHWI (filter_dims: n = O, c = C);
 * output [N,OH,OW,O] in output_fmt storage, OH/OW per the padding rule (checked).
 * Scratch: fxpq_conv2d_get_buffer_size() bytes (im2col columns of a KxK kernel).
 * Built with the CMSIS-NN route (-DFXPQ_WITH_CMSIS_NN, docs/kernels.md), an unsigned 8-bit input
 * must be writable: the route flips its bytes in place and restores them before returning.
 */
fxpq_status fxpq_conv2d(const fxpq_context *ctx, const fxpq_conv_params *params,
                        const fxpq_dims *input_dims, const void *input,
                        const fxpq_format *input_fmt, const fxpq_dims *filter_dims,
                        const fxpq_weights *weights, const fxpq_bias *bias,
                        const fxpq_dims *output_dims, void *output,
                        const fxpq_format *output_fmt);
/** Scratch bytes for fxpq_conv2d (4 * kh * kw * C; 0 for a 1x1 kernel), or -1 on bad dims. */
int32_t fxpq_conv2d_get_buffer_size(const fxpq_dims *filter_dims);

/**
 * Depthwise conv 2D. input [N,H,W,C]; filter_dims {1, kh, kw, C*M}, weights packed per output
 * channel as [C*M][kh][kw]; output [N,OH,OW,C*M]. Output channel c*M+m reads input channel c.
 * Scratch: fxpq_depthwise_conv2d_get_buffer_size() bytes.
 */
fxpq_status fxpq_depthwise_conv2d(const fxpq_context *ctx, const fxpq_dw_conv_params *params,
                                  const fxpq_dims *input_dims, const void *input,
                                  const fxpq_format *input_fmt, const fxpq_dims *filter_dims,
                                  const fxpq_weights *weights, const fxpq_bias *bias,
                                  const fxpq_dims *output_dims, void *output,
                                  const fxpq_format *output_fmt);
/** Scratch bytes for fxpq_depthwise_conv2d (0), or -1 on bad dims. */
int32_t fxpq_depthwise_conv2d_get_buffer_size(const fxpq_dims *filter_dims);

/**
 * Fully connected. input [batches, in_features]; weights [out_features][in_features].
 * output [batches, out_features]. Scratch: fxpq_fully_connected_get_buffer_size() bytes.
 * With the CMSIS-NN route, an unsigned 8-bit input must be writable (as fxpq_conv2d).
 */
fxpq_status fxpq_fully_connected(const fxpq_context *ctx, const fxpq_fc_params *params,
                                 int32_t batches, int32_t in_features, int32_t out_features,
                                 const void *input, const fxpq_format *input_fmt,
                                 const fxpq_weights *weights, const fxpq_bias *bias,
                                 void *output, const fxpq_format *output_fmt);
/** Scratch bytes for fxpq_fully_connected (0), or -1 on bad size. */
int32_t fxpq_fully_connected_get_buffer_size(int32_t in_features);

/** Elementwise add of `size` elements (numerics.md section 5); |a_frac - b_frac| <= 32. */
fxpq_status fxpq_add(const fxpq_elementwise_params *params, int32_t size, const void *a,
                     const fxpq_format *a_fmt, const void *b, const fxpq_format *b_fmt,
                     void *output, const fxpq_format *output_fmt);

/** Max pool 2D, NHWC (numerics.md section 6): padded positions are ignored. */
fxpq_status fxpq_max_pool2d(const fxpq_pool_params *params, const fxpq_dims *input_dims,
                            const void *input, const fxpq_format *input_fmt,
                            const fxpq_dims *output_dims, void *output,
                            const fxpq_format *output_fmt);

/** Average pool 2D, NHWC (numerics.md section 7): mean over the valid inputs of each window,
 *  |frac_out - frac_in| <= 24. */
fxpq_status fxpq_average_pool2d(const fxpq_pool_params *params, const fxpq_dims *input_dims,
                                const void *input, const fxpq_format *input_fmt,
                                const fxpq_dims *output_dims, void *output,
                                const fxpq_format *output_fmt);

/** Global average pool: average pool over the whole H x W plane, no activation.
 *  input [N,H,W,C], output [N,C] (same bytes as [N,1,1,C]). */
fxpq_status fxpq_global_average_pool2d(const fxpq_dims *input_dims, const void *input,
                                       const fxpq_format *input_fmt, void *output,
                                       const fxpq_format *output_fmt);

/** QUANTIZE float32 -> integer (numerics.md section 2), exactly, with integers on the float's bits:
 *  q = saturate(floor(x * 2^frac + 0.5)); NaN -> 0, +inf -> hi, -inf -> lo. */
fxpq_status fxpq_quantize(int32_t size, const float *input, void *output,
                          const fxpq_format *output_fmt);

/** DEQUANTIZE integer -> float32: x = q * 2^-frac (exact). */
fxpq_status fxpq_dequantize(int32_t size, const void *input, const fxpq_format *input_fmt,
                            float *output);

/** Integer -> integer format change, also standalone ReLU / ReLU6 (numerics.md section 8):
 *  y = clamp_act(saturate(rescale(x, in_frac, out_frac))). */
fxpq_status fxpq_requantize(const fxpq_elementwise_params *params, int32_t size,
                            const void *input, const fxpq_format *input_fmt, void *output,
                            const fxpq_format *output_fmt);

/** LeakyReLU (numerics.md section 8): y = saturate(rescale(x, in_frac, out_frac)) for x >= 0,
 *  saturate(rescale(x, in_frac + alpha_shift, out_frac)) for x < 0. */
fxpq_status fxpq_leaky_relu(const fxpq_leaky_relu_params *params, int32_t size,
                            const void *input, const fxpq_format *input_fmt, void *output,
                            const fxpq_format *output_fmt);

/** Concatenation on the last axis (numerics.md section 8): a is [outer, a_channels], b is
 *  [outer, b_channels], output [outer, a_channels + b_channels]; every value is
 *  saturate(rescale(v, its input's frac, out_frac)). More inputs: chain calls. */
fxpq_status fxpq_concatenation(int32_t outer, int32_t a_channels, const void *a,
                               const fxpq_format *a_fmt, int32_t b_channels, const void *b,
                               const fxpq_format *b_fmt, void *output,
                               const fxpq_format *output_fmt);

/** Zero padding 2D, NHWC (numerics.md section 8): output [N, H + top + bottom, W + left +
 *  right, C]; padded positions are 0, the others saturate(rescale(x, in_frac, out_frac)) (a
 *  copy when the formats are equal, which is what the converter writes). */
fxpq_status fxpq_zero_pad2d(const fxpq_pad_params *params, const fxpq_dims *input_dims,
                            const void *input, const fxpq_format *input_fmt,
                            const fxpq_dims *output_dims, void *output,
                            const fxpq_format *output_fmt);

#ifdef __cplusplus
}
#endif

/* ================================================================================================
 * STOCK OPS SECTION (tflm_kernels/src/kernels/fxpq_stock_ops.c): TFLM's int8/int16 reference
 * kernels of the stock builtin ops that hybrid files use, bit-exact with TFLM 90b983c and with
 * fxpq_keras/integer_graph/tflm_ops.py (docs/numerics.md, "Stock TFLM ops"). Each op has a
 * prepare function that does TFLM's Prepare-time math once (from the tensors' float32 scales) and
 * returns FXPQ_ERR_BAD_PARAM where TFLM would refuse the op (or abort, or compute something
 * undefined), and an eval function on stored values. No heap, no libm.
 * ============================================================================================ */
#ifdef __cplusplus
extern "C" {
#endif

#define FXPQ_STOCK_MAX_RANK 6

/** A stock tensor's TFLite quantization (per tensor) and type (FXPQ_TFLITE_INT8 or _INT16). */
typedef struct {
    float scale;
    int32_t zero_point;
    int32_t type;
} fxpq_stock_quant;

/** Fused activation codes, as TFLite's ActivationFunctionType. */
typedef enum {
    FXPQ_STOCK_ACT_NONE = 0,
    FXPQ_STOCK_ACT_RELU = 1,
    FXPQ_STOCK_ACT_RELU_N1_TO_1 = 2,
    FXPQ_STOCK_ACT_RELU6 = 3
} fxpq_stock_activation;

/** A tensor shape for the broadcasting ops (rank 0..FXPQ_STOCK_MAX_RANK). */
typedef struct {
    int32_t rank;
    int32_t dims[FXPQ_STOCK_MAX_RANK];
} fxpq_stock_shape;

/** QUANTIZE between int8/int16 tensors (TFLM's Requantize). */
typedef struct {
    int32_t multiplier, shift, input_zero_point, output_zero_point, output_min, output_max;
    int32_t input_type, output_type;
} fxpq_stock_requantize_params;

fxpq_status fxpq_stock_requantize_prepare(const fxpq_stock_quant *input,
                                          const fxpq_stock_quant *output,
                                          fxpq_stock_requantize_params *params);
/** size elements of input_type in, output_type out. */
fxpq_status fxpq_stock_requantize(const fxpq_stock_requantize_params *params, int32_t size,
                                  const void *input, void *output);

/** MUL int8 or int16 (int16: every zero point 0), numpy broadcasting up to 6-D. */
typedef struct {
    int32_t input1_zero_point, input2_zero_point, output_zero_point;
    int32_t multiplier, shift, activation_min, activation_max, type;
} fxpq_stock_mul_params;

fxpq_status fxpq_stock_mul_prepare(const fxpq_stock_quant *input1, const fxpq_stock_quant *input2,
                                   const fxpq_stock_quant *output, int32_t activation,
                                   fxpq_stock_mul_params *params);
/** The output shape is the broadcast of the two input shapes; values of params->type. */
fxpq_status fxpq_stock_mul(const fxpq_stock_mul_params *params, const fxpq_stock_shape *shape1,
                           const void *input1, const fxpq_stock_shape *shape2, const void *input2,
                           void *output);

/** ADD / SUB int8 or int16 (left shift 20 or 15, TFLM's three SmallerThanOne multipliers),
 *  broadcasting up to 4-D. */
typedef struct {
    int32_t input1_zero_point, input2_zero_point, output_zero_point, left_shift;
    int32_t input1_multiplier, input1_shift, input2_multiplier, input2_shift;
    int32_t output_multiplier, output_shift, activation_min, activation_max, subtract, type;
} fxpq_stock_add_params;

/** subtract != 0 prepares SUB (its ratios in float32, as TFLM's sub_common.cc). */
fxpq_status fxpq_stock_add_prepare(const fxpq_stock_quant *input1, const fxpq_stock_quant *input2,
                                   const fxpq_stock_quant *output, int32_t activation,
                                   int32_t subtract, fxpq_stock_add_params *params);
/** Values of params->type in and out. */
fxpq_status fxpq_stock_add(const fxpq_stock_add_params *params, const fxpq_stock_shape *shape1,
                           const void *input1, const fxpq_stock_shape *shape2, const void *input2,
                           void *output);

/** LOGISTIC int8 (output 1/256, zero point -128) and TANH int8 (output 1/128, zero point 0):
 *  the input in Q4.27, gemmlowp's fixed-point logistic / tanh. */
typedef struct {
    int32_t input_zero_point, input_multiplier, input_left_shift, input_range_radius;
} fxpq_stock_sigmoid_params;

fxpq_status fxpq_stock_logistic_prepare(const fxpq_stock_quant *input,
                                        const fxpq_stock_quant *output,
                                        fxpq_stock_sigmoid_params *params);
fxpq_status fxpq_stock_logistic_s8(const fxpq_stock_sigmoid_params *params, int32_t size,
                                   const int8_t *input, int8_t *output);
fxpq_status fxpq_stock_tanh_prepare(const fxpq_stock_quant *input, const fxpq_stock_quant *output,
                                    fxpq_stock_sigmoid_params *params);
fxpq_status fxpq_stock_tanh_s8(const fxpq_stock_sigmoid_params *params, int32_t size,
                               const int8_t *input, int8_t *output);

/** HARD_SWISH int8 (int16 arithmetic with Q0.15 multipliers, as TFLM's reference). */
typedef struct {
    int32_t input_zero_point, output_zero_point;
    int32_t output_multiplier, output_exponent, reluish_multiplier, reluish_exponent;
} fxpq_stock_hard_swish_params;

fxpq_status fxpq_stock_hard_swish_prepare(const fxpq_stock_quant *input,
                                          const fxpq_stock_quant *output,
                                          fxpq_stock_hard_swish_params *params);
fxpq_status fxpq_stock_hard_swish_s8(const fxpq_stock_hard_swish_params *params, int32_t size,
                                     const int8_t *input, int8_t *output);

/** ELU int8: TFLM's 256-entry lookup table, built in float32 at prepare (exp in double, rounded
 *  to float32: no libm). table[stored input + 128] is the stored output. */
typedef struct {
    int8_t table[256];
} fxpq_stock_elu_params;

fxpq_status fxpq_stock_elu_prepare(const fxpq_stock_quant *input, const fxpq_stock_quant *output,
                                   fxpq_stock_elu_params *params);
fxpq_status fxpq_stock_elu_s8(const fxpq_stock_elu_params *params, int32_t size, const int8_t *input,
                              int8_t *output);

/** MAXIMUM (is_max != 0) / MINIMUM of stored values (element_size 1: int8, 2: int16),
 *  broadcasting up to 5-D. TFLM compares stored values without looking at scales: the caller
 *  gives the three tensors one quantization (tflm_ops.check_same_quant). */
fxpq_status fxpq_stock_max_min(int32_t is_max, int32_t element_size, const fxpq_stock_shape *shape1,
                               const void *input1, const fxpq_stock_shape *shape2,
                               const void *input2, void *output);

/** MEAN int8/int16 (QuantizedMeanOrSum): the reduced element count folded into the multiplier. */
typedef struct {
    int32_t multiplier, shift, input_zero_point, output_zero_point, count, type;
} fxpq_stock_mean_params;

/** count = number of input elements averaged into one output (product of the reduced dims). */
fxpq_status fxpq_stock_mean_prepare(const fxpq_stock_quant *input, const fxpq_stock_quant *output,
                                    int32_t count, fxpq_stock_mean_params *params);
/** Reduce `shape` over the axes whose bit is set in axes_mask (bit d: axis d); the output holds the
 *  kept axes in order (keep_dims only changes the shape, not the data). */
fxpq_status fxpq_stock_mean(const fxpq_stock_mean_params *params, const fxpq_stock_shape *shape,
                            uint32_t axes_mask, const void *input, void *output);

/** RESIZE_NEAREST_NEIGHBOR on NHWC (TFLM's GetNearestNeighbor in float32); element_size 1 or 2. */
fxpq_status fxpq_stock_resize_nearest_neighbor(const fxpq_stock_shape *input_shape,
                                               int32_t output_height, int32_t output_width,
                                               int32_t align_corners, int32_t half_pixel_centers,
                                               int32_t element_size, const void *input,
                                               void *output);

/** TRANSPOSE up to 5-D: output axis d is input axis perm[d]; element_size 1 or 2. */
fxpq_status fxpq_stock_transpose(const fxpq_stock_shape *input_shape, const int32_t *perm,
                                 int32_t element_size, const void *input, void *output);

/** CONCATENATION of num_inputs tensors that agree but on the axis: each is [outer, axis_sizes[i],
 *  inner] (the caller folds the dims before and after the axis); element_size 1 or 2. */
fxpq_status fxpq_stock_concatenation(int32_t num_inputs, const void *const *inputs,
                                     const int32_t *axis_sizes, int32_t outer, int32_t inner,
                                     int32_t element_size, void *output);

#ifdef __cplusplus
}
#endif
/* =============================================================== end of STOCK OPS SECTION == */

/* ================================================================================================
 * MODEL RUNNER SECTION (tflm_kernels/src/options/, tflm_kernels/src/runner/): the custom-options
 * reader shared by the runner and the TFLM glue, and the minimal .tflite model runner.
 * docs/format.md is the contract of everything read here; docs/tflm.md describes the use.
 * ============================================================================================ */
#ifdef __cplusplus
extern "C" {
#endif

/** Status of the options reader and the model runner. 0 is success; the values are disjoint from
 *  fxpq_status (a kernel's own status is kept in fxpq_runner.kernel_status). */
typedef enum {
    FXPQ_RUNNER_OK = 0,
    FXPQ_RUNNER_ERR_NULL_POINTER = -101,    /**< a required pointer is NULL */
    FXPQ_RUNNER_ERR_MALFORMED = -102,       /**< not a well-formed flatbuffer / FlexBuffers map: an
                                                 offset, size or type outside the bytes given */
    FXPQ_RUNNER_ERR_UNSUPPORTED = -103,     /**< well formed, but outside docs/format.md (op, tensor
                                                 type, subgraph count, limits of the runner) */
    FXPQ_RUNNER_ERR_BAD_OPTIONS = -104,     /**< custom options: keys differ from format.md, a value
                                                 is not an integer or is out of its range */
    FXPQ_RUNNER_ERR_BAD_TENSOR = -105,      /**< a tensor's type, shape, quantization or data does
                                                 not fit its op */
    FXPQ_RUNNER_ERR_ARENA_TOO_SMALL = -106, /**< see fxpq_runner.arena_needed */
    FXPQ_RUNNER_ERR_MISALIGNED = -107,      /**< model bytes not 4-byte aligned */
    FXPQ_RUNNER_ERR_KERNEL = -108,          /**< a kernel failed: fxpq_runner.kernel_status */
    FXPQ_RUNNER_ERR_BAD_ARGUMENT = -109,    /**< bad tensor index or size passed to the runner */
    FXPQ_RUNNER_ERR_NOT_READY = -110,       /**< fxpq_runner_init did not succeed */
    FXPQ_RUNNER_ERR_STOCK_FILE = -111       /**< a valid file with stock ops this runner does not
                                                 execute (an int8-builtin file, format.md section 7;
                                                 ELU in an fxp file, section 8): checked, run by TFLM */
} fxpq_runner_status;

/** Human-readable name of a runner status (never NULL). */
const char *fxpq_runner_status_str(fxpq_runner_status status);

/* ------------------------------------------------------------------- custom-options reader -- */

/** The custom ops of docs/format.md section 4. */
typedef enum {
    FXPQ_OP_QUANTIZE = 0,
    FXPQ_OP_CONV_2D = 1,
    FXPQ_OP_DEPTHWISE_CONV_2D = 2,
    FXPQ_OP_FULLY_CONNECTED = 3,
    FXPQ_OP_ADD = 4,
    FXPQ_OP_MAX_POOL_2D = 5,
    FXPQ_OP_AVERAGE_POOL_2D = 6,
    FXPQ_OP_GLOBAL_AVERAGE_POOL_2D = 7,
    FXPQ_OP_REQUANTIZE = 8,
    FXPQ_OP_PAD = 9,
    FXPQ_OP_LEAKY_RELU = 10,
    FXPQ_OP_CONCATENATION = 11,
    FXPQ_OP_COUNT = 12
} fxpq_custom_op;

#define FXPQ_OPTIONS_MAX_KEYS 22

/** Every option key of docs/format.md section 4, by name. An op sets the fields of its keys;
 *  the others are 0. activation and padding keep the file's codes (TFLite's: activation 0 none,
 *  1 ReLU, 3 ReLU6; padding 0 SAME, 1 VALID); fxpq_options_*_params() convert them. in_bits
 *  (weighted ops, format version 4) is 0 when the file has none (versions 2, 3). */
typedef struct {
    int32_t acc_bits, act_max, act_min, activation, alpha_shift, bias_bits, bias_frac;
    int32_t depth_multiplier, dilation_h, dilation_w, filter_h, filter_w;
    int32_t in1_frac, in2_frac, in_bits, in_frac, out_frac;
    int32_t pad_bottom, pad_left, pad_right, pad_top, padding;
    int32_t stride_h, stride_w, weight_bits;
} fxpq_op_options;

/**
 * Whether this build runs `op` (FXPQ_OP_CONV_2D, FXPQ_OP_FULLY_CONNECTED or
 * FXPQ_OP_DEPTHWISE_CONV_2D) over inputs of format `input` (its storage type; for uint16, whether
 * it has 16 bits) with `weight_bits`-bit weights and `terms` terms per dot product (kh * kw * C,
 * in_features; <= 0: unknown, taken as long): 1 yes, 0 no (also for a NULL or invalid format).
 * Every combination is built unless the kernels were compiled with
 * -DFXPQ_SELECTIVE_PATHS and a generated fxpq_model_paths.h on the include path naming the
 * combinations one model runs (docs/kernels.md "Selective build"); a weighted kernel called with
 * a combination left out returns FXPQ_ERR_NOT_BUILT (the TFLM glue and the runner check it when
 * they prepare the op). Other ops: 1.
 */
int32_t fxpq_kernel_path_built(int32_t op, const fxpq_format *input, int32_t weight_bits, int32_t terms);

/** The op named `name` (`length` bytes, no NUL needed), e.g. "FXP_CONV_2D"; -1 if unknown. */
int32_t fxpq_custom_op_from_name(const char *name, size_t length);

/** Custom-op name of an op ("FXP_CONV_2D"), NULL for an invalid op. */
const char *fxpq_custom_op_name(int32_t op);

/** Number of option keys of an op (0 for an invalid op). */
int32_t fxpq_options_key_count(int32_t op);

/** Key at sorted position `pos` of an op's options (format.md's Pos column), NULL if none. */
const char *fxpq_options_key(int32_t op, int32_t pos);

/**
 * Parse an op's custom options: a FlexBuffers map whose keys are exactly the op's keys (or those
 * without in_bits: files of format version 2 and 3) and whose values are integers, each in its
 * format.md range. Every read is bounds-checked against [buffer, buffer + length); buffer needs
 * no alignment. On error *out is zeroed.
 * FXPQ_RUNNER_ERR_MALFORMED: not a FlexBuffers map; FXPQ_RUNNER_ERR_BAD_OPTIONS: wrong keys,
 * non-integer or out-of-range value.
 */
fxpq_runner_status fxpq_options_parse(int32_t op, const uint8_t *buffer, size_t length,
                                      fxpq_op_options *out);

/** Kernel activation of a parsed options' `activation` code. */
fxpq_activation fxpq_options_activation(const fxpq_op_options *opts);

/** Kernel parameters from parsed options (conv / depthwise / pool / fully connected / add and
 *  requantize). The options must come from fxpq_options_parse for the matching op. */
void fxpq_options_conv_params(const fxpq_op_options *opts, fxpq_conv_params *params);
void fxpq_options_dw_conv_params(const fxpq_op_options *opts, fxpq_dw_conv_params *params);
void fxpq_options_pool_params(const fxpq_op_options *opts, fxpq_pool_params *params);
void fxpq_options_pad_params(const fxpq_op_options *opts, fxpq_pad_params *params);
void fxpq_options_leaky_relu_params(const fxpq_op_options *opts, fxpq_leaky_relu_params *params);

/**
 * The output format implied by an op's options when only the storage type is known (TFLM keeps
 * no tensor min/max): frac = out_frac, signedness and maximum width from the storage, and the
 * narrowest bits whose clamp for the op's activation equals [act_min, act_max]. Kernels given
 * this format compute exactly what they compute with the file's format.
 * FXPQ_RUNNER_ERR_BAD_OPTIONS when no format of that storage has this clamp.
 */
fxpq_runner_status fxpq_options_output_format(const fxpq_op_options *opts, fxpq_storage storage,
                                              fxpq_format *out);

/**
 * The format of a weighted op's input stored as `storage`, from its options (frac = in_frac; bits =
 * in_bits, or the storage width when the file has no in_bits; signedness from the storage), so an
 * engine that knows the storage type only (the TFLM glue) picks the kernel path the file's format
 * selects. FXPQ_RUNNER_ERR_BAD_OPTIONS when in_bits does not fit the storage (2..8 bits in int8 /
 * uint8, 9..16 in int16 / uint16).
 */
fxpq_runner_status fxpq_options_input_format(const fxpq_op_options *opts, fxpq_storage storage,
                                             fxpq_format *out);

/** FXPQ_RUNNER_OK when `fmt` with the op's activation clamps to exactly [act_min, act_max]
 *  (format.md section 4: the options are consistent with the output tensor). */
fxpq_runner_status fxpq_options_check_output(const fxpq_op_options *opts, const fxpq_format *fmt);

/* ------------------------------------------------------------------------------ model runner -- */

#define FXPQ_RUNNER_MAX_OUTPUTS 8
#define FXPQ_RUNNER_MAX_RANK 6
#define FXPQ_RUNNER_MAX_TENSORS 4096
#define FXPQ_RUNNER_MAX_OPS 2048
#define FXPQ_RUNNER_ALIGNMENT 8 /**< every planned tensor starts on this boundary */

/**
 * What a model may demand (docs/format.md section 11), so that a small file cannot ask for
 * unbounded memory or time. The Python reader applies the same numbers (ReaderLimits).
 */
typedef struct {
    int64_t max_elements; /**< elements of any one tensor */
    int64_t max_window;   /**< patch elements (output positions x taps x input channels) and
                               padded input plane of any one windowed op */
    int64_t max_work;     /**< MACs of the weighted ops, per inference */
    int64_t max_taps;     /**< window taps of the pools + elements written by every other op
                               (but RESHAPE), per inference */
} fxpq_runner_limits;

#define FXPQ_RUNNER_DEFAULT_MAX_ELEMENTS (INT64_C(1) << 24)
#define FXPQ_RUNNER_DEFAULT_MAX_WINDOW (INT64_C(1) << 24)
#define FXPQ_RUNNER_DEFAULT_MAX_WORK (INT64_C(1) << 32)
#define FXPQ_RUNNER_DEFAULT_MAX_TAPS (INT64_C(1) << 26)

/** TFLite TensorType codes the runner handles. */
#define FXPQ_TFLITE_FLOAT32 0
#define FXPQ_TFLITE_INT32 2
#define FXPQ_TFLITE_UINT8 3
#define FXPQ_TFLITE_INT16 7
#define FXPQ_TFLITE_INT8 9
#define FXPQ_TFLITE_UINT16 16

/** A model input or output tensor. */
typedef struct {
    int32_t type;                        /**< TFLite TensorType code (FXPQ_TFLITE_*) */
    int32_t rank;
    int32_t dims[FXPQ_RUNNER_MAX_RANK];  /**< batch is 1 */
    int32_t elements;
    int32_t bytes;
    fxpq_format format;                  /**< {0, 0, 0} for the FLOAT32 input */
    void *data;                          /**< in the arena; valid after a successful init */
} fxpq_tensor_info;

/**
 * A model runner. All memory is the caller's: this struct and one arena. The fields are set by
 * fxpq_runner_init and read-only for the caller.
 */
typedef struct {
    int32_t num_ops;
    int32_t num_tensors;
    int32_t num_outputs;
    size_t arena_needed;      /**< bytes of arena this model needs (with alignment slack) */
    int32_t arena_needed_exact; /**< 0 when the arena was too small even to plan: arena_needed
                                     is then a lower bound (give that much to learn the size) */
    size_t persistent_bytes;  /**< part of the arena holding the prepared ops */
    size_t planned_bytes;     /**< peak of activations + kernel scratch, planned by lifetimes */
    size_t scratch_bytes;     /**< largest kernel scratch of one op (part of planned_bytes) */
    fxpq_tensor_info input;
    fxpq_tensor_info outputs[FXPQ_RUNNER_MAX_OUTPUTS];
    int32_t error_op;         /**< operator index an error is about, -1 when none */
    int32_t kernel_status;    /**< fxpq_status of the failing kernel (FXPQ_RUNNER_ERR_KERNEL) */
    char message[160];        /**< what went wrong, NUL terminated ("" on success) */
    /* private */
    const uint8_t *model_;
    size_t model_size_;
    uint8_t *plan_base_;
    void *ops_;
    int32_t ready_;
} fxpq_runner;

/**
 * Read a .tflite model (docs/format.md, target fxp), validate every op and tensor, and plan the
 * arena. `model` must stay valid and unchanged while the runner is used and be 4-byte aligned
 * (16 recommended, format.md section 1); every offset in it is bounds-checked against
 * model_size. The arena needs no particular alignment. When it is too small the status is
 * FXPQ_RUNNER_ERR_ARENA_TOO_SMALL and arena_needed says how much is needed (pass arena NULL
 * and size 0 to ask: the answer is exact once the arena can hold the planner's workspace,
 * see arena_needed_exact). Everything not in format.md fails with a status and a message.
 */
fxpq_runner_status fxpq_runner_init(fxpq_runner *runner, const uint8_t *model, size_t model_size,
                                    void *arena, size_t arena_size);

/** fxpq_runner_init with explicit limits (NULL: the FXPQ_RUNNER_DEFAULT_* ones; each field
 *  must be positive). A model above them fails with FXPQ_RUNNER_ERR_UNSUPPORTED. */
fxpq_runner_status fxpq_runner_init_limited(fxpq_runner *runner, const uint8_t *model,
                                            size_t model_size, void *arena, size_t arena_size,
                                            const fxpq_runner_limits *limits);

/** Run the model once: read runner->input.data, write runner->outputs[i].data. */
fxpq_runner_status fxpq_runner_invoke(fxpq_runner *runner);

/** sizeof(fxpq_runner), for foreign-function callers. */
size_t fxpq_runner_struct_size(void);

/** Copy of the input tensor info (index -1) or output `index`; for foreign-function callers. */
fxpq_runner_status fxpq_runner_tensor(const fxpq_runner *runner, int32_t index,
                                      fxpq_tensor_info *info);

#ifdef __cplusplus
}
#endif
/* ============================================================== end of MODEL RUNNER SECTION == */

#endif /* FXPQ_KERNELS_H */
