/*
 * harness_main.c - batch test harness: reads op cases from a file through semihosting, runs each
 * through the fxpq kernels, writes the outputs to a file (format: fxpq_harness_protocol.h).
 *
 * Every size read from the file is checked against the harness buffers before use.
 */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "fxpq_harness_protocol.h"
#include "fxpq_kernels.h"

extern void initialise_monitor_handles(void);

#define FXPQ_CASE_BYTES (1024u * 1024u)
#define FXPQ_OUT_BYTES (512u * 1024u)
#define FXPQ_SCRATCH_BYTES (64u * 1024u)

static uint32_t g_case[FXPQ_CASE_BYTES / 4];
static uint32_t g_out[FXPQ_OUT_BYTES / 4];
static uint32_t g_scratch[FXPQ_SCRATCH_BYTES / 4];

/* CMSDK APB TIMER0: a 32-bit down counter at the 25 MHz system clock */
#define TIMER0_CTRL (*(volatile uint32_t *)0x40000000u)
#define TIMER0_VALUE (*(volatile uint32_t *)0x40000004u)
#define TIMER0_RELOAD (*(volatile uint32_t *)0x40000008u)

typedef struct {
    const uint8_t *data;
    uint32_t bytes;
} harness_blob;

typedef struct {
    uint32_t id;
    uint32_t op;
    int32_t p[FXPQ_P_COUNT];
    harness_blob blob[FXPQ_BLOB_COUNT];
} harness_case;

/* ---------------------------------------------------------------- parsing ---------------- */

static int32_t parse_case(const uint32_t *w, uint32_t nbytes, harness_case *hc)
{
    uint32_t nwords = nbytes / 4, pos = 0, i, count;
    static const uint8_t empty[4] = {0, 0, 0, 0};
    memset(hc, 0, sizeof(*hc));
    for (i = 0; i < FXPQ_BLOB_COUNT; ++i) {
        hc->blob[i].data = empty;
    }
    if (nbytes % 4 != 0 || nwords < 4) {
        return FXPQ_HARNESS_ERR_BAD_RECORD;
    }
    hc->id = w[pos++];
    hc->op = w[pos++];
    count = w[pos++];
    if (count > FXPQ_P_COUNT || count > nwords - pos) {
        return FXPQ_HARNESS_ERR_BAD_RECORD;
    }
    for (i = 0; i < count; ++i) {
        hc->p[i] = (int32_t)w[pos++];
    }
    if (pos >= nwords) {
        return FXPQ_HARNESS_ERR_BAD_RECORD;
    }
    count = w[pos++];
    if (count > FXPQ_BLOB_COUNT) {
        return FXPQ_HARNESS_ERR_BAD_RECORD;
    }
    for (i = 0; i < count; ++i) {
        uint32_t bytes, words;
        if (pos >= nwords) {
            return FXPQ_HARNESS_ERR_BAD_RECORD;
        }
        bytes = w[pos++];
        words = bytes / 4 + (bytes % 4 != 0);
        if (words > nwords - pos) {
            return FXPQ_HARNESS_ERR_BAD_RECORD;
        }
        if (bytes > 0) {
            hc->blob[i].data = (const uint8_t *)&w[pos];
        }
        hc->blob[i].bytes = bytes;
        pos += words;
    }
    return FXPQ_OK;
}

static fxpq_format param_format(const harness_case *hc, int32_t first)
{
    fxpq_format f;
    f.bits = hc->p[first];
    f.frac = hc->p[first + 1];
    f.is_signed = hc->p[first + 2];
    return f;
}

static fxpq_dims param_dims(const harness_case *hc, int32_t first)
{
    fxpq_dims d;
    d.n = hc->p[first];
    d.h = hc->p[first + 1];
    d.w = hc->p[first + 2];
    d.c = hc->p[first + 3];
    return d;
}

static fxpq_tile param_tile(const harness_case *hc, int32_t first)
{
    fxpq_tile t;
    t.h = hc->p[first];
    t.w = hc->p[first + 1];
    return t;
}

