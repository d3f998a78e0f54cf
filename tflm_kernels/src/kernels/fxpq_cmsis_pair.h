/*
 * fxpq_cmsis_pair.h - the CMSIS-NN (multiplier, shift) pair that reproduces fxpq's power-of-two
 * rescale, and where it is exact (docs/kernels.md "CMSIS-NN route": the proof). One definition,
 * used by the route (fxpq_cmsis.c) and by its exhaustive check (checks/cmsis_requantize_check.c).
 */
#ifndef FXPQ_CMSIS_PAIR_H
#define FXPQ_CMSIS_PAIR_H

#include <stdint.h>

/* The pair for a right shift s (negative: a left shift by -s): multiplier 2^(30 - s) with a left
 * shift of 1 (so that the doubling multiply's rounding is the contract's round half up), 2^30
 * with a left shift of 1 - s for a left shift, 1 with shift 0 for s = 31, 0 beyond. */
static inline void fxpq_cmsis_pair(int32_t s, int32_t *multiplier, int32_t *shift)
{
    if (s < 0) {
        *multiplier = (int32_t)1 << 30;
        *shift = 1 - s;
    } else if (s <= 30) {
        *multiplier = (int32_t)1 << (30 - s);
        *shift = 1;
    } else {
        *multiplier = s == 31 ? 1 : 0;
        *shift = 0;
    }
}

/* 1 when arm_nn_requantize(v, pair(s)) equals fxpq's rescale of the int32 v under both of
 * CMSIS-NN's roundings: -2^30 <= v < 2^30 for 0 <= s <= 30 (2v must not wrap), any v for s >= 31,
 * |v| 2^(n+1) < 2^31 for a left shift by n <= 29. */
static inline int32_t fxpq_cmsis_exact(int64_t v, int32_t s)
{
    if (s < 0) {
        return s >= -29 && (v < 0 ? -v : v) < ((int64_t)1 << (30 + s));
    }
    return s >= 31 || (v >= -((int64_t)1 << 30) && v < ((int64_t)1 << 30));
}

#endif /* FXPQ_CMSIS_PAIR_H */
