/*
 * fxpq_quantize.c - QUANTIZE (float32 -> integer) and DEQUANTIZE (numerics.md section 2).
 *
 * QUANTIZE works on the float's bits with integers only: Cortex-M4's FPU is single precision,
 * and the contract's float64 formula ran in software there (~480 instructions per element).
 * DEQUANTIZE is one float32 multiply (hardware on M4 and M7). No libm.
 */
#include "fxpq_internal.h"

#include <string.h>

/*
 * Why the integer method below gives the contract's answer for every float32 x (so the numpy
 * reference, which computes t = x * 2^frac + 0.5 in float64 and saturates floor(t), is unchanged).
 * Write |x| * 2^frac = m * 2^k with m < 2^24 the significand (implicit bit included) and
 * k = max(E, 1) - 150 + frac (the code uses n = -k), E the biased exponent, |frac| <= 32. The
 * product is exact in float64 (its exponent stays within [-181, 160], float64's normal range):
 *  - -30 <= k <= 28: x * 2^frac + 0.5 has bits between 2^min(k, -1) and 2^52 only (at most 53
 *    of them), so the float64 sum is exact and floor(t) is the exact floor(x 2^frac + 1/2).
 *  - k > 28: |x 2^frac| >= 2^29, and float64 rounding is monotonic, so t >= 2^29 or
 *    t <= -2^29 + 0.5 (both exact): both computations saturate to the same end.
 *  - k < -30: |x 2^frac| < 2^-7, so the exact value and t (again by monotonicity) lie in
 *    (0.5 - 2^-7, 0.5 + 2^-7): floor 0 in both.
 * NaN (-> 0) and +-inf (-> hi / lo) are this kernel's rule; Python refuses NaN.
 */
static inline int32_t fxpq_quantize_bits(uint32_t b, int32_t c, int32_t lo, int32_t hi)
{
    /* b: the float's bits; c = 150 - frac. */
    const uint32_t e = (b >> 23) & 0xFFu;
    const uint32_t neg = 0u - (b >> 31); /* all ones for a negative x */
    uint32_t m = b & 0x7FFFFFu;
    int32_t n, r;

    if (e - 1u >= 254u) { /* rare: e = 0 or 255 */
        if (e == 0u || m != 0u) {
            return 0; /* +-0, subnormals (|x 2^frac| < 2^-126 2^32 < 1/2), NaN */
        }
        return neg ? lo : hi; /* +-inf */
    }
    m |= 0x800000u; /* the implicit bit */
    n = c - (int32_t)e;
    /* |x| 2^frac = m 2^-n */
    if ((uint32_t)(n - 1) >= 24u) {
        /* n <= 0: an integer >= m >= 2^23, saturated;
         * n > 24: |x 2^frac| < 2^24 2^-25 = 1/2, so floor(x 2^frac + 1/2) = 0 for both signs */
        return n > 0 ? 0 : (neg ? lo : hi);
    }
    /* floor((+-m + 2^(n-1)) / 2^n) by a logical shift: adding 2^25 (a multiple of 2^n) makes the
     * numerator positive, < 2^26; the uint32 sum wraps back to it from -m. Round half up:
     * -2.5 -> -2, 2.5 -> 3. */
    r = (int32_t)((((m ^ neg) - neg) + (1u << (n - 1)) + (1u << 25)) >> n)
        - (int32_t)(1u << (25 - n));
    return r < lo ? lo : (r > hi ? hi : r);
}

/* One loop per storage type: the element type is fixed outside the loop. */
#define FXPQ_QUANTIZE_LOOP(T)                                                   \
    for (i = 0; i < size; ++i) {                                                \
        uint32_t b;                                                             \
        memcpy(&b, &input[i], sizeof b);                                        \
        ((T *)output)[i] = (T)fxpq_quantize_bits(b, c, lo, hi);                 \
    }

fxpq_status fxpq_quantize(int32_t size, const float *input, void *output,
                          const fxpq_format *output_fmt)
{
    fxpq_status st;
    int32_t lo, hi, c, i;
    fxpq_storage out_s;

    if (input == NULL || output == NULL) {
        return FXPQ_ERR_NULL_POINTER;
    }
    if ((st = fxpq_check_format(output_fmt)) != FXPQ_OK) {
        return st;
    }
    if (size <= 0) {
        return FXPQ_ERR_BAD_DIMS;
    }
    out_s = fxpq_storage_of(output_fmt);
    if ((st = fxpq_check_aligned(output, out_s)) != FXPQ_OK) {
        return st;
    }
    fxpq_format_range(output_fmt, &lo, &hi);
    c = 150 - output_fmt->frac;
    switch (out_s) {
    case FXPQ_STORAGE_INT8: FXPQ_QUANTIZE_LOOP(int8_t) break;
    case FXPQ_STORAGE_UINT8: FXPQ_QUANTIZE_LOOP(uint8_t) break;
    case FXPQ_STORAGE_INT16: FXPQ_QUANTIZE_LOOP(int16_t) break;
    default: FXPQ_QUANTIZE_LOOP(uint16_t) break;
    }
    return FXPQ_OK;
}

fxpq_status fxpq_dequantize(int32_t size, const void *input, const fxpq_format *input_fmt,
                            float *output)
{
    fxpq_status st;
    int32_t i;
    float scale;
    fxpq_storage in_s;

    if (input == NULL || output == NULL) {
        return FXPQ_ERR_NULL_POINTER;
    }
    if ((st = fxpq_check_format(input_fmt)) != FXPQ_OK) {
        return st;
    }
    if (size <= 0) {
        return FXPQ_ERR_BAD_DIMS;
    }
    in_s = fxpq_storage_of(input_fmt);
    if ((st = fxpq_check_aligned(input, in_s)) != FXPQ_OK) {
        return st;
    }
    /* 2^-frac with |frac| <= 32 is a normal float32; q has at most 17 significant bits: the
     * product is exact in float32. */
    scale = 1.0f;
    for (i = 0; i < input_fmt->frac; ++i) {
        scale *= 0.5f;
    }
    for (i = 0; i > input_fmt->frac; --i) {
        scale *= 2.0f;
    }
    for (i = 0; i < size; ++i) {
        output[i] = (float)fxpq_load(input, in_s, i) * scale;
    }
    return FXPQ_OK;
}