/* Elements of dims (0 when any is <= 0; saturates at 2^40 to stay comparable). */
static int64_t dims_count(const fxpq_dims *d)
{
    int64_t c = 1;
    const int32_t v[4] = {d->n, d->h, d->w, d->c};
    int i;
    for (i = 0; i < 4; ++i) {
        if (v[i] <= 0) {
            return 0;
        }
        c *= v[i];
        if (c > ((int64_t)1 << 40)) {
            c = (int64_t)1 << 40;
        }
    }
    return c;
}

/* Bytes per element of a format's storage, lenient for invalid formats (the kernel rejects). */
static int64_t elem_bytes(const fxpq_format *f)
{
    return f->bits <= 8 ? 1 : 2;
}

/* The blob must hold at least `need` bytes. */
static int32_t check_blob(const harness_case *hc, int32_t index, int64_t need)
{
    return (int64_t)hc->blob[index].bytes >= need ? FXPQ_OK : FXPQ_HARNESS_ERR_BAD_RECORD;
}

/* ---------------------------------------------------------------- running ---------------- */

static int32_t run_weighted(const harness_case *hc, const fxpq_dims *in_d, const fxpq_format *in_f,
                            const fxpq_dims *out_d, const fxpq_format *out_f, void *out,
                            const fxpq_context *ctx)
{
    const int32_t *p = hc->p;
    fxpq_dims fd = param_dims(hc, FXPQ_P_FILTER_N);
    fxpq_weights wt;
    fxpq_bias bias;
    int32_t out_ch = out_d->c, k, row;
    wt.data = hc->blob[FXPQ_BLOB_INPUT2_OR_WEIGHTS].data;
    wt.bits = p[FXPQ_P_W_BITS];
    wt.frac = p[FXPQ_P_W_FRAC];
    wt.per_channel_frac = NULL;
    bias.data = NULL;
    bias.frac = p[FXPQ_P_BIAS_FRAC];
    if (out_ch > 0) {
        if (hc->blob[FXPQ_BLOB_WEIGHT_FRACS].bytes > 0) {
            if (check_blob(hc, FXPQ_BLOB_WEIGHT_FRACS, out_ch) != FXPQ_OK) {
                return FXPQ_HARNESS_ERR_BAD_RECORD;
            }
            wt.per_channel_frac = (const int8_t *)hc->blob[FXPQ_BLOB_WEIGHT_FRACS].data;
        }
        if (p[FXPQ_P_HAS_BIAS]) {
            if (check_blob(hc, FXPQ_BLOB_BIAS, (int64_t)out_ch * 4) != FXPQ_OK) {
                return FXPQ_HARNESS_ERR_BAD_RECORD;
            }
            bias.data = (const int32_t *)(const void *)hc->blob[FXPQ_BLOB_BIAS].data;
        }
        /* packed weights: out_ch runs of K values */
        k = hc->op == FXPQ_HOP_FULLY_CONNECTED ? in_d->c
            : hc->op == FXPQ_HOP_CONV2D         ? fd.h * fd.w * fd.c
                                                : fd.h * fd.w;
        row = fxpq_packed_row_size(wt.bits, k);
        if (row > 0 && check_blob(hc, FXPQ_BLOB_INPUT2_OR_WEIGHTS, (int64_t)row * out_ch) != FXPQ_OK) {
            return FXPQ_HARNESS_ERR_BAD_RECORD;
        }
    }
    if (hc->op == FXPQ_HOP_CONV2D) {
        fxpq_conv_params cp;
        cp.stride = param_tile(hc, FXPQ_P_STRIDE_H);
        cp.dilation = param_tile(hc, FXPQ_P_DILATION_H);
        cp.padding = (fxpq_padding)p[FXPQ_P_PADDING];
        cp.activation = (fxpq_activation)p[FXPQ_P_ACTIVATION];
        return fxpq_conv2d(ctx, &cp, in_d, hc->blob[FXPQ_BLOB_INPUT].data, in_f, &fd, &wt, &bias,
                           out_d, out, out_f);
    }
    if (hc->op == FXPQ_HOP_DEPTHWISE_CONV2D) {
        fxpq_dw_conv_params dp;
        dp.stride = param_tile(hc, FXPQ_P_STRIDE_H);
        dp.dilation = param_tile(hc, FXPQ_P_DILATION_H);
        dp.padding = (fxpq_padding)p[FXPQ_P_PADDING];
        dp.activation = (fxpq_activation)p[FXPQ_P_ACTIVATION];
        dp.depth_multiplier = p[FXPQ_P_DEPTH_MULTIPLIER];
        return fxpq_depthwise_conv2d(ctx, &dp, in_d, hc->blob[FXPQ_BLOB_INPUT].data, in_f, &fd,
                                     &wt, &bias, out_d, out, out_f);
    }
    {
        fxpq_fc_params fp;
        fp.activation = (fxpq_activation)p[FXPQ_P_ACTIVATION];
        return fxpq_fully_connected(ctx, &fp, in_d->n, in_d->c, out_d->c,
                                    hc->blob[FXPQ_BLOB_INPUT].data, in_f, &wt, &bias, out, out_f);
    }
}

