/*
 * fxpq_common.c - the scalar rules of the numerics contract (one implementation each) and the
 * validation helpers shared by the kernels.
 */
#include <string.h>

#include "fxpq_internal.h"

const char *fxpq_status_str(fxpq_status status)
{
    switch (status) {
    case FXPQ_OK: return "ok";
    case FXPQ_ERR_NULL_POINTER: return "null pointer";
    case FXPQ_ERR_BAD_FORMAT: return "bad format (bits outside 2..16 or frac outside -32..32)";
    case FXPQ_ERR_BAD_DIMS: return "bad dimensions";
    case FXPQ_ERR_BAD_PARAM: return "bad parameter";
    case FXPQ_ERR_BAD_PADDING: return "bad padding";
    case FXPQ_ERR_SCRATCH_TOO_SMALL: return "scratch buffer too small";
    case FXPQ_ERR_BAD_BIAS_FRAC: return "bias frac outside 0 <= frac_acc - frac_bias <= 30";
    case FXPQ_ERR_MISALIGNED: return "misaligned buffer";
    case FXPQ_ERR_NOT_BUILT: /* short: the runner's message holds 160 characters */
        return "not in this build's kernel paths (see fxpq_model_paths.h)";
    default: return "unknown status";
    }
}

int32_t fxpq_kernel_path_built(int32_t op, const fxpq_format *input, int32_t weight_bits, int32_t terms)
{
    unsigned mask;
    const int32_t depthwise = op == FXPQ_OP_DEPTHWISE_CONV_2D;
    if (op != FXPQ_OP_CONV_2D && op != FXPQ_OP_FULLY_CONNECTED && !depthwise) {
        return 1;
    }
    if (fxpq_check_format(input) != FXPQ_OK || weight_bits < FXPQ_MIN_BITS || weight_bits > FXPQ_MAX_BITS) {
        return 0;
    }
    if (!input->is_signed && input->bits > 8 && input->bits < 16) { /* int16 lanes (fxpq_paths.h) */
        mask = depthwise ? FXPQ_PATHS_DEPTHWISE_UINT16_NARROW : FXPQ_PATHS_CONV_UINT16_NARROW;
        return (int32_t)FXPQ_PATHS_HAS(mask, weight_bits);
    }
    if (!depthwise && !input->is_signed && input->bits == 16 &&
        (terms <= 0 || terms > FXPQ_PATHS_BLOCK_TERMS) && !FXPQ_PATHS_HAS(FXPQ_PATHS_CONV_UINT16_LONG, weight_bits)) {
        return 0; /* rows longer than the unpacked-row block: the decoder loop (fxpq_paths.h) */
    }
    switch (fxpq_storage_of(input)) {
    case FXPQ_STORAGE_INT8: mask = depthwise ? FXPQ_PATHS_DEPTHWISE_INT8 : FXPQ_PATHS_CONV_INT8; break;
    case FXPQ_STORAGE_UINT8: mask = depthwise ? FXPQ_PATHS_DEPTHWISE_UINT8 : FXPQ_PATHS_CONV_UINT8; break;
    case FXPQ_STORAGE_INT16: mask = depthwise ? FXPQ_PATHS_DEPTHWISE_INT16 : FXPQ_PATHS_CONV_INT16; break;
    case FXPQ_STORAGE_UINT16: mask = depthwise ? FXPQ_PATHS_DEPTHWISE_UINT16 : FXPQ_PATHS_CONV_UINT16; break;
    default: return 0;
    }
    return (int32_t)FXPQ_PATHS_HAS(mask, weight_bits);
}

static int32_t fxpq_frac_ok(int32_t frac)
{
    return frac >= FXPQ_MIN_FRAC && frac <= FXPQ_MAX_FRAC;
}

fxpq_status fxpq_check_format(const fxpq_format *fmt)
{
    if (fmt == NULL) {
        return FXPQ_ERR_NULL_POINTER;
    }
    if (fmt->bits < FXPQ_MIN_BITS || fmt->bits > FXPQ_MAX_BITS || !fxpq_frac_ok(fmt->frac)) {
        return FXPQ_ERR_BAD_FORMAT;
    }
    return FXPQ_OK;
}

fxpq_storage fxpq_storage_of(const fxpq_format *fmt)
{
    if (fmt->bits <= 8) {
        return fmt->is_signed ? FXPQ_STORAGE_INT8 : FXPQ_STORAGE_UINT8;
    }
    return fmt->is_signed ? FXPQ_STORAGE_INT16 : FXPQ_STORAGE_UINT16;
}

int32_t fxpq_storage_size(fxpq_storage storage)
{
    return fxpq_elem_size(storage);
}

void fxpq_format_range(const fxpq_format *fmt, int32_t *lo, int32_t *hi)
{
    if (fmt->is_signed) {
        *lo = -((int32_t)1 << (fmt->bits - 1));
        *hi = ((int32_t)1 << (fmt->bits - 1)) - 1;
    } else {
        *lo = 0;
        *hi = ((int32_t)1 << fmt->bits) - 1;
    }
}

