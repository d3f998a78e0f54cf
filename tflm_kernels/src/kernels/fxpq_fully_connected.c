/*
 * fxpq_fully_connected.c - fully connected (numerics.md section 4), weights [out][in].
 */
#include "fxpq_internal.h"

int32_t fxpq_fully_connected_get_buffer_size(int32_t in_features)
{
    if (in_features <= 0 || in_features > INT32_MAX / 2) {
        return -1;
    }
    return fxpq_dsp_conv_scratch(in_features, 1);
}

fxpq_status fxpq_fully_connected(const fxpq_context *ctx, const fxpq_fc_params *params,
                                 int32_t batches, int32_t in_features, int32_t out_features,
                                 const void *input, const fxpq_format *input_fmt,
                                 const fxpq_weights *weights, const fxpq_bias *bias,
                                 void *output, const fxpq_format *output_fmt)
{
    fxpq_status st;
    int32_t total, o, n;
    fxpq_weighted wk;

    if (params == NULL || input == NULL || output == NULL) {
        return FXPQ_ERR_NULL_POINTER;
    }
    if ((st = fxpq_check_format(input_fmt)) != FXPQ_OK ||
        (st = fxpq_check_format(output_fmt)) != FXPQ_OK) {
        return st;
    }
    if (fxpq_mul_size(batches, in_features, &total) != FXPQ_OK ||
        fxpq_mul_size(batches, out_features, &total) != FXPQ_OK ||
        fxpq_packed_row_size(FXPQ_MAX_BITS, in_features) < 0) {
        return FXPQ_ERR_BAD_DIMS;
    }
    wk = fxpq_weighted_prepare(&st, FXPQ_OP_FULLY_CONNECTED, ctx, params->activation, input, input_fmt, weights, bias,
                               out_features, in_features,
                               fxpq_fully_connected_get_buffer_size(in_features), output, output_fmt);
    if (st != FXPQ_OK) {
        return st;
    }
#if FXPQ_USE_DSP || FXPQ_USE_CMSIS_NN
    {
        /* a 1x1 conv over batches x 1 x 1 x in_features */
        const fxpq_geometry g = {{batches, 1, 1, in_features}, {out_features, 1, 1, in_features},
                                 {batches, 1, 1, out_features}, {1, 1}, {1, 1}, 0, 0, 1};
#if FXPQ_USE_CMSIS_NN
        if (fxpq_cmsis_conv2d(&wk, &g, input, 1)) {
            return FXPQ_OK;
        }
#endif
#if FXPQ_USE_DSP
        if (fxpq_dsp_conv2d(&wk, &g, input)) {
            return FXPQ_OK;
        }
#endif
    }
#endif

    for (o = 0; o < out_features; ++o) {
        int16_t wbuf[FXPQ_WCHUNK];
        const fxpq_channel ch = fxpq_weighted_channel(&wk, o, wbuf);
        for (n = 0; n < batches; ++n) {
            fxpq_weighted_store(&wk, &ch.q, n * out_features + o,
                                fxpq_weighted_dot(&wk, &ch, fxpq_elem(input, wk.in_es, n * in_features), 1,
                                                  0, in_features));
        }
    }
    return FXPQ_OK;
}