/* ---------------------------------------------------------------- stock TFLM ops --------- */

static fxpq_stock_quant stock_quant(const int32_t *w, int32_t first)
{
    fxpq_stock_quant q;
    union {
        int32_t i;
        float f;
    } bits;
    bits.i = w[first + 1];
    q.type = w[first];
    q.scale = bits.f;
    q.zero_point = w[first + 2];
    return q;
}

static fxpq_stock_shape stock_shape(const int32_t *w, int32_t first)
{
    fxpq_stock_shape s;
    int32_t d;
    s.rank = w[first];
    for (d = 0; d < FXPQ_STOCK_MAX_RANK; ++d) {
        s.dims[d] = w[first + 1 + d];
    }
    return s;
}

static int64_t stock_count(const fxpq_stock_shape *s)
{
    int64_t n = 1;
    int32_t d;
    if (s->rank < 0 || s->rank > FXPQ_STOCK_MAX_RANK) {
        return -1;
    }
    for (d = 0; d < s->rank; ++d) {
        if (s->dims[d] < 0) {
            return -1;
        }
        n *= s->dims[d];
        if (n > INT32_MAX) {
            return -1;
        }
    }
    return n;
}

static int64_t stock_type_bytes(int32_t type)
{
    return type == FXPQ_TFLITE_INT16 ? 2 : 1;
}

