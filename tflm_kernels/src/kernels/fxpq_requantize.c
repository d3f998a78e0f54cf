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
    int32_t i;
    fxpq_storage in_s;
    fxpq_output out;

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
    in_s = fxpq_storage_of(input_fmt);
    if ((st = fxpq_output_init(&out, output, output_fmt, params->activation)) != FXPQ_OK ||
        (st = fxpq_check_io_aligned(input, in_s, &out)) != FXPQ_OK) {
        return st;
    }
    for (i = 0; i < size; ++i) {
        fxpq_output_store(&out, i, fxpq_load(input, in_s, i), input_fmt->frac);
    }
    return FXPQ_OK;
}
