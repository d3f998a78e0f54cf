/*
 * fxpq_internal.h - helpers shared by the kernel sources (not part of the public API).
 */
#ifndef FXPQ_INTERNAL_H
#define FXPQ_INTERNAL_H

#include "fxpq_kernels.h"
#include "fxpq_paths.h"

/* The contract's rescale needs an arithmetic (flooring) right shift of negative values. C99
 * leaves it implementation-defined; every compiler we target does it. Refuse to build otherwise. */
typedef char fxpq_assert_arithmetic_shift[((-8 >> 1) == -4) ? 1 : -1];
typedef char fxpq_assert_int64_shift[(((int64_t)-9 >> 1) == -5) ? 1 : -1];

/* ---- load / store one activation element by storage type -------------------------------- */

static inline int32_t fxpq_load(const void *p, fxpq_storage s, int32_t i)
{
    switch (s) {
    case FXPQ_STORAGE_INT8: return ((const int8_t *)p)[i];
    case FXPQ_STORAGE_UINT8: return ((const uint8_t *)p)[i];
    case FXPQ_STORAGE_INT16: return ((const int16_t *)p)[i];
    default: return ((const uint16_t *)p)[i];
    }
}

/* v must already lie in the output format's range (so it fits the storage type). */
static inline void fxpq_store(void *p, fxpq_storage s, int32_t i, int32_t v)
{
    switch (s) {
    case FXPQ_STORAGE_INT8: ((int8_t *)p)[i] = (int8_t)v; break;
    case FXPQ_STORAGE_UINT8: ((uint8_t *)p)[i] = (uint8_t)v; break;
    case FXPQ_STORAGE_INT16: ((int16_t *)p)[i] = (int16_t)v; break;
    default: ((uint16_t *)p)[i] = (uint16_t)v; break;
    }
}

/* Bytes per element of a storage type (inline twin of fxpq_storage_size). */
static inline int32_t fxpq_elem_size(fxpq_storage s)
{
    return (s == FXPQ_STORAGE_INT8 || s == FXPQ_STORAGE_UINT8) ? 1 : 2;
}

/* Address of element i of a buffer whose elements take es bytes. */
static inline const void *fxpq_elem(const void *p, int32_t es, int32_t i)
{
    return (const uint8_t *)p + (size_t)i * (size_t)es;
}

/* Wrapping int64 arithmetic (no undefined behaviour; identical to numpy's int64 wrap-around,
 * which only matters outside the contract's ranges). */
static inline int64_t fxpq_wrap_add64(int64_t a, int64_t b)
{
    return (int64_t)((uint64_t)a + (uint64_t)b);
}

static inline int64_t fxpq_wrap_shl64(int64_t v, int32_t s)
{
    return (int64_t)((uint64_t)v << s);
}

#define FXPQ_LIMIT62 ((int64_t)1 << 62)

/* THE rescale rule (numerics.md section 3); fxpq_rescale() is its public face. */
static inline int64_t fxpq_rescale_inline(int64_t v, int32_t from_frac, int32_t to_frac)
{
    const int64_t shift = (int64_t)to_frac - (int64_t)from_frac;
    if (shift < 0) {
        const int64_t s = -shift;
        if (s >= 63) {
            return 0;
        }
        /* (v + 2^(s-1)) >> s, arithmetic shift: round half up */
        return fxpq_wrap_add64(v, (int64_t)1 << (s - 1)) >> s;
    } else {
        const int32_t s = shift > 62 ? 62 : (int32_t)shift;
        const int64_t bound = FXPQ_LIMIT62 >> s;
        if (v >= bound) {
            return FXPQ_LIMIT62;
        }
        if (v <= -bound) {
            return -FXPQ_LIMIT62;
        }
        return fxpq_wrap_shl64(v, s);
    }
}

/* clamp(rescale(v, from_frac, to_frac), lo, hi). With [lo, hi] the activation bounds (which lie
 * inside the output format's range) this is saturate-then-activation in one step. */
static inline int32_t fxpq_rescale_clamp(int64_t v, int32_t from_frac, int32_t to_frac, int32_t lo,
                                         int32_t hi)
{
    const int64_t r = fxpq_rescale_inline(v, from_frac, to_frac);
    return (int32_t)(r < lo ? lo : (r > hi ? hi : r));
}

/* ---- dot products: sum_i x[i * stride] * w[i] ---------------------------------------------
 * x in an activation storage type, w unpacked int16. The int32 variants are used only when the
 * contract's width rule guarantees the sum fits; they wrap (defined behaviour) otherwise. The
 * returned partial sums are added up by the caller in int64. */