/* One FXPQ_HOP_STOCK case: prepare (not timed), then the kernel (timed). */
static int32_t run_stock(const harness_case *hc, uint32_t *out_bytes, uint32_t *ticks)
{
    const int32_t *w = (const int32_t *)(const void *)hc->blob[FXPQ_BLOB_WEIGHT_FRACS].data;
    fxpq_stock_quant q1, q2, qo;
    fxpq_stock_shape s1, s2;
    int64_t n1, n2, need;
    const void *in1 = hc->blob[FXPQ_BLOB_INPUT].data, *in2 = hc->blob[FXPQ_BLOB_INPUT2_OR_WEIGHTS].data;
    void *out = g_out;
    int32_t st = FXPQ_OK, size;
    uint32_t t0;
    union {
        fxpq_stock_requantize_params rq;
        fxpq_stock_mul_params mul;
        fxpq_stock_add_params add;
        fxpq_stock_sigmoid_params sig;
        fxpq_stock_hard_swish_params hs;
        fxpq_stock_mean_params mean;
        fxpq_stock_elu_params elu;
    } prm;

    if (hc->blob[FXPQ_BLOB_WEIGHT_FRACS].bytes < 4u * FXPQ_SW_COUNT) {
        return FXPQ_HARNESS_ERR_BAD_RECORD;
    }
    q1 = stock_quant(w, FXPQ_SW_TYPE1);
    q2 = stock_quant(w, FXPQ_SW_TYPE2);
    qo = stock_quant(w, FXPQ_SW_TYPE_OUT);
    s1 = stock_shape(w, FXPQ_SW_RANK1);
    s2 = stock_shape(w, FXPQ_SW_RANK2);
    n1 = stock_count(&s1);
    n2 = stock_count(&s2);
    if (n1 < 0 || n2 < 0 || w[FXPQ_SW_OUT_COUNT] < 0 ||
        (int64_t)hc->blob[FXPQ_BLOB_INPUT].bytes < n1 * stock_type_bytes(q1.type) ||
        (int64_t)hc->blob[FXPQ_BLOB_INPUT2_OR_WEIGHTS].bytes < n2 * stock_type_bytes(q2.type)) {
        return FXPQ_HARNESS_ERR_BAD_RECORD;
    }
    need = (int64_t)w[FXPQ_SW_OUT_COUNT] * stock_type_bytes(qo.type);
    if (need > (int64_t)sizeof(g_out)) {
        return FXPQ_HARNESS_ERR_TOO_LARGE;
    }
    *out_bytes = (uint32_t)need;
    size = (int32_t)n1;

    switch (w[FXPQ_SW_OP]) { /* prepare */
    case FXPQ_SOP_REQUANTIZE:
        st = fxpq_stock_requantize_prepare(&q1, &qo, &prm.rq);
        break;
    case FXPQ_SOP_MUL:
        st = fxpq_stock_mul_prepare(&q1, &q2, &qo, w[FXPQ_SW_ACTIVATION], &prm.mul);
        break;
    case FXPQ_SOP_ADD:
    case FXPQ_SOP_SUB:
        st = fxpq_stock_add_prepare(&q1, &q2, &qo, w[FXPQ_SW_ACTIVATION], w[FXPQ_SW_OP] == FXPQ_SOP_SUB,
                                    &prm.add);
        break;
    case FXPQ_SOP_LOGISTIC:
        st = fxpq_stock_logistic_prepare(&q1, &qo, &prm.sig);
        break;
    case FXPQ_SOP_TANH:
        st = fxpq_stock_tanh_prepare(&q1, &qo, &prm.sig);
        break;
    case FXPQ_SOP_HARD_SWISH:
        st = fxpq_stock_hard_swish_prepare(&q1, &qo, &prm.hs);
        break;
    case FXPQ_SOP_MEAN:
        st = fxpq_stock_mean_prepare(&q1, &qo, w[FXPQ_SW_EXTRA1], &prm.mean);
        break;
    case FXPQ_SOP_ELU:
        st = fxpq_stock_elu_prepare(&q1, &qo, &prm.elu);
        break;
    default:
        break;
    }
    if (st != FXPQ_OK) {
        return st;
    }
    t0 = TIMER0_VALUE;
    switch (w[FXPQ_SW_OP]) {
    case FXPQ_SOP_REQUANTIZE:
        st = fxpq_stock_requantize(&prm.rq, size, in1, out);
        break;
    case FXPQ_SOP_MUL:
        st = fxpq_stock_mul(&prm.mul, &s1, in1, &s2, in2, out);
        break;
    case FXPQ_SOP_ADD:
    case FXPQ_SOP_SUB:
        st = fxpq_stock_add(&prm.add, &s1, in1, &s2, in2, out);
        break;
    case FXPQ_SOP_LOGISTIC:
        st = fxpq_stock_logistic_s8(&prm.sig, size, (const int8_t *)in1, (int8_t *)out);
        break;
    case FXPQ_SOP_TANH:
        st = fxpq_stock_tanh_s8(&prm.sig, size, (const int8_t *)in1, (int8_t *)out);
        break;
    case FXPQ_SOP_ELU:
        st = fxpq_stock_elu_s8(&prm.elu, size, (const int8_t *)in1, (int8_t *)out);
        break;
    case FXPQ_SOP_HARD_SWISH:
        st = fxpq_stock_hard_swish_s8(&prm.hs, size, (const int8_t *)in1, (int8_t *)out);
        break;
    case FXPQ_SOP_MAXIMUM:
    case FXPQ_SOP_MINIMUM:
        st = fxpq_stock_max_min(w[FXPQ_SW_OP] == FXPQ_SOP_MAXIMUM, (int32_t)stock_type_bytes(q1.type), &s1,
                                in1, &s2, in2, out);
        break;
    case FXPQ_SOP_MEAN:
        st = fxpq_stock_mean(&prm.mean, &s1, (uint32_t)w[FXPQ_SW_EXTRA0], in1, out);
        break;
    case FXPQ_SOP_RESIZE_NEAREST_NEIGHBOR:
        st = fxpq_stock_resize_nearest_neighbor(&s1, w[FXPQ_SW_EXTRA0], w[FXPQ_SW_EXTRA1], w[FXPQ_SW_EXTRA2],
                                                w[FXPQ_SW_EXTRA3], (int32_t)stock_type_bytes(q1.type), in1,
                                                out);
        break;
    case FXPQ_SOP_TRANSPOSE:
        st = fxpq_stock_transpose(&s1, &w[FXPQ_SW_EXTRA0], (int32_t)stock_type_bytes(q1.type), in1, out);
        break;
    case FXPQ_SOP_CONCATENATION: {
        const void *inputs[2];
        inputs[0] = in1;
        inputs[1] = in2;
        st = fxpq_stock_concatenation(2, inputs, &w[FXPQ_SW_EXTRA2], w[FXPQ_SW_EXTRA0], w[FXPQ_SW_EXTRA1],
                                      (int32_t)stock_type_bytes(q1.type), out);
        break;
    }
    default:
        st = FXPQ_HARNESS_ERR_BAD_OP;
        break;
    }
    *ticks = t0 - TIMER0_VALUE;
    return st;
}

