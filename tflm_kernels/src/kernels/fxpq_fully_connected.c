/*
 * fxpq_fully_connected.c - fully connected (numerics.md section 4), weights [out][in].
 */
#include "fxpq_internal.h"

int32_t fxpq_fully_connected_get_buffer_size(int32_t in_features)
{
    return (in_features <= 0 || in_features > INT32_MAX / 2) ? -1 : in_features * 2;
}

fxpq_status fxpq_fully_connected(const fxpq_context *ctx, const fxpq_fc_params *params,
                                 int32_t batches, int32_t in_features, int32_t out_features,
                                 const void *input, const fxpq_format *input_fmt,
                                 const fxpq_weights *weights, const fxpq_bias *bias,
                                 void *output, const fxpq_format *output_fmt)
{
    fxpq_status st;
    int32_t row_bytes, act_lo, act_hi, total, o, n;
    fxpq_storage in_s, out_s;
    fxpq_dot_fn dot;
    int32_t in_es;
    int16_t *wrow;

    if (params == NULL || input == NULL || output == NULL) {
        return FXPQ_ERR_NULL_POINTER;
    }
    if ((st = fxpq_check_format(input_fmt)) != FXPQ_OK ||
        (st = fxpq_check_format(output_fmt)) != FXPQ_OK) {
        return st;
    }
    if (fxpq_mul_size(batches, in_features, &total) != FXPQ_OK ||
        fxpq_mul_size(batches, out_features, &total) != FXPQ_OK ||
        (row_bytes = fxpq_packed_row_size(FXPQ_MAX_BITS, in_features)) < 0) {
        return FXPQ_ERR_BAD_DIMS;
    }
    if ((st = fxpq_activation_bounds(output_fmt, params->activation, &act_lo, &act_hi)) != FXPQ_OK) {
        return st;
    }
    if ((st = fxpq_check_weights_bias(weights, bias, out_features, input_fmt->frac)) != FXPQ_OK) {
        return st;
    }
    row_bytes = fxpq_packed_row_size(weights->bits, in_features);
    if ((st = fxpq_check_scratch(ctx, in_features)) != FXPQ_OK) {
        return st;
    }
    in_s = fxpq_storage_of(input_fmt);
    out_s = fxpq_storage_of(output_fmt);
    if ((st = fxpq_check_aligned(input, in_s)) != FXPQ_OK ||
        (st = fxpq_check_aligned(output, out_s)) != FXPQ_OK) {
        return st;
    }

    dot = fxpq_select_dot(in_s, fxpq_acc_needs_64(input_fmt->bits, input_fmt->is_signed,
                                                  weights->bits, in_features));
    wrow = (int16_t *)ctx->buf;
    in_es = fxpq_elem_size(in_s);
    for (o = 0; o < out_features; ++o) {
        const fxpq_channel_quant q = fxpq_channel_quant_of(weights, bias, o, input_fmt->frac);
        fxpq_unpack_weights((const uint8_t *)weights->data + (size_t)o * (size_t)row_bytes,
                            weights->bits, in_features, wrow);
        for (n = 0; n < batches; ++n) {
            const int64_t acc = dot(fxpq_elem(input, in_es, n * in_features), 1, wrow, in_features);
            fxpq_store(output, out_s, n * out_features + o,
                       fxpq_finish_acc(acc, &q, output_fmt->frac, act_lo, act_hi));
        }
    }
    return FXPQ_OK;
}
