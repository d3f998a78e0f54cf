/*
 * fxpq_internal.h - helpers shared by the kernel sources (not part of the public API).
 */
#ifndef FXPQ_INTERNAL_H
#define FXPQ_INTERNAL_H

#include "fxpq_kernels.h"

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

/* Per-output-channel constants of the conv family: accumulator frac and aligned bias. */
typedef struct {
    int32_t acc_frac;
    int64_t bias; /* q_b << (acc_frac - frac_b), or 0 */
} fxpq_channel_quant;

/* Validate weights/bias for out_channels channels with input frac x_frac and compute channel
 * o's constants (called once per channel, checks run for every channel before any output). */
fxpq_status fxpq_check_weights_bias(const fxpq_weights *w, const fxpq_bias *b,
                                    int32_t out_channels, int32_t x_frac);
fxpq_channel_quant fxpq_channel_quant_of(const fxpq_weights *w, const fxpq_bias *b, int32_t o,
                                         int32_t x_frac);

/* Bias add, rescale, saturate and activation clamp: the one finish of the conv family.
 * act_lo/act_hi come from fxpq_activation_bounds (inside the output range). */
static inline int32_t fxpq_finish_acc(int64_t acc, const fxpq_channel_quant *q, int32_t out_frac,
                                      int32_t act_lo, int32_t act_hi)
{
    return fxpq_rescale_clamp(fxpq_wrap_add64(acc, q->bias), q->acc_frac, out_frac, act_lo, act_hi);
}

/* Scratch for `count` unpacked int16 weights. */
fxpq_status fxpq_check_scratch(const fxpq_context *ctx, int32_t count);

/* Window bounds: the range [k0, k1) of kernel taps k with 0 <= start + k * dilation < size. */
void fxpq_valid_taps(int32_t start, int32_t dilation, int32_t kernel, int32_t size, int32_t *k0,
                     int32_t *k1);

#endif /* FXPQ_INTERNAL_H */