static int32_t run_case(const harness_case *hc, uint32_t *out_bytes, uint32_t *ticks)
{
    const int32_t *p = hc->p;
    fxpq_dims in_d = param_dims(hc, FXPQ_P_IN_N);
    fxpq_dims out_d = param_dims(hc, FXPQ_P_OUT_N);
    fxpq_format in_f = param_format(hc, FXPQ_P_IN_BITS);
    fxpq_format in2_f = param_format(hc, FXPQ_P_IN2_BITS);
    fxpq_format out_f = param_format(hc, FXPQ_P_OUT_BITS);
    int64_t in_count = dims_count(&in_d), out_count, need;
    int32_t size = (int32_t)(in_count > INT32_MAX ? 0 : in_count);
    void *out = g_out;
    fxpq_context ctx;
    fxpq_elementwise_params ep;
    fxpq_pool_params pp;
    int32_t st;
    uint32_t t0;

    ctx.buf = g_scratch;
    ctx.size = (int32_t)sizeof(g_scratch);
    ep.activation = (fxpq_activation)p[FXPQ_P_ACTIVATION];
    pp.filter = param_tile(hc, FXPQ_P_POOL_H);
    pp.stride = param_tile(hc, FXPQ_P_STRIDE_H);
    pp.padding = (fxpq_padding)p[FXPQ_P_PADDING];
    pp.activation = (fxpq_activation)p[FXPQ_P_ACTIVATION];

    if (hc->op == FXPQ_HOP_STOCK) {
        return run_stock(hc, out_bytes, ticks);
    }
    /* output size, input blob sizes */
    if (hc->op == FXPQ_HOP_QUANTIZE || hc->op == FXPQ_HOP_DEQUANTIZE || hc->op == FXPQ_HOP_REQUANTIZE ||
        hc->op == FXPQ_HOP_ADD || hc->op == FXPQ_HOP_LEAKY_RELU) {
        out_count = in_count;
    } else if (hc->op == FXPQ_HOP_CONCATENATION) {
        out_count = (p[FXPQ_P_IN2_C] > 0 && in_d.c > 0) ? in_count / in_d.c * ((int64_t)in_d.c + p[FXPQ_P_IN2_C]) : 0;
    } else {
        out_count = dims_count(&out_d);
    }
    need = out_count * (hc->op == FXPQ_HOP_DEQUANTIZE ? 4 : elem_bytes(&out_f));
    if (need > (int64_t)sizeof(g_out)) {
        return FXPQ_HARNESS_ERR_TOO_LARGE;
    }
    *out_bytes = (uint32_t)need;
    need = in_count * (hc->op == FXPQ_HOP_QUANTIZE ? 4 : elem_bytes(&in_f));
    if (check_blob(hc, FXPQ_BLOB_INPUT, need) != FXPQ_OK) {
        return FXPQ_HARNESS_ERR_BAD_RECORD;
    }
    if (hc->op == FXPQ_HOP_CONCATENATION &&
        check_blob(hc, FXPQ_BLOB_INPUT2_OR_WEIGHTS,
                   (in_d.c > 0 ? in_count / in_d.c : 0) * (p[FXPQ_P_IN2_C] > 0 ? p[FXPQ_P_IN2_C] : 0) *
                       elem_bytes(&in2_f)) != FXPQ_OK) {
        return FXPQ_HARNESS_ERR_BAD_RECORD;
    }
    if (hc->op == FXPQ_HOP_ADD && check_blob(hc, FXPQ_BLOB_INPUT2_OR_WEIGHTS, in_count * elem_bytes(&in2_f)) != FXPQ_OK) {
        return FXPQ_HARNESS_ERR_BAD_RECORD;
    }

    t0 = TIMER0_VALUE;
    switch (hc->op) {
    case FXPQ_HOP_CONV2D:
    case FXPQ_HOP_DEPTHWISE_CONV2D:
    case FXPQ_HOP_FULLY_CONNECTED:
        st = run_weighted(hc, &in_d, &in_f, &out_d, &out_f, out, &ctx);
        break;
    case FXPQ_HOP_ADD:
        st = fxpq_add(&ep, size, hc->blob[FXPQ_BLOB_INPUT].data, &in_f,
                      hc->blob[FXPQ_BLOB_INPUT2_OR_WEIGHTS].data, &in2_f, out, &out_f);
        break;
    case FXPQ_HOP_MAX_POOL2D:
        st = fxpq_max_pool2d(&pp, &in_d, hc->blob[FXPQ_BLOB_INPUT].data, &in_f, &out_d, out, &out_f);
        break;
    case FXPQ_HOP_AVERAGE_POOL2D:
        st = fxpq_average_pool2d(&pp, &in_d, hc->blob[FXPQ_BLOB_INPUT].data, &in_f, &out_d, out, &out_f);
        break;
    case FXPQ_HOP_GLOBAL_AVERAGE_POOL2D:
        st = fxpq_global_average_pool2d(&in_d, hc->blob[FXPQ_BLOB_INPUT].data, &in_f, out, &out_f);
        break;
    case FXPQ_HOP_QUANTIZE:
        st = fxpq_quantize(size, (const float *)(const void *)hc->blob[FXPQ_BLOB_INPUT].data, out, &out_f);
        break;
    case FXPQ_HOP_DEQUANTIZE:
        st = fxpq_dequantize(size, hc->blob[FXPQ_BLOB_INPUT].data, &in_f, (float *)out);
        break;
    case FXPQ_HOP_REQUANTIZE:
        st = fxpq_requantize(&ep, size, hc->blob[FXPQ_BLOB_INPUT].data, &in_f, out, &out_f);
        break;
    case FXPQ_HOP_CONCATENATION:
        st = fxpq_concatenation(in_d.n * in_d.h * in_d.w, in_d.c, hc->blob[FXPQ_BLOB_INPUT].data, &in_f,
                                p[FXPQ_P_IN2_C], hc->blob[FXPQ_BLOB_INPUT2_OR_WEIGHTS].data, &in2_f, out,
                                &out_f);
        break;
    case FXPQ_HOP_LEAKY_RELU: {
        fxpq_leaky_relu_params lp;
        lp.alpha_shift = p[FXPQ_P_ALPHA_SHIFT];
        st = fxpq_leaky_relu(&lp, size, hc->blob[FXPQ_BLOB_INPUT].data, &in_f, out, &out_f);
        break;
    }
    case FXPQ_HOP_ZERO_PAD2D: {
        fxpq_pad_params zp;
        zp.top = p[FXPQ_P_PAD_TOP];
        zp.bottom = p[FXPQ_P_PAD_BOTTOM];
        zp.left = p[FXPQ_P_PAD_LEFT];
        zp.right = p[FXPQ_P_PAD_RIGHT];
        st = fxpq_zero_pad2d(&zp, &in_d, hc->blob[FXPQ_BLOB_INPUT].data, &in_f, &out_d, out, &out_f);
        break;
    }
    default:
        st = FXPQ_HARNESS_ERR_BAD_OP;
        break;
    }
    *ticks = t0 - TIMER0_VALUE;
    return st;
}

