/*
 * fxpq_depthwise_conv2d.c - depthwise Conv 2D (numerics.md section 4).
 *
 * Output channel o = c * depth_multiplier + m reads input channel c. Each output channel's
 * kh * kw weights are unpacked once (on the stack, FXPQ_WCHUNK at most); the dot products walk the input with
 * an element stride of C * dilation_w.
 */
#include "fxpq_internal.h"

/* Terms of one dot product (kh * kw), or -1. */
static int32_t fxpq_depthwise_terms(const fxpq_dims *filter_dims)
{
    int32_t k;
    if (filter_dims == NULL || fxpq_mul_size(filter_dims->h, filter_dims->w, &k) != FXPQ_OK ||
        k > INT32_MAX / 2) {
        return -1;
    }
    return k;
}

int32_t fxpq_depthwise_conv2d_get_buffer_size(const fxpq_dims *filter_dims)
{
    /* none: the optimized kernel decodes each channel quad's weights on the stack, the
     * reference loop each channel's (fxpq_dsp.c, fxpq_internal.h FXPQ_WCHUNK) */
    return (fxpq_depthwise_terms(filter_dims) < 0 || filter_dims->c <= 0) ? -1 : 0;
}

fxpq_status fxpq_depthwise_conv2d(const fxpq_context *ctx, const fxpq_dw_conv_params *params,
                                  const fxpq_dims *input_dims, const void *input,
                                  const fxpq_format *input_fmt, const fxpq_dims *filter_dims,
                                  const fxpq_weights *weights, const fxpq_bias *bias,
                                  const fxpq_dims *output_dims, void *output,
                                  const fxpq_format *output_fmt)
{
    fxpq_status st;
    int32_t oh, ow, pad_t, pad_l, cm, m_count, x_stride, o, n, oy, ox;
    fxpq_weighted wk;
    const fxpq_dims *id = input_dims, *fd = filter_dims, *od = output_dims;

    if (params == NULL || input == NULL || output == NULL || input_dims == NULL ||
        filter_dims == NULL || output_dims == NULL) {
        return FXPQ_ERR_NULL_POINTER;
    }
    if ((st = fxpq_check_format(input_fmt)) != FXPQ_OK ||
        (st = fxpq_check_format(output_fmt)) != FXPQ_OK) {
        return st;
    }
    if ((st = fxpq_check_dims(id, NULL)) != FXPQ_OK || (st = fxpq_check_dims(fd, NULL)) != FXPQ_OK ||
        (st = fxpq_check_dims(od, NULL)) != FXPQ_OK) {
        return st;
    }
    m_count = params->depth_multiplier;
    if (m_count <= 0) {
        return FXPQ_ERR_BAD_PARAM;
    }
    if (fxpq_mul_size(id->c, m_count, &cm) != FXPQ_OK || fd->n != 1 || fd->c != cm ||
        od->n != id->n || od->c != cm) {
        return FXPQ_ERR_BAD_DIMS;
    }
    if ((st = fxpq_conv_output_size(id->h, fd->h, params->stride.h, params->dilation.h,
                                    params->padding, &oh, &pad_t)) != FXPQ_OK ||
        (st = fxpq_conv_output_size(id->w, fd->w, params->stride.w, params->dilation.w,
                                    params->padding, &ow, &pad_l)) != FXPQ_OK) {
        return st;
    }
    if (od->h != oh || od->w != ow) {
        return FXPQ_ERR_BAD_DIMS;
    }
    if (fxpq_mul_size(id->c, params->dilation.w, &x_stride) != FXPQ_OK) {
        return FXPQ_ERR_BAD_DIMS;
    }
    wk = fxpq_weighted_prepare(&st, FXPQ_OP_DEPTHWISE_CONV_2D, ctx, params->activation, input, input_fmt, weights, bias,
                               cm, fxpq_depthwise_terms(fd), fxpq_depthwise_conv2d_get_buffer_size(fd),
                               output, output_fmt);
    if (st != FXPQ_OK) {
        return st;
    }
#if FXPQ_USE_DSP
    {
        const fxpq_geometry g = {*id, *fd, *od, params->stride, params->dilation, pad_t, pad_l,
                                 m_count};
        if (fxpq_dsp_depthwise_conv2d(&wk, &g, input)) {
            return FXPQ_OK;
        }
    }
#endif
    for (o = 0; o < cm; ++o) {
        const int32_t c = o / m_count;
        int16_t wbuf[FXPQ_WCHUNK];
        const fxpq_channel ch = fxpq_weighted_channel(&wk, o, wbuf);
        for (n = 0; n < id->n; ++n) {
            for (oy = 0; oy < oh; ++oy) {
                const int32_t iy0 = oy * params->stride.h - pad_t;
                int32_t ky0, ky1;
                fxpq_valid_taps(iy0, params->dilation.h, fd->h, id->h, &ky0, &ky1);
                for (ox = 0; ox < ow; ++ox) {
                    const int32_t ix0 = ox * params->stride.w - pad_l;
                    int32_t kx0, kx1, ky;
                    int64_t acc = 0;
                    fxpq_valid_taps(ix0, params->dilation.w, fd->w, id->w, &kx0, &kx1);
                    if (kx1 > kx0) {
                        for (ky = ky0; ky < ky1; ++ky) {
                            const int32_t iy = iy0 + ky * params->dilation.h;
                            const int32_t ix = ix0 + kx0 * params->dilation.w;
                            const int32_t first = ((n * id->h + iy) * id->w + ix) * id->c + c;
                            acc += fxpq_weighted_dot(&wk, &ch, fxpq_elem(input, wk.in_es, first), x_stride,
                                                     ky * fd->w + kx0, kx1 - kx0);
                        }
                    }
                    fxpq_weighted_store(&wk, &ch.q, ((n * oh + oy) * ow + ox) * cm + o, acc);
                }
            }
        }
    }
    return FXPQ_OK;
}
