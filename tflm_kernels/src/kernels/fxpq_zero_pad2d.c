/*
 * fxpq_zero_pad2d.c - zero padding of an NHWC tensor (numerics.md section 8).
 */
#include "fxpq_internal.h"

fxpq_status fxpq_zero_pad2d(const fxpq_pad_params *params, const fxpq_dims *input_dims,
                            const void *input, const fxpq_format *input_fmt,
                            const fxpq_dims *output_dims, void *output,
                            const fxpq_format *output_fmt)
{
    fxpq_status st;
    int32_t n, y, x, c, i = 0;
    fxpq_storage in_s;
    fxpq_output out;
    const fxpq_dims *id = input_dims, *od = output_dims;

    if (params == NULL || input == NULL || output == NULL || input_dims == NULL ||
        output_dims == NULL) {
        return FXPQ_ERR_NULL_POINTER;
    }
    if ((st = fxpq_check_format(input_fmt)) != FXPQ_OK ||
        (st = fxpq_check_format(output_fmt)) != FXPQ_OK) {
        return st;
    }
    if ((st = fxpq_check_dims(id, NULL)) != FXPQ_OK || (st = fxpq_check_dims(od, NULL)) != FXPQ_OK) {
        return st;
    }
    if (params->top < 0 || params->bottom < 0 || params->left < 0 || params->right < 0) {
        return FXPQ_ERR_BAD_PARAM;
    }
    /* int64: pads up to INT32_MAX cannot overflow the comparison */
    if (od->n != id->n || od->c != id->c ||
        (int64_t)od->h != (int64_t)id->h + params->top + params->bottom ||
        (int64_t)od->w != (int64_t)id->w + params->left + params->right) {
        return FXPQ_ERR_BAD_DIMS;
    }
    in_s = fxpq_storage_of(input_fmt);
    if ((st = fxpq_output_init(&out, output, output_fmt, FXPQ_ACT_NONE)) != FXPQ_OK ||
        (st = fxpq_check_io_aligned(input, in_s, &out)) != FXPQ_OK) {
        return st;
    }
    /* Row-major walk of the output: padded positions get 0, the others the rescaled input
     * (a plain copy when the formats are equal). 0 lies in every format's range. */
    for (n = 0; n < od->n; ++n) {
        for (y = 0; y < od->h; ++y) {
            const int32_t iy = y - params->top;
            for (x = 0; x < od->w; ++x) {
                const int32_t ix = x - params->left;
                if (iy < 0 || iy >= id->h || ix < 0 || ix >= id->w) {
                    for (c = 0; c < od->c; ++c) {
                        fxpq_store(out.data, out.storage, i++, 0);
                    }
                } else {
                    const int32_t src = ((n * id->h + iy) * id->w + ix) * id->c;
                    for (c = 0; c < od->c; ++c) {
                        fxpq_output_store(&out, i++, fxpq_load(input, in_s, src + c),
                                          input_fmt->frac);
                    }
                }
            }
        }
    }
    return FXPQ_OK;
}