/* ---------------------------------------------------------------- file I/O --------------- */

static int write_words(FILE *f, const uint32_t *w, uint32_t n)
{
    return fwrite(w, 4, n, f) == n;
}

static int write_result(FILE *f, uint32_t id, int32_t status, uint32_t ticks, const void *data,
                        uint32_t bytes)
{
    static const uint8_t pad[4] = {0, 0, 0, 0};
    uint32_t head[4];
    head[0] = id;
    head[1] = (uint32_t)status;
    head[2] = ticks;
    head[3] = bytes;
    if (!write_words(f, head, 4)) {
        return 0;
    }
    if (bytes > 0 && fwrite(data, 1, bytes, f) != bytes) {
        return 0;
    }
    return (bytes % 4 == 0) || fwrite(pad, 1, 4 - bytes % 4, f) == 4 - bytes % 4;
}

/* Skip `bytes` of input that do not fit the case buffer. */
static int skip_bytes(FILE *f, uint32_t bytes)
{
    while (bytes > 0) {
        uint32_t chunk = bytes < sizeof(g_case) ? bytes : (uint32_t)sizeof(g_case);
        if (fread(g_case, 1, chunk, f) != chunk) {
            return 0;
        }
        bytes -= chunk;
    }
    return 1;
}

#ifdef FXPQ_COVERAGE
/* The coverage build (mk/coverage.mk): every instrumented object's profile, serialized by libgcov
 * into its .gcda file on the host. */