typedef int64_t (*fxpq_dot_fn)(const void *x, int32_t stride, const int16_t *w, int32_t n);

/* Select the dot product for an input storage type and accumulator width. */
fxpq_dot_fn fxpq_select_dot(fxpq_storage input_storage, int32_t acc64);

/* ---- validation helpers ------------------------------------------------------------------ */

/* FXPQ_OK when the four dims are positive and their product fits int32 (*count). */
fxpq_status fxpq_check_dims(const fxpq_dims *d, int32_t *count);

/* a * b into *out when both are positive and the product fits int32. */
fxpq_status fxpq_mul_size(int32_t a, int32_t b, int32_t *out);

/* FXPQ_OK when p is suitably aligned for storage s. */
fxpq_status fxpq_check_aligned(const void *p, fxpq_storage s);

fxpq_status fxpq_check_activation(fxpq_activation act);

/* ---- an op's output: buffer, storage type, frac and activation clamp --------------------- */

typedef struct {
    void *data;
    fxpq_storage storage;
    int32_t frac;
    int32_t lo, hi; /* activation clamp, inside the output format's range */
} fxpq_output;

/* Describe an output (fmt already validated); the status is fxpq_activation_bounds'. Alignment
 * is checked separately (fxpq_check_io_aligned), where each kernel's order of checks puts it. */
static inline fxpq_status fxpq_output_init(fxpq_output *out, void *data, const fxpq_format *fmt,
                                           fxpq_activation act)
{
    int32_t lo = 0, hi = 0; /* locals: *out's address need not escape the caller */
    const fxpq_status st = fxpq_activation_bounds(fmt, act, &lo, &hi);
    out->data = data;
    out->storage = fxpq_storage_of(fmt);
    out->frac = fmt->frac;
    out->lo = lo;
    out->hi = hi;
    return st;
}

/* FXPQ_ERR_MISALIGNED unless the input (storage in_s) and then the output are aligned. */
static inline fxpq_status fxpq_check_io_aligned(const void *input, fxpq_storage in_s,
                                                const fxpq_output *out)
{
    fxpq_status st = fxpq_check_aligned(input, in_s);
    return st != FXPQ_OK ? st : fxpq_check_aligned(out->data, out->storage);
}

/* The checks and output set-up every one-input elementwise kernel (requantize, leaky ReLU)
 * starts with: pointers, both formats, size, then the output and the alignment of both. */
static inline fxpq_status fxpq_elementwise_prepare(const void *input, const fxpq_format *input_fmt,
                                                   void *output, const fxpq_format *output_fmt,
                                                   int32_t size, fxpq_activation act,
                                                   fxpq_storage *in_s, fxpq_output *out)
{
    fxpq_status st;
    if (input == NULL || output == NULL) {
        return FXPQ_ERR_NULL_POINTER;
    }
    if ((st = fxpq_check_format(input_fmt)) != FXPQ_OK ||
        (st = fxpq_check_format(output_fmt)) != FXPQ_OK) {
        return st;
    }
    if (size <= 0) {
        return FXPQ_ERR_BAD_DIMS;
    }
    *in_s = fxpq_storage_of(input_fmt);
    if ((st = fxpq_output_init(out, output, output_fmt, act)) != FXPQ_OK) {
        return st;
    }
    return fxpq_check_io_aligned(input, *in_s, out);
}

/* Element i of the output: v (frac v_frac) rescaled, saturated, activation-clamped in one step. */
static inline void fxpq_output_store(const fxpq_output *out, int32_t i, int64_t v, int32_t v_frac)
{
    fxpq_store(out->data, out->storage, i,
               fxpq_rescale_clamp(v, v_frac, out->frac, out->lo, out->hi));
}

/* ---- the weighted kernels (conv, depthwise conv, fully connected) -------------------------- */

/* Everything a weighted kernel needs once its shapes are checked. */
typedef struct {
    fxpq_output out;
    const fxpq_weights *weights;
    const fxpq_bias *bias;
    int32_t in_frac;
    fxpq_storage in_s;
    int32_t in_es;     /* bytes per input element */
    int32_t k;         /* weights per output channel */
    int32_t row_bytes; /* bytes of one output channel's packed run */
    fxpq_dot_fn dot;   /* for the input storage and the accumulator width of k terms */
    int32_t acc64;     /* the contract's width rule asks for an int64 accumulator */
    int32_t in_bits;   /* input format's bits and signedness */
    int32_t in_signed;
    void *scratch;     /* the caller's scratch (optimized kernels) and the bytes requested */
    int32_t scratch_size;
} fxpq_weighted;

