/*
 * fxpq_dot.c - dot products of an activation run (any storage type, element stride) with an
 * unpacked int16 weight run, accumulated in int32 or int64.
 */
#include "fxpq_internal.h"

/* The int32 variants accumulate in uint32 (wrap-around is defined behaviour); each product
 * fits int32 since |x| <= 65535 and |w| <= 32768. They are only selected when the contract's
 * width rule proves that the exact sum fits int32. */
#define FXPQ_DEFINE_DOT(name, in_t, prod_t, uacc_t, acc_t)                                     \
    static int64_t name(const void *x, int32_t stride, const int16_t *w, int32_t n)            \
    {                                                                                        \
        const in_t *p = (const in_t *)x;                                                     \
        uacc_t acc = 0;                                                                      \
        int32_t i;                                                                           \
        for (i = 0; i < n; ++i) {                                                            \
            acc += (uacc_t)((prod_t)*p * (prod_t)w[i]);                                      \
            p += stride;                                                                     \
        }                                                                                    \
        return (int64_t)(acc_t)acc;                                                          \
    }

FXPQ_DEFINE_DOT(fxpq_dot_s8_32, int8_t, int32_t, uint32_t, int32_t)
FXPQ_DEFINE_DOT(fxpq_dot_u8_32, uint8_t, int32_t, uint32_t, int32_t)
FXPQ_DEFINE_DOT(fxpq_dot_s16_32, int16_t, int32_t, uint32_t, int32_t)
FXPQ_DEFINE_DOT(fxpq_dot_u16_32, uint16_t, int32_t, uint32_t, int32_t)
FXPQ_DEFINE_DOT(fxpq_dot_s8_64, int8_t, int64_t, uint64_t, int64_t)
FXPQ_DEFINE_DOT(fxpq_dot_u8_64, uint8_t, int64_t, uint64_t, int64_t)
FXPQ_DEFINE_DOT(fxpq_dot_s16_64, int16_t, int64_t, uint64_t, int64_t)
FXPQ_DEFINE_DOT(fxpq_dot_u16_64, uint16_t, int64_t, uint64_t, int64_t)

fxpq_dot_fn fxpq_select_dot(fxpq_storage input_storage, int32_t acc64)
{
    switch (input_storage) {
    case FXPQ_STORAGE_INT8: return acc64 ? fxpq_dot_s8_64 : fxpq_dot_s8_32;
    case FXPQ_STORAGE_UINT8: return acc64 ? fxpq_dot_u8_64 : fxpq_dot_u8_32;
    case FXPQ_STORAGE_INT16: return acc64 ? fxpq_dot_s16_64 : fxpq_dot_s16_32;
    default: return acc64 ? fxpq_dot_u16_64 : fxpq_dot_u16_32;
    }
}

int64_t fxpq_dot_packed(const fxpq_weighted *wk, const uint8_t *row, const void *x, int32_t stride,
                        int32_t first, int32_t n)
{
    int16_t w[FXPQ_WCHUNK];
    const uint8_t *p = (const uint8_t *)x;
    const size_t step = (size_t)stride * (size_t)wk->in_es * (size_t)FXPQ_WCHUNK;
    int64_t acc = 0;
    while (n > 0) {
        const int32_t len = n < FXPQ_WCHUNK ? n : FXPQ_WCHUNK;
        fxpq_unpack_run(row, wk->weights->bits, first, len, w);
        acc = fxpq_wrap_add64(acc, wk->dot(p, stride, w, len));
        p += step;
        first += len;
        n -= len;
    }
    return acc;
}