struct gcov_info;
extern const struct gcov_info *const __start_gcov_info[];
extern const struct gcov_info *const __stop_gcov_info[];
void __gcov_info_to_gcda(const struct gcov_info *info, void (*filename_fn)(const char *, void *),
                         void (*dump_fn)(const void *, unsigned, void *),
                         void *(*allocate_fn)(unsigned, void *), void *arg);

typedef struct {
    FILE *file;
    int ok;
} coverage_sink;

static void coverage_open(const char *name, void *arg)
{
    coverage_sink *sink = (coverage_sink *)arg;
    sink->file = fopen(name, "wb");
    sink->ok = sink->file != NULL;
}

static void coverage_write(const void *data, unsigned bytes, void *arg)
{
    coverage_sink *sink = (coverage_sink *)arg;
    if (sink->file != NULL && fwrite(data, 1, bytes, sink->file) != bytes) {
        sink->ok = 0;
    }
}

static void *coverage_allocate(unsigned bytes, void *arg)
{
    /* only value-profiling counters ask for memory; --coverage has none */
    static uint32_t pool[256];
    static unsigned used;
    void *p = NULL;
    (void)arg;
    bytes = (bytes + 3u) / 4u;
    if (used + bytes <= sizeof(pool) / 4u) {
        p = &pool[used];
        used += bytes;
    }
    return p;
}