/* The weighted kernels' common checks, after their own shape checks and in this order:
 * activation, weights and bias of out_channels channels, k (FXPQ_ERR_BAD_DIMS when k <= 0 or a
 * packed run does not fit int32), scratch of scratch_bytes (the kernel's *_get_buffer_size(); a
 * NULL buffer is accepted when it is 0), alignment of input and output, and that this build has
 * the op's path for the input storage and weight width (fxpq_kernel_path_built; op: FXPQ_OP_*).
 * Returned by value (status in *st): the kernel's copy is then never seen outside the kernel, so
 * the compiler keeps its fields in registers across the dot-product calls. */
fxpq_weighted fxpq_weighted_prepare(fxpq_status *st, int32_t op, const fxpq_context *ctx, fxpq_activation act,
                                    const void *input, const fxpq_format *input_fmt,
                                    const fxpq_weights *weights, const fxpq_bias *bias,
                                    int32_t out_channels, int32_t k, int32_t scratch_bytes,
                                    void *output, const fxpq_format *output_fmt);

/* Per-output-channel constants: accumulator frac and aligned bias. */
typedef struct {
    int32_t acc_frac;
    int64_t bias; /* q_b << (acc_frac - frac_b), or 0 */
} fxpq_channel_quant;

/* Inline: a one-pixel fully connected layer finishes every channel once, and a call per channel
 * was a third of its instructions. */
static inline fxpq_channel_quant fxpq_channel_quant_of(const fxpq_weights *w, const fxpq_bias *b, int32_t o,
                                                       int32_t x_frac)
{
    fxpq_channel_quant q;
    const int32_t wf = w->per_channel_frac != NULL ? w->per_channel_frac[o] : w->frac;
    q.acc_frac = x_frac + wf;
    q.bias = 0;
    if (b != NULL && b->data != NULL) {
        q.bias = fxpq_wrap_shl64((int64_t)b->data[o], q.acc_frac - b->frac);
    }
    return q;
}

/* Weights the reference loops hold unpacked at a time, on the stack (they take no arena
 * scratch): a channel's whole row when K <= FXPQ_WCHUNK (unpacked once per channel, reused by
 * every output pixel), else each dot product's run, FXPQ_WCHUNK weights at a time. */
#define FXPQ_WCHUNK 64

/* Unpack weights [first, first + count) of a packed run (fxpq_unpack_weights from any term). */
void fxpq_unpack_run(const uint8_t *src, int32_t bits, int32_t first, int32_t count, int16_t *dst);

/* One output channel as the reference loops see it: its packed run, its whole row unpacked into
 * the caller's FXPQ_WCHUNK stack buffer when it fits (else NULL), its constants. */
typedef struct {
    const uint8_t *row;
    const int16_t *w;
    fxpq_channel_quant q;
} fxpq_channel;

static inline fxpq_channel fxpq_weighted_channel(const fxpq_weighted *wk, int32_t o, int16_t *buf)
{
    fxpq_channel ch;
    ch.row = (const uint8_t *)wk->weights->data + (size_t)o * (size_t)wk->row_bytes;
    ch.w = NULL;
    if (wk->k <= FXPQ_WCHUNK) {
        fxpq_unpack_run(ch.row, wk->weights->bits, 0, wk->k, buf);
        ch.w = buf;
    }
    ch.q = fxpq_channel_quant_of(wk->weights, wk->bias, o, wk->in_frac);
    return ch;
}

/* sum_i x[i * stride] * w[first + i], i < n, with the channel's weights unpacked FXPQ_WCHUNK at a
 * time when the row is not held whole. */
int64_t fxpq_dot_packed(const fxpq_weighted *wk, const uint8_t *row, const void *x, int32_t stride,
                        int32_t first, int32_t n);

static inline int64_t fxpq_weighted_dot(const fxpq_weighted *wk, const fxpq_channel *ch,
                                        const void *x, int32_t stride, int32_t first, int32_t n)
{
    return ch->w != NULL ? wk->dot(x, stride, ch->w + first, n)
                         : fxpq_dot_packed(wk, ch->row, x, stride, first, n);
}

/* Bias add, rescale, saturate and activation clamp of one accumulator of a channel, stored as
 * output element i: the one finish of the weighted kernels. */
static inline void fxpq_weighted_store(const fxpq_weighted *wk, const fxpq_channel_quant *q,
                                       int32_t i, int64_t acc)
{
    fxpq_output_store(&wk->out, i, fxpq_wrap_add64(acc, q->bias), q->acc_frac);
}

/* Scratch of at least `bytes` bytes, 2-byte aligned. */
fxpq_status fxpq_check_scratch(const fxpq_context *ctx, int32_t bytes);

