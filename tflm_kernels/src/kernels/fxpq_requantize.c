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

    if (params == NULL) {
        return FXPQ_ERR_NULL_POINTER;
    }
    if ((st = fxpq_elementwise_prepare(input, input_fmt, output, output_fmt, size,
                                       params->activation, &in_s, &out)) != FXPQ_OK) {
        return st;
    }
#if FXPQ_USE_DSP
    if (fxpq_dsp_requantize(size, input, in_s, input_fmt->frac, &out)) {
        return FXPQ_OK;
    }
#endif
    for (i = 0; i < size; ++i) {
        fxpq_output_store(&out, i, fxpq_load(input, in_s, i), input_fmt->frac);
    }
    return FXPQ_OK;
}