static int dump_coverage(void)
{
    const struct gcov_info *const *info;
    for (info = __start_gcov_info; info < __stop_gcov_info; ++info) {
        coverage_sink sink = {NULL, 0};
        __gcov_info_to_gcda(*info, coverage_open, coverage_write, coverage_allocate, &sink);
        if (sink.file == NULL || fclose(sink.file) != 0 || !sink.ok) {
            return 0;
        }
    }
    return 1;
}
#endif

int main(void)
{
    FILE *in, *out;
    uint32_t head[3], i;

    initialise_monitor_handles();
    TIMER0_CTRL = 0;
    TIMER0_RELOAD = 0xFFFFFFFFu;
    TIMER0_VALUE = 0xFFFFFFFFu;
    TIMER0_CTRL = 1u;

    in = fopen(FXPQ_HARNESS_CASES_FILE, "rb");
    if (in == NULL) {
        printf("fxpq harness: cannot open %s\n", FXPQ_HARNESS_CASES_FILE);
        return FXPQ_HARNESS_EXIT_NO_INPUT;
    }
    if (fread(head, 4, 3, in) != 3 || head[0] != FXPQ_HARNESS_MAGIC_CASES ||
        head[1] != FXPQ_HARNESS_VERSION) {
        printf("fxpq harness: bad header in %s\n", FXPQ_HARNESS_CASES_FILE);
        return FXPQ_HARNESS_EXIT_BAD_HEADER;
    }
    out = fopen(FXPQ_HARNESS_RESULTS_FILE, "wb");
    if (out == NULL) {
        printf("fxpq harness: cannot create %s\n", FXPQ_HARNESS_RESULTS_FILE);
        return FXPQ_HARNESS_EXIT_IO;
    }
    {
        uint32_t ohead[3];
        ohead[0] = FXPQ_HARNESS_MAGIC_RESULTS;
        ohead[1] = FXPQ_HARNESS_VERSION;
        ohead[2] = head[2];
        if (!write_words(out, ohead, 3)) {
            return FXPQ_HARNESS_EXIT_IO;
        }
    }
    for (i = 0; i < head[2]; ++i) {
        uint32_t bytes, out_bytes = 0, ticks = 0;
        int32_t st;
        harness_case hc;
        if (fread(&bytes, 4, 1, in) != 1) {
            return FXPQ_HARNESS_EXIT_IO;
        }
        if (bytes > sizeof(g_case)) {
            uint32_t id;
            if (bytes < 4 || fread(&id, 4, 1, in) != 1 || !skip_bytes(in, bytes - 4) ||
                !write_result(out, id, FXPQ_HARNESS_ERR_TOO_LARGE, 0, NULL, 0)) {
                return FXPQ_HARNESS_EXIT_IO;
            }
            continue;
        }
        if (fread(g_case, 1, bytes, in) != bytes) {
            return FXPQ_HARNESS_EXIT_IO;
        }
        st = parse_case(g_case, bytes, &hc);
        if (st == FXPQ_OK) {
            st = run_case(&hc, &out_bytes, &ticks);
        }
        if (!write_result(out, hc.id, st, ticks, g_out, st == FXPQ_OK ? out_bytes : 0)) {
            return FXPQ_HARNESS_EXIT_IO;
        }
    }
    fclose(in);
    if (fclose(out) != 0) {
        return FXPQ_HARNESS_EXIT_IO;
    }
    printf("fxpq harness: %lu cases\n", (unsigned long)head[2]);
#ifdef FXPQ_COVERAGE
    if (!dump_coverage()) {
        return FXPQ_HARNESS_EXIT_IO;
    }
#endif
    return FXPQ_HARNESS_EXIT_OK;
}