/* Window bounds: the range [k0, k1) of kernel taps k with 0 <= start + k * dilation < size. */
void fxpq_valid_taps(int32_t start, int32_t dilation, int32_t kernel, int32_t size, int32_t *k0,
                     int32_t *k1);

/* ---- optimized kernels (ARMv7E-M DSP extension; fxpq_dsp.c, docs/kernels.md) -------------
 * Selected at compile time: FXPQ_USE_DSP is 1 when the target has the DSP extension
 * (__ARM_FEATURE_DSP: Cortex-M4/M7/M33...) and FXPQ_REFERENCE_KERNELS is not defined. The
 * reference loops stay the portable path and the definition of the contract; an optimized
 * kernel returns 0 for a case it does not take (the caller then runs the reference loop). */
#if defined(__ARM_FEATURE_DSP) && !defined(FXPQ_REFERENCE_KERNELS)
#define FXPQ_USE_DSP 1
#else
#define FXPQ_USE_DSP 0
#endif

/* Geometry of a conv-family call, in the reference kernels' terms. Fully connected is a 1x1
 * conv over batches x 1 x 1 x in_features. */
typedef struct {
    fxpq_dims in, filter, out;
    fxpq_tile stride, dilation;
    int32_t pad_t, pad_l;
    int32_t depth_multiplier;
} fxpq_geometry;

/* Scratch bytes of conv / fully connected for k terms per dot product (pointwise: a 1x1 kernel
 * or fully connected); -1 on overflow. The same in every build, so that an arena planned anywhere
 * fits the optimized kernels (fxpq_dsp.c, docs/kernels.md). Depthwise needs none. */
int32_t fxpq_dsp_conv_scratch(int32_t k, int32_t pointwise);

/* The optimized kernels: 1 when they computed the whole output, 0 when the case is not theirs
 * (nothing written). Shapes, formats, scratch size and alignment are already checked. */
int32_t fxpq_dsp_conv2d(const fxpq_weighted *wk, const fxpq_geometry *g, const void *input);
int32_t fxpq_dsp_depthwise_conv2d(const fxpq_weighted *wk, const fxpq_geometry *g,
                                  const void *input);
/* Add after fxpq_add's checks: inputs aligned to frac by left shifts sa / sb. */
int32_t fxpq_dsp_add(int32_t size, const void *a, fxpq_storage a_s, int32_t sa, const void *b,
                     fxpq_storage b_s, int32_t sb, int32_t frac, const fxpq_output *out, void *output);
/* Average pool after fxpq_check_pool and the frac-difference check (lo/hi the activation clamp,
 * inside the output format's range). */
int32_t fxpq_dsp_average_pool2d(const fxpq_pool_params *params, const fxpq_dims *id, const void *input,
                                const fxpq_format *input_fmt, const fxpq_dims *od, void *output,
                                const fxpq_format *output_fmt, int32_t pad_t, int32_t pad_l, int32_t lo,
                                int32_t hi);
/* Requantize after fxpq_elementwise_prepare. */
int32_t fxpq_dsp_requantize(int32_t size, const void *input, fxpq_storage in_s, int32_t in_frac,
                            const fxpq_output *out);
/* Max pool after fxpq_check_pool (lo/hi the activation clamp). */
int32_t fxpq_dsp_max_pool2d(const fxpq_pool_params *params, const fxpq_dims *id, const void *input,
                            const fxpq_format *input_fmt, const fxpq_dims *od, void *output,
                            const fxpq_format *output_fmt, int32_t pad_t, int32_t pad_l, int32_t lo,
                            int32_t hi);

/* ---- the optional CMSIS-NN route (fxpq_cmsis.c, docs/kernels.md "CMSIS-NN route") ---------
 * Compiled in with -DFXPQ_WITH_CMSIS_NN and a CMSIS-NN tree on the include path (never in the
 * reference build). */
#if defined(FXPQ_WITH_CMSIS_NN) && !defined(FXPQ_REFERENCE_KERNELS)
#define FXPQ_USE_CMSIS_NN 1
#else
#define FXPQ_USE_CMSIS_NN 0
#endif

/* Conv 2D (fully_connected 0) or fully connected (1, g a 1x1 conv over batches x 1 x 1 x K) on
 * CMSIS-NN: 1 when it computed the whole output, 0 when the layer is not the route's (then the
 * caller's kernels write the whole output; the input is unchanged either way). */
int32_t fxpq_cmsis_conv2d(const fxpq_weighted *wk, const fxpq_geometry *g, const void *input,
                          int32_t fully_connected);

#endif /* FXPQ_INTERNAL_H */