int64_t fxpq_saturate(int64_t v, int32_t lo, int32_t hi)
{
    return v < lo ? lo : (v > hi ? hi : v);
}

int64_t fxpq_rescale(int64_t v, int32_t from_frac, int32_t to_frac)
{
    return fxpq_rescale_inline(v, from_frac, to_frac);
}

int32_t fxpq_requantize_value(int64_t v, int32_t from_frac, const fxpq_format *out)
{
    int32_t lo, hi;
    fxpq_format_range(out, &lo, &hi);
    return fxpq_rescale_clamp(v, from_frac, out->frac, lo, hi);
}

int64_t fxpq_floor_div(int64_t a, int64_t b)
{
    int64_t q = a / b;
    if (a % b != 0 && a < 0) {
        q -= 1;
    }
    return q;
}

fxpq_status fxpq_check_activation(fxpq_activation act)
{
    return (act == FXPQ_ACT_NONE || act == FXPQ_ACT_RELU || act == FXPQ_ACT_RELU6)
               ? FXPQ_OK
               : FXPQ_ERR_BAD_PARAM;
}

fxpq_status fxpq_activation_bounds(const fxpq_format *out, fxpq_activation act, int32_t *lo,
                                   int32_t *hi)
{
    fxpq_status st = fxpq_check_format(out);
    if (st != FXPQ_OK) {
        return st;
    }
    if (lo == NULL || hi == NULL) {
        return FXPQ_ERR_NULL_POINTER;
    }
    if (fxpq_check_activation(act) != FXPQ_OK) {
        return FXPQ_ERR_BAD_PARAM;
    }
    fxpq_format_range(out, lo, hi);
    if (act != FXPQ_ACT_NONE && *lo < 0) {
        *lo = 0;
    }
    if (act == FXPQ_ACT_RELU6) {
        int32_t six = fxpq_requantize_value(6, 0, out);
        if (six < *hi) {
            *hi = six;
        }
    }
    return FXPQ_OK;
}

int32_t fxpq_acc_needs_64(int32_t bits_x, int32_t x_signed, int32_t bits_w, int32_t terms)
{
    int32_t log2_terms = 0;
    while (log2_terms < 31 && ((int64_t)1 << log2_terms) < (int64_t)terms) {
        ++log2_terms;
    }
    return (bits_x + (x_signed ? 0 : 1) + bits_w + log2_terms) > 31;
}

fxpq_status fxpq_conv_output_size(int32_t in, int32_t kernel, int32_t stride, int32_t dilation,
                                  fxpq_padding padding, int32_t *out, int32_t *pad_before)
{
    int64_t eff, o, total;
    if (out == NULL || pad_before == NULL) {
        return FXPQ_ERR_NULL_POINTER;
    }
    if (in <= 0 || kernel <= 0) {
        return FXPQ_ERR_BAD_DIMS;
    }
    if (stride <= 0 || dilation <= 0) {
        return FXPQ_ERR_BAD_PARAM;
    }
    eff = (int64_t)(kernel - 1) * dilation + 1;
    if (eff > INT32_MAX) {
        return FXPQ_ERR_BAD_PARAM;
    }
    if (padding == FXPQ_PADDING_SAME) {
        o = ((int64_t)in + stride - 1) / stride;
        total = (o - 1) * stride + eff - in;
        if (total < 0) {
            total = 0;
        }
        *out = (int32_t)o;
        *pad_before = (int32_t)(total / 2);
        return FXPQ_OK;
    }
    if (padding == FXPQ_PADDING_VALID) {
        if (eff > in) {
            return FXPQ_ERR_BAD_PADDING;
        }
        *out = (int32_t)((in - eff) / stride + 1);
        *pad_before = 0;
        return FXPQ_OK;
    }
    return FXPQ_ERR_BAD_PADDING;
}

void fxpq_valid_taps(int32_t start, int32_t dilation, int32_t kernel, int32_t size, int32_t *k0,
                     int32_t *k1)
{
    /* smallest k with start + k*d >= 0, and one past the largest k with start + k*d < size.
     * Unsigned 32-bit arithmetic: no overflow (start >= -2^31, d < 2^31) and no 64-bit
     * division on 32-bit targets. */
    uint32_t lo = 0, hi = 0;
    if (start < 0) {
        lo = ((uint32_t)0 - (uint32_t)start + (uint32_t)dilation - 1u) / (uint32_t)dilation;
    }
    if (start < size) {
        hi = ((uint32_t)size - 1u - (uint32_t)start) / (uint32_t)dilation + 1u;
    }
    *k0 = lo < (uint32_t)kernel ? (int32_t)lo : kernel;
    *k1 = hi < (uint32_t)kernel ? (int32_t)hi : kernel;
}

