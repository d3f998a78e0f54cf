/*
 * fxpq_add.c - elementwise add (numerics.md section 5).
 */
#include "fxpq_internal.h"

fxpq_status fxpq_add(const fxpq_elementwise_params *params, int32_t size, const void *a,
                     const fxpq_format *a_fmt, const void *b, const fxpq_format *b_fmt,
                     void *output, const fxpq_format *output_fmt)
{
    fxpq_status st;
    int32_t f, sa, sb, i;
    fxpq_storage a_s, b_s;
    fxpq_output out;

    if (params == NULL || a == NULL || b == NULL || output == NULL) {
        return FXPQ_ERR_NULL_POINTER;
    }
    if ((st = fxpq_check_format(a_fmt)) != FXPQ_OK || (st = fxpq_check_format(b_fmt)) != FXPQ_OK ||
        (st = fxpq_check_format(output_fmt)) != FXPQ_OK) {
        return st;
    }
    if (size <= 0) {
        return FXPQ_ERR_BAD_DIMS;
    }
    f = a_fmt->frac > b_fmt->frac ? a_fmt->frac : b_fmt->frac;
    sa = f - a_fmt->frac;
    sb = f - b_fmt->frac;
    if (sa > FXPQ_MAX_ADD_FRAC_DIFF || sb > FXPQ_MAX_ADD_FRAC_DIFF) {
        return FXPQ_ERR_BAD_PARAM;
    }
    if ((st = fxpq_output_init(&out, output, output_fmt, params->activation)) != FXPQ_OK) {
        return st;
    }
    a_s = fxpq_storage_of(a_fmt);
    b_s = fxpq_storage_of(b_fmt);
    if ((st = fxpq_check_aligned(a, a_s)) != FXPQ_OK ||
        (st = fxpq_check_io_aligned(b, b_s, &out)) != FXPQ_OK) {
        return st;
    }
#if FXPQ_USE_DSP
    if (fxpq_dsp_add(size, a, a_s, sa, b, b_s, sb, f, &out, output)) {
        return FXPQ_OK;
    }
#endif
    for (i = 0; i < size; ++i) {
        /* |q| < 2^16 and shifts <= 32: the aligned sum fits int64 */
        const int64_t sum = fxpq_wrap_shl64(fxpq_load(a, a_s, i), sa) +
                            fxpq_wrap_shl64(fxpq_load(b, b_s, i), sb);
        fxpq_output_store(&out, i, sum, f);
    }
    return FXPQ_OK;
}
