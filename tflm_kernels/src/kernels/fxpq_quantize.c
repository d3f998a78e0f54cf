/*
 * fxpq_quantize.c - QUANTIZE (float32 -> integer) and DEQUANTIZE (numerics.md section 2).
 *
 * The only floating-point code of the kernels. No libm: powers of two are built by exact
 * doubling/halving and floor() is spelled out, so results are identical on every IEEE target
 * (Cortex-M4's single-precision FPU runs the double parts in software, exactly).
 */
#include "fxpq_internal.h"

/* 2^e as a double, exact for |e| <= 64. */
static double fxpq_pow2(int32_t e)
{
    double p = 1.0;
    while (e > 0) {
        p *= 2.0;
        --e;
    }
    while (e < 0) {
        p *= 0.5;
        ++e;
    }
    return p;
}

fxpq_status fxpq_quantize(int32_t size, const float *input, void *output,
                          const fxpq_format *output_fmt)
{
    fxpq_status st;
    int32_t lo, hi, i;
    double scale;
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
    scale = fxpq_pow2(output_fmt->frac);
    for (i = 0; i < size; ++i) {
        /* t = x * 2^frac + 0.5 in double, as the contract; then saturate(floor(t)). */
        const double t = (double)input[i] * scale + 0.5;
        int32_t q;
        if (t != t) { /* NaN */
            q = 0;
        } else if (t < (double)lo) { /* floor(t) < lo; also -inf */
            q = lo;
        } else if (t >= (double)hi + 1.0) { /* floor(t) > hi; also +inf */
            q = hi;
        } else {
            q = (int32_t)t; /* truncation toward zero; |t| < 2^17 here */
            if ((double)q > t) {
                q -= 1;
            }
        }
        fxpq_store(output, out_s, i, q);
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
    scale = (float)fxpq_pow2(-input_fmt->frac);
    for (i = 0; i < size; ++i) {
        output[i] = (float)fxpq_load(input, in_s, i) * scale;
    }
    return FXPQ_OK;
}
