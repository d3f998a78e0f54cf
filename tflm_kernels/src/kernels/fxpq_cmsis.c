/*
 * fxpq_cmsis.c - the optional CMSIS-NN route of conv 2D and fully connected (docs/kernels.md,
 * "CMSIS-NN route").
 *
 * Compiled in only with -DFXPQ_WITH_CMSIS_NN and a CMSIS-NN source tree on the include path
 * (Makefile: CMSIS_NN_DIR, or TFLM_DIR's downloads/cmsis_nn; never vendored). A layer with 8-bit
 * weights and 8-bit activations in and out is an int8 layer with per-channel power-of-two scales;
 * when fxpq_cmsis_channel() proves that CMSIS-NN's requantization gives fxpq's rescale for every
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
#include "fxpq_cmsis_pair.h"

/* Fully connected with at least this many rows (batches) stays on fxpq's kernels, whose 4-pixel
 * passes then beat CMSIS-NN's one row at a time (4 rows of 4,096 terms: 1.2x on the M4). */
#define FXPQ_CMSIS_FC_BATCHES 4

/* Output channels per CMSIS-NN call: their bias, multiplier and shift arrays (12 bytes a channel)
 * are on the stack. Fully connected runs in blocks of this many channels; a conv 2D (one call for
 * all its channels) with more stays on fxpq's kernels. */
#define FXPQ_CMSIS_BLOCK 64

/* K max|x| max|w| of the layer when its formats are the route's (8-bit weights, 8-bit containers
 * in and out), else -1. max|w| is the 8-bit format's 128 and max|x| the input format's, so the
 * bound costs a few instructions per channel, not a pass over the weights. */
static int64_t fxpq_cmsis_products(const fxpq_weighted *wk)
{
    const int64_t max_x = wk->in_signed ? ((int64_t)1 << (wk->in_bits - 1)) : ((int64_t)1 << wk->in_bits) - 1;
    if (wk->weights->bits != 8 || wk->in_es != 1 || fxpq_elem_size(wk->out.storage) != 1) {
        return -1;
    }
    return (int64_t)wk->k * max_x * 128;
}

/* THE eligibility rule of the route, per output channel o, and the values CMSIS-NN reads for it:
 * 1 when every accumulator CMSIS-NN can form, |aligned bias| + K max|x| max|w| at most, is an int32
 * where the pair is exact (so that every result of the channel equals fxpq's), else 0. */
static int32_t fxpq_cmsis_channel(const fxpq_weighted *wk, int64_t products, int32_t o, int32_t *bias,
                                  int32_t *multiplier, int32_t *shift)
{
    const fxpq_channel_quant q = fxpq_channel_quant_of(wk->weights, wk->bias, o, wk->in_frac);
    const int32_t s = q.acc_frac - wk->out.frac;
    const int64_t magnitude = (q.bias < 0 ? -q.bias : q.bias) + products;
    if (products < 0 || magnitude > INT32_MAX || !fxpq_cmsis_exact(magnitude, s)) {
        return 0;
    }
    *bias = (int32_t)q.bias;
    fxpq_cmsis_pair(s, multiplier, shift);
    return 1;
}

/* The arrays of channels [first, first + count) (count <= FXPQ_CMSIS_BLOCK); 0 when one of them is
 * not the route's. */
