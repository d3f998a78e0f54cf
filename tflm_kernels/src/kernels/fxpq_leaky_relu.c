/*
 * fxpq_leaky_relu.c - LeakyReLU with a power-of-two slope (numerics.md section 8).
 */
#include "fxpq_internal.h"

fxpq_status fxpq_leaky_relu(const fxpq_leaky_relu_params *params, int32_t size,
                            const void *input, const fxpq_format *input_fmt, void *output,
                            const fxpq_format *output_fmt)
{
    fxpq_status st;
    int32_t i, neg_frac;
    fxpq_storage in_s;
    fxpq_output out;

    if (params == NULL) {
        return FXPQ_ERR_NULL_POINTER;
    }
    if (params->alpha_shift < 1 || params->alpha_shift > FXPQ_MAX_ALPHA_SHIFT) {
        return FXPQ_ERR_BAD_PARAM;
    }
    if ((st = fxpq_elementwise_prepare(input, input_fmt, output, output_fmt, size,
                                       FXPQ_ACT_NONE, &in_s, &out)) != FXPQ_OK) {
        return st;
    }
    /* x * 2^-alpha_shift is x read at frac + alpha_shift: one shift-only rescale either way */
    neg_frac = input_fmt->frac + params->alpha_shift;
    for (i = 0; i < size; ++i) {
        const int32_t x = fxpq_load(input, in_s, i);
        fxpq_output_store(&out, i, x, x >= 0 ? input_fmt->frac : neg_frac);
    }
    return FXPQ_OK;
}
