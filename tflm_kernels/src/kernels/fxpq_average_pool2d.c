/*
 * fxpq_average_pool2d.c - average pool 2D and global average pool (numerics.md section 7).
 *
 * n = number of valid (non-padded) inputs, sum their int64 sum, d = frac_out - frac_in:
 *   d >= 0: q = floor_div(sum, n), r = sum - q * n;  y = q * 2^d + floor_div((r << (d + 1)) + n, 2n)
 *   d < 0:  den = n << -d;                            y = floor_div(2 * sum + den, 2 * den)
 * then saturated and the fused activation. Exact for every n < 2^31 (no int64 overflow).
 */
#include "fxpq_pool_common.h"

/* The one average formula: round_half_up(sum * 2^d / count), exact for |sum| < count * 2^16,
 * 0 < count < 2^31, |d| <= 24. For d >= 0 the whole part q is split off first, so that only the
 * remainder (below count) is shifted: sum << d itself could need 2^(31 + 16 + 24) (numerics.md 7). */
static int64_t fxpq_average(int64_t sum, int32_t count, int32_t d)
{
    const int64_t n = (int64_t)count;
    if (d >= 0) {
        const int64_t q = fxpq_floor_div(sum, n);
        const int64_t r = sum - q * n; /* 0 <= r < n */
        return q * ((int64_t)1 << d) + fxpq_floor_div((r << (d + 1)) + n, 2 * n);
    }
    return fxpq_floor_div(2 * sum + (n << -d), 2 * (n << -d));
}

fxpq_status fxpq_average_pool2d(const fxpq_pool_params *params, const fxpq_dims *input_dims,
                                const void *input, const fxpq_format *input_fmt,
                                const fxpq_dims *output_dims, void *output,
                                const fxpq_format *output_fmt)
{
    fxpq_status st;
    int32_t pad_t, pad_l, act_lo, act_hi, lo, hi, d, n, oy, ox, c;
    fxpq_storage in_s, out_s;
    const fxpq_dims *id = input_dims, *od = output_dims;

    st = fxpq_check_pool(params, input_dims, input, input_fmt, output_dims, output, output_fmt,
                         &pad_t, &pad_l, &act_lo, &act_hi);
    if (st != FXPQ_OK) {
        return st;
    }
    d = output_fmt->frac - input_fmt->frac;
    if (d > FXPQ_MAX_AVG_FRAC_DIFF || d < -FXPQ_MAX_AVG_FRAC_DIFF) {
        return FXPQ_ERR_BAD_PARAM;
    }
#if FXPQ_USE_DSP
    if (fxpq_dsp_average_pool2d(params, id, input, input_fmt, od, output, output_fmt, pad_t, pad_l,
                                act_lo, act_hi)) {
        return FXPQ_OK;
    }
#endif
    fxpq_format_range(output_fmt, &lo, &hi);
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
                    int64_t sum = 0, y;
                    int32_t ky, kx;
                    for (ky = ky0; ky < ky1; ++ky) {
                        const int32_t row = (n * id->h + iy0 + ky) * id->w + ix0;
                        for (kx = kx0; kx < kx1; ++kx) {
                            sum += fxpq_load(input, in_s, (row + kx) * id->c + c);
                        }
                    }
                    y = fxpq_saturate(fxpq_average(sum, (ky1 - ky0) * (kx1 - kx0), d), lo, hi);
                    fxpq_store(output, out_s, ((n * od->h + oy) * od->w + ox) * od->c + c,
                               (int32_t)fxpq_saturate(y, act_lo, act_hi));
                }
            }
        }
    }
    return FXPQ_OK;
}

fxpq_status fxpq_global_average_pool2d(const fxpq_dims *input_dims, const void *input,
                                       const fxpq_format *input_fmt, void *output,
                                       const fxpq_format *output_fmt)
{
    fxpq_pool_params params;
    fxpq_dims out_dims;
    if (input_dims == NULL) {
        return FXPQ_ERR_NULL_POINTER;
    }
    params.filter.h = input_dims->h;
    params.filter.w = input_dims->w;
    params.stride.h = 1;
    params.stride.w = 1;
    params.padding = FXPQ_PADDING_VALID;
    params.activation = FXPQ_ACT_NONE;
    out_dims.n = input_dims->n;
    out_dims.h = 1;
    out_dims.w = 1;
    out_dims.c = input_dims->c;
    return fxpq_average_pool2d(&params, input_dims, input, input_fmt, &out_dims, output, output_fmt);
}