fxpq_status fxpq_mul_size(int32_t a, int32_t b, int32_t *out)
{
    int64_t p;
    if (a <= 0 || b <= 0) {
        return FXPQ_ERR_BAD_DIMS;
    }
    p = (int64_t)a * (int64_t)b;
    if (p > INT32_MAX) {
        return FXPQ_ERR_BAD_DIMS;
    }
    *out = (int32_t)p;
    return FXPQ_OK;
}

fxpq_status fxpq_check_dims(const fxpq_dims *d, int32_t *count)
{
    int32_t c;
    if (d == NULL) {
        return FXPQ_ERR_NULL_POINTER;
    }
    if (fxpq_mul_size(d->n, d->h, &c) != FXPQ_OK || fxpq_mul_size(c, d->w, &c) != FXPQ_OK ||
        fxpq_mul_size(c, d->c, &c) != FXPQ_OK) {
        return FXPQ_ERR_BAD_DIMS;
    }
    if (count != NULL) {
        *count = c;
    }
    return FXPQ_OK;
}

fxpq_status fxpq_check_aligned(const void *p, fxpq_storage s)
{
    if (fxpq_storage_size(s) == 2 && ((uintptr_t)p & 1u) != 0) {
        return FXPQ_ERR_MISALIGNED;
    }
    return FXPQ_OK;
}

fxpq_status fxpq_check_scratch(const fxpq_context *ctx, int32_t bytes)
{
    if (ctx == NULL || (ctx->buf == NULL && bytes > 0)) {
        return FXPQ_ERR_NULL_POINTER;
    }
    if (ctx->size < bytes) {
        return FXPQ_ERR_SCRATCH_TOO_SMALL;
    }
    return fxpq_check_aligned(ctx->buf, FXPQ_STORAGE_INT16);
}

/* Weights and bias of out_channels channels with input frac x_frac: every channel is checked
 * before any output is written. */
static fxpq_status fxpq_check_weights_bias(const fxpq_weights *w, const fxpq_bias *b,
                                           int32_t out_channels, int32_t x_frac)
{
    int32_t o;
    if (w == NULL || w->data == NULL) {
        return FXPQ_ERR_NULL_POINTER;
    }
    if (w->bits < FXPQ_MIN_BITS || w->bits > FXPQ_MAX_BITS) {
        return FXPQ_ERR_BAD_FORMAT;
    }
    for (o = 0; o < out_channels; ++o) {
        int32_t wf = w->per_channel_frac != NULL ? w->per_channel_frac[o] : w->frac;
        if (!fxpq_frac_ok(wf)) {
            return FXPQ_ERR_BAD_FORMAT;
        }
        if (b != NULL && b->data != NULL) {
            int64_t shift = (int64_t)x_frac + wf - b->frac;
            if (shift < 0 || shift > FXPQ_MAX_BIAS_SHIFT) {
                return FXPQ_ERR_BAD_BIAS_FRAC;
            }
        }
    }
    return FXPQ_OK;
}

fxpq_weighted fxpq_weighted_prepare(fxpq_status *st, int32_t op, const fxpq_context *ctx, fxpq_activation act,
                                    const void *input, const fxpq_format *input_fmt,
                                    const fxpq_weights *weights, const fxpq_bias *bias,
                                    int32_t out_channels, int32_t k, int32_t scratch_bytes,
                                    void *output, const fxpq_format *output_fmt)
{
    fxpq_weighted wk;
    memset(&wk, 0, sizeof(wk));
    if ((*st = fxpq_output_init(&wk.out, output, output_fmt, act)) != FXPQ_OK ||
        (*st = fxpq_check_weights_bias(weights, bias, out_channels, input_fmt->frac)) != FXPQ_OK) {
        return wk;
    }
    if (k <= 0 || scratch_bytes < 0 || (wk.row_bytes = fxpq_packed_row_size(weights->bits, k)) < 0) {
        *st = FXPQ_ERR_BAD_DIMS;
        return wk;
    }
    wk.in_s = fxpq_storage_of(input_fmt);
    if (!fxpq_kernel_path_built(op, input_fmt, weights->bits, k)) {
        *st = FXPQ_ERR_NOT_BUILT;
        return wk;
    }
    if ((*st = fxpq_check_scratch(ctx, scratch_bytes)) != FXPQ_OK ||
        (*st = fxpq_check_io_aligned(input, wk.in_s, &wk.out)) != FXPQ_OK) {
        return wk;
    }
    wk.weights = weights;
    wk.bias = bias;
    wk.in_frac = input_fmt->frac;
    wk.in_es = fxpq_elem_size(wk.in_s);
    wk.k = k;
    wk.acc64 = fxpq_acc_needs_64(input_fmt->bits, input_fmt->is_signed, weights->bits, k);
    wk.dot = fxpq_select_dot(wk.in_s, wk.acc64);
    wk.in_bits = input_fmt->bits;
    wk.in_signed = input_fmt->is_signed;
    wk.scratch = ctx->buf;
    wk.scratch_size = scratch_bytes; /* the optimized kernels use no more than they requested */
    return wk;
}

