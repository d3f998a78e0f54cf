/*
 * fxpq_concatenation.c - two tensors joined on the last axis, each rescaled to the output format
 * (numerics.md section 8). N-way concatenations are chains of these (the converter keeps the
 * partial results in the output format, where the rescale is the identity).
 */
#include "fxpq_internal.h"

fxpq_status fxpq_concatenation(int32_t outer, int32_t a_channels, const void *a,
                               const fxpq_format *a_fmt, int32_t b_channels, const void *b,
                               const fxpq_format *b_fmt, void *output,
                               const fxpq_format *output_fmt)
{
    fxpq_status st;
    int32_t i, c, o = 0, total;
    fxpq_storage a_s, b_s;
    fxpq_output out;

    if (a == NULL || b == NULL || output == NULL) {
        return FXPQ_ERR_NULL_POINTER;
    }
    if ((st = fxpq_check_format(a_fmt)) != FXPQ_OK || (st = fxpq_check_format(b_fmt)) != FXPQ_OK ||
        (st = fxpq_check_format(output_fmt)) != FXPQ_OK) {
        return st;
    }
    if (outer <= 0 || a_channels <= 0 || b_channels <= 0 || a_channels > INT32_MAX - b_channels ||
        fxpq_mul_size(outer, a_channels + b_channels, &total) != FXPQ_OK) {
        return FXPQ_ERR_BAD_DIMS;
    }
    if ((st = fxpq_output_init(&out, output, output_fmt, FXPQ_ACT_NONE)) != FXPQ_OK) {
        return st;
    }
    a_s = fxpq_storage_of(a_fmt);
    b_s = fxpq_storage_of(b_fmt);
    if ((st = fxpq_check_aligned(a, a_s)) != FXPQ_OK ||
        (st = fxpq_check_io_aligned(b, b_s, &out)) != FXPQ_OK) {
        return st;
    }
    for (i = 0; i < outer; ++i) {
        for (c = 0; c < a_channels; ++c) {
            fxpq_output_store(&out, o++, fxpq_load(a, a_s, i * a_channels + c), a_fmt->frac);
        }
        for (c = 0; c < b_channels; ++c) {
            fxpq_output_store(&out, o++, fxpq_load(b, b_s, i * b_channels + c), b_fmt->frac);
        }
    }
    return FXPQ_OK;
}
