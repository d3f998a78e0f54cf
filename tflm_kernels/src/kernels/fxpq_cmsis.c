/*
 * fxpq_cmsis.c - the optional CMSIS-NN route of conv 2D and fully connected (docs/kernels.md,
 * "CMSIS-NN route").
 *
 * Compiled in only with -DFXPQ_WITH_CMSIS_NN and a CMSIS-NN source tree on the include path
 * (Makefile: CMSIS_NN_DIR, or TFLM_DIR's downloads/cmsis_nn; never vendored). A layer with 8-bit
 * weights and 8-bit activations in and out is an int8 layer with per-channel power-of-two scales;
 * when fxpq_cmsis_quant() proves that CMSIS-NN's requantization gives fxpq's rescale for every
 * accumulator of the layer, the layer runs on arm_convolve_wrapper_s8 /
 * arm_fully_connected_per_channel_s8 with the (multiplier, shift) pair of the proof. Otherwise
 * (nothing written) the caller runs fxpq's own kernels. Depthwise stays on fxpq's kernels: its
 * weights are stored [C][kh][kw] where arm_depthwise_conv_* reads [kh][kw][C], and the transposed
 * copy would be weight-sized RAM.
 *
 * Which exact layers take the route is a speed choice, measured on the zoo (docs/kernels.md):
 * fully connected with fewer than FXPQ_CMSIS_FC_BATCHES rows (CMSIS-NN's vector-matrix loop,
 * about 0.8x of fxpq's single-column pass); conv 2D only when built with FXPQ_CMSIS_NN_CONV
 * (CMSIS-NN's convolutions took 0.96-1.26x of fxpq's instructions on the zoo's layers).
 */
#include "fxpq_internal.h"

#if FXPQ_USE_CMSIS_NN

#include <string.h>

#include "arm_nnfunctions.h"

/* Fully connected with at least this many rows (batches) stays on fxpq's kernels, whose 4-pixel
 * passes then beat CMSIS-NN's one row at a time (4 rows of 4,096 terms: 1.2x on the M4). */
#define FXPQ_CMSIS_FC_BATCHES 4

/* Exactness bound of the pair under CMSIS-NN's double rounding: |bias + acc| < 2^30 (a right
 * shift), |bias + acc| * 2^(n+1) < 2^31 (a left shift by n <= 29). */
#define FXPQ_CMSIS_BOUND_LOG2 30

/* The (multiplier, shift) pair whose arm_nn_requantize is fxpq's rescale by 2^-s (docs/kernels.md:
 * the proof; tflm_kernels/checks/cmsis_requantize_check.c: the exhaustive check). */
static void fxpq_cmsis_pair(int32_t s, int32_t *multiplier, int32_t *shift)
{
    if (s < 0) {
        *multiplier = (int32_t)1 << 30;
        *shift = 1 - s;
    } else if (s <= 30) {
        *multiplier = (int32_t)1 << (30 - s);
        *shift = 1;
    } else {
        *multiplier = s == 31 ? 1 : 0;
        *shift = 0;
    }
}

/* THE eligibility rule of the route, and the per-channel arrays CMSIS-NN reads: 1 when every
 * output channel's result equals fxpq's (8-bit weights, 8-bit containers in and out, at most
 * FXPQ_CMSIS_MAX_CHANNELS channels, and |aligned bias| + K max|x| max|w| below the pair's bound),
 * else 0. max|w| is the 8-bit format's 128 and max|x| the input format's, so the check costs a
 * few instructions per channel, not a pass over the weights. */
static int32_t fxpq_cmsis_quant(const fxpq_weighted *wk, int32_t channels, int32_t *bias, int32_t *multiplier,
                                int32_t *shift)
{
    const int64_t max_x = wk->in_signed ? ((int64_t)1 << (wk->in_bits - 1)) : ((int64_t)1 << wk->in_bits) - 1;
    const int64_t products = (int64_t)wk->k * max_x * 128;
    int32_t o;
    if (wk->weights->bits != 8 || channels > FXPQ_CMSIS_MAX_CHANNELS || wk->in_es != 1 ||
        fxpq_elem_size(wk->out.storage) != 1) {
        return 0;
    }
    for (o = 0; o < channels; ++o) {
        const fxpq_channel_quant q = fxpq_channel_quant_of(wk->weights, wk->bias, o, wk->in_frac);
        const int32_t s = q.acc_frac - wk->out.frac;
        const int64_t magnitude = (q.bias < 0 ? -q.bias : q.bias) + products;
        if (s < -(FXPQ_CMSIS_BOUND_LOG2 - 1) ||
            magnitude >= ((int64_t)1 << (s < 0 ? FXPQ_CMSIS_BOUND_LOG2 + s : FXPQ_CMSIS_BOUND_LOG2))) {
            return 0;
        }
        bias[o] = (int32_t)q.bias;
        fxpq_cmsis_pair(s, &multiplier[o], &shift[o]);
    }
    return 1;
}

/* XOR 0x80 of n bytes in place: an unsigned 8-bit container u <-> the int8 byte u - 128. */
static void fxpq_cmsis_flip(uint8_t *p, int32_t n)
{
    int32_t i = 0;
    for (; i < n && ((uintptr_t)(p + i) & 3u) != 0; ++i) {
        p[i] ^= 0x80u;
    }
    for (; i + 4 <= n; i += 4) { /* memcpy: one aligned word load and store, no aliasing question */
        uint32_t word;
        memcpy(&word, p + i, sizeof(word));
        word ^= 0x80808080u;
        memcpy(p + i, &word, sizeof(word));
    }
    for (; i < n; ++i) {
        p[i] ^= 0x80u;
    }
}

