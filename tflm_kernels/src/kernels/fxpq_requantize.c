/*
 * fxpq_requantize.c - integer -> integer format change and standalone ReLU / ReLU6
 * (numerics.md section 8).
 */
#include "fxpq_internal.h"

fxpq_status fxpq_requantize(const fxpq_elementwise_params *params, int32_t size,
                            const void *input, const fxpq_format *input_fmt, void *output,
                            const fxpq_format *output_fmt)
{
    fxpq_status st;
    int32_t act_lo, act_hi, i;
    fxpq_storage in_s, out_s;

    if (params == NULL || input == NULL || output == NULL) {
        return FXPQ_ERR_NULL_POINTER;
    }
    if ((st = fxpq_check_format(input_fmt)) != FXPQ_OK ||
        (st = fxpq_check_format(output_fmt)) != FXPQ_OK) {
        return st;
    }
    if (size <= 0) {
        return FXPQ_ERR_BAD_DIMS;
    }
    if ((st = fxpq_activation_bounds(output_fmt, params->activation, &act_lo, &act_hi)) != FXPQ_OK) {
        return st;
    }
    in_s = fxpq_storage_of(input_fmt);
    out_s = fxpq_storage_of(output_fmt);
    if ((st = fxpq_check_aligned(input, in_s)) != FXPQ_OK ||
        (st = fxpq_check_aligned(output, out_s)) != FXPQ_OK) {
        return st;
    }
    for (i = 0; i < size; ++i) {
        fxpq_store(output, out_s, i,
                   fxpq_rescale_clamp(fxpq_load(input, in_s, i), input_fmt->frac, output_fmt->frac,
                                      act_lo, act_hi));
    }
    return FXPQ_OK;
}
