/*
 * fxpq_max_pool2d.c - max pool 2D (numerics.md section 6). Padded positions are ignored.
 */
#include "fxpq_pool_common.h"

fxpq_status fxpq_max_pool2d(const fxpq_pool_params *params, const fxpq_dims *input_dims,
                            const void *input, const fxpq_format *input_fmt,
                            const fxpq_dims *output_dims, void *output,
                            const fxpq_format *output_fmt)
{
    fxpq_status st;
    int32_t pad_t, pad_l, act_lo, act_hi, n, oy, ox, c;
    fxpq_storage in_s, out_s;
    const fxpq_dims *id = input_dims, *od = output_dims;

    st = fxpq_check_pool(params, input_dims, input, input_fmt, output_dims, output, output_fmt,
                         &pad_t, &pad_l, &act_lo, &act_hi);
    if (st != FXPQ_OK) {
        return st;
    }
#if FXPQ_USE_DSP
    if (fxpq_dsp_max_pool2d(params, id, input, input_fmt, od, output, output_fmt, pad_t, pad_l,
                            act_lo, act_hi)) {
        return FXPQ_OK;
    }
#endif
    in_s = fxpq_storage_of(input_fmt);
    out_s = fxpq_storage_of(output_fmt);
    for (n = 0; n < od->n; ++n) {
        for (oy = 0; oy < od->h; ++oy) {
            const int32_t iy0 = oy * params->stride.h - pad_t;
            int32_t ky0, ky1;
            fxpq_valid_taps(iy0, 1, params->filter.h, id->h, &ky0, &ky1);
            for (ox = 0; ox < od->w; ++ox) {
                const int32_t ix0 = ox * params->stride.w - pad_l;
                int32_t kx0, kx1;
                fxpq_valid_taps(ix0, 1, params->filter.w, id->w, &kx0, &kx1);
                for (c = 0; c < od->c; ++c) {
                    int32_t m = INT32_MIN, ky, kx;
                    for (ky = ky0; ky < ky1; ++ky) {
                        const int32_t row = (n * id->h + iy0 + ky) * id->w + ix0;
                        for (kx = kx0; kx < kx1; ++kx) {
                            const int32_t v = fxpq_load(input, in_s, (row + kx) * id->c + c);
                            m = v > m ? v : m;
                        }
                    }
                    /* 'same' padding always leaves at least one valid input in a window */
                    fxpq_store(output, out_s, ((n * od->h + oy) * od->w + ox) * od->c + c,
                               fxpq_rescale_clamp(m, input_fmt->frac, output_fmt->frac, act_lo,
                                                  act_hi));
                }
            }
        }
    }
    return FXPQ_OK;
}