static int32_t fxpq_cmsis_block(const fxpq_weighted *wk, int64_t products, int32_t first, int32_t count,
                                int32_t *bias, int32_t *multiplier, int32_t *shift)
{
    int32_t i;
    for (i = 0; i < count; ++i) {
        if (!fxpq_cmsis_channel(wk, products, first + i, &bias[i], &multiplier[i], &shift[i])) {
            return 0;
        }
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

/* Fully connected, batch by batch and FXPQ_CMSIS_BLOCK output channels at a time (one call per
 * block: CMSIS-NN's output stride is its channel count), each block's channels checked as their
 * arrays are made. 0 when a channel is not the route's or CMSIS-NN refused a call (blocks before it
 * may be written: the caller's kernels then write the whole output). */
static int32_t fxpq_cmsis_fc(const fxpq_weighted *wk, const fxpq_geometry *g, const int8_t *input,
                             int64_t products, int32_t in_offset, int32_t out_offset)
{
    int32_t bias[FXPQ_CMSIS_BLOCK], multiplier[FXPQ_CMSIS_BLOCK], shift[FXPQ_CMSIS_BLOCK];
    const cmsis_nn_per_channel_quant_params quant = {multiplier, shift};
    const int32_t channels = g->out.c, k = wk->k;
    cmsis_nn_context ctx;
    cmsis_nn_fc_params fc;
    cmsis_nn_dims in_dims = {1, 1, 1, 0}, filter_dims = {0, 1, 1, 0}, bias_dims = {1, 1, 1, 0},
                  out_dims = {1, 1, 1, 0};
    int32_t n, c0;
    ctx.buf = wk->scratch;
    ctx.size = wk->scratch_size;
    fc.input_offset = in_offset;
    fc.filter_offset = 0;
    fc.output_offset = out_offset;
    fc.activation.min = wk->out.lo + out_offset;
    fc.activation.max = wk->out.hi + out_offset;
    in_dims.c = k;
    filter_dims.n = k;
    for (n = 0; n < g->in.n; ++n) {
        for (c0 = 0; c0 < channels; c0 += FXPQ_CMSIS_BLOCK) {
            const int32_t count = channels - c0 < FXPQ_CMSIS_BLOCK ? channels - c0 : FXPQ_CMSIS_BLOCK;
            filter_dims.c = bias_dims.c = out_dims.c = count;
            if (!fxpq_cmsis_block(wk, products, c0, count, bias, multiplier, shift) ||
                arm_fully_connected_per_channel_s8(&ctx, &fc, &quant, &in_dims, input + (size_t)n * (size_t)k,
                                                   &filter_dims,
                                                   (const int8_t *)wk->weights->data + (size_t)c0 * (size_t)k,
                                                   &bias_dims, bias, &out_dims,
                                                   (int8_t *)wk->out.data + (size_t)n * (size_t)channels + c0) !=
                ARM_CMSIS_NN_SUCCESS) {
                return 0;
            }
        }
    }
    return 1;
}

/* Conv 2D in one call (at most FXPQ_CMSIS_BLOCK channels, all checked before the call); -1 when
 * CMSIS-NN's scratch would exceed fxpq's, 0 when a channel is not the route's or CMSIS-NN refused
 * the call, 1 done. */
static int32_t fxpq_cmsis_conv(const fxpq_weighted *wk, const fxpq_geometry *g, const int8_t *input,
                               int64_t products, int32_t in_offset, int32_t out_offset, int32_t flip_input)
{
    int32_t bias[FXPQ_CMSIS_BLOCK], multiplier[FXPQ_CMSIS_BLOCK], shift[FXPQ_CMSIS_BLOCK];
    const cmsis_nn_per_channel_quant_params quant = {multiplier, shift};
    const int32_t channels = g->out.c;
    const cmsis_nn_dims in_dims = {g->in.n, g->in.h, g->in.w, g->in.c};
    const cmsis_nn_dims filter_dims = {channels, g->filter.h, g->filter.w, g->filter.c};
    const cmsis_nn_dims bias_dims = {1, 1, 1, channels};
    const cmsis_nn_dims out_dims = {g->out.n, g->out.h, g->out.w, channels};
    cmsis_nn_context ctx;
    cmsis_nn_conv_params conv;
    arm_cmsis_nn_status status;
    ctx.buf = wk->scratch;
    ctx.size = wk->scratch_size;
    conv.input_offset = in_offset;
    conv.output_offset = out_offset;
    conv.stride.h = g->stride.h; conv.stride.w = g->stride.w;
    conv.padding.h = g->pad_t; conv.padding.w = g->pad_l;
    conv.dilation.h = g->dilation.h; conv.dilation.w = g->dilation.w;
    conv.activation.min = wk->out.lo + out_offset;
    conv.activation.max = wk->out.hi + out_offset;
    /* the route takes no arena byte that fxpq's kernels do not request */
    if (arm_convolve_wrapper_s8_get_buffer_size(&conv, &in_dims, &filter_dims, &out_dims) > wk->scratch_size) {
        return -1;
    }
    if (!fxpq_cmsis_block(wk, products, 0, channels, bias, multiplier, shift)) {
        return 0;
    }
    if (flip_input) {
        fxpq_cmsis_flip((uint8_t *)(uintptr_t)input, g->in.n * g->in.h * g->in.w * g->in.c);
    }
    status = arm_convolve_wrapper_s8(&ctx, &conv, &quant, &in_dims, input, &filter_dims,
                                     (const int8_t *)wk->weights->data, &bias_dims, bias, &out_dims,
                                     (int8_t *)wk->out.data);
    if (flip_input) { /* the input is the caller's again */
        fxpq_cmsis_flip((uint8_t *)(uintptr_t)input, g->in.n * g->in.h * g->in.w * g->in.c);
    }
    return status == ARM_CMSIS_NN_SUCCESS;
}

int32_t fxpq_cmsis_conv2d(const fxpq_weighted *wk, const fxpq_geometry *g, const void *input,
                          int32_t fully_connected)
{
    const int32_t channels = g->out.c;
    const int32_t in_u8 = fxpq_cmsis_u8(wk->in_s, wk->in_bits);
    const int32_t out_u8 = wk->out.storage == FXPQ_STORAGE_UINT8 && wk->out.hi > 127;
    const int32_t in_offset = in_u8 ? 128 : 0, out_offset = out_u8 ? -128 : 0;
    const int64_t products = fxpq_cmsis_products(wk);
    int32_t done;
#if defined(FXPQ_CMSIS_NN_CONV)
    const int32_t faster = !fully_connected || g->in.n < FXPQ_CMSIS_FC_BATCHES;
#else
    const int32_t faster = fully_connected && g->in.n < FXPQ_CMSIS_FC_BATCHES;
#endif
    if (!faster || products < 0 || (!fully_connected && channels > FXPQ_CMSIS_BLOCK)) {
        return 0;
    }
    if (fully_connected) {
        /* CMSIS-NN's fully connected takes no scratch (DSP and portable C builds) */
        const cmsis_nn_dims filter_dims = {wk->k, 1, 1, FXPQ_CMSIS_BLOCK};
        if (arm_fully_connected_s8_get_buffer_size(&filter_dims) > wk->scratch_size) {
            return 0;
        }
        if (in_u8) {
            fxpq_cmsis_flip((uint8_t *)(uintptr_t)input, g->in.n * wk->k);
        }
        done = fxpq_cmsis_fc(wk, g, (const int8_t *)input, products, in_offset, out_offset);
        if (in_u8) { /* the input is the caller's again */
            fxpq_cmsis_flip((uint8_t *)(uintptr_t)input, g->in.n * wk->k);
        }
    } else {
        done = fxpq_cmsis_conv(wk, g, (const int8_t *)input, products, in_offset, out_offset, in_u8) == 1;
    }
    if (!done) {
        return 0; /* fxpq's kernels write the whole output */
    }
    if (out_u8) {
        fxpq_cmsis_flip((uint8_t *)wk->out.data, g->out.n * g->out.h * g->out.w * channels);
    }
    return 1;
}

#endif /* FXPQ_USE_CMSIS_NN */