/* An unsigned 8-bit container does not hold int8 bytes; an unsigned format of at most 7 bits
 * (and every signed one) does. */
static int32_t fxpq_cmsis_u8(fxpq_storage s, int32_t bits)
{
    return s == FXPQ_STORAGE_UINT8 && bits == 8;
}

int32_t fxpq_cmsis_conv2d(const fxpq_weighted *wk, const fxpq_geometry *g, const void *input,
                          int32_t fully_connected)
{
    int32_t bias[FXPQ_CMSIS_MAX_CHANNELS], multiplier[FXPQ_CMSIS_MAX_CHANNELS], shift[FXPQ_CMSIS_MAX_CHANNELS];
    const int32_t channels = g->out.c;
    const int32_t in_u8 = fxpq_cmsis_u8(wk->in_s, wk->in_bits);
    const int32_t out_u8 = wk->out.storage == FXPQ_STORAGE_UINT8 && (wk->out.hi > 127);
    const int32_t out_offset = out_u8 ? -128 : 0;
    const cmsis_nn_per_channel_quant_params quant = {multiplier, shift};
    cmsis_nn_context ctx;
    cmsis_nn_dims in_dims, filter_dims, bias_dims, out_dims;
    arm_cmsis_nn_status status;
    int32_t in_count, out_count;

#if defined(FXPQ_CMSIS_NN_CONV)
    const int32_t faster = !fully_connected || g->in.n < FXPQ_CMSIS_FC_BATCHES;
#else
    const int32_t faster = fully_connected && g->in.n < FXPQ_CMSIS_FC_BATCHES;
#endif
    if (!faster || !fxpq_cmsis_quant(wk, channels, bias, multiplier, shift)) {
        return 0;
    }
    in_dims.n = g->in.n; in_dims.h = g->in.h; in_dims.w = g->in.w; in_dims.c = g->in.c;
    out_dims.n = g->out.n; out_dims.h = g->out.h; out_dims.w = g->out.w; out_dims.c = channels;
    bias_dims.n = 1; bias_dims.h = 1; bias_dims.w = 1; bias_dims.c = channels;
    ctx.buf = wk->scratch;
    ctx.size = wk->scratch_size;
    in_count = g->in.n * g->in.h * g->in.w * g->in.c;
    out_count = g->out.n * g->out.h * g->out.w * channels;

    if (fully_connected) {
        cmsis_nn_fc_params fc;
        filter_dims.n = wk->k; filter_dims.h = 1; filter_dims.w = 1; filter_dims.c = channels;
        if (arm_fully_connected_s8_get_buffer_size(&filter_dims) > wk->scratch_size) {
            return 0;
        }
        fc.input_offset = in_u8 ? 128 : 0;
        fc.filter_offset = 0;
        fc.output_offset = out_offset;
        fc.activation.min = wk->out.lo + out_offset;
        fc.activation.max = wk->out.hi + out_offset;
        if (in_u8) {
            fxpq_cmsis_flip((uint8_t *)(uintptr_t)input, in_count);
        }
        status = arm_fully_connected_per_channel_s8(&ctx, &fc, &quant, &in_dims, (const int8_t *)input,
                                                    &filter_dims, (const int8_t *)wk->weights->data,
                                                    &bias_dims, bias, &out_dims, (int8_t *)wk->out.data);
    } else {
        cmsis_nn_conv_params conv;
        filter_dims.n = channels; filter_dims.h = g->filter.h; filter_dims.w = g->filter.w;
        filter_dims.c = g->filter.c;
        conv.input_offset = in_u8 ? 128 : 0;
        conv.output_offset = out_offset;
        conv.stride.h = g->stride.h; conv.stride.w = g->stride.w;
        conv.padding.h = g->pad_t; conv.padding.w = g->pad_l;
        conv.dilation.h = g->dilation.h; conv.dilation.w = g->dilation.w;
        conv.activation.min = wk->out.lo + out_offset;
        conv.activation.max = wk->out.hi + out_offset;
        /* the route takes no arena byte that fxpq's kernels do not request */
        if (arm_convolve_wrapper_s8_get_buffer_size(&conv, &in_dims, &filter_dims, &out_dims) > wk->scratch_size) {
            return 0;
        }
        if (in_u8) {
            fxpq_cmsis_flip((uint8_t *)(uintptr_t)input, in_count);
        }
        status = arm_convolve_wrapper_s8(&ctx, &conv, &quant, &in_dims, (const int8_t *)input, &filter_dims,
                                         (const int8_t *)wk->weights->data, &bias_dims, bias, &out_dims,
                                         (int8_t *)wk->out.data);
    }
    if (in_u8) { /* the input is the caller's again */
        fxpq_cmsis_flip((uint8_t *)(uintptr_t)input, in_count);
    }
    if (status != ARM_CMSIS_NN_SUCCESS) {
        return 0; /* CMSIS-NN refused the arguments before writing: fxpq's kernels run */
    }
    if (out_u8) {
        fxpq_cmsis_flip((uint8_t *)wk->out.data, out_count);
    }
    return 1;
}

#endif /* FXPQ_USE_CMSIS_NN */
