/*
 * fxpq_conv2d.c - Conv 2D (numerics.md section 4).
 *
 * Loop order: output channel outermost, so each channel's packed weights are unpacked once (on
 * the stack when they fit FXPQ_WCHUNK, else piece by piece per dot product); then every pixel; then the receptive field, one contiguous run of
 * input channels (whole valid kernel row when the width dilation is 1) per dot product.
 */
#include "fxpq_internal.h"

/* Terms of one dot product (kh * kw * C), or -1. */
static int32_t fxpq_conv2d_terms(const fxpq_dims *filter_dims)
{
    int32_t k;
    if (filter_dims == NULL || fxpq_mul_size(filter_dims->h, filter_dims->w, &k) != FXPQ_OK ||
        fxpq_mul_size(k, filter_dims->c, &k) != FXPQ_OK || k > INT32_MAX / 2) {
        return -1;
    }
    return k;
}

int32_t fxpq_conv2d_get_buffer_size(const fxpq_dims *filter_dims)
{
    const int32_t k = fxpq_conv2d_terms(filter_dims);
    return k < 0 ? -1 : fxpq_dsp_conv_scratch(k, filter_dims->h == 1 && filter_dims->w == 1);
}

/* Output pixels whose dot products the reference loop accumulates together (int64, stack). */
#define FXPQ_REF_PIXELS 8

/* The part of output pixel (n, oy, ox)'s dot product that meets weights [c0, c0 + len), held
 * unpacked in w: its receptive field is one contiguous run of input channels per kernel row when
 * the width dilation is 1 (per tap otherwise), each run clipped to the piece. */
static inline int64_t fxpq_conv_pixel_dot(const fxpq_weighted *wk, const fxpq_conv_params *params,
                                          const fxpq_dims *id, const fxpq_dims *fd, int32_t iy0,
                                          int32_t ky0, int32_t ky1, int32_t n, int32_t ox, int32_t pad_l,
                                          const void *input, const int16_t *w, int32_t c0, int32_t len)
{
    const int32_t ix0 = ox * params->stride.w - pad_l;
    const int32_t dw = params->dilation.w, c = id->c, c1 = c0 + len;
    const int32_t run = dw == 1 ? 0 : c; /* 0: a whole kernel row per run */
    int32_t kx0, kx1, ky, kx;
    int64_t acc = 0;
    fxpq_valid_taps(ix0, dw, fd->w, id->w, &kx0, &kx1);
    for (ky = ky0; ky < ky1 && kx1 > kx0; ++ky) {
        const int32_t row = (n * id->h + iy0 + ky * params->dilation.h) * id->w;
        for (kx = kx0; kx < kx1; kx = run == 0 ? kx1 : kx + 1) {
            /* terms [t0, t1) of the weights, input from element e */
            const int32_t t0 = (ky * fd->w + kx) * c, t1 = run == 0 ? (ky * fd->w + kx1) * c : t0 + c;
            const int32_t a = t0 > c0 ? t0 : c0, b = t1 < c1 ? t1 : c1;
            if (a < b) {
                const int32_t e = (row + ix0 + kx * dw) * c + (a - t0);
                acc += wk->dot(fxpq_elem(input, wk->in_es, e), 1, w + (a - c0), b - a);
            }
        }
    }
    return acc;
}

fxpq_status fxpq_conv2d(const fxpq_context *ctx, const fxpq_conv_params *params,
                        const fxpq_dims *input_dims, const void *input,
                        const fxpq_format *input_fmt, const fxpq_dims *filter_dims,
                        const fxpq_weights *weights, const fxpq_bias *bias,
                        const fxpq_dims *output_dims, void *output,
                        const fxpq_format *output_fmt)
{
    fxpq_status st;
    int32_t oh, ow, pad_t, pad_l, o;
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
    if (fd->c != id->c || od->n != id->n || od->c != fd->n) {
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
    wk = fxpq_weighted_prepare(&st, FXPQ_OP_CONV_2D, ctx, params->activation, input, input_fmt, weights, bias,
                               fd->n, fxpq_conv2d_terms(fd), fxpq_conv2d_get_buffer_size(fd),
                               output, output_fmt);
    if (st != FXPQ_OK) {
        return st;
    }
#if FXPQ_USE_DSP || FXPQ_USE_CMSIS_NN
    {
        const fxpq_geometry g = {*id, *fd, *od, params->stride, params->dilation, pad_t, pad_l, 1};
#if FXPQ_USE_CMSIS_NN
        if (fxpq_cmsis_conv2d(&wk, &g, input, 0)) {
            return FXPQ_OK;
        }
#endif
#if FXPQ_USE_DSP
        if (fxpq_dsp_conv2d(&wk, &g, input)) {
            return FXPQ_OK;
        }
#endif
    }
#endif
    for (o = 0; o < fd->n; ++o) {
        int16_t wbuf[FXPQ_WCHUNK];
        const fxpq_channel ch = fxpq_weighted_channel(&wk, o, wbuf);
        int32_t n, oy, ox0, p, c0;
        /* a row that fits the stack's FXPQ_WCHUNK weights was unpacked once for the channel; a
         * longer one is unpacked piece by piece once per block of up to FXPQ_REF_PIXELS pixels
         * of an output row, whose int64 sums stay on the stack */
        for (n = 0; n < id->n; ++n) {
            for (oy = 0; oy < oh; ++oy) {
                const int32_t iy0 = oy * params->stride.h - pad_t;
                int32_t ky0, ky1;
                fxpq_valid_taps(iy0, params->dilation.h, fd->h, id->h, &ky0, &ky1);
                if (ch.w != NULL) { /* the whole row: one piece, pixel by pixel */
                    for (ox0 = 0; ox0 < ow; ++ox0) {
                        fxpq_weighted_store(&wk, &ch.q, ((n * oh + oy) * ow + ox0) * od->c + o,
                                            fxpq_conv_pixel_dot(&wk, params, id, fd, iy0, ky0, ky1, n, ox0,
                                                                pad_l, input, ch.w, 0, wk.k));
                    }
                    continue;
                }
                for (ox0 = 0; ox0 < ow; ox0 += FXPQ_REF_PIXELS) {
                    const int32_t count = ow - ox0 < FXPQ_REF_PIXELS ? ow - ox0 : FXPQ_REF_PIXELS;
                    int64_t acc[FXPQ_REF_PIXELS] = {0};
                    for (c0 = 0; c0 < wk.k; c0 += FXPQ_WCHUNK) {
                        const int32_t len = wk.k - c0 < FXPQ_WCHUNK ? wk.k - c0 : FXPQ_WCHUNK;
                        fxpq_unpack_run(ch.row, weights->bits, c0, len, wbuf);
                        for (p = 0; p < count; ++p) {
                            acc[p] += fxpq_conv_pixel_dot(&wk, params, id, fd, iy0, ky0, ky1, n, ox0 + p,
                                                          pad_l, input, wbuf, c0, len);
                        }
                    }
                    for (p = 0; p < count; ++p) {
                        fxpq_weighted_store(&wk, &ch.q, ((n * oh + oy) * ow + ox0 + p) * od->c + o, acc[p]);
                    }
                }
            }
        }
    }
    return FXPQ_OK;
}
